"""Typed storyboard events: what ``Client.generate`` and ``Client.watch`` yield.

Each class wraps one kind of ``storyboard.v1.StoryboardEvent``; ``from_proto`` picks the right one. The raw message
stays available as ``.proto`` for anything these classes do not surface.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from storyboard.v1 import common_pb2, storyboards_pb2

if TYPE_CHECKING:
    from PIL import Image

VERDICT_NAMES = {
    common_pb2.VERDICT_PASS: "pass",
    common_pb2.VERDICT_LOW_CONSISTENCY: "low consistency",
    common_pb2.VERDICT_LOW_ALIGNMENT: "low alignment",
    common_pb2.VERDICT_REPETITIVE: "repetitive",
    common_pb2.VERDICT_NOT_VALIDATED: "not validated",
}


def verdict_name(verdict: int) -> str:
    return VERDICT_NAMES.get(verdict, "unknown")


@dataclass(frozen=True)
class Event:
    """Fields every event has."""

    storyboard_id: str
    sequence: int
    proto: storyboards_pb2.StoryboardEvent = field(repr=False)


@dataclass(frozen=True)
class Accepted(Event):
    storyboard: storyboards_pb2.Storyboard = field(repr=False)


@dataclass(frozen=True)
class PlanReady(Event):
    plan: common_pb2.Plan = field(repr=False)


@dataclass(frozen=True)
class FrameProgress(Event):
    frame: int
    attempt: int
    step: int
    total_steps: int


@dataclass(frozen=True)
class FrameRendered(Event):
    frame: int
    attempt: int
    seed: int
    backend: str
    data: bytes = field(repr=False)
    mime_type: str = "image/png"

    def image(self) -> Image.Image:
        """The frame as a PIL image (Pillow: the SDK's ``images`` extra)."""
        try:
            from PIL import Image
        except ImportError:
            raise ImportError("FrameRendered.image() needs Pillow: pip install 'storyboard-sdk[images]'") from None
        return Image.open(io.BytesIO(self.data))


@dataclass(frozen=True)
class FrameValidated(Event):
    frame: int
    attempt: int
    verdict: str
    consistency: float | None
    alignment: float | None
    repetition: float | None
    reason: str


@dataclass(frozen=True)
class Retry(Event):
    frame: int
    attempt: int
    seed: int
    reason: str


@dataclass(frozen=True)
class Completed(Event):
    storyboard: storyboards_pb2.Storyboard = field(repr=False)
    files: tuple[str, ...]

    @property
    def output_dir(self) -> str:
        return self.storyboard.output_dir


@dataclass(frozen=True)
class Failed(Event):
    code: str
    message: str


@dataclass(frozen=True)
class Queued(Event):
    """The storyboard waits to start, at ``position`` in line (1: next)."""

    position: int


StoryboardEvent = (
    Accepted | Queued | PlanReady | FrameProgress | FrameRendered | FrameValidated | Retry | Completed | Failed
)


def from_proto(event: storyboards_pb2.StoryboardEvent) -> StoryboardEvent:
    """The typed event for a ``storyboard.v1.StoryboardEvent``."""
    base = {"storyboard_id": event.storyboard_id, "sequence": event.sequence, "proto": event}
    kind = event.WhichOneof("event")
    if kind == "accepted":
        return Accepted(**base, storyboard=event.accepted.storyboard)
    if kind == "queued":
        return Queued(**base, position=event.queued.position)
    if kind == "plan_ready":
        return PlanReady(**base, plan=event.plan_ready.plan)
    if kind == "frame_progress":
        p = event.frame_progress
        return FrameProgress(**base, frame=p.frame, attempt=p.attempt, step=p.step, total_steps=p.total_steps)
    if kind == "frame_rendered":
        r = event.frame_rendered
        return FrameRendered(
            **base, frame=r.frame, attempt=r.attempt, seed=r.seed, backend=r.backend,
            data=r.image.data, mime_type=r.image.mime_type or "image/png",
        )  # fmt: skip
    if kind == "frame_validated":
        v = event.frame_validated
        scored = v.HasField("score")
        return FrameValidated(
            **base, frame=v.frame, attempt=v.attempt, verdict=verdict_name(v.verdict),
            consistency=v.score.consistency if scored else None, alignment=v.score.alignment if scored else None,
            repetition=v.score.repetition if scored else None, reason=v.reason,
        )  # fmt: skip
    if kind == "retry":
        return Retry(**base, frame=event.retry.frame, attempt=event.retry.attempt, seed=event.retry.seed,
                     reason=event.retry.reason)  # fmt: skip
    if kind == "completed":
        return Completed(**base, storyboard=event.completed.storyboard, files=tuple(event.completed.files))
    if kind == "failed":
        return Failed(**base, code=event.failed.code, message=event.failed.message)
    raise ValueError(f"unknown storyboard event {kind!r}; is the SDK older than the gateway?")
