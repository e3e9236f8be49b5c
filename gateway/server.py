"""The gateway on one asyncio loop: the ``grpc.aio`` server of the public Storyboards API, the REST bridge (FastAPI
served by uvicorn) and every storyboard's work, as TGI and vLLM serve.

``Gateway`` is the assembly; ``GatewayServer`` runs it on a loop of its own thread, with the start/stop/ready
surface every service has (``storyboard_common.server.run_service`` drives it, and tests start it on port 0).

Once the planner and a renderer are ready, the storyboards a previous run left unfinished are resumed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import grpc
import uvicorn
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.downstream import CallLimits, Downstream
from gateway.events import EventLog
from gateway.frames import FramePolicy
from gateway.metrics import GrpcMetricsInterceptor, Metrics
from gateway.rest import build_app
from gateway.service import StoryboardService
from gateway.servicer import StoryboardsServicer
from gateway.settings import GatewaySettings, split_list
from gateway.store import WORKING_STATES, JobStore
from storyboard.v1 import storyboards_pb2 as sb
from storyboard.v1 import storyboards_pb2_grpc
from storyboard_common import aio
from storyboard_common.channels import ChannelSecurity, open_aio_probe_channel

SERVICE_NAME = "storyboard.v1.Storyboards"
log = logging.getLogger(__name__)


class Gateway:
    """Everything the gateway runs, built and run on one loop."""

    def __init__(self, settings: GatewaySettings, on_ready: Callable[[], object] = lambda: None) -> None:
        self.settings = settings
        self.ready = False
        self.not_ready_reason = "starting"
        self._on_ready = on_ready
        self._tasks: list[asyncio.Task[Any]] = []

    async def bind(self) -> tuple[int, int]:
        """Build every part and bind the gRPC and HTTP ports (0 picks one); returns them. Serves nothing yet."""
        settings = self.settings
        settings.outputs.mkdir(parents=True, exist_ok=True)
        self.store = JobStore(settings.job_store_path, settings.outputs.resolve())
        self.events = EventLog(self.store, asyncio.get_running_loop())
        self.metrics = Metrics(
            queue_depth=lambda: self.store.count([sb.STORYBOARD_STATE_QUEUED]),
            running=lambda: self.store.count(WORKING_STATES),
        )
        self.security = ChannelSecurity.from_files(
            settings.tls_ca, settings.tls_cert, settings.tls_key, settings.tls_server_name
        )
        self.downstream = Downstream(
            settings.planner, settings.renderers, settings.validator, _limits(settings), self.metrics, self.security
        )
        keys = settings.api_key_set()
        self.service = StoryboardService(
            self.store, self.events, self.downstream, self.metrics,
            FramePolicy(settings.max_retries, settings.frames_in_flight), settings.max_running,
            max_active_of=keys.max_active_of, max_queued=settings.max_queued_per_key,
        )  # fmt: skip
        servicer = StoryboardsServicer(self.service, keys)
        self.grpc, self.health, port = aio.build_server(
            settings,
            [(SERVICE_NAME, lambda server: storyboards_pb2_grpc.add_StoryboardsServicer_to_server(servicer, server))],
            interceptors=[GrpcMetricsInterceptor(self.metrics, SERVICE_NAME)],
        )
        http_port = 0
        self.rest: uvicorn.Server | None = None
        if settings.rest:
            app = build_app(self.service, lambda: self.ready, keys, self.metrics, split_list(settings.cors_origins))
            self._http_socket = _listening_socket(settings.host, settings.http_port)
            http_port = self._http_socket.getsockname()[1]
            self.rest = _Uvicorn(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
        return port, http_port

    async def start(self) -> None:
        """Serve gRPC and REST at once (NOT_SERVING and ``/readyz`` 503 until ready), then warm up in the
        background: ready once the planner and a renderer are SERVING; then resume what a previous run left."""
        await self.grpc.start()
        if self.rest is not None:
            self._tasks.append(asyncio.create_task(self.rest.serve(sockets=[self._http_socket]), name="rest"))
            log.info("REST bridge listening on port %d", self._http_socket.getsockname()[1])
        self._tasks.append(asyncio.create_task(self._warm_up(), name="warm-up"))

    async def _warm_up(self) -> None:
        settings = self.settings
        for name, address in (
            ("storyboard.v1.Planner", settings.planner),
            ("storyboard.v1.Renderer", settings.renderers),
        ):
            await _wait_serving(name, address, self.security)
        log.info("connected to %d renderer replicas", await self.downstream.connect_renderers())
        self.not_ready_reason, self.ready = "", True
        await aio.set_health(self.health, [SERVICE_NAME], serving=True)
        self._on_ready()
        log.info("gateway is ready")
        if resumed := self.service.resume_unfinished():
            log.info("resumed %d unfinished storyboards", resumed)

    async def stop(self, grace: float) -> None:
        """Report NOT_SERVING, let calls in flight finish for up to ``grace`` seconds, then stop the storyboards'
        work (it stays unfinished, to be resumed by the next start) and release everything."""
        await self.health.enter_graceful_shutdown()
        if self.rest is not None:
            self.rest.should_exit = True
        await self.grpc.stop(grace)
        await self.service.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.downstream.close()
        self.store.close()
        log.info("gateway stopped")


def _limits(settings: GatewaySettings) -> CallLimits:
    return CallLimits(
        plan_timeout=settings.plan_timeout_seconds,
        frame_timeout=settings.frame_timeout_seconds,
        validate_timeout=settings.validate_timeout_seconds,
        render_unavailable_retries=settings.render_unavailable_retries,
        progress_interval=settings.progress_interval_seconds,
    )


async def _wait_serving(service: str, address: str, security: ChannelSecurity | None) -> None:
    """Wait, however long it takes, until ``service`` reports SERVING: services may start in any order and a
    renderer may load weights for minutes. Ends only when the gateway stops (its task is cancelled)."""
    request = health_pb2.HealthCheckRequest(service=service)
    while True:
        async with open_aio_probe_channel(address, security) as channel:
            watch = health_pb2_grpc.HealthStub(channel).Watch(request, timeout=30, wait_for_ready=True)
            try:
                async for response in watch:
                    if response.status == health_pb2.HealthCheckResponse.SERVING:
                        return
            except grpc.aio.AioRpcError as error:
                log.info("waiting for %s at %s (%s)", service, address, error.code().name)


class _Uvicorn(uvicorn.Server):
    """uvicorn on the gateway's loop: the gateway handles the signals itself."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host.strip("[]"), port), family=family, reuse_port=False)


class GatewayServer:
    """A gateway on a loop of its own thread, with the surface of ``storyboard_common.server.ServiceServer``: bound
    on construction (``port``, ``endpoints["http"]``), then ``start``, ``ready``, ``stop``."""

    name = "gateway"

    def __init__(self, settings: GatewaySettings) -> None:
        self.ready = threading.Event()
        self.stopping = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="gateway-loop", daemon=True)
        self._thread.start()
        self._gateway = Gateway(settings, on_ready=self.ready.set)
        self.port, http_port = self._call(self._gateway.bind())
        self.endpoints = {"http": http_port} if settings.rest else {}

    @property
    def not_ready_reason(self) -> str:
        return self._gateway.not_ready_reason

    def _call(self, work: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(work, self._loop).result()

    def start(self) -> None:
        self._call(self._gateway.start())
        log.info("gateway listening on port %d", self.port)

    def stop(self, grace: float) -> None:
        if self.stopping.is_set():
            return
        self.stopping.set()
        self._call(self._gateway.stop(grace))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop.close()


def create_server(settings: GatewaySettings) -> tuple[GatewayServer, int]:
    """The gateway's server on ``settings.port`` (0 picks one), with the REST bridge when enabled."""
    server = GatewayServer(settings)
    return server, server.port
