"""A completed storyboard's exports: the animatic (MP4, GIF), its folder as a ZIP, the shot list (CSV); made on first
request and again once a frame changed (``gateway.exports``)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import FileResponse

from gateway import exports
from gateway.auth import Caller
from gateway.rest import models
from gateway.rest.common import caller_of, job_id_of, service_of
from gateway.service import StoryboardService

router = APIRouter(tags=["exports"])

captions_of = Annotated[bool, Query(description="mp4, gif: burn each frame's number, shot and description in")]
crossfade_of = Annotated[bool, Query(description="mp4: cross-fade into each next frame instead of cutting")]
attempts_of = Annotated[bool, Query(description="zip: include every rendered attempt (attempts/)")]
format_of = Annotated[str, Path(description="the export", json_schema_extra={"enum": list(exports.FORMATS)})]
_SUMMARIES = {
    "mp4": "The animatic: H.264 MP4, each frame held for its scene's duration_seconds.",
    "gif": "The animatic as a looping GIF, at most 512 pixels on its longer side.",
    "zip": "The storyboard's folder as a ZIP: frames, contact sheet, PDF and JSON files.",
    "csv": "The shot list: a row per frame with its shot, duration, description, prompt, seed, verdict and scores.",
}


def _route(kind: str) -> Callable[..., Coroutine[Any, Any, FileResponse]]:
    async def serve(job_id: job_id_of, caller: caller_of, service: service_of, captions: captions_of = False,
                    crossfade: crossfade_of = False, attempts: attempts_of = False) -> FileResponse:  # fmt: skip
        return await _export(service, job_id, kind, exports.ExportOptions(captions, crossfade, attempts), caller)

    return serve


for _kind, _format in exports.FORMATS.items():
    router.add_api_route(
        f"/v1/storyboards/{{job_id}}/{_format.file_name}",
        _route(_kind),
        methods=["GET"],
        response_class=FileResponse,
        responses={
            200: {"content": {_format.media_type: {}}, "description": _SUMMARIES[_kind]},
            **models.errors(400, 401, 404),
        },
        summary=_SUMMARIES[_kind],
    )


@router.get(
    "/v1/storyboards/{job_id}/exports/{format}",
    response_class=FileResponse,
    responses={200: {"description": "the export, as its own route serves it"}, **models.errors(400, 401, 404)},
)
async def export(job_id: job_id_of, format: format_of, caller: caller_of, service: service_of,
                 captions: captions_of = False, crossfade: crossfade_of = False,
                 attempts: attempts_of = False) -> FileResponse:  # fmt: skip
    """Any export by its format's name: mp4, gif, zip or csv (400 naming `format` for another)."""
    return await _export(service, job_id, format, exports.ExportOptions(captions, crossfade, attempts), caller)


async def _export(
    service: StoryboardService, job_id: str, kind: str, options: exports.ExportOptions, caller: Caller
) -> FileResponse:
    made, path = await service.export(job_id, kind, options, caller)
    return FileResponse(path, media_type=made.media_type, filename=made.file_name,
                        content_disposition_type=made.disposition)  # fmt: skip
