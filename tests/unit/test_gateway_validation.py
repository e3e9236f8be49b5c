"""The gateway's frame scores: frames that ask while a call is in flight share the next call, each gets its own score
as if scored alone, and a call's error reaches every frame that was in it. The calls here are plain functions: what is
under test is the gateway's batching, which the end-to-end tests run against the real validator."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from gateway.validation import (
    FrameScores,
    Picture,
    ValidationContext,
    scored_alone,
)
from storyboard.v1 import common_pb2
from storyboard_common.v1 import validator_pb2

THRESHOLDS = common_pb2.Thresholds(consistency=0.7, alignment=0.2, repetition=0.95)


def _picture(name: str) -> Picture:
    return Picture.of(name.encode(), "image/png")


class RecordedCalls:
    """A score call that records its frames, scores frame ``n`` (named ``"frame n"``) n / 10, and can be held."""

    def __init__(self) -> None:
        self.frames: list[list[str]] = []
        self.release = threading.Event()
        self.release.set()
        self.entered = threading.Event()
        self.error: Exception | None = None

    def __call__(self, frames, prompts, reference) -> validator_pb2.ScoreResponse:
        self.frames.append(list(prompts))
        self.entered.set()
        self.release.wait(30)
        if self.error is not None:
            raise self.error
        scores = [
            common_pb2.FrameScore(
                index=index,
                consistency=int(prompt.split()[-1]) / 10,
                repetition=0.99,
                most_similar_index=(index + 1) % len(prompts),
                verdict=common_pb2.VERDICT_REPETITIVE if len(prompts) > 1 else common_pb2.VERDICT_PASS,
            )
            for index, prompt in enumerate(prompts)
        ]
        return validator_pb2.ScoreResponse(scores=scores, thresholds=THRESHOLDS)


def _score(scores: FrameScores, picture: Picture, prompt: str, reference: Picture):
    """A frame's score, waited for as a frame's thread waits for it."""
    return scores.submit(picture, prompt, reference).result()


def _score_side_by_side(scores: FrameScores, numbers: list[int], reference: Picture) -> dict[int, object]:
    with ThreadPoolExecutor(len(numbers)) as pool:
        futures = {n: pool.submit(_score, scores, _picture(f"frame {n}"), f"frame {n}", reference) for n in numbers}
        return {n: future.result(timeout=30) for n, future in futures.items()}


def test_frames_that_ask_while_a_call_is_in_flight_share_the_next_call_and_get_their_own_scores():
    calls = RecordedCalls()
    scores = FrameScores(calls)
    reference = _picture("frame 1")
    calls.release.clear()
    with ThreadPoolExecutor(1) as first:
        alone = first.submit(_score, scores, reference, "frame 1", reference)
        assert calls.entered.wait(30)
        results: dict[int, object] = {}
        waiting = threading.Thread(target=lambda: results.update(_score_side_by_side(scores, [2, 3, 4, 5], reference)))
        waiting.start()
        while scores.queued < 4:  # every frame has asked while the first call is held
            threading.Event().wait(0.01)
        calls.release.set()
        waiting.join(30)
        assert alone.result(timeout=30)[0].consistency == pytest.approx(0.1)
    scores.close()
    assert calls.frames[0] == ["frame 1"]
    assert sorted(calls.frames[1]) == ["frame 2", "frame 3", "frame 4", "frame 5"]
    assert len(calls.frames) == 2
    for number, (score, thresholds) in results.items():
        assert score.consistency == pytest.approx(number / 10)
        assert thresholds == THRESHOLDS
        # As if scored alone: repetition is judged later, over all kept frames.
        assert (score.index, score.repetition, score.most_similar_index) == (0, 0.0, -1)
        assert score.verdict == common_pb2.VERDICT_PASS


def test_a_call_takes_at_most_max_frames_and_never_mixes_references():
    calls = RecordedCalls()
    scores = FrameScores(calls, max_frames=2)
    calls.release.clear()
    one, other = _picture("frame 1"), _picture("another frame 1")
    with ThreadPoolExecutor(6) as pool:
        first = pool.submit(_score, scores, one, "frame 1", one)
        assert calls.entered.wait(30)
        futures = [pool.submit(_score, scores, _picture(f"frame {n}"), f"frame {n}", one) for n in (2, 3, 4)]
        while scores.queued < 3:
            threading.Event().wait(0.01)
        futures.append(pool.submit(_score, scores, _picture("frame 5"), "frame 5", other))
        while scores.queued < 4:
            threading.Event().wait(0.01)
        calls.release.set()
        for future in [first, *futures]:
            future.result(timeout=30)
    scores.close()
    # Frames 2-4 join the queue in whichever order their threads get there: which two share a call is not fixed.
    first_call, two, three, last = calls.frames
    assert (first_call, len(two), len(three), last) == (["frame 1"], 2, 1, ["frame 5"])
    assert sorted(two + three) == ["frame 2", "frame 3", "frame 4"]


def test_an_attempt_begun_on_arrival_is_queued_at_once_against_frame_1_and_handed_over_once():
    calls = RecordedCalls()
    context = ValidationContext("", frame_scores=FrameScores(calls))
    early = _picture("frame 2")
    context.begin("attempts/frame_002_attempt_1.png", early, "frame 2")
    assert context.begun("attempts/frame_002_attempt_1.png") is None  # no reference yet: scored once it comes
    reference = _picture("frame 1")
    context.set_reference(reference)
    calls.release.clear()
    context.begin("attempts/frame_001_attempt_1.png", reference, "frame 1")
    assert calls.entered.wait(30)  # frame 1's call is in flight (and held)
    context.begin("attempts/frame_003_attempt_1.png", _picture("frame 3"), "frame 3")
    assert context.frame_scores.queued == 1  # frame 3 waits for the next call, without anyone asking
    calls.release.set()
    picture, pending = context.begun("attempts/frame_003_attempt_1.png")
    assert picture.digest == _picture("frame 3").digest
    assert pending.result(timeout=30)[0].consistency == pytest.approx(0.3)
    assert context.begun("attempts/frame_003_attempt_1.png") is None  # handed over once
    context.close()
    assert calls.frames == [["frame 1"], ["frame 3"]]


def test_nothing_is_begun_when_the_validator_cannot_score():
    context = ValidationContext("the validator is not ready: loading")
    context.set_reference(_picture("frame 1"))
    context.begin("attempts/frame_002_attempt_1.png", _picture("frame 2"), "frame 2")
    assert context.begun("attempts/frame_002_attempt_1.png") is None


def test_a_failed_call_fails_every_frame_in_it_and_later_calls_go_on():
    calls = RecordedCalls()
    scores = FrameScores(calls)
    reference = _picture("frame 1")
    calls.error = grpc.RpcError("the validator went away")
    with pytest.raises(grpc.RpcError):
        _score(scores, reference, "frame 1", reference)
    calls.error = None
    assert _score(scores, _picture("frame 2"), "frame 2", reference)[0].consistency == pytest.approx(0.2)
    scores.close()
    with pytest.raises(RuntimeError, match="closed"):
        _score(scores, _picture("frame 3"), "frame 3", reference)


@pytest.mark.parametrize(
    ("verdict", "alone"),
    [
        (common_pb2.VERDICT_REPETITIVE, common_pb2.VERDICT_PASS),  # consistency and alignment passed before it
        (common_pb2.VERDICT_LOW_CONSISTENCY, common_pb2.VERDICT_LOW_CONSISTENCY),
        (common_pb2.VERDICT_LOW_ALIGNMENT, common_pb2.VERDICT_LOW_ALIGNMENT),
        (common_pb2.VERDICT_PASS, common_pb2.VERDICT_PASS),
    ],
)
def test_a_score_from_a_shared_call_is_judged_as_if_alone(verdict, alone):
    shared = common_pb2.FrameScore(index=3, consistency=0.8, alignment=0.3, repetition=0.97, most_similar_index=1,
                                   verdict=verdict)  # fmt: skip
    result = scored_alone(shared)
    assert (result.verdict, result.index, result.repetition, result.most_similar_index) == (alone, 0, 0.0, -1)
    assert (result.consistency, result.alignment) == pytest.approx((0.8, 0.3))


def test_a_validator_answering_the_wrong_number_of_scores_fails_those_frames_instead_of_leaving_them_waiting():
    def short(frames, prompts, reference):
        return validator_pb2.ScoreResponse(scores=[common_pb2.FrameScore()] * (len(frames) - 1))

    scores = FrameScores(short)
    reference = _picture("frame 1")
    with pytest.raises(Exception, match="answered 0 scores for 1 frames"):
        _score(scores, reference, "frame 1", reference)
    scores.close()


def test_closing_frame_scores_ends_their_thread():
    before = {thread for thread in threading.enumerate() if thread.name == "frame-scores"}
    scores = FrameScores(RecordedCalls())
    reference = _picture("frame 1")
    _score(scores, reference, "frame 1", reference)
    started = {thread for thread in threading.enumerate() if thread.name == "frame-scores"} - before
    assert len(started) == 1
    scores.close()
    for thread in started:
        thread.join(timeout=30)
        assert not thread.is_alive()
