"""The REST bridge: the Storyboards API over HTTP/JSON (the proto3 JSON mapping) with server-sent events.

It runs on the gateway's loop beside gRPC and calls the same StoryboardService, so both faces behave alike: the same
edge checks, the same API keys (``Authorization: Bearer <key>``), the same per-key limits. The application is
assembled from one router per feature (``probes``, ``storyboards``, ``files``, ``exports``, and ``studio``: the web
page at ``/``); the objects they share are on ``app.state``: the service, the API keys, the metrics and whether the
gateway is ready.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway.auth import ApiKeys
from gateway.metrics import Metrics
from gateway.rest import exports, files, probes, storyboards, studio
from gateway.rest.common import RequestMetrics, error_response, http_error_response, to_json, validation_response
from gateway.service import StoryboardService
from storyboard_common.errors import ServiceError

__all__ = ["build_app", "to_json"]


def build_app(
    service: StoryboardService,
    is_ready: Callable[[], bool],
    keys: ApiKeys | None = None,
    metrics: Metrics | None = None,
    cors_origins: list[str] | None = None,
) -> FastAPI:
    """The FastAPI application; every route is a thin call into ``service``."""
    # /docs and /redoc load their scripts and styles from this app (FastAPIOffline), not from a CDN, so that they
    # work offline; Swagger UI's validator badge would send the document's address to validator.swagger.io.
    app = FastAPIOffline(
        title="Storyboard",
        version="v1",
        description="Turn a story into a storyboard: create one, follow its events, fetch its frames and files.",
        swagger_ui_parameters={"validatorUrl": None},
    )
    app.state.service, app.state.is_ready = service, is_ready
    app.state.keys = keys or ApiKeys((), required=False, default_max_active=0)
    app.state.metrics = metrics or Metrics()
    # Expected failures are answered by these handlers; anything else is a bug and reaches the 500 handler.
    for expected in (ServiceError, grpc.RpcError):
        app.add_exception_handler(expected, lambda _request, error: error_response(error))
    app.add_exception_handler(RequestValidationError, lambda _request, error: validation_response(error))
    app.add_exception_handler(StarletteHTTPException, lambda _request, error: http_error_response(error))
    app.add_exception_handler(Exception, lambda _request, error: error_response(error))
    if cors_origins:
        # Keys travel in the Authorization header, never in cookies, so credentials are never allowed.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=cors_origins,
            allow_credentials=False,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "Last-Event-ID"],
        )
    app.add_middleware(RequestMetrics, metrics=app.state.metrics)
    for router in (probes.router, storyboards.router, files.router, exports.router, studio.router):
        app.include_router(router)
    app.mount("/studio", studio.studio_files(), name="studio")
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
