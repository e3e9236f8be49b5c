"""Builds the gateway: job store, downstream channels, orchestrator, gRPC API and REST bridge."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.jobs import JobStore
from gateway.orchestrator import Downstream, Orchestrator, Policy
from gateway.rest import RestBridge
from gateway.service import StoryboardService
from gateway.servicer import StoryboardsServicer
from gateway.settings import GatewaySettings
from storyboard.v1 import storyboards_pb2_grpc
from storyboard_common.channels import target_for
from storyboard_common.errors import Unavailable
from storyboard_common.server import Registration, ServiceServer, build_server

SERVICE_NAME = "storyboard.v1.Storyboards"


def create_server(settings: GatewaySettings) -> tuple[ServiceServer, int]:
    """The gateway's server on ``settings.port`` (0 picks one), with the REST bridge when enabled."""
    settings.outputs.mkdir(parents=True, exist_ok=True)
    store = JobStore(settings.outputs.resolve())
    downstream = Downstream.connect(settings.planner, settings.renderers, settings.validator)
    policy = Policy(
        max_retries=settings.max_retries,
        render_unavailable_retries=settings.render_unavailable_retries,
        frames_in_flight=settings.frames_in_flight,
        plan_timeout=settings.plan_timeout_seconds,
        frame_timeout=settings.frame_timeout_seconds,
        validate_timeout=settings.validate_timeout_seconds,
    )
    service = StoryboardService(
        store, downstream, Orchestrator(store, downstream, policy), settings.max_running, settings.plan_timeout_seconds
    )
    servicer = StoryboardsServicer(service)
    server, port = build_server(
        "gateway",
        settings,
        [Registration(SERVICE_NAME, lambda s: storyboards_pb2_grpc.add_StoryboardsServicer_to_server(servicer, s))],
        closers=[service.close],
    )
    rest = None
    if settings.rest:
        rest = RestBridge(service, settings.host, settings.http_port, is_ready=server.ready.is_set)
        server.endpoints["http"] = rest.port
        server.closers.append(rest.stop)
    server.warm_up = lambda: _warm_up(settings, rest)
    return server, port


def _warm_up(settings: GatewaySettings, rest: RestBridge | None) -> None:
    """Serve REST at once (``/readyz`` says 503 until ready); ready once the planner and a renderer are SERVING."""
    if rest is not None:
        rest.start()
    _wait_serving("storyboard.v1.Planner", settings.planner, settings.plan_timeout_seconds)
    _wait_serving("storyboard.v1.Renderer", settings.renderers, settings.plan_timeout_seconds)


def _wait_serving(service: str, address: str, timeout: float) -> None:
    with grpc.insecure_channel(target_for(address)) as channel:
        request = health_pb2.HealthCheckRequest(service=service)
        try:
            for response in health_pb2_grpc.HealthStub(channel).Watch(request, timeout=timeout, wait_for_ready=True):
                if response.status == health_pb2.HealthCheckResponse.SERVING:
                    return
        except grpc.RpcError as error:
            raise Unavailable(f"{service} at {address} did not become ready: {error.code().name}") from None
    raise Unavailable(f"{service} at {address} did not become ready")
