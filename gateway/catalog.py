"""Names the downstream services know, checked at the edge: adapters (the renderers' ``Info``), characters and their
trigger tokens (the planner's ``ListCharacters``), each cached for a short while.

When a service cannot be asked, the name is let through and the service itself answers when it is used (the
renderer NOT_FOUND for an adapter; the planner NOT_FOUND for a character, which ``spec_error`` turns into
INVALID_ARGUMENT naming the request's own field).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence

import grpc

from storyboard.v1 import common_pb2
from storyboard_common.errors import InvalidArgument
from storyboard_common.interceptors import request_metadata
from storyboard_common.v1 import planner_pb2, planner_pb2_grpc, renderer_pb2, renderer_pb2_grpc

log = logging.getLogger(__name__)
# The planner names its request's fields; the gateway's callers know them as fields of their spec.
_PLANNER_FIELDS = {"options.characters": "spec.characters", "options.num_frames": "spec.num_frames",
                   "options.temperature": "spec.temperature", "story": "spec.story"}  # fmt: skip


class NameCatalog:
    """The names one kind of thing has downstream, fetched at most every ``ttl`` seconds."""

    def __init__(
        self,
        kind: str,
        fetch: Callable[[float], Awaitable[Iterable[str]]],
        *,
        fold: Callable[[str], str] = str,
        ttl: float = 30.0,
        timeout: float = 5.0,
    ) -> None:
        self._kind = kind
        self._fetch = fetch
        self._fold = fold  # how names compare, e.g. str.casefold for character names
        self._ttl = ttl
        self._timeout = timeout
        self._names: frozenset[str] | None = None
        self._fetched = 0.0

    async def available(self) -> frozenset[str] | None:
        """The names, or None when the service did not answer."""
        if self._names is not None and time.monotonic() - self._fetched < self._ttl:
            return self._names
        try:
            names = frozenset(self._fold(name) for name in await self._fetch(self._timeout))
        except grpc.RpcError as error:
            log.warning("cannot list the %s names (%s); they are checked when used", self._kind, error.code().name)
            return None
        self._names, self._fetched = names, time.monotonic()
        return names

    async def check(self, names: Sequence[str], field: str) -> None:
        """InvalidArgument naming the first unknown name; ``field`` is formatted with its index."""
        if not names or (known := await self.available()) is None:
            return
        for index, name in enumerate(names):
            if self._fold(name) not in known:
                offered = ", ".join(sorted(known)) or "none"
                raise InvalidArgument(field.format(index), f"unknown {self._kind} {name!r}; available: {offered}")


def adapter_catalog(renderer: renderer_pb2_grpc.RendererStub) -> NameCatalog:
    """The adapters the renderers can load, by exact name."""

    async def fetch(timeout: float) -> Iterable[str]:
        info = await renderer.Info(renderer_pb2.RendererInfoRequest(), timeout=timeout, metadata=request_metadata())
        return info.available_adapters

    return NameCatalog("adapter", fetch)


def character_catalog(planner: planner_pb2_grpc.PlannerStub) -> NameCatalog:
    """The characters the planner knows, by name, alias or trigger token (as the planner finds them), in any case."""

    async def fetch(timeout: float) -> Iterable[str]:
        characters = await registered_characters(planner, timeout)
        return [name for c in characters for name in (c.name, *c.aliases, c.trigger_token)]

    return NameCatalog("character", fetch, fold=str.casefold)


def trigger_token_catalog(planner: planner_pb2_grpc.PlannerStub) -> NameCatalog:
    """The trigger tokens of the characters the planner knows, exactly as registered."""

    async def fetch(timeout: float) -> Iterable[str]:
        return [character.trigger_token for character in await registered_characters(planner, timeout)]

    return NameCatalog("trigger token", fetch)


async def registered_characters(
    planner: planner_pb2_grpc.PlannerStub, timeout: float
) -> Sequence[common_pb2.CharacterRef]:
    request = planner_pb2.ListCharactersRequest()
    return (await planner.ListCharacters(request, timeout=timeout, metadata=request_metadata())).characters


async def reference_picture(
    planner: planner_pb2_grpc.PlannerStub, trigger_token: str, number: int, timeout: float
) -> common_pb2.Image:
    request = planner_pb2.ReferenceImageRequest(trigger_token=trigger_token, number=number)
    return (await planner.ReferenceImage(request, timeout=timeout, metadata=request_metadata())).image


def spec_error(error: grpc.aio.AioRpcError) -> Exception:
    """The planner's error about a field of its request (INVALID_ARGUMENT, or NOT_FOUND for an unknown character)
    as INVALID_ARGUMENT about the caller's field; any other error unchanged."""
    if error.code() not in (
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
    ):
        return error
    details = error.details() or ""
    if details.startswith("plan."):  # a given plan's field, named by its place in the plan (Review)
        field, _, problem = details.partition(": ")
        return InvalidArgument(f"spec.{field}", problem or "is not valid")
    for planner_field, spec_field in _PLANNER_FIELDS.items():
        if details.startswith(planner_field):
            problem = details.removeprefix(planner_field).lstrip(":[]0123456789 ") or "is not valid"
            return InvalidArgument(spec_field, problem)
    return error
