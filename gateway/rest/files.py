"""A storyboard's files: its kept frames, the contact sheet, the PDF, report.json and frames.json."""

from __future__ import annotations

import mimetypes
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.responses import FileResponse

from gateway import outputs
from gateway.rest import models
from gateway.rest.common import caller_of, frame_of, job_id_of, service_of
from gateway.store import Job
from storyboard_common.errors import InvalidArgument, NotFound

router = APIRouter(tags=["files"])
_PNG = {200: {"content": {"image/png": {}}, "description": "the image"}}


@router.get(
    "/v1/storyboards/{job_id}/frames/{frame}",
    response_class=FileResponse,
    responses={**_PNG, **models.errors(400, 401, 404)},
)
async def frame(job_id: job_id_of, frame: frame_of, caller: caller_of, service: service_of) -> FileResponse:
    """A kept frame, as PNG."""
    job = service.get(job_id, caller)
    frames = job.storyboard.frames
    if not 1 <= frame <= len(frames):
        raise InvalidArgument("frame", f"must be between 1 and {len(frames)}")
    if not frames[frame - 1].rendered:
        raise NotFound(f"frame {frame} is not rendered yet")
    return _file(job, outputs.frame_file_name(frame), "image/png", f"frame {frame} is not rendered yet")


@router.get(
    "/v1/storyboards/{job_id}/frames/{frame}/attempts/{attempt}",
    response_class=FileResponse,
    responses={200: {"content": {"image/*": {}}, "description": "the image"}, **models.errors(400, 401, 404)},
)
async def attempt(
    job_id: job_id_of, frame: frame_of, attempt: Annotated[int, Path(ge=1)], caller: caller_of, service: service_of
) -> FileResponse:
    """One attempt at a frame, as the renderer sent it (frames.json lists a frame's attempts)."""
    path = service.attempt_file(job_id, frame, attempt, caller)
    return FileResponse(path, media_type=mimetypes.guess_type(path.name)[0] or "application/octet-stream")


def _file_route(name: str, media_type: str) -> Callable[..., Coroutine[Any, Any, FileResponse]]:
    async def serve(job_id: job_id_of, caller: caller_of, service: service_of) -> FileResponse:
        missing = f"{name} is written when the storyboard completes"
        return _file(service.get(job_id, caller), name, media_type, missing)

    return serve


_FILES = (  # path under the storyboard, file name, media type, what it is
    ("grid.png", outputs.GRID, "image/png", "The captioned contact sheet (storyboard_grid.png)."),
    (outputs.PDF, outputs.PDF, "application/pdf", "The storyboard as a printable PDF."),
    (outputs.REPORT, outputs.REPORT, "application/json",
     "Consistency, thresholds, parameters and timings (report.json)."),
    (outputs.FRAMES_METADATA, outputs.FRAMES_METADATA, "application/json",
     "Per-frame prompts, seeds, attempts, scores, timings."),
)  # fmt: skip
for _path, _name, _media_type, _summary in _FILES:
    router.add_api_route(
        f"/v1/storyboards/{{job_id}}/{_path}",
        _file_route(_name, _media_type),
        methods=["GET"],
        response_class=FileResponse,
        responses={200: {"content": {_media_type: {}}, "description": _summary}, **models.errors(400, 401, 404)},
        summary=_summary,
    )


def _file(job: Job, name: str, media_type: str, missing: str) -> FileResponse:
    path = job.output_dir / name
    if not path.is_file():
        raise NotFound(missing)
    return FileResponse(path, media_type=media_type)
