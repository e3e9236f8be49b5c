"""Prometheus metrics of the gateway: API requests, stage latencies, frames, retries, queue depth.

Each gateway has its own registry (several can live in one test process); ``GET /metrics`` exposes it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import grpc
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from storyboard_common.aio import StreamBehavior, UnaryBehavior, wrapped_handler
from storyboard_common.errors import status_for

_STAGE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class Metrics:
    """The gateway's counters, histograms and gauges."""

    def __init__(self, queue_depth: Callable[[], int] = lambda: 0, running: Callable[[], int] = lambda: 0) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "storyboard_gateway_requests",
            "API requests answered, by face (grpc, rest), method or route, and status code",
            ["face", "method", "code"],
            registry=self.registry,
        )
        self.stage_seconds = Histogram(
            "storyboard_gateway_stage_seconds",
            "Latency of one stage call: plan, render (one frame attempt), validate, repetition_check, assemble",
            ["stage"],
            buckets=_STAGE_BUCKETS,
            registry=self.registry,
        )
        self.frames = Counter(
            "storyboard_gateway_frames",
            "Frames by outcome: rendered (every attempt), kept (written as frame_NNN)",
            ["outcome"],
            registry=self.registry,
        )
        self.retries = Counter(
            "storyboard_gateway_retries",
            "Frames sent again, by reason: low_consistency, replica_lost (UNAVAILABLE), "
            "replica_busy (RESOURCE_EXHAUSTED before the frame started), regenerate (asked for)",
            ["reason"],
            registry=self.registry,
        )
        self.storyboards = Counter(
            "storyboard_gateway_storyboards",
            "Storyboards that ended, by final state",
            ["state"],
            registry=self.registry,
        )
        queued = Gauge(
            "storyboard_gateway_queue_depth", "Storyboards accepted and waiting to start", registry=self.registry
        )
        queued.set_function(lambda: float(queue_depth()))
        active = Gauge("storyboard_gateway_running", "Storyboards being worked on", registry=self.registry)
        active.set_function(lambda: float(running()))

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        """Observe how long the ``with`` body took as one ``stage`` call (failures included)."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.stage_seconds.labels(stage).observe(time.perf_counter() - started)

    def exposition(self) -> tuple[bytes, str]:
        """The metrics in Prometheus's text format, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class GrpcMetricsInterceptor(grpc.aio.ServerInterceptor):
    """Counts the calls of one gRPC service by method and final status code. It sits inside the interceptor that
    maps exceptions to codes, so it sees the exception and names the code the same way."""

    def __init__(self, metrics: Metrics, service: str) -> None:
        self._metrics = metrics
        self._prefix = f"/{service}/"

    async def intercept_service(self, continuation: Callable[[Any], Awaitable[Any]], details: Any) -> Any:
        handler = await continuation(details)
        if handler is None or not details.method.startswith(self._prefix):
            return handler
        method = details.method.removeprefix(self._prefix)
        return wrapped_handler(handler, lambda behavior: self._unary(behavior, method),
                               lambda behavior: self._stream(behavior, method))  # fmt: skip

    def _count(self, method: str, code: str) -> None:
        self._metrics.requests.labels("grpc", method, code).inc()

    def _unary(self, behavior: UnaryBehavior, method: str) -> UnaryBehavior:
        async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                response = await behavior(request, context)
            except Exception as error:
                self._count(method, _code_name(error))
                raise
            self._count(method, "OK")
            return response

        return wrapped

    def _stream(self, behavior: StreamBehavior, method: str) -> StreamBehavior:
        async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            code = "OK"
            try:
                async for item in behavior(request, context):
                    yield item
            except asyncio.CancelledError:
                code = "CANCELLED"  # the client went away
                raise
            except Exception as error:
                code = _code_name(error)
                raise
            finally:
                self._count(method, code)

        return wrapped


def _code_name(error: BaseException) -> str:
    status = status_for(error)
    return status[0].name if status else "INTERNAL"
