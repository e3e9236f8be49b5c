"""Liveness, readiness and metrics: no API key needed, they carry no storyboard data."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from gateway.rest import models

router = APIRouter(tags=["probes"])


@router.get("/healthz", response_model=models.Health)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=models.Readiness,
    responses={503: {"model": models.Readiness, "description": "not ready yet"}},
)
async def readyz(request: Request) -> JSONResponse:
    ready = request.app.state.is_ready()
    return JSONResponse({"ready": ready}, status_code=200 if ready else 503)


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
async def metrics_text(request: Request) -> Response:
    body, content_type = request.app.state.metrics.exposition()
    return Response(body, media_type=content_type)
