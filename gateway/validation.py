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
from collections.abc import Mapping, Sequence
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
    # Each character's reference pictures, by trigger token: a frame showing the character is scored against them.
    characters: Mapping[str, Sequence[Picture]] = field(default_factory=dict)
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

    async def judge(self, picture: Picture, prompt: str, frame: int, shown: Sequence[str] = ()) -> Judgement:
        """The attempt's score against frame 1 (frame 1's against itself) and against the reference pictures of the
        characters it ``shown``; waits for frame 1 when it is not in yet."""
        if self.unready_reason:
            return Judgement(None, common_pb2.VERDICT_NOT_VALIDATED, self.unready_reason)
        reference = picture if frame == 1 else await asyncio.shield(self._reference)
        try:
            response = await self._score([picture], [prompt], reference, "validate", [shown])
        except grpc.aio.AioRpcError as error:
            if error.code() not in _VALIDATOR_GONE:
                raise
            return Judgement(
                None, common_pb2.VERDICT_NOT_VALIDATED, f"the validator did not answer ({error.code().name})"
            )
        [score] = response.scores
        return Judgement(score, score.verdict)

    async def check_all(
        self, pictures: Sequence[Picture], prompts: Sequence[str], shown: Sequence[Sequence[str]] = ()
    ) -> validator_pb2.ScoreResponse | None:
        """Every kept frame scored together against frame 1: their final scores, and whether any is nearly the same
        picture as another. None when they could not be (the reason is in the notes)."""
        if self.unready_reason or len(pictures) < 2:
            return None
        if self.max_frames and len(pictures) > self.max_frames:
            self.notes.append(f"repetition not checked: the validator takes at most {self.max_frames}")
            return None
        try:
            return await self._score(pictures, prompts, pictures[0], "repetition_check", shown)
        except grpc.aio.AioRpcError as error:
            if error.code() not in _VALIDATOR_GONE:
                raise
            self.notes.append(f"repetition not checked: the validator did not answer ({error.code().name})")
            return None

    async def _score(
        self,
        pictures: Sequence[Picture],
        prompts: Sequence[str],
        reference: Picture,
        stage: str,
        shown: Sequence[Sequence[str]] = (),
    ) -> validator_pb2.ScoreResponse:
        scoring = _Scoring(pictures, prompts, reference, self._characters_shown(shown))
        for carried in filter(None, (self._carried.get(picture.sha256) for picture in scoring.shared)):
            await carried.wait()  # frames that arrive together go after the call that carries the shared bytes
        held = frozenset(self._held)
        sent = {picture.sha256 for picture in scoring.everything} - held - self._carried.keys()
        self._carried.update((digest, asyncio.Event()) for digest in sent)
        try:
            response = await self._send(scoring, held, stage)
        finally:
            for digest in sent:
                self._carried.pop(digest).set()
        self.thresholds = response.thresholds
        return response

    def _characters_shown(self, shown: Sequence[Sequence[str]]) -> list[_CharacterFrames]:
        """The characters with reference pictures that the frames (``shown[i]``: the tokens frame i shows) show,
        each with its pictures and the indexes of the frames that show it."""
        frames_of: dict[str, list[int]] = {}
        for index, tokens in enumerate(shown):
            for token in tokens:
                if token in self.characters:
                    frames_of.setdefault(token, []).append(index)
        return [_CharacterFrames(token, self.characters[token], indexes) for token, indexes in frames_of.items()]

    async def _send(self, scoring: _Scoring, held: frozenset[bytes], stage: str) -> validator_pb2.ScoreResponse:
        """The call, and once more with every image's bytes if the validator no longer holds one it was named by."""
        try:
            response = await self.downstream.score(scoring.request(held, self.trigger_tokens), stage)
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.FAILED_PRECONDITION or not held:
                raise
            self._held.clear()
            response = await self.downstream.score(scoring.request(frozenset(), self.trigger_tokens), stage)
        self._held.update(picture.sha256 for picture in scoring.everything)
        return response


@dataclass(frozen=True)
class _CharacterFrames:
    """A character shown in the frames scored: its trigger token, its reference pictures, the frames' indexes."""

    trigger_token: str
    pictures: Sequence[Picture]
    frames: list[int]


@dataclass(frozen=True)
class _Scoring:
    """One Score call: the frames and their prompts, the reference, the characters the frames show."""

    pictures: Sequence[Picture]
    prompts: Sequence[str]
    reference: Picture
    characters: Sequence[_CharacterFrames]

    @property
    def shared(self) -> list[Picture]:
        """The pictures other calls send too: the reference and the characters' pictures."""
        return [self.reference, *(picture for character in self.characters for picture in character.pictures)]

    @property
    def everything(self) -> list[Picture]:
        return [*self.pictures, *self.shared]

    def request(self, held: frozenset[bytes], trigger_tokens: Sequence[str]) -> validator_pb2.ScoreRequest:
        """Each image's bytes once in the request, unless the validator ``held`` it already."""
        sending = set(held)

        def image(picture: Picture) -> common_pb2.Image:
            named = picture.sha256 in sending
            sending.add(picture.sha256)
            return picture.image(named=named)

        frames = [image(picture) for picture in self.pictures]
        return validator_pb2.ScoreRequest(
            frames=frames,
            prompts=self.prompts,
            references=[image(self.reference)],
            policy=validator_pb2.REFERENCE_POLICY_REFERENCE_IMAGES,
            trigger_tokens=trigger_tokens,
            characters=[
                validator_pb2.CharacterFrames(
                    character=common_pb2.CharacterPictures(
                        trigger_token=character.trigger_token, pictures=[image(p) for p in character.pictures]
                    ),
                    frames=character.frames,
                )
                for character in self.characters
            ],
        )
