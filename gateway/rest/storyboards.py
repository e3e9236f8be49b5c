"""Storyboards over REST: create, list, get, cancel, follow (server-sent events), regenerate a frame, keep another
attempt, plan, and the registered characters."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Header, Query
from fastapi import Path as FastApiPath
from fastapi.responses import JSONResponse, Response, StreamingResponse

from gateway.rest import models
from gateway.rest.common import caller_of, frame_of, job_id_of, service_of, small_body, to_json, to_proto
from storyboard.v1 import storyboards_pb2 as sb
from storyboard_common.errors import InvalidArgument

router = APIRouter(tags=["storyboards"])
MAX_SEQUENCE = 2**63 - 1
MAX_INT32 = 2**31 - 1  # a picture number travels as a proto int32
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


@router.post(
    "/v1/storyboards",
    status_code=202,
    response_model=models.Storyboard,
    responses=models.errors(400, 401, 409, 429, 503),
    dependencies=[Depends(small_body)],
)
async def create(
    body: models.CreateBody,
    caller: caller_of,
    service: service_of,
    idempotency_key: str = Header("", alias="Idempotency-Key", max_length=128),
) -> JSONResponse:
    """Accept a storyboard; follow it at /v1/storyboards/{id}/events."""
    spec = to_proto(body.spec, sb.StoryboardSpec(), "spec")
    job = await service.create(spec, body.idempotency_key or idempotency_key, caller)
    return JSONResponse(to_json(job.snapshot()), status_code=202)


@router.get("/v1/storyboards", response_model=models.ListResponse, responses=models.errors(400, 401))
async def list_storyboards(
    caller: caller_of,
    service: service_of,
    page_size: int = Query(0, description="1 to 100; 0 means 20"),
    page_token: str = Query("", description="next_page_token of the previous page"),
) -> JSONResponse:
    """Your storyboards, newest first."""
    storyboards, token = service.list(page_size, page_token, caller)
    return JSONResponse(to_json(sb.ListResponse(storyboards=storyboards, next_page_token=token)))


@router.get("/v1/storyboards/{job_id}", response_model=models.Storyboard, responses=models.errors(400, 401, 404))
async def get(job_id: job_id_of, caller: caller_of, service: service_of) -> JSONResponse:
    return JSONResponse(to_json(service.get(job_id, caller).snapshot()))


@router.post(
    "/v1/storyboards/{job_id}:cancel", response_model=models.Storyboard, responses=models.errors(400, 401, 404)
)
async def cancel(job_id: job_id_of, caller: caller_of, service: service_of) -> JSONResponse:
    """Stop a storyboard; frames already written stay. Cancelling a finished one changes nothing."""
    return JSONResponse(to_json(await service.cancel(job_id, caller)))


@router.get(
    "/v1/storyboards/{job_id}/events",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/event-stream": {"schema": _SSE_EVENT}},
            "description": "server-sent events: `id` is the sequence, `event` the kind, `data` the event's JSON",
        },
        **models.errors(400, 401, 404),
    },
)
async def events(
    job_id: job_id_of,
    caller: caller_of,
    service: service_of,
    after: int = Query(0, description="send events after this sequence number (0: from the start)"),
    last_event_id: str = Header("", alias="Last-Event-ID", description="resume after this event (wins over after)"),
) -> Response:
    job = service.get(job_id, caller)
    resumed = last_event_id.isascii() and last_event_id.isdigit()  # "²".isdigit() too, but int() refuses it
    start = int(last_event_id) if resumed else after
    if not 0 <= start <= MAX_SEQUENCE:  # event numbers are SQLite (64-bit) integers
        raise InvalidArgument("Last-Event-ID" if resumed else "after", "must be between 0 and 2^63-1")
    return StreamingResponse(_sse(service.follow(job.id, start, caller)), media_type="text/event-stream")


async def _sse(events: AsyncIterator[sb.StoryboardEvent]) -> AsyncIterator[bytes]:
    """Server-sent events: ``id`` is the event's sequence (resume with Last-Event-ID), ``data`` its JSON without
    image bytes; a frame's image is at /v1/storyboards/{id}/frames/{n} once kept."""
    async for event in events:
        if event.HasField("frame_rendered"):
            event.frame_rendered.image.ClearField("data")
        kind = event.WhichOneof("event")
        yield f"id: {event.sequence}\nevent: {kind}\ndata: {json.dumps(to_json(event))}\n\n".encode()


@router.post(
    "/v1/storyboards/{job_id}/frames/{frame}:regenerate",
    status_code=202,
    response_model=models.Storyboard,
    responses=models.errors(400, 401, 404, 429, 503),
    dependencies=[Depends(small_body)],
)
async def regenerate(
    job_id: job_id_of,
    frame: frame_of,
    caller: caller_of,
    service: service_of,
    body: Annotated[models.RegenerateBody | None, Body()] = None,
) -> JSONResponse:
    """Render one frame of a finished storyboard again with a new seed, and optionally a new prompt. Follow the
    storyboard's events for the new attempt; its files are assembled again when it is done."""
    request = body or models.RegenerateBody()
    storyboard = await service.regenerate(job_id, frame, request.seed, request.prompt, caller)
    return JSONResponse(to_json(storyboard), status_code=202)


@router.post(
    "/v1/storyboards/{job_id}/frames/{frame}:keep",
    status_code=202,
    response_model=models.Storyboard,
    responses=models.errors(400, 401, 404, 429, 503),
    dependencies=[Depends(small_body)],
)
async def keep_attempt(
    job_id: job_id_of, frame: frame_of, body: models.KeepAttemptBody, caller: caller_of, service: service_of
) -> JSONResponse:
    """Keep another of an ended storyboard's attempts at a frame (frames.json lists them): nothing is rendered; the
    frame file and the documents are written again from it. Follow the storyboard's events until it completes."""
    storyboard = await service.keep_attempt(job_id, frame, body.attempt, caller)
    return JSONResponse(to_json(storyboard), status_code=202)


@router.get("/v1/characters", response_model=models.CharactersResponse, responses=models.errors(401, 503))
async def characters(caller: caller_of, service: service_of) -> JSONResponse:
    """The registered characters a storyboard can feature."""
    found = await service.characters()
    return JSONResponse(to_json(sb.StoryboardsListCharactersResponse(characters=found)))


@router.get(
    "/v1/characters/{trigger_token}/references/{number}",
    response_class=Response,
    responses={200: {"content": {"image/*": {}}, "description": "the picture"}, **models.errors(400, 401, 404, 503)},
)
async def reference_picture(
    trigger_token: Annotated[str, FastApiPath(max_length=80)],
    number: Annotated[int, FastApiPath(ge=1, le=MAX_INT32)],
    caller: caller_of,
    service: service_of,
) -> Response:
    """One of a registered character's reference pictures (the character's reference_images says how many)."""
    picture = await service.reference_picture(trigger_token, number)
    return Response(picture.data, media_type=picture.mime_type, headers={"Cache-Control": "private, max-age=300"})


@router.post(
    "/v1/plan",
    response_model=models.PlanResponse,
    responses=models.errors(400, 401, 503),
    dependencies=[Depends(small_body)],
)
async def plan(body: models.PlanBody, caller: caller_of, service: service_of) -> JSONResponse:
    """Plan a story without rendering it: a dry run."""
    spec = to_proto(body.spec, sb.StoryboardSpec(), "spec")
    planned = await service.plan(spec)
    return JSONResponse(to_json(sb.StoryboardsPlanResponse(plan=planned.plan)))
