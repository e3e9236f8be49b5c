"""Building the planner's gRPC server from its settings."""

from __future__ import annotations

from services.planner.planning import build_planner
from services.planner.servicer import PlannerServicer
from services.planner.settings import PlannerSettings
from storyboard_common.server import Registration, ServiceServer, build_server
from storyboard_common.v1 import planner_pb2, planner_pb2_grpc

SERVICE_NAME = planner_pb2.DESCRIPTOR.services_by_name["Planner"].full_name


def create_server(settings: PlannerSettings) -> tuple[ServiceServer, int]:
    """The planner server (not yet started) and the port it is bound to."""
    planner = build_planner(settings)
    servicer = PlannerServicer(planner)
    registration = Registration(
        SERVICE_NAME, lambda server: planner_pb2_grpc.add_PlannerServicer_to_server(servicer, server)
    )
    return build_server("planner", settings, [registration], warm_up=planner.warm_up)
