"""Clients for the gateway's ``storyboard.v1.Storyboards`` API: ``Client`` (blocking) and ``AsyncClient`` (asyncio).

    from storyboard import Client

    with Client("127.0.0.1:50051") as client:
        run = client.generate(story="A fox crosses a frozen river at dawn", num_frames=6)
        for event in run:                 # typed events: PlanReady, FrameRendered, FrameValidated, Completed, …
            print(event)
        run.result.save("my_storyboard", exports=["mp4", "csv"])  # the gateway's files, an animatic, a shot list

Both clients send an API key as ``authorization: Bearer …`` metadata when given one, use TLS when asked, put a
deadline on every call, retry idempotent calls on UNAVAILABLE, and resume a watched stream after a dropped
connection from the last event received. ``create``/``generate`` send an idempotency key (a new one unless given),
so retrying them never makes a second storyboard.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from storyboard.events import StoryboardEvent, from_proto
from storyboard.plans import as_plan
from storyboard.references import as_references
from storyboard.results import StoryboardResult, StrPath, joined_files, write_files
from storyboard.v1 import common_pb2, storyboards_pb2, storyboards_pb2_grpc

DEFAULT_ADDRESS = "127.0.0.1:50051"
SERVICE = "storyboard.v1.Storyboards"
_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
# Create carries an idempotency key; Watch (before its first event) and DownloadFiles start again from the same place.
_IDEMPOTENT = ("Get", "List", "Plan", "Cancel", "Create", "Watch", "DownloadFiles", "Export")
# What Export makes of a completed storyboard: the animatic (MP4, GIF), its folder as a ZIP, its shot list (CSV).
EXPORT_FORMATS = ("mp4", "gif", "zip", "csv")


def _service_config() -> str:
    return json.dumps(
        {
            "methodConfig": [
                {
                    "name": [{"service": SERVICE, "method": method} for method in _IDEMPOTENT],
                    "retryPolicy": {
                        "maxAttempts": 4,
                        "initialBackoff": "0.2s",
                        "maxBackoff": "3s",
                        "backoffMultiplier": 2,
                        "retryableStatusCodes": ["UNAVAILABLE"],
                    },
                }
            ]
        }
    )


@dataclass(frozen=True)
class ClientOptions:
    """How to reach a gateway."""

    address: str = DEFAULT_ADDRESS
    api_key: str | None = None
    tls: bool = False
    root_certificates: bytes | None = None  # PEM; None uses the system's roots
    timeout: float | None = None  # seconds per unary call; streams run until the storyboard ends
    reconnects: int = 5  # times a dropped Watch stream is resumed (each waits for the gateway by the retry policy)

    def channel_args(self) -> list[tuple[str, Any]]:
        return [
            ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
            ("grpc.service_config", _service_config()),
            ("grpc.enable_retries", 1),
        ]

    def credentials(self) -> grpc.ChannelCredentials | None:
        return grpc.ssl_channel_credentials(self.root_certificates) if self.tls else None

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.api_key}"),) if self.api_key else ()


def make_spec(spec: storyboards_pb2.StoryboardSpec | None = None, **fields: Any) -> storyboards_pb2.StoryboardSpec:
    """A StoryboardSpec from keyword arguments (``story=…, num_frames=8, base_seed=42, characters=[…]``), or a copy
    of ``spec`` with them applied. Adapters may be given as ``{"name": weight}``; ``plan`` (a plan to render as given)
    as a Plan, its JSON or a scene_breakdown.json file (``storyboard.plans``); ``character_references`` as
    ``{"trigger_token": [path or bytes, ...]}`` (``storyboard.references``)."""
    out = storyboards_pb2.StoryboardSpec()
    if spec is not None:
        out.CopyFrom(spec)
    adapters = fields.pop("adapters", None)
    characters = fields.pop("characters", None)
    plan = fields.pop("plan", None)
    if plan is not None:
        out.plan.CopyFrom(as_plan(plan))
    references = fields.pop("character_references", None)
    if references:
        out.character_references.extend(as_references(references))
    for name, value in fields.items():
        if value is not None:
            setattr(out, name, value)
    if characters:
        out.characters.extend(characters)
    if adapters:
        items = adapters.items() if isinstance(adapters, dict) else adapters
        out.adapters.extend(common_pb2.AdapterRef(name=n, weight=w) for n, w in items)
    return out


def _regenerate_request(
    storyboard_id: str, frame: int, seed: int | None, prompt: str | None
) -> storyboards_pb2.RegenerateFrameRequest:
    request = storyboards_pb2.RegenerateFrameRequest(id=storyboard_id, frame=frame)
    if seed is not None:
        request.seed = seed
    if prompt is not None:
        request.prompt = prompt
    return request


def export_request(
    storyboard_id: str, format: str, *, captions: bool = False, crossfade: bool = False, attempts: bool = False
) -> storyboards_pb2.ExportRequest:
    """An Export request for ``format`` (mp4, gif, zip or csv); ValueError naming a format that is none of them.
    ``captions`` (mp4, gif) burns each frame's number, shot and description in; ``crossfade`` (mp4) fades between
    frames; ``attempts`` (zip) adds every rendered attempt."""
    name = format.strip().lower()
    if name not in EXPORT_FORMATS:
        raise ValueError(f"format: {format!r} is not one of {', '.join(EXPORT_FORMATS)}")
    options = storyboards_pb2.ExportOptions(captions=captions, crossfade=crossfade, attempts=attempts)
    return storyboards_pb2.ExportRequest(
        id=storyboard_id, format=storyboards_pb2.ExportFormat.Value(f"EXPORT_FORMAT_{name.upper()}"), options=options
    )


class GenerateRun:
    """The events of one storyboard as they happen; collects them into ``result`` as they pass."""

    def __init__(
        self,
        events: Iterator[StoryboardEvent],
        cancel: Any,
        source: ClientOptions | None = None,
        storyboard_id: str = "",
    ) -> None:
        self.result = StoryboardResult(storyboard_id=storyboard_id, source=source)
        self._events = events
        self._cancel = cancel

    @property
    def storyboard_id(self) -> str:
        return self.result.storyboard_id

    def __iter__(self) -> Iterator[StoryboardEvent]:
        for event in self._events:
            self.result.add(event.proto)
            yield event

    def wait(self) -> StoryboardResult:
        """Consume the remaining events and return the collected result."""
        for _ in self:
            pass
        return self.result

    def cancel(self) -> None:
        """Cancel the storyboard on the gateway (frames already written stay)."""
        if self.storyboard_id:
            self._cancel(self.storyboard_id)


class Client:
    """A blocking client. Use as a context manager, or call ``close()``."""

    def __init__(self, address: str = DEFAULT_ADDRESS, **options: Any) -> None:
        self.options = ClientOptions(address=address, **options)
        credentials = self.options.credentials()
        args = self.options.channel_args()
        self._channel = (
            grpc.secure_channel(address, credentials, options=args)
            if credentials
            else grpc.insecure_channel(address, options=args)
        )
        self._stub = storyboards_pb2_grpc.StoryboardsStub(self._channel)
        self._metadata = self.options.metadata()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def is_serving(self, timeout: float = 1.0) -> bool:
        """True when a gateway answers at the address and reports SERVING."""
        try:
            response = health_pb2_grpc.HealthStub(self._channel).Check(
                health_pb2.HealthCheckRequest(service=SERVICE), timeout=timeout
            )
        except grpc.RpcError:
            return False
        return response.status == health_pb2.HealthCheckResponse.SERVING

    def _call(self, method: Any, request: Any) -> Any:
        return method(request, timeout=self.options.timeout, metadata=self._metadata)

    def create(
        self, spec: storyboards_pb2.StoryboardSpec | None = None, *, idempotency_key: str = "", **fields: Any
    ) -> storyboards_pb2.Storyboard:
        """Create a storyboard and return at once."""
        request = storyboards_pb2.CreateRequest(
            spec=make_spec(spec, **fields), idempotency_key=idempotency_key or uuid.uuid4().hex
        )
        return self._call(self._stub.Create, request)

    def generate(
        self, spec: storyboards_pb2.StoryboardSpec | None = None, *, idempotency_key: str = "", **fields: Any
    ) -> GenerateRun:
        """Create a storyboard and follow it: iterate the returned run for typed events."""
        created = self.create(spec, idempotency_key=idempotency_key, **fields)
        return GenerateRun(self.watch(created.id), self.cancel, self.options, created.id)

    def get(self, storyboard_id: str) -> storyboards_pb2.Storyboard:
        return self._call(self._stub.Get, storyboards_pb2.GetRequest(id=storyboard_id))

    def list(self, page_size: int = 0, page_token: str = "") -> storyboards_pb2.ListResponse:
        return self._call(self._stub.List, storyboards_pb2.ListRequest(page_size=page_size, page_token=page_token))

    def watch(self, storyboard_id: str, after_sequence: int = 0) -> Iterator[StoryboardEvent]:
        """A storyboard's events after ``after_sequence`` until it ends, resumed after a dropped connection from the
        last event received (the channel's retry policy waits for the gateway to be back)."""
        last = after_sequence
        for resume in range(self.options.reconnects + 1):
            try:
                request = storyboards_pb2.WatchRequest(id=storyboard_id, after_sequence=last)
                for raw in self._stub.Watch(request, metadata=self._metadata):
                    last = raw.sequence
                    yield from_proto(raw)
                return
            except grpc.RpcError as error:
                if error.code() != grpc.StatusCode.UNAVAILABLE or resume == self.options.reconnects:
                    raise

    def fetch(self, storyboard_id: str) -> StoryboardResult:
        """A storyboard's plan and outcome, collected from its events once it has ended; ``.save(folder)`` downloads
        its folder."""
        result = StoryboardResult(source=self.options)
        for event in self.watch(storyboard_id):
            result.add(event.proto)
        return result

    def download(self, storyboard_id: str, folder: StrPath, names: Sequence[str] = ()) -> list[str]:
        """Write the storyboard's folder as the gateway wrote it (``names``: only those files) into ``folder``;
        returns the names written."""
        request = storyboards_pb2.DownloadFilesRequest(id=storyboard_id, names=names)
        return write_files(folder, self._stub.DownloadFiles(request, metadata=self._metadata))

    def read_files(self, storyboard_id: str, names: Sequence[str] = ()) -> dict[str, bytes]:
        """Files of the storyboard's folder (``names``: only those) in memory, by name."""
        request = storyboards_pb2.DownloadFilesRequest(id=storyboard_id, names=names)
        return joined_files(self._stub.DownloadFiles(request, metadata=self._metadata))

    def export(self, storyboard_id: str, format: str, **options: bool) -> bytes:
        """An export of a completed storyboard, made by the gateway: ``mp4`` or ``gif`` (the animatic), ``zip`` (its
        folder) or ``csv`` (the shot list); ``options`` as ``export_request`` takes them."""
        return b"".join(chunk.data for chunk in self._export(storyboard_id, format, options))

    def save_export(self, storyboard_id: str, format: str, folder: StrPath, **options: bool) -> str:
        """Write an export into ``folder`` under the gateway's name for it (e.g. ``animatic.mp4``); returns that."""
        return write_files(folder, self._export(storyboard_id, format, options))[0]

    def _export(self, storyboard_id: str, format: str, options: dict[str, bool]) -> Iterator[Any]:
        return self._stub.Export(export_request(storyboard_id, format, **options), metadata=self._metadata)

    def cancel(self, storyboard_id: str) -> storyboards_pb2.Storyboard:
        return self._call(self._stub.Cancel, storyboards_pb2.CancelRequest(id=storyboard_id))

    def regenerate(
        self, storyboard_id: str, frame: int, *, seed: int | None = None, prompt: str | None = None
    ) -> storyboards_pb2.Storyboard:
        """Render one frame of an ended storyboard again (new seed, optionally a new prompt); follow with watch."""
        return self._call(self._stub.RegenerateFrame, _regenerate_request(storyboard_id, frame, seed, prompt))

    def keep_attempt(self, storyboard_id: str, frame: int, attempt: int) -> storyboards_pb2.Storyboard:
        """Keep another of an ended storyboard's attempts at ``frame`` (frames.json lists them); nothing is rendered,
        the frame and the documents are written again from it. Follow with watch."""
        request = storyboards_pb2.KeepAttemptRequest(id=storyboard_id, frame=frame, attempt=attempt)
        return self._call(self._stub.KeepAttempt, request)

    def characters(self) -> list[common_pb2.CharacterRef]:
        """The registered characters a storyboard can feature."""
        request = storyboards_pb2.StoryboardsListCharactersRequest()
        return list(self._call(self._stub.ListCharacters, request).characters)

    def plan(self, spec: storyboards_pb2.StoryboardSpec | None = None, **fields: Any) -> common_pb2.Plan:
        """Plan a story without rendering it."""
        return self.plan_with_files(spec, **fields)[0]

    def plan_with_files(
        self, spec: storyboards_pb2.StoryboardSpec | None = None, **fields: Any
    ) -> tuple[common_pb2.Plan, dict[str, bytes]]:
        """Plan a story without rendering it; with the plan's files (scene_breakdown.json, sdxl_prompts.json) by
        name, as a storyboard's folder would hold them."""
        request = storyboards_pb2.StoryboardsPlanRequest(spec=make_spec(spec, **fields))
        response = self._call(self._stub.Plan, request)
        return response.plan, {file.name: file.data for file in response.files}


class AsyncClient:
    """The asyncio client: the same calls as ``Client``, as coroutines and async iterators."""

    def __init__(self, address: str = DEFAULT_ADDRESS, **options: Any) -> None:
        self.options = ClientOptions(address=address, **options)
        credentials = self.options.credentials()
        args = self.options.channel_args()
        self._channel = (
            grpc.aio.secure_channel(address, credentials, options=args)
            if credentials
            else grpc.aio.insecure_channel(address, options=args)
        )
        self._stub = storyboards_pb2_grpc.StoryboardsStub(self._channel)
        self._metadata = self.options.metadata()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def _call(self, method: Any, request: Any) -> Any:
        return await method(request, timeout=self.options.timeout, metadata=self._metadata)

    async def create(
        self, spec: storyboards_pb2.StoryboardSpec | None = None, *, idempotency_key: str = "", **fields: Any
    ) -> storyboards_pb2.Storyboard:
        request = storyboards_pb2.CreateRequest(
            spec=make_spec(spec, **fields), idempotency_key=idempotency_key or uuid.uuid4().hex
        )
        return await self._call(self._stub.Create, request)

    async def generate(
        self, spec: storyboards_pb2.StoryboardSpec | None = None, *, idempotency_key: str = "", **fields: Any
    ) -> AsyncIterator[StoryboardEvent]:
        """Create a storyboard and yield its typed events until it ends (resuming after a dropped connection)."""
        created = await self.create(spec, idempotency_key=idempotency_key, **fields)
        async for event in self.watch(created.id):
            yield event

    async def get(self, storyboard_id: str) -> storyboards_pb2.Storyboard:
        return await self._call(self._stub.Get, storyboards_pb2.GetRequest(id=storyboard_id))

    async def list(self, page_size: int = 0, page_token: str = "") -> storyboards_pb2.ListResponse:
        request = storyboards_pb2.ListRequest(page_size=page_size, page_token=page_token)
        return await self._call(self._stub.List, request)

    async def watch(self, storyboard_id: str, after_sequence: int = 0) -> AsyncIterator[StoryboardEvent]:
        last = after_sequence
        for resume in range(self.options.reconnects + 1):
            try:
                request = storyboards_pb2.WatchRequest(id=storyboard_id, after_sequence=last)
                async for raw in self._stub.Watch(request, metadata=self._metadata):
                    last = raw.sequence
                    yield from_proto(raw)
                return
            except grpc.aio.AioRpcError as error:
                if error.code() != grpc.StatusCode.UNAVAILABLE or resume == self.options.reconnects:
                    raise

    async def fetch(self, storyboard_id: str) -> StoryboardResult:
        result = StoryboardResult(source=self.options)
        async for event in self.watch(storyboard_id):
            result.add(event.proto)
        return result

    async def download(self, storyboard_id: str, folder: StrPath, names: Sequence[str] = ()) -> list[str]:
        """Write the storyboard's folder as the gateway wrote it (``names``: only those files) into ``folder``."""
        request = storyboards_pb2.DownloadFilesRequest(id=storyboard_id, names=names)
        chunks = [chunk async for chunk in self._stub.DownloadFiles(request, metadata=self._metadata)]
        return await asyncio.to_thread(write_files, folder, chunks)

    async def export(self, storyboard_id: str, format: str, **options: bool) -> bytes:
        """An export of a completed storyboard, as ``Client.export``."""
        request = export_request(storyboard_id, format, **options)
        return b"".join([chunk.data async for chunk in self._stub.Export(request, metadata=self._metadata)])

    async def cancel(self, storyboard_id: str) -> storyboards_pb2.Storyboard:
        return await self._call(self._stub.Cancel, storyboards_pb2.CancelRequest(id=storyboard_id))

    async def regenerate(
        self, storyboard_id: str, frame: int, *, seed: int | None = None, prompt: str | None = None
    ) -> storyboards_pb2.Storyboard:
        request = _regenerate_request(storyboard_id, frame, seed, prompt)
        return await self._call(self._stub.RegenerateFrame, request)

    async def keep_attempt(self, storyboard_id: str, frame: int, attempt: int) -> storyboards_pb2.Storyboard:
        request = storyboards_pb2.KeepAttemptRequest(id=storyboard_id, frame=frame, attempt=attempt)
        return await self._call(self._stub.KeepAttempt, request)

    async def characters(self) -> list[common_pb2.CharacterRef]:
        request = storyboards_pb2.StoryboardsListCharactersRequest()
        return list((await self._call(self._stub.ListCharacters, request)).characters)

    async def plan(self, spec: storyboards_pb2.StoryboardSpec | None = None, **fields: Any) -> common_pb2.Plan:
        request = storyboards_pb2.StoryboardsPlanRequest(spec=make_spec(spec, **fields))
        return (await self._call(self._stub.Plan, request)).plan
