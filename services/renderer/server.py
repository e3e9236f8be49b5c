"""Building the renderer's gRPC server from its settings: backend, adapters, scheduler, servicer."""

from __future__ import annotations

import grpc

from services.renderer.adapters import AdapterCatalog
from services.renderer.backend import RenderBackend
from services.renderer.backends import create_backend
from services.renderer.metrics import RendererMetrics, serve_metrics
from services.renderer.scheduler import RenderScheduler
from services.renderer.servicer import RendererServicer
from services.renderer.settings import RendererSettings
from storyboard_common.server import Registration, ServiceServer, build_server
from storyboard_common.v1 import renderer_pb2, renderer_pb2_grpc

SERVICE_NAME = renderer_pb2.DESCRIPTOR.services_by_name["Renderer"].full_name


def create_server(
    settings: RendererSettings, backend: RenderBackend | None = None, metrics: RendererMetrics | None = None
) -> tuple[ServiceServer, int]:
    """The renderer server, not yet started; health turns SERVING once the backend has warmed up.

    ``backend`` replaces the one the settings name (tests pass their own); by default it is built from ``settings``.
    ``metrics`` is the registry the server fills (a fresh one by default); with ``--metrics-port`` it is served at
    once, so it can be scraped while the model loads, and the port it got is in ``server.endpoints["metrics"]``.
    """
    metrics = metrics if metrics is not None else RendererMetrics()
    backend = backend if backend is not None else create_backend(settings, metrics)
    scheduler = RenderScheduler(
        backend,
        max_batch_size=settings.max_batch_size,
        max_queue=settings.max_queue,
        max_streams=settings.max_streams,
        batch_window=settings.batch_window_ms / 1000,
        batch_within_request=backend.describe().consistency != "off",  # frames that shape each other: one caller's
        metrics=metrics,
    )
    servicer = RendererServicer(
        backend,
        scheduler,
        AdapterCatalog(settings.adapters_dir),
        settings.limits(),
        default_format=settings.image_format,
        default_quality=settings.image_quality,
        png_level=settings.png_level if settings.png_level is not None else backend.png_level,
    )

    def add(server: grpc.Server) -> None:
        renderer_pb2_grpc.add_RendererServicer_to_server(servicer, server)

    closers = [backend.close, scheduler.close]  # run in reverse: stop the queue, then release the weights
    endpoints = {}
    if settings.metrics_port:
        http, endpoints["metrics"] = serve_metrics(metrics, settings.host, settings.metrics_port)
        closers.insert(0, lambda: (http.shutdown(), http.server_close()))  # closed last: scrapes see the shutdown
    server, port = build_server(
        "renderer",
        settings,
        [Registration(SERVICE_NAME, add)],
        warm_up=scheduler.warm_up,
        closers=closers,
    )
    server.endpoints.update(endpoints)
    return server, port
