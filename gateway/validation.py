"""The gateway's side of validation for one storyboard: whether the validator can score, frame 1 as every frame's
reference, each attempt's own score, and the check of the kept frames for repetition.

Frame 1's first attempt is kept whatever it scores (``decisions.tries_again``), so it is the reference from the
moment it arrives: the other frames are scored against it without waiting for it to be kept. Scores are advice,
not a condition: when the validator is not configured, not ready or does not answer, frames are marked not
validated and the storyboard goes on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

import grpc

from gateway.downstream import Downstream
from storyboard.v1 import common_pb2
from storyboard_common.v1 import validator_pb2

_VALIDATOR_GONE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


@dataclass(frozen=True)
class Picture:
    """An encoded image, as the validator is sent it."""

    data: bytes
    mime_type: str

    def image(self) -> common_pb2.Image:
        return common_pb2.Image(data=self.data, mime_type=self.mime_type)


@dataclass(frozen=True)
class Judgement:
    """An attempt's score and verdict, or why it has none."""

    score: common_pb2.FrameScore | None
    verdict: int
    reason: str = ""


@dataclass
class Validation:
    """What the frames of one storyboard share for validation."""

    downstream: Downstream
    trigger_tokens: Sequence[str]
    unready_reason: str = ""  # why frames are not validated; empty when the validator can score
    model: str = ""
    max_frames: int = 0
    thresholds: common_pb2.Thresholds | None = None
    notes: list[str] = field(default_factory=list)
    _reference: asyncio.Future[Picture] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    @classmethod
    async def ask(cls, downstream: Downstream, trigger_tokens: Sequence[str]) -> Validation:
        """Whether the validator can score (and, if not, why frames will be marked not validated)."""
        if downstream.validator is None:
            return cls(downstream, trigger_tokens, "no validator is configured")
        try:
            info = await downstream.validator_info()
        except grpc.aio.AioRpcError as error:
            return cls(downstream, trigger_tokens, f"the validator is unreachable ({error.code().name})")
        if not info.ready:
            return cls(downstream, trigger_tokens, f"the validator is not ready: {info.reason}")
        return cls(downstream, trigger_tokens, "", info.model, info.max_frames, info.thresholds)

    def set_reference(self, picture: Picture) -> None:
        """Frame 1's picture, from the moment it is known (its first attempt, or the frame kept earlier)."""
        if not self._reference.done():
            self._reference.set_result(picture)

    def report_notes(self) -> list[str]:
        unvalidated = [f"frames not validated: {self.unready_reason}"] if self.unready_reason else []
        return [*unvalidated, *self.notes]

    async def judge(self, picture: Picture, prompt: str, frame: int) -> Judgement:
        """The attempt's score against frame 1 (frame 1's against itself); waits for frame 1 when it is not in yet."""
        if self.unready_reason:
            return Judgement(None, common_pb2.VERDICT_NOT_VALIDATED, self.unready_reason)
        reference = picture if frame == 1 else await asyncio.shield(self._reference)
        try:
            response = await self._score([picture], [prompt], reference, "validate")
        except grpc.aio.AioRpcError as error:
            if error.code() not in _VALIDATOR_GONE:
                raise
            return Judgement(
                None, common_pb2.VERDICT_NOT_VALIDATED, f"the validator did not answer ({error.code().name})"
            )
        [score] = response.scores
        return Judgement(score, score.verdict)

    async def check_all(
        self, pictures: Sequence[Picture], prompts: Sequence[str]
    ) -> validator_pb2.ScoreResponse | None:
        """Every kept frame scored together against frame 1: their final scores, and whether any is nearly the same
        picture as another. None when they could not be (the reason is in the notes)."""
        if self.unready_reason or len(pictures) < 2:
            return None
        if self.max_frames and len(pictures) > self.max_frames:
            self.notes.append(f"repetition not checked: the validator takes at most {self.max_frames}")
            return None
        try:
            return await self._score(pictures, prompts, pictures[0], "repetition_check")
        except grpc.aio.AioRpcError as error:
            if error.code() not in _VALIDATOR_GONE:
                raise
            self.notes.append(f"repetition not checked: the validator did not answer ({error.code().name})")
            return None

    async def _score(
        self, pictures: Sequence[Picture], prompts: Sequence[str], reference: Picture, stage: str
    ) -> validator_pb2.ScoreResponse:
        request = validator_pb2.ScoreRequest(
            frames=[picture.image() for picture in pictures],
            prompts=prompts,
            references=[reference.image()],
            policy=validator_pb2.REFERENCE_POLICY_REFERENCE_IMAGES,
            trigger_tokens=self.trigger_tokens,
        )
        response = await self.downstream.score(request, stage)
        self.thresholds = response.thresholds
        return response
