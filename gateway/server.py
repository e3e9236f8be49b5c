"""Builds the gateway: job store, downstream channels, orchestrator, gRPC API and REST bridge.

Once the planner and a renderer are ready, the storyboards a previous run left unfinished are resumed.
"""

from __future__ import annotations

import logging
import threading

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.jobs import JobStore
from gateway.metrics import GrpcMetricsInterceptor, Metrics
from gateway.orchestrator import Downstream, Orchestrator, Policy
from gateway.rest import RestBridge, build_app
from gateway.service import StoryboardService
from gateway.servicer import StoryboardsServicer
from gateway.settings import GatewaySettings, split_list
from storyboard.v1 import storyboards_pb2 as sb
from storyboard.v1 import storyboards_pb2_grpc
from storyboard_common.channels import ChannelSecurity, open_probe_channel
from storyboard_common.errors import Unavailable
from storyboard_common.server import Registration, ServiceServer, build_server

SERVICE_NAME = "storyboard.v1.Storyboards"
log = logging.getLogger(__name__)
_RUNNING = (sb.STORYBOARD_STATE_PLANNING, sb.STORYBOARD_STATE_RENDERING, sb.STORYBOARD_STATE_ASSEMBLING)


def create_server(settings: GatewaySettings) -> tuple[ServiceServer, int]:
    """The gateway's server on ``settings.port`` (0 picks one), with the REST bridge when enabled."""
    settings.outputs.mkdir(parents=True, exist_ok=True)
    store = JobStore(settings.job_store_path, settings.outputs.resolve())
    metrics = Metrics(
        queue_depth=lambda: store.count_live(sb.STORYBOARD_STATE_QUEUED),
        running=lambda: sum(store.count_live(state) for state in _RUNNING),
    )
    security = ChannelSecurity.from_files(
        settings.tls_ca, settings.tls_cert, settings.tls_key, settings.tls_server_name
    )
    downstream = Downstream.connect(settings.planner, settings.renderers, settings.validator, security)
    policy = Policy(
        max_retries=settings.max_retries,
        render_unavailable_retries=settings.render_unavailable_retries,
        frames_in_flight=settings.frames_in_flight,
        plan_timeout=settings.plan_timeout_seconds,
        frame_timeout=settings.frame_timeout_seconds,
        validate_timeout=settings.validate_timeout_seconds,
        progress_interval=settings.progress_interval_seconds,
    )
    service = StoryboardService(
        store,
        downstream,
        Orchestrator(store, downstream, policy, metrics),
        settings.max_running,
        settings.plan_timeout_seconds,
    )
    keys = settings.api_key_set()
    servicer = StoryboardsServicer(service, keys)
    server, port = build_server(
        "gateway",
        settings,
        [Registration(SERVICE_NAME, lambda s: storyboards_pb2_grpc.add_StoryboardsServicer_to_server(servicer, s))],
        closers=[service.close],
        interceptors=[GrpcMetricsInterceptor(metrics, SERVICE_NAME)],
    )
    rest = None
    if settings.rest:
        app = build_app(service, server.ready.is_set, keys, metrics, split_list(settings.cors_origins))
        rest = RestBridge(app, settings.host, settings.http_port)
        server.endpoints["http"] = rest.port
        server.closers.append(rest.stop)
    server.warm_up = lambda: _warm_up(settings, security, rest, service, downstream, server.stopping)
    return server, port


def _warm_up(
    settings: GatewaySettings,
    security: ChannelSecurity | None,
    rest: RestBridge | None,
    service: StoryboardService,
    downstream: Downstream,
    stopping: threading.Event,
) -> None:
    """Serve REST at once (``/readyz`` says 503 until ready); ready once the planner and a renderer are SERVING and
    every renderer replica that is up has been connected to; then resume what a previous run left unfinished."""
    if rest is not None:
        rest.start()
    for name, address in (("storyboard.v1.Planner", settings.planner), ("storyboard.v1.Renderer", settings.renderers)):
        _wait_serving(name, address, security, stopping)
    log.info("connected to %d renderer replicas", downstream.connect_renderers(settings.renderers, security))
    if resumed := service.resume_unfinished():
        log.info("resumed %d unfinished storyboards", resumed)


def _wait_serving(service: str, address: str, security: ChannelSecurity | None, stopping: threading.Event) -> None:
    """Wait, however long it takes, until ``service`` reports SERVING: services may start in any order and a
    renderer may load weights for minutes. Gives up only when the gateway itself is stopping."""
    request = health_pb2.HealthCheckRequest(service=service)
    while not stopping.is_set():
        with open_probe_channel(address, security) as channel:
            try:
                stream = health_pb2_grpc.HealthStub(channel).Watch(request, timeout=30, wait_for_ready=True)
                for response in stream:
                    if response.status == health_pb2.HealthCheckResponse.SERVING:
                        return
            except grpc.RpcError as error:
                log.info("waiting for %s at %s (%s)", service, address, error.code().name)
    raise Unavailable(f"stopped before {service} at {address} became ready")
