"""The gRPC face of the gateway: storyboard.v1.Storyboards on grpc.aio, a thin translation onto StoryboardService.

Every call is authenticated from its ``authorization: Bearer <key>`` metadata (required or optional as configured).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from gateway.auth import ApiKeys, Caller
from gateway.exports import ExportOptions
from gateway.service import StoryboardService
from storyboard.v1 import storyboards_pb2 as sb
from storyboard.v1 import storyboards_pb2_grpc


class StoryboardsServicer(storyboards_pb2_grpc.StoryboardsServicer):
    def __init__(self, service: StoryboardService, keys: ApiKeys) -> None:
        self._service = service
        self._keys = keys

    def _caller(self, context: grpc.aio.ServicerContext) -> Caller:
        return self._keys.from_metadata(context.invocation_metadata())

    async def Generate(
        self, request: sb.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[sb.StoryboardEvent]:
        caller = self._caller(context)
        job = await self._service.create(request.spec, request.idempotency_key, caller)
        async for event in self._service.follow(job.id, 0, caller):
            yield event

    async def Create(self, request: sb.CreateRequest, context: grpc.aio.ServicerContext) -> sb.Storyboard:
        job = await self._service.create(request.spec, request.idempotency_key, self._caller(context))
        return job.snapshot()

    async def Get(self, request: sb.GetRequest, context: grpc.aio.ServicerContext) -> sb.Storyboard:
        return self._service.get(request.id, self._caller(context)).snapshot()

    async def List(self, request: sb.ListRequest, context: grpc.aio.ServicerContext) -> sb.ListResponse:
        storyboards, next_token = self._service.list(request.page_size, request.page_token, self._caller(context))
        return sb.ListResponse(storyboards=storyboards, next_page_token=next_token)

    async def Watch(
        self, request: sb.WatchRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[sb.StoryboardEvent]:
        async for event in self._service.follow(request.id, request.after_sequence, self._caller(context)):
            yield event

    async def Cancel(self, request: sb.CancelRequest, context: grpc.aio.ServicerContext) -> sb.Storyboard:
        return await self._service.cancel(request.id, self._caller(context))

    async def Plan(
        self, request: sb.StoryboardsPlanRequest, context: grpc.aio.ServicerContext
    ) -> sb.StoryboardsPlanResponse:
        self._caller(context)
        return await self._service.plan(request.spec)

    async def RegenerateFrame(
        self, request: sb.RegenerateFrameRequest, context: grpc.aio.ServicerContext
    ) -> sb.Storyboard:
        seed = request.seed if request.HasField("seed") else None
        prompt = request.prompt if request.HasField("prompt") else None
        return await self._service.regenerate(request.id, request.frame, seed, prompt, self._caller(context))

    async def DownloadFiles(
        self, request: sb.DownloadFilesRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[sb.FileChunk]:
        async for chunk in self._service.download(request.id, list(request.names), self._caller(context)):
            yield chunk

    async def KeepAttempt(self, request: sb.KeepAttemptRequest, context: grpc.aio.ServicerContext) -> sb.Storyboard:
        caller = self._caller(context)
        return await self._service.keep_attempt(request.id, request.frame, request.attempt, caller)

    async def ListCharacters(
        self, request: sb.StoryboardsListCharactersRequest, context: grpc.aio.ServicerContext
    ) -> sb.StoryboardsListCharactersResponse:
        self._caller(context)
        return sb.StoryboardsListCharactersResponse(characters=await self._service.characters())

    async def Export(self, request: sb.ExportRequest, context: grpc.aio.ServicerContext) -> AsyncIterator[sb.FileChunk]:
        options = ExportOptions(request.options.captions, request.options.crossfade, request.options.attempts)
        caller = self._caller(context)
        async for chunk in self._service.export_chunks(request.id, _format_name(request.format), options, caller):
            yield chunk


def _format_name(value: int) -> str:
    """``mp4`` for EXPORT_FORMAT_MP4: the service's name of a format, or the number it is not known by."""
    if value not in sb.ExportFormat.values():
        return str(value)
    return sb.ExportFormat.Name(value).removeprefix("EXPORT_FORMAT_").lower()
