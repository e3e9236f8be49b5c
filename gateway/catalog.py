"""Names the downstream services know: adapters (asked of the renderers) and characters (the planner's registry).

Adapter names are checked at the edge against the renderer's ``Info.available_adapters``, cached for a short while.
Characters have no listing RPC; the planner answers NOT_FOUND for an unknown one when it plans, and ``spec_error``
turns that (and the planner's other field errors) into INVALID_ARGUMENT naming the request's own field.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

import grpc

from storyboard.v1 import common_pb2, renderer_pb2, renderer_pb2_grpc
from storyboard_common.errors import InvalidArgument

log = logging.getLogger(__name__)
# The planner names its request's fields; the gateway's callers know them as fields of their spec.
_PLANNER_FIELDS = {"options.characters": "spec.characters", "options.num_frames": "spec.num_frames",
                   "options.temperature": "spec.temperature", "story": "spec.story"}  # fmt: skip


class AdapterCatalog:
    """The adapter names the renderers offer, asked of them at most every ``ttl`` seconds."""

    def __init__(self, renderer: renderer_pb2_grpc.RendererStub, ttl: float = 30.0, timeout: float = 5.0) -> None:
        self._renderer = renderer
        self._ttl = ttl
        self._timeout = timeout
        self._lock = threading.Lock()
        self._names: frozenset[str] | None = None
        self._fetched = 0.0

    def available(self) -> frozenset[str] | None:
        """The names, or None when no renderer answered (the render itself then says NOT_FOUND for a bad name)."""
        with self._lock:
            if self._names is not None and time.monotonic() - self._fetched < self._ttl:
                return self._names
        try:
            info = self._renderer.Info(renderer_pb2.RendererInfoRequest(), timeout=self._timeout)
        except grpc.RpcError as error:
            log.warning("cannot list the renderers' adapters (%s); adapter names are checked when rendering",
                        error.code().name)  # fmt: skip
            return None
        with self._lock:
            self._names, self._fetched = frozenset(info.available_adapters), time.monotonic()
            return self._names

    def check(self, adapters: Sequence[common_pb2.AdapterRef], field: str = "spec.adapters") -> None:
        """InvalidArgument naming the first adapter the renderers do not have."""
        if not adapters:
            return
        names = self.available()
        if names is None:
            return
        for index, adapter in enumerate(adapters):
            if adapter.name not in names:
                offered = ", ".join(sorted(names)) or "none"
                problem = f"unknown adapter {adapter.name!r}; available: {offered}"
                raise InvalidArgument(f"{field}[{index}].name", problem)


def spec_error(error: grpc.RpcError) -> Exception:
    """The planner's error about a field of its request (INVALID_ARGUMENT, or NOT_FOUND for an unknown character)
    as INVALID_ARGUMENT about the caller's field; any other error unchanged."""
    if not isinstance(error, grpc.Call) or error.code() not in (
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
    ):
        return error
    details = error.details() or ""
    for planner_field, spec_field in _PLANNER_FIELDS.items():
        if details.startswith(planner_field):
            problem = details.removeprefix(planner_field).lstrip(":[]0123456789 ") or "is not valid"
            return InvalidArgument(spec_field, problem)
    return error
