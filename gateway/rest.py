"""The REST bridge: the Storyboards API over HTTP/JSON (the proto3 JSON mapping) with server-sent events.

It runs in the gateway process beside gRPC and calls the same StoryboardService, so both faces behave alike.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import uvicorn
from fastapi import FastAPI, Header, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from google.protobuf import json_format
from google.protobuf.message import Message

from gateway.service import StoryboardService
from storyboard import outputs
from storyboard.v1 import storyboards_pb2 as sb
from storyboard_common.errors import HTTP_STATUS, InvalidArgument, NotFound, ServiceError, status_for

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 64 * 1024


def to_json(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def _parse(body: bytes, message: Message) -> Message:
    if len(body) > MAX_BODY_BYTES:
        raise InvalidArgument("body", f"is larger than {MAX_BODY_BYTES} bytes")
    try:
        json_format.Parse(body or b"{}", message)
    except (json_format.ParseError, UnicodeDecodeError) as error:
        raise InvalidArgument("body", str(error).splitlines()[0]) from None
    return message


def _error_response(error: Exception) -> JSONResponse:
    status = status_for(error)
    if status is None:
        log.error("bug in the REST bridge", exc_info=error)
        code, message = grpc.StatusCode.INTERNAL, "internal error"
    else:
        code, message = status
    return JSONResponse({"error": {"code": code.name, "message": message}}, status_code=HTTP_STATUS.get(code, 500))


def build_app(service: StoryboardService, is_ready: Callable[[], bool]) -> FastAPI:
    """The FastAPI application; every route is a thin call into ``service``."""
    app = FastAPI(title="Storyboard", version="v1", description="Turn a story into a storyboard.")

    # Expected failures are answered by these handlers; anything else is a bug and reaches the 500 handler.
    for expected in (ServiceError, grpc.RpcError):
        app.add_exception_handler(expected, lambda _request, error: _error_response(error))
    app.add_exception_handler(Exception, lambda _request, error: _error_response(error))

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        ready = is_ready()
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503)

    @app.post("/v1/storyboards", status_code=202)
    async def create(request: Request, idempotency_key: str = Header("", alias="Idempotency-Key")) -> JSONResponse:
        body = _parse(await request.body(), sb.CreateRequest())
        job = await asyncio.to_thread(service.create, body.spec, body.idempotency_key or idempotency_key)
        return JSONResponse(to_json(service.snapshot(job)), status_code=202)

    @app.get("/v1/storyboards")
    def list_storyboards(page_size: int = 0, page_token: str = "") -> dict[str, Any]:
        storyboards, token = service.list(page_size, page_token)
        return to_json(sb.ListResponse(storyboards=storyboards, next_page_token=token))

    @app.get("/v1/storyboards/{job_id}")
    def get(job_id: str) -> dict[str, Any]:
        return to_json(service.snapshot(service.get(job_id)))

    @app.post("/v1/storyboards/{job_id}:cancel")
    def cancel(job_id: str) -> dict[str, Any]:
        return to_json(service.cancel(job_id))

    @app.get("/v1/storyboards/{job_id}/events")
    def events(job_id: str, after: int = 0, last_event_id: str = Header("", alias="Last-Event-ID")) -> Response:
        job = service.get(job_id)
        start = int(last_event_id) if last_event_id.isdigit() else after
        return StreamingResponse(_sse(service, job, start), media_type="text/event-stream")

    @app.get("/v1/storyboards/{job_id}/frames/{frame}")
    def frame(job_id: str, frame: int) -> FileResponse:
        job = service.get(job_id)
        frames = service.snapshot(job).frames
        if not 1 <= frame <= len(frames):
            raise InvalidArgument("frame", f"must be between 1 and {len(frames)}")
        if not frames[frame - 1].rendered:
            raise NotFound(f"frame {frame} is not rendered yet")
        return FileResponse(job.output_dir / outputs.frame_file_name(frame), media_type="image/png")

    @app.get("/v1/storyboards/{job_id}/grid.png")
    def grid(job_id: str) -> FileResponse:
        job = service.get(job_id)
        path = job.output_dir / outputs.GRID
        if not path.exists():
            raise NotFound("the grid is written when the storyboard completes")
        return FileResponse(path, media_type="image/png")

    @app.post("/v1/plan")
    async def plan(request: Request) -> dict[str, Any]:
        body = _parse(await request.body(), sb.StoryboardsPlanRequest())
        return to_json(sb.StoryboardsPlanResponse(plan=await asyncio.to_thread(service.plan, body.spec)))

    return app


async def _sse(service: StoryboardService, job: Any, after: int) -> AsyncIterator[bytes]:
    """Server-sent events: ``id`` is the event's sequence (resume with Last-Event-ID), ``data`` its JSON without
    image bytes; a frame's image is at /v1/storyboards/{id}/frames/{n} once kept."""
    closed = threading.Event()
    events = service.follow(job, after, lambda: not closed.is_set())
    try:
        while True:
            event = await asyncio.to_thread(next, events, None)
            if event is None:
                return
            if event.HasField("frame_rendered"):
                event.frame_rendered.image.ClearField("data")
            kind = event.WhichOneof("event")
            yield f"id: {event.sequence}\nevent: {kind}\ndata: {json.dumps(to_json(event))}\n\n".encode()
    finally:
        closed.set()


class RestBridge:
    """Serves the FastAPI app with uvicorn on a background thread, on a socket bound at construction."""

    def __init__(self, service: StoryboardService, host: str, port: int, is_ready: Callable[[], bool]) -> None:
        self._socket = socket.create_server((host, port), reuse_port=False)
        self.port = self._socket.getsockname()[1]
        config = uvicorn.Config(build_app(service, is_ready), log_level="warning", access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._serve, name="rest", daemon=True)

    def _serve(self) -> None:
        self._server.run(sockets=[self._socket])

    def start(self) -> None:
        self._thread.start()
        log.info("REST bridge listening on port %d", self.port)

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self._socket.close()
