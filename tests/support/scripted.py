"""Scripted gRPC services for tests of the gateway's policy: real servers on port 0 whose behaviour a test sets."""

from __future__ import annotations

import threading

import grpc

from storyboard.v1 import renderer_pb2, renderer_pb2_grpc
from storyboard_common.server import Registration, ServiceServer, build_server
from storyboard_common.settings import ServiceSettings


class BlockingRenderer(renderer_pb2_grpc.RendererServicer):
    """Sends one progress event per frame, then holds the stream open until the caller goes away."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.cancelled = threading.Event()

    def Render(self, request: renderer_pb2.RenderRequest, context: grpc.ServicerContext):
        context.add_callback(self.cancelled.set)
        for spec in request.frames:
            yield renderer_pb2.RenderEvent(
                progress=renderer_pb2.FrameProgress(frame=spec.frame, step=1, total_steps=spec.steps)
            )
        self.started.set()
        while context.is_active():
            self.cancelled.wait(0.05)

    def Info(self, request: renderer_pb2.RendererInfoRequest, context: grpc.ServicerContext):
        return renderer_pb2.RendererInfo(backend="blocking-test")


def serve_renderer(servicer: renderer_pb2_grpc.RendererServicer) -> tuple[ServiceServer, int]:
    """Start ``servicer`` as a Renderer on a free port; the caller stops it."""
    server, port = build_server(
        "scripted-renderer",
        ServiceSettings(port=0),
        [
            Registration(
                "storyboard.v1.Renderer", lambda s: renderer_pb2_grpc.add_RendererServicer_to_server(servicer, s)
            )
        ],
    )
    server.start()
    server.ready.wait(5)
    return server, port
