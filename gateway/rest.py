"""The REST bridge: the Storyboards API over HTTP/JSON (the proto3 JSON mapping) with server-sent events.

It runs in the gateway process beside gRPC and calls the same StoryboardService, so both faces behave alike: the
same edge checks, the same API keys (``Authorization: Bearer <key>``), the same per-key limits. ``/healthz``,
``/readyz`` and ``/metrics`` need no key (they carry no storyboard data).
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Annotated, Any

import grpc
import uvicorn
from fastapi import Body, Depends, FastAPI, Header, Path, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi_offline import FastAPIOffline
from google.protobuf import json_format
from google.protobuf.message import Message
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway import outputs
from gateway import rest_models as models
from gateway.auth import ApiKeys, Caller
from gateway.jobs import ID_PATTERN, Job
from gateway.metrics import Metrics
from gateway.service import StoryboardService
from storyboard.v1 import storyboards_pb2 as sb
from storyboard_common.errors import HTTP_STATUS, InvalidArgument, NotFound, ServiceError, status_for

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 64 * 1024
MAX_SEQUENCE = 2**63 - 1
_ID_DOC = {
    "description": "a storyboard id, like 20261124-040500-3f9a2c1b",
    "examples": ["20261124-040500-3f9a2c1b"],
    "json_schema_extra": {"pattern": ID_PATTERN},
}
_PNG = {200: {"content": {"image/png": {}}, "description": "the image"}}
# One server-sent event, as OpenAPI documents an event stream: the schema of each event's fields.
_SSE_EVENT = {
    "type": "object",
    "required": ["data", "event"],
    "properties": {
        "id": {"type": "string", "pattern": "^[0-9]+$", "description": "the event's sequence number"},
        "event": {
            "type": "string",
            "enum": [f.name for f in sb.StoryboardEvent.DESCRIPTOR.oneofs_by_name["event"].fields],
        },
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "description": "the StoryboardEvent in the proto3 JSON mapping, without image bytes",
        },
    },
}


def to_json(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def _to_proto(model: models.BaseModel, message: Message, field: str) -> Message:
    """A checked request model as the proto message the gRPC face would have received."""
    try:
        return json_format.ParseDict(model.model_dump(exclude_none=True), message)
    except json_format.ParseError as error:
        raise InvalidArgument(field, str(error).splitlines()[0]) from None


def _error_response(error: Exception) -> JSONResponse:
    status = status_for(error)
    if status is None:
        log.error("bug in the REST bridge", exc_info=error)
        code, message = grpc.StatusCode.INTERNAL, "internal error"
    else:
        code, message = status
    headers = {"WWW-Authenticate": "Bearer"} if code == grpc.StatusCode.UNAUTHENTICATED else None
    return JSONResponse(
        {"error": {"code": code.name, "message": message}}, status_code=HTTP_STATUS.get(code, 500), headers=headers
    )


def _http_error_response(error: StarletteHTTPException) -> JSONResponse:
    """FastAPI's and Starlette's own refusals (a body that cannot be parsed, an unknown route or method) in the
    bridge's error shape."""
    if error.status_code == 400:
        return _error_response(InvalidArgument("body", "could not be parsed"))
    code = next((code for code, status in HTTP_STATUS.items() if status == error.status_code), None)
    name = code.name if code is not None else ("NOT_FOUND" if error.status_code == 404 else "UNIMPLEMENTED")
    return JSONResponse(
        {"error": {"code": name, "message": str(error.detail)}},
        status_code=error.status_code,
        headers=getattr(error, "headers", None),
    )


def _validation_response(error: RequestValidationError) -> JSONResponse:
    """A request that does not fit its schema: 400 naming the first offending field (as the gRPC face would)."""
    problem = error.errors()[0] if error.errors() else {"loc": ("body",), "msg": "is not valid"}
    location = [str(part) for part in problem.get("loc", ()) if part not in ("body", "query", "path", "header")]
    field = ".".join(location) or "body"
    if problem.get("type") == "json_invalid":
        field = "body"
    return _error_response(InvalidArgument(field, str(problem.get("msg", "is not valid"))))


_BEARER = HTTPBearer(auto_error=False, description="an API key, sent as `Authorization: Bearer <key>`")


def _authenticated(
    request: Request, _credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_BEARER)]
) -> Caller:
    """The caller, from the Authorization header (declared through HTTPBearer so that OpenAPI documents it)."""
    keys: ApiKeys = request.app.state.keys
    return keys.authenticate(request.headers.get("authorization"))


def _small_body(content_length: Annotated[int | None, Header(include_in_schema=False)] = None) -> None:
    if content_length is not None and content_length > MAX_BODY_BYTES:
        raise InvalidArgument("body", f"is larger than {MAX_BODY_BYTES} bytes")


# Module-level, because route annotations are resolved against this module's globals.
caller_of = Annotated[Caller, Depends(_authenticated)]
job_id_of = Annotated[str, Path(**_ID_DOC)]
frame_of = Annotated[int, Path(description="1-based frame number", json_schema_extra={"minimum": 1, "maximum": 10})]


