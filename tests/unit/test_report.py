"""report.json: what it says of a storyboard's scores."""

from __future__ import annotations

from storyboard import outputs
from storyboard.v1 import common_pb2
from storyboard.v1 import storyboards_pb2 as sb

THRESHOLDS = common_pb2.Thresholds(consistency=0.7, alignment=0.2, repetition=0.95)
PASS, LOW, REPEATS = common_pb2.VERDICT_PASS, common_pb2.VERDICT_LOW_CONSISTENCY, common_pb2.VERDICT_REPETITIVE


def _storyboard(*scores: common_pb2.FrameScore) -> sb.Storyboard:
    plan = common_pb2.Plan(scenes=[common_pb2.Scene(frame=n) for n in range(1, len(scores) + 1)])
    frames = [sb.FrameResult(frame=n, score=score, verdict=score.verdict) for n, score in enumerate(scores, 1)]
    return sb.Storyboard(id="20261207-000000-00000000", plan=plan, frames=frames)


def test_every_frame_over_the_repetition_threshold_is_listed_whatever_its_verdict():
    # Frames 2 and 3 are nearly the same picture; frame 2 is also too far from frame 1, so its verdict names that
    # first. Both repeat each other, and the report says so.
    storyboard = _storyboard(
        common_pb2.FrameScore(index=0, consistency=1.0, repetition=0.4, most_similar_index=1, verdict=PASS),
        common_pb2.FrameScore(index=1, consistency=0.5, repetition=0.9991, most_similar_index=2, verdict=LOW),
        common_pb2.FrameScore(index=2, consistency=0.8, repetition=0.9991, most_similar_index=1, verdict=REPEATS),
    )
    report = outputs.storyboard_report(storyboard, [], thresholds=THRESHOLDS)
    assert report["repetition"] == {
        "max": 0.9991,
        "repetitive_frames": [
            {"frame": 2, "similar_to": 3, "repetition": 0.9991},
            {"frame": 3, "similar_to": 2, "repetition": 0.9991},
        ],
    }


def test_without_thresholds_the_verdicts_say_which_frames_repeat():
    storyboard = _storyboard(
        common_pb2.FrameScore(index=0, repetition=0.99, most_similar_index=1, verdict=REPEATS),
        common_pb2.FrameScore(index=1, repetition=0.99, most_similar_index=0, verdict=PASS),
    )
    frames = outputs.storyboard_report(storyboard, [])["repetition"]["repetitive_frames"]
    assert [entry["frame"] for entry in frames] == [1]
