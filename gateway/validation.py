"""The gateway's side of validation for one storyboard: what it shares across frames, how images travel to the
validator, and frames that ask together scored in one call.

- Frame 1 is the reference every other frame is scored against (``ValidationContext.set_reference``).
- Each image goes to the validator once. After a call that carried its bytes, it is named by its SHA-256 alone
  (``Image.sha256``): the reference with every later frame, and every kept frame in the repetition check. A
  validator that no longer has one answers FAILED_PRECONDITION; the call is made again with bytes, and that
  storyboard sends bytes from then on.
- Frames that finish together (R replicas finish R frames at once) are scored in one call (``FrameScores``): one
  request and one batched forward pass instead of one each. Each gets its score as if scored alone; repetition is
  judged later, over all kept frames.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import grpc

from storyboard.v1 import common_pb2
from storyboard_common.errors import ServiceError
from storyboard_common.v1 import validator_pb2, validator_pb2_grpc

if TYPE_CHECKING:
    from gateway.jobs import Job
    from gateway.metrics import Metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Picture:
    """An image for the validator: its SHA-256, and its bytes, read only if the validator needs them."""

    digest: bytes
    mime_type: str
    read: Callable[[], bytes]

    @classmethod
    def of(cls, data: bytes, mime_type: str) -> Picture:
        return cls(hashlib.sha256(data).digest(), mime_type, lambda: data)


# Scores frames against a reference in one call: (frames, their prompts, the reference) -> the validator's answer.
ScoreCall = Callable[[Sequence[Picture], Sequence[str], Picture], validator_pb2.ScoreResponse]

# A frame's score as if scored alone, and the thresholds it was judged by.
FrameScoreAnswer = tuple[common_pb2.FrameScore, common_pb2.Thresholds]


@dataclass
class ValidationContext:
    """What frames of one storyboard share for validation: whether the validator can score, its limits and
    thresholds, frame 1 (the reference), the images the validator has had, and each kept frame's image."""

    unready_reason: str
    model: str = ""
    max_frames: int = 0
    thresholds: common_pb2.Thresholds | None = None
    notes: list[str] = field(default_factory=list)
    validated: dict[str, Picture] = field(default_factory=dict)  # by attempt file: the bytes it was scored from
    frame_scores: FrameScores | None = None  # each frame's own validation, while frames render
    names_by_digest: bool = True
    _kept: dict[int, Picture] = field(default_factory=dict)  # by frame number, the kept attempt's
    _held: set[bytes] = field(default_factory=set)  # digests of images sent with their bytes in a call that answered
    _reference: Picture | None = None
    _settled: threading.Event = field(default_factory=threading.Event)
    _begun: dict[str, tuple[Picture, Future[FrameScoreAnswer]]] = field(default_factory=dict)  # by attempt file

    def report_notes(self) -> list[str]:
        unvalidated = [f"frames not validated: {self.unready_reason}"] if self.unready_reason else []
        return [*unvalidated, *self.notes]

    def keep(self, frame: int, attempt_file: str) -> None:
        """Frame ``frame`` keeps the attempt in ``attempt_file``: the repetition check names it by its digest."""
        picture = self.validated.get(attempt_file)
        if picture is not None:
            self._kept[frame] = picture

    def kept_picture(self, frame: int) -> Picture | None:
        """The kept attempt's image as this run validated it; None for a frame kept by an earlier run."""
        return self._kept.get(frame)

    def score_request(
        self, frames: Sequence[Picture], prompts: Sequence[str], reference: Picture, trigger_tokens: Sequence[str]
    ) -> tuple[validator_pb2.ScoreRequest, bool]:
        """The request to score ``frames`` against ``reference``, with each distinct image's bytes once unless the
        validator already has them, and whether any image is named by its digest alone. Images are added in place:
        a message passed to a constructor is copied by serializing and parsing it, three copies of every frame's
        bytes (25 MB a call for 8 frames of 1024x1024)."""
        request = validator_pb2.ScoreRequest(
            prompts=prompts, policy=validator_pb2.REFERENCE_POLICY_REFERENCE_IMAGES, trigger_tokens=trigger_tokens
        )
        sent: set[bytes] = set()
        named = False
        for images, pictures in ((request.frames, frames), (request.references, [reference])):
            for picture in pictures:
                image = images.add(mime_type=picture.mime_type, sha256=picture.digest)
                if not self.names_by_digest or (picture.digest not in self._held and picture.digest not in sent):
                    image.data = picture.read()
                    sent.add(picture.digest)
                else:
                    named = True
        return request, named

    def stop_naming_by_digest(self) -> None:
        """The validator forgot an image: once it has, it is likely to again (a cache too small or switched off,
        replicas that each hold their own), so this storyboard's calls send every image from then on."""
        self.names_by_digest = False

    def remember(self, pictures: Sequence[Picture]) -> None:
        """The validator answered a call with these images: it holds them now (until it forgets)."""
        self._held.update(picture.digest for picture in pictures)

    def begin(self, attempt_file: str, picture: Picture, prompt: str) -> None:
        """Queue an attempt for its own score as soon as it arrives, if it can be scored yet (the validator is ready
        and frame 1, the reference, is known); ``begun`` hands the score over. Writing and recording an arrived
        frame takes longer than a call's wait in the queue when several finish together (R replicas finish R frames
        at once): queued first, they share a call instead of each waiting for the call before."""
        if self.frame_scores is not None and self._reference is not None:
            self._begun[attempt_file] = (picture, self.frame_scores.submit(picture, prompt, self._reference))

    def begun(self, attempt_file: str) -> tuple[Picture, Future[FrameScoreAnswer]] | None:
        """The image and the pending score of an attempt ``begin`` queued (once), or None."""
        return self._begun.pop(attempt_file, None)

    def set_reference(self, picture: Picture) -> None:
        self._reference = picture
        self._settled.set()

    @property
    def has_reference(self) -> bool:
        return self._reference is not None

    def abort(self) -> None:
        self._settled.set()

    def close(self) -> None:
        """No more frames will be validated one by one."""
        if self.frame_scores is not None:
            self.frame_scores.close()

    def wait_for_reference(self, job: Job) -> Picture | None:
        while not self._settled.wait(timeout=0.5):
            if job.stopping.is_set():
                return None
        return self._reference


