"""What every route of the REST bridge shares: the proto3 JSON mapping both ways, the error shape (the same codes
and words as the gRPC face), the caller's API key, and counting requests for the metrics."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Annotated, Any

import grpc
from fastapi import Depends, Header, Path, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from google.protobuf import json_format
from google.protobuf.message import Message
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway.auth import ApiKeys, Caller
from gateway.metrics import Metrics
from gateway.service import StoryboardService
from gateway.store import ID_PATTERN
from storyboard_common.errors import HTTP_STATUS, InvalidArgument, status_for

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 64 * 1024


def to_json(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def to_proto(model: BaseModel, message: Message, field: str) -> Message:
    """A checked request model as the proto message the gRPC face would have received."""
    try:
        return json_format.ParseDict(_non_finite_spelled(model.model_dump(exclude_none=True)), message)
    except json_format.ParseError as error:
        raise InvalidArgument(field, str(error).splitlines()[0]) from None


def _non_finite_spelled(value: Any) -> Any:
    """``value`` with its non-finite numbers as the proto3 JSON mapping spells them ("NaN", "Infinity"), which protobuf
    parses and the edge checks both faces share then refuse naming their field (it refuses a float NaN itself)."""
    if isinstance(value, dict):
        return {key: _non_finite_spelled(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_non_finite_spelled(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return json.dumps(value)  # NaN, Infinity, -Infinity: the same spellings
    return value


# -- errors -------------------------------------------------------------------------------------------------------


def error_response(error: Exception) -> JSONResponse:
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


def http_error_response(error: StarletteHTTPException) -> JSONResponse:
    """FastAPI's and Starlette's own refusals (a body that cannot be parsed, an unknown route or method) in the
    bridge's error shape."""
    if error.status_code == 400:
        return error_response(InvalidArgument("body", "could not be parsed"))
    code = next((code for code, status in HTTP_STATUS.items() if status == error.status_code), None)
    name = code.name if code is not None else ("NOT_FOUND" if error.status_code == 404 else "UNIMPLEMENTED")
    return JSONResponse(
        {"error": {"code": name, "message": str(error.detail)}},
        status_code=error.status_code,
        headers=getattr(error, "headers", None),
    )


def validation_response(error: RequestValidationError) -> JSONResponse:
    """A request that does not fit its schema: 400 naming the first offending field (as the gRPC face would)."""
    problem = error.errors()[0] if error.errors() else {"loc": ("body",), "msg": "is not valid"}
    location = [str(part) for part in problem.get("loc", ()) if part not in ("body", "query", "path", "header")]
    field = ".".join(location) or "body"
    if problem.get("type") == "json_invalid":
        field = "body"
    return error_response(InvalidArgument(field, str(problem.get("msg", "is not valid"))))


# -- dependencies -------------------------------------------------------------------------------------------------

_BEARER = HTTPBearer(auto_error=False, description="an API key, sent as `Authorization: Bearer <key>`")


def _authenticated(
    request: Request, _credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_BEARER)]
) -> Caller:
    """The caller, from the Authorization header (declared through HTTPBearer so that OpenAPI documents it)."""
    keys: ApiKeys = request.app.state.keys
    return keys.authenticate(request.headers.get("authorization"))


def _service(request: Request) -> StoryboardService:
    return request.app.state.service


def small_body(content_length: Annotated[int | None, Header(include_in_schema=False)] = None) -> None:
    if content_length is not None and content_length > MAX_BODY_BYTES:
        raise InvalidArgument("body", f"is larger than {MAX_BODY_BYTES} bytes")


# Module-level, because route annotations are resolved against their modules' globals.
caller_of = Annotated[Caller, Depends(_authenticated)]
service_of = Annotated[StoryboardService, Depends(_service)]
job_id_of = Annotated[
    str,
    Path(
        description="a storyboard id, like 20261124-040500-3f9a2c1b",
        examples=["20261124-040500-3f9a2c1b"],
        json_schema_extra={"pattern": ID_PATTERN},
    ),
]
frame_of = Annotated[int, Path(description="1-based frame number", json_schema_extra={"minimum": 1, "maximum": 10})]


# -- metrics ------------------------------------------------------------------------------------------------------

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class RequestMetrics:
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
