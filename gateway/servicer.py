"""The gRPC face of the gateway: storyboard.v1.Storyboards, a thin translation onto StoryboardService.

Every call is authenticated from its ``authorization: Bearer <key>`` metadata (required or optional as configured).
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from gateway.auth import ApiKeys, Caller
from gateway.service import StoryboardService
from storyboard.v1 import storyboards_pb2 as sb
from storyboard.v1 import storyboards_pb2_grpc


class StoryboardsServicer(storyboards_pb2_grpc.StoryboardsServicer):
    def __init__(self, service: StoryboardService, keys: ApiKeys) -> None:
        self._service = service
        self._keys = keys

    def _caller(self, context: grpc.ServicerContext) -> Caller:
        return self._keys.from_metadata(context.invocation_metadata())

    def Generate(self, request: sb.GenerateRequest, context: grpc.ServicerContext) -> Iterator[sb.StoryboardEvent]:
        job = self._service.create(request.spec, request.idempotency_key, self._caller(context))
        yield from self._service.follow(job, 0, context.is_active)

    def Create(self, request: sb.CreateRequest, context: grpc.ServicerContext) -> sb.Storyboard:
        job = self._service.create(request.spec, request.idempotency_key, self._caller(context))
        return self._service.snapshot(job)

    def Get(self, request: sb.GetRequest, context: grpc.ServicerContext) -> sb.Storyboard:
        return self._service.snapshot(self._service.get(request.id, self._caller(context)))

    def List(self, request: sb.ListRequest, context: grpc.ServicerContext) -> sb.ListResponse:
        storyboards, next_token = self._service.list(request.page_size, request.page_token, self._caller(context))
        return sb.ListResponse(storyboards=storyboards, next_page_token=next_token)

    def Watch(self, request: sb.WatchRequest, context: grpc.ServicerContext) -> Iterator[sb.StoryboardEvent]:
        job = self._service.get(request.id, self._caller(context))
        yield from self._service.follow(job, request.after_sequence, context.is_active)

    def Cancel(self, request: sb.CancelRequest, context: grpc.ServicerContext) -> sb.Storyboard:
        return self._service.cancel(request.id, self._caller(context))

    def Plan(self, request: sb.StoryboardsPlanRequest, context: grpc.ServicerContext) -> sb.StoryboardsPlanResponse:
        self._caller(context)
        return self._service.plan(request.spec)

    def RegenerateFrame(self, request: sb.RegenerateFrameRequest, context: grpc.ServicerContext) -> sb.Storyboard:
        seed = request.seed if request.HasField("seed") else None
        prompt = request.prompt if request.HasField("prompt") else None
        return self._service.regenerate(request.id, request.frame, seed, prompt, self._caller(context))

    def DownloadFiles(self, request: sb.DownloadFilesRequest, context: grpc.ServicerContext) -> Iterator[sb.FileChunk]:
        yield from self._service.download(request.id, list(request.names), self._caller(context))