class ValidatorCalls:
    """Score calls to the validator, with images named by digest where it has them (``ValidationContext``)."""

    def __init__(self, stub: validator_pb2_grpc.ValidatorStub, timeout: float, metrics: Metrics) -> None:
        self._stub = stub
        self._timeout = timeout
        self._metrics = metrics

    def info(self) -> validator_pb2.ValidatorInfo:
        """The validator's description: model, readiness, limits and default thresholds."""
        return self._stub.Info(validator_pb2.ValidatorInfoRequest(), timeout=self._timeout)

    def score(
        self,
        context: ValidationContext,
        frames: Sequence[Picture],
        prompts: Sequence[str],
        reference: Picture,
        trigger_tokens: Sequence[str],
        stage: str,
    ) -> validator_pb2.ScoreResponse:
        """Score ``frames`` against ``reference`` (timed as ``stage``); if the validator has forgotten an image named
        by digest, the call is made again with every image's bytes."""
        pictures = [*frames, reference]
        for last_try in (False, True):
            request, named = context.score_request(frames, prompts, reference, trigger_tokens)
            try:
                with self._metrics.timed(stage):
                    response = self._stub.Score(request, timeout=self._timeout)
            except grpc.RpcError as error:
                if last_try or not named or error.code() != grpc.StatusCode.FAILED_PRECONDITION:
                    raise
                log.info("the validator no longer holds an image (%s); sending bytes from now on", error.details())
                context.stop_naming_by_digest()
                continue
            context.remember(pictures)
            return response
        raise AssertionError("unreachable: the last try returns or raises")


@dataclass
class _Waiting:
    picture: Picture
    prompt: str
    reference: Picture
    result: Future[FrameScoreAnswer] = field(default_factory=Future)


class FrameScores:
    """Scores frames one by one for their own validation, as frames ``submit`` them (from their own threads); frames
    that ask while a call is in flight go together in the next call (at most ``max_frames``, 0 for no limit). The
    calls are made on a thread of this object's own, started on the first frame and stopped by ``close``."""

    def __init__(self, call: ScoreCall, max_frames: int = 0) -> None:
        self._call = call
        self._max_frames = max_frames
        self._waiting: list[_Waiting] = []
        self._changed = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None

    def submit(self, picture: Picture, prompt: str, reference: Picture) -> Future[FrameScoreAnswer]:
        """Queue the frame for the next call and return at once. The future holds the frame's score as if scored
        alone and the thresholds it was judged by, or raises what the call raised."""
        waiting = _Waiting(picture, prompt, reference)
        with self._changed:
            if self._closed:
                raise RuntimeError("frame scores are closed")
            self._waiting.append(waiting)
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="frame-scores", daemon=True)
                self._thread.start()
            self._changed.notify()
        return waiting.result

    @property
    def queued(self) -> int:
        """Frames waiting for a call."""
        with self._changed:
            return len(self._waiting)

    def close(self) -> None:
        """Stop the thread once the frames already waiting are scored."""
        with self._changed:
            self._closed = True
            self._changed.notify()

    def _serve(self) -> None:
        while True:
            with self._changed:
                while not self._waiting and not self._closed:
                    self._changed.wait()
                if not self._waiting:
                    return
                batch = self._next_batch()
            self._score(batch)

    def _next_batch(self) -> list[_Waiting]:
        """The longest run of waiting frames, oldest first, that share the first one's reference."""
        reference = self._waiting[0].reference.digest
        limit = self._max_frames or len(self._waiting)
        count = 0
        while count < min(limit, len(self._waiting)) and self._waiting[count].reference.digest == reference:
            count += 1
        batch, self._waiting = self._waiting[:count], self._waiting[count:]
        return batch

    def _score(self, batch: list[_Waiting]) -> None:
        try:
            response = self._call([w.picture for w in batch], [w.prompt for w in batch], batch[0].reference)
            if len(response.scores) != len(batch):
                raise ServiceError(f"the validator answered {len(response.scores)} scores for {len(batch)} frames")
            results = [(scored_alone(score), response.thresholds) for score in response.scores]
        except BaseException as error:  # each frame's thread gets the call's error, as if it had made the call
            for waiting in batch:
                waiting.result.set_exception(error)
            return
        for waiting, result in zip(batch, results, strict=True):
            waiting.result.set_result(result)


def scored_alone(score: common_pb2.FrameScore) -> common_pb2.FrameScore:
    """A frame's score from a call it shared, as it would be from a call of its own: repetition (the only check
    that depends on the other frames of a call, and the last in the verdict's order) is judged over all kept frames
    later, not among frames that happened to be scored together."""
    alone = common_pb2.FrameScore()
    alone.CopyFrom(score)
    alone.index, alone.repetition, alone.most_similar_index = 0, 0.0, -1
    if alone.verdict == common_pb2.VERDICT_REPETITIVE:
        alone.verdict = common_pb2.VERDICT_PASS
    return alone
