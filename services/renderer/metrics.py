"""The renderer's Prometheus metrics, and the HTTP listener that serves them (``--metrics-port``).

Every server has its own ``CollectorRegistry`` (not prometheus_client's global one), so several renderers can run in
one process (tests do) and a registry never outlives its server. Names follow Prometheus conventions: counters end in
``_total``, durations are in seconds. What an autoscaler wants is ``storyboard_renderer_queue_frames`` and
``storyboard_renderer_inflight_frames``; throughput is ``rate(storyboard_renderer_steps_total[1m])`` (frame-steps per
second over any window) or ``storyboard_renderer_steps_per_second`` (the last batch's).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

log = logging.getLogger(__name__)

BATCH_SIZE_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)
FRAME_SECONDS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300)


class RendererMetrics:
    """The renderer's counters, gauges and histograms, registered in a registry of their own."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.frames = Counter(
            "storyboard_renderer_frames",
            "Frames that left the renderer, by outcome: rendered, failed (an error was returned) or cancelled "
            "(the caller left or its deadline passed before the frame was finished)",
            ["outcome"],
            registry=r,
        )
        self.steps = Counter(
            "storyboard_renderer_steps",
            "Denoising steps finished, counted per frame (a batch of 4 counts 4)",
            registry=r,
        )
        self.steps_per_second = Gauge(
            "storyboard_renderer_steps_per_second",
            "Frame-steps per second of the last batch: its frames times its steps over its denoising time",
            registry=r,
        )
        self.queue_frames = Gauge("storyboard_renderer_queue_frames", "Frames waiting to be rendered", registry=r)
        self.inflight_frames = Gauge(
            "storyboard_renderer_inflight_frames", "Frames being rendered right now (the running batch)", registry=r
        )
        self.open_requests = Gauge(
            "storyboard_renderer_open_requests", "Render calls admitted and not yet finished", registry=r
        )
        self.batch_size = Histogram(
            "storyboard_renderer_batch_size",
            "Frames per pipeline call, counted when a batch starts",
            buckets=BATCH_SIZE_BUCKETS,
            registry=r,
        )
        self.batch_seconds = Histogram(
            "storyboard_renderer_batch_seconds",
            "Seconds from the start of a batch until its last frame was delivered",
            buckets=FRAME_SECONDS_BUCKETS,
            registry=r,
        )
        self.queue_seconds = Histogram(
            "storyboard_renderer_queue_seconds",
            "Seconds a frame waited before its batch started",
            buckets=FRAME_SECONDS_BUCKETS,
            registry=r,
        )
        self.rejected = Counter(
            "storyboard_renderer_rejected_requests",
            "Render calls refused before queueing, by reason: queue_full, too_many_streams, not_ready",
            ["reason"],
            registry=r,
        )
        self.adapter_loads = Counter(
            "storyboard_renderer_adapter_loads", "LoRA adapters loaded into the pipeline", registry=r
        )
        self.adapter_load_failures = Counter(
            "storyboard_renderer_adapter_load_failures", "LoRA adapters that could not be loaded", registry=r
        )
        self.adapter_evictions = Counter(
            "storyboard_renderer_adapter_evictions",
            "LoRA adapters unloaded to stay within --max-loaded-adapters (least recently used first)",
            registry=r,
        )
        self.loaded_adapters = Gauge(
            "storyboard_renderer_loaded_adapters", "LoRA adapters loaded in the pipeline right now", registry=r
        )
        self.out_of_memory = Counter(
            "storyboard_renderer_out_of_memory", "Batches that ran out of device memory", registry=r
        )
        self.ready = Gauge("storyboard_renderer_ready", "1 once the model is loaded and warmed up, else 0", registry=r)

    def watch_queue(self, queue_depth: Callable[[], int], open_requests: Callable[[], int]) -> None:
        """Read the queue's depth and open requests at scrape time, so the gauges are never stale."""
        self.queue_frames.set_function(queue_depth)
        self.open_requests.set_function(open_requests)


def serve_metrics(metrics: RendererMetrics, host: str, port: int) -> tuple[WSGIServer, int]:
    """Serve ``/metrics`` on ``host:port`` from a daemon thread; returns the server (``shutdown()`` it) and its port."""
    server, _thread = start_http_server(port, addr=host, registry=metrics.registry)
    bound = int(server.server_address[1])
    log.info("renderer metrics on http://%s:%d/metrics", host, bound)
    return server, bound
