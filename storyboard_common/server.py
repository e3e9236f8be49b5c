"""The gRPC server every service runs on: interceptors, health, reflection, warm-up and graceful shutdown.

A service's ``create_server(settings)`` builds its dependencies and servicers and returns ``build_server(...)``'s
result; its ``main()`` hands that factory to ``run_service``. Tests call ``create_server`` directly on port 0.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from storyboard_common.decoding import RequestDecodingInterceptor
from storyboard_common.interceptors import ServiceInterceptor
from storyboard_common.lifeline import watch_lifeline
from storyboard_common.logs import configure_logging
from storyboard_common.settings import ServiceSettings

log = logging.getLogger(__name__)

# After its supervisor is gone, how much longer than its grace a service may take to stop before it exits outright.
LIFELINE_STOP_SLACK_SECONDS = 30.0
MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # a 2048² PNG frame is well under this
GRPC_FOREVER_MS = 2**31 - 1  # gRPC reads durations in milliseconds as a C int; its largest means "no limit"


@dataclass(frozen=True)
class Registration:
    """One gRPC service a server hosts: its full name (for health and reflection) and how to add it."""

    full_name: str
    add_to_server: Callable[[grpc.Server], None]


@dataclass
class ServiceServer:
    """A started-or-not gRPC server with its health status, warm-up and the resources to release on stop."""

    name: str
    grpc_server: grpc.Server
    port: int
    health_servicer: health.HealthServicer
    service_names: Sequence[str]
    warm_up: Callable[[], None] | None = None
    closers: list[Callable[[], None]] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)
    stopping: threading.Event = field(default_factory=threading.Event)  # set when stop() begins
    not_ready_reason: str = "starting"
    endpoints: dict[str, int] = field(default_factory=dict)  # other listeners of the service, e.g. {"http": 8000}
    _warm_thread: threading.Thread | None = None

    def start(self) -> None:
        """Start serving; health reports NOT_SERVING until the warm-up (in a background thread) has succeeded."""
        self.grpc_server.start()
        log.info("%s listening on port %d", self.name, self.port)
        self._warm_thread = threading.Thread(target=self._warm, name=f"{self.name}-warm-up", daemon=True)
        self._warm_thread.start()

    def _warm(self) -> None:
        try:
            if self.warm_up is not None:
                self.warm_up()
        except Exception as error:
            # Stay up and say why: a health check shows NOT_SERVING, Info RPCs show the reason.
            self.not_ready_reason = str(error) or type(error).__name__
            log.warning("%s is not ready: %s", self.name, self.not_ready_reason)
            return
        self.not_ready_reason = ""
        self._set_status(health_pb2.HealthCheckResponse.SERVING)
        self.ready.set()
        log.info("%s is ready", self.name)

    def _set_status(self, status: int) -> None:
        for name in ("", *self.service_names):
            self.health_servicer.set(name, status)

    def stop(self, grace: float) -> None:
        """Report NOT_SERVING, let in-flight calls finish for up to ``grace`` seconds, cancel the rest, release."""
        self.stopping.set()
        self.health_servicer.enter_graceful_shutdown()
        self.grpc_server.stop(grace).wait()
        for close in reversed(self.closers):
            try:
                close()
            except Exception:
                log.exception("%s: releasing a resource failed", self.name)
        log.info("%s stopped", self.name)


def build_server(
    name: str,
    settings: ServiceSettings,
    registrations: Sequence[Registration],
    *,
    warm_up: Callable[[], None] | None = None,
    closers: Sequence[Callable[[], None]] = (),
    interceptors: Sequence[grpc.ServerInterceptor] = (),
) -> tuple[ServiceServer, int]:
    """A server hosting ``registrations`` plus health and reflection, bound to ``settings.host:settings.port``.

    ``interceptors`` run between the shared ServiceInterceptor (outermost) and the request decoding check (innermost),
    so status mapping and a service's own interceptors see an unparsable request's refusal like any other error.
    """
    options = [
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.so_reuseport", 0),
        *age_options(settings),
    ]
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=settings.max_workers, thread_name_prefix=name),
        interceptors=[ServiceInterceptor(), *interceptors, RequestDecodingInterceptor()],
        options=options,
    )
    for registration in registrations:
        registration.add_to_server(server)
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [r.full_name for r in registrations]
    reflection.enable_server_reflection([*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    address = f"{settings.host}:{settings.port}"
    credentials = settings.server_credentials()
    port = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    if port == 0:
        raise SystemExit(f"{name}: cannot listen on {settings.host}:{settings.port}")
    service = ServiceServer(name, server, port, health_servicer, names, warm_up, list(closers))
    service._set_status(health_pb2.HealthCheckResponse.NOT_SERVING)
    return service, port


def age_options(settings: ServiceSettings) -> list[tuple[str, int]]:
    """Clients reconnect after the connection age; calls open then go on for the grace (unset: until they end)."""
    grace = settings.max_connection_age_grace_seconds
    grace_ms = GRPC_FOREVER_MS if grace is None else min(GRPC_FOREVER_MS, int(grace * 1000))
    return [
        ("grpc.max_connection_age_ms", int(settings.max_connection_age_seconds * 1000)),
        ("grpc.max_connection_age_grace_ms", grace_ms),
    ]


def run_service(
    name: str,
    settings: ServiceSettings,
    create_server: Callable[[ServiceSettings], tuple[ServiceServer, int]],
) -> int:
    """Run a service until SIGTERM or SIGINT, or until the supervisor that started it is gone (see
    ``storyboard_common.lifeline``), then stop it gracefully; returns the exit status (0 on a clean stop)."""
    configure_logging(name, settings.log_level, settings.log_format)
    stop_requested = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        log.info("%s: received %s, shutting down", name, signal.Signals(signum).name)
        stop_requested.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    # Watched before the server is built, so that a supervisor lost during a slow start still stops this service.
    watch_lifeline(stop_requested.set, hard_exit_after=settings.grace_seconds + LIFELINE_STOP_SLACK_SECONDS)
    server, _port = create_server(settings)
    server.start()
    stop_requested.wait()
    server.stop(settings.grace_seconds)
    return 0