def build_app(
    service: StoryboardService,
    is_ready: Callable[[], bool],
    keys: ApiKeys | None = None,
    metrics: Metrics | None = None,
    cors_origins: list[str] | None = None,
) -> FastAPI:
    """The FastAPI application; every route is a thin call into ``service``."""
    keys = keys or ApiKeys((), required=False, default_max_active=0)
    metrics = metrics or Metrics()
    # /docs and /redoc load their scripts and styles from this app (FastAPIOffline), not from a CDN, so that they
    # work offline; Swagger UI's validator badge would send the document's address to validator.swagger.io.
    app = FastAPIOffline(
        title="Storyboard",
        version="v1",
        description="Turn a story into a storyboard: create one, follow its events, fetch its frames and files.",
        swagger_ui_parameters={"validatorUrl": None},
    )

    # Expected failures are answered by these handlers; anything else is a bug and reaches the 500 handler.
    for expected in (ServiceError, grpc.RpcError):
        app.add_exception_handler(expected, lambda _request, error: _error_response(error))
    app.add_exception_handler(RequestValidationError, lambda _request, error: _validation_response(error))
    app.add_exception_handler(StarletteHTTPException, lambda _request, error: _http_error_response(error))
    app.add_exception_handler(Exception, lambda _request, error: _error_response(error))
    if cors_origins:
        # Keys travel in the Authorization header, never in cookies, so credentials are never allowed.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=cors_origins,
            allow_credentials=False,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "Last-Event-ID"],
        )
    app.add_middleware(_RequestMetrics, metrics=metrics)

    app.state.keys = keys

    def job_of(job_id: str, caller: Caller) -> Job:
        return service.get(job_id, caller)

    @app.get("/healthz", response_model=models.Health, tags=["probes"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        response_model=models.Readiness,
        tags=["probes"],
        responses={503: {"model": models.Readiness, "description": "not ready yet"}},
    )
    def readyz() -> JSONResponse:
        ready = is_ready()
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503)

    @app.get(
        "/metrics",
        tags=["probes"],
        response_class=Response,
        responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
    )
    def metrics_text() -> Response:
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    @app.post(
        "/v1/storyboards",
        status_code=202,
        response_model=models.Storyboard,
        responses=models.errors(400, 401, 409, 429, 503),
        dependencies=[Depends(_small_body)],
        tags=["storyboards"],
    )
    async def create(
        body: models.CreateBody,
        caller: caller_of,
        idempotency_key: str = Header("", alias="Idempotency-Key", max_length=128),
    ) -> JSONResponse:
        """Accept a storyboard; follow it at /v1/storyboards/{id}/events."""
        spec = _to_proto(body.spec, sb.StoryboardSpec(), "spec")
        job = await asyncio.to_thread(service.create, spec, body.idempotency_key or idempotency_key, caller)
        return JSONResponse(to_json(service.snapshot(job)), status_code=202)

    @app.get(
        "/v1/storyboards",
        response_model=models.ListResponse,
        responses=models.errors(400, 401),
        tags=["storyboards"],
    )
    def list_storyboards(
        caller: caller_of,
        page_size: int = Query(0, description="1 to 100; 0 means 20"),
        page_token: str = Query("", description="next_page_token of the previous page"),
    ) -> JSONResponse:
        """Your storyboards, newest first."""
        storyboards, token = service.list(page_size, page_token, caller)
        return JSONResponse(to_json(sb.ListResponse(storyboards=storyboards, next_page_token=token)))

    @app.get(
        "/v1/storyboards/{job_id}",
        response_model=models.Storyboard,
        responses=models.errors(400, 401, 404),
        tags=["storyboards"],
    )
    def get(job_id: job_id_of, caller: caller_of) -> JSONResponse:
        return JSONResponse(to_json(service.snapshot(job_of(job_id, caller))))

    @app.post(
        "/v1/storyboards/{job_id}:cancel",
        response_model=models.Storyboard,
        responses=models.errors(400, 401, 404),
        tags=["storyboards"],
    )
    def cancel(job_id: job_id_of, caller: caller_of) -> JSONResponse:
        """Stop a storyboard; frames already written stay. Cancelling a finished one changes nothing."""
        return JSONResponse(to_json(service.cancel(job_id, caller)))

    @app.get(
        "/v1/storyboards/{job_id}/events",
        response_class=StreamingResponse,
        responses={
            200: {
                "content": {"text/event-stream": {"schema": _SSE_EVENT}},
                "description": "server-sent events: `id` is the sequence, `event` the kind, `data` the event's JSON",
            },
            **models.errors(400, 401, 404),
        },
        tags=["storyboards"],
    )
    def events(
        job_id: job_id_of,
        caller: caller_of,
        after: int = Query(0, description="send events after this sequence number (0: from the start)"),
        last_event_id: str = Header("", alias="Last-Event-ID", description="resume after this event (wins over after)"),
    ) -> Response:
        job = job_of(job_id, caller)
        resumed = last_event_id.isascii() and last_event_id.isdigit()  # "²".isdigit() too, but int() refuses it
        start = int(last_event_id) if resumed else after
        if not 0 <= start <= MAX_SEQUENCE:  # event numbers are SQLite (64-bit) integers
            raise InvalidArgument("Last-Event-ID" if resumed else "after", "must be between 0 and 2^63-1")
        return StreamingResponse(_sse(service, job, start), media_type="text/event-stream")

    @app.get(
        "/v1/storyboards/{job_id}/frames/{frame}",
        response_class=FileResponse,
        responses={**_PNG, **models.errors(400, 401, 404)},
        tags=["files"],
    )
    def frame(job_id: job_id_of, frame: frame_of, caller: caller_of) -> FileResponse:
        """A kept frame, as PNG."""
        job = job_of(job_id, caller)
        frames = service.snapshot(job).frames
        if not 1 <= frame <= len(frames):
            raise InvalidArgument("frame", f"must be between 1 and {len(frames)}")
        if not frames[frame - 1].rendered:
            raise NotFound(f"frame {frame} is not rendered yet")
        return _file(job, outputs.frame_file_name(frame), "image/png", f"frame {frame} is not rendered yet")

    @app.post(
        "/v1/storyboards/{job_id}/frames/{frame}:regenerate",
        status_code=202,
        response_model=models.Storyboard,
        responses=models.errors(400, 401, 404, 429, 503),
        dependencies=[Depends(_small_body)],
        tags=["storyboards"],
    )
    async def regenerate(
        job_id: job_id_of,
        frame: frame_of,
        caller: caller_of,
        body: Annotated[models.RegenerateBody | None, Body()] = None,
    ) -> JSONResponse:
        """Render one frame of a finished storyboard again with a new seed, and optionally a new prompt. Follow
        the storyboard's events for the new attempt; its files are assembled again when it is done."""
        request = body or models.RegenerateBody()
        storyboard = await asyncio.to_thread(service.regenerate, job_id, frame, request.seed, request.prompt, caller)
        return JSONResponse(to_json(storyboard), status_code=202)

    def file_route(name: str, media_type: str) -> Callable[..., FileResponse]:
        def serve(job_id: job_id_of, caller: caller_of) -> FileResponse:
            return _file(job_of(job_id, caller), name, media_type, f"{name} is written when the storyboard completes")

        return serve

    for name, media_type, summary in (
        ("grid.png", "image/png", "The captioned contact sheet (storyboard_grid.png)."),
        (outputs.PDF, "application/pdf", "The storyboard as a printable PDF."),
        (outputs.REPORT, "application/json", "Consistency, thresholds, parameters and timings (report.json)."),
        (outputs.FRAMES_METADATA, "application/json", "Per-frame prompts, seeds, attempts, scores, timings."),
    ):
        app.add_api_route(
            f"/v1/storyboards/{{job_id}}/{name}",
            file_route(outputs.GRID if name == "grid.png" else name, media_type),
            methods=["GET"],
            response_class=FileResponse,
            responses={200: {"content": {media_type: {}}, "description": summary}, **models.errors(400, 401, 404)},
            summary=summary,
            tags=["files"],
        )

    @app.post(
        "/v1/plan",
        response_model=models.PlanResponse,
        responses=models.errors(400, 401, 503),
        dependencies=[Depends(_small_body)],
        tags=["storyboards"],
    )
    async def plan(body: models.PlanBody, caller: caller_of) -> JSONResponse:
        """Plan a story without rendering it: a dry run."""
        spec = _to_proto(body.spec, sb.StoryboardSpec(), "spec")
        planned = await asyncio.to_thread(service.plan, spec)
        return JSONResponse(to_json(sb.StoryboardsPlanResponse(plan=planned.plan)))

    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document without the 422 responses it adds to every route: this bridge answers a request that
    does not fit its schema with 400, documented on each route."""
    if app.openapi_schema is None:
        document = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        for operations in document.get("paths", {}).values():
            for operation in operations.values():
                operation.get("responses", {}).pop("422", None)
        for unused in ("HTTPValidationError", "ValidationError"):
            document.get("components", {}).get("schemas", {}).pop(unused, None)
        app.openapi_schema = document
    return app.openapi_schema


def _file(job: Job, name: str, media_type: str, missing: str) -> FileResponse:
    path = job.output_dir / name
    if not path.is_file():
        raise NotFound(missing)
    return FileResponse(path, media_type=media_type)


async def _sse(service: StoryboardService, job: Job, after: int) -> AsyncIterator[bytes]:
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


Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class _RequestMetrics:
    """Counts every HTTP request by method, route template (never the raw path) and status code."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], metrics: Metrics) -> None:
        self._app = app
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        status = {"code": 500}

        async def capture(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self._app(scope, receive, capture)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self._metrics.requests.labels("rest", f"{scope['method']} {route}", str(status["code"])).inc()


class RestBridge:
    """Serves the FastAPI app with uvicorn on a background thread, on a socket bound at construction."""

    def __init__(self, app: FastAPI, host: str, port: int) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._socket = socket.create_server((host.strip("[]"), port), family=family, reuse_port=False)
        self.port = self._socket.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
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
