"""The gateway's side of validation for one storyboard: whether the validator can score, frame 1 as every frame's
reference, each attempt's own score, and the check of the kept frames for repetition.

Frame 1's first attempt is kept whatever it scores (``decisions.tries_again``), so it is the reference from the
moment it arrives: the other frames are scored against it without waiting for it to be kept. Scores are advice,
not a condition: when the validator is not configured, not ready or does not answer, frames are marked not
validated and the storyboard goes on.

An image the validator was sent once is named by its SHA-256 afterwards (``Image.sha256``): the reference in every
frame's call, every kept frame in the repetition check. A validator that no longer holds one (restarted, another
replica, forgotten) answers FAILED_PRECONDITION, and the call is made again with every image's bytes. (It saves 1.6 %
of a storyboard's wall time: ``bench/results/compare_speed_tricks.md``.)
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

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

    @cached_property
    def sha256(self) -> bytes:
        return hashlib.sha256(self.data).digest()

    def image(self, named: bool) -> common_pb2.Image:
        """The image with its bytes, or ``named`` by its digest alone."""
        if named:
            return common_pb2.Image(mime_type=self.mime_type, sha256=self.sha256)
        return common_pb2.Image(data=self.data, mime_type=self.mime_type, sha256=self.sha256)


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
    _held: set[bytes] = field(default_factory=set)  # digests of the images the validator was sent
    _carried: dict[bytes, asyncio.Event] = field(default_factory=dict)  # digests on their way in a call, with bytes
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
        carried = self._carried.get(reference.sha256)
        if carried is not None:  # frames that arrive together go after the call that carries frame 1's bytes
            await carried.wait()
        held = frozenset(self._held)
        sent = {picture.sha256 for picture in (*pictures, reference)} - held - self._carried.keys()
        self._carried.update((digest, asyncio.Event()) for digest in sent)
        try:
            response = await self._send(pictures, prompts, reference, held, stage)
        finally:
            for digest in sent:
                self._carried.pop(digest).set()
        self.thresholds = response.thresholds
        return response

    async def _send(
        self,
        pictures: Sequence[Picture],
        prompts: Sequence[str],
        reference: Picture,
        held: frozenset[bytes],
        stage: str,
    ) -> validator_pb2.ScoreResponse:
        """The call, and once more with every image's bytes if the validator no longer holds one it was named by."""
        try:
            response = await self.downstream.score(self._request(pictures, prompts, reference, held), stage)
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.FAILED_PRECONDITION or not held:
                raise
            self._held.clear()
            response = await self.downstream.score(self._request(pictures, prompts, reference, frozenset()), stage)
        self._held.update(picture.sha256 for picture in (*pictures, reference))
        return response

    def _request(
        self, pictures: Sequence[Picture], prompts: Sequence[str], reference: Picture, held: frozenset[bytes]
    ) -> validator_pb2.ScoreRequest:
        """Each image's bytes once in the request, unless the validator ``held`` it already."""
        sending = set(held)
        images = []
        for picture in (*pictures, reference):
            images.append(picture.image(named=picture.sha256 in sending))
            sending.add(picture.sha256)
        return validator_pb2.ScoreRequest(
            frames=images[:-1],
            prompts=prompts,
            references=images[-1:],
            policy=validator_pb2.REFERENCE_POLICY_REFERENCE_IMAGES,
            trigger_tokens=self.trigger_tokens,
        )
