"""The studio: the web page at ``/`` (static files shipped in the gateway package, no build step) that writes a
story, approves its plan, watches the frames arrive and fixes them, all through this bridge's own API.

Its pages run under a strict Content-Security-Policy: scripts and styles from this origin only, nothing inline, images
from here or the page's own blobs (frames are fetched with the API key, which never goes into a URL)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.types import Scope

STUDIO_FOLDER = Path(__file__).resolve().parent.parent / "studio"
CONTENT_SECURITY_POLICY = "; ".join((
    "default-src 'none'", "script-src 'self'", "style-src 'self'", "img-src 'self' blob:", "connect-src 'self'",
    "base-uri 'none'", "form-action 'none'", "frame-ancestors 'none'",
))  # fmt: skip
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",  # revalidated, so a gateway upgrade's studio is the one a browser runs
}

router = APIRouter(include_in_schema=False)


@router.get("/")
async def studio() -> FileResponse:
    """The studio's page."""
    return FileResponse(STUDIO_FOLDER / "index.html", media_type="text/html", headers=SECURITY_HEADERS)


class StudioFiles(StaticFiles):
    """The studio's scripts and styles, with the page's security headers."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(SECURITY_HEADERS)
        return response


def studio_files() -> Any:
    return StudioFiles(directory=STUDIO_FOLDER)
