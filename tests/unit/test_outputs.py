"""A storyboard folder's files as the gateway writes them: atomic writes and links, report.json, any path type."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from gateway import documents, outputs
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


class Folder:
    """A path-like that is neither str nor Path, as a caller's own path type would be."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)

    def __fspath__(self) -> str:
        return self.path


def test_the_file_writers_take_str_and_path_like_folders(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    plan = common_pb2.Plan(story="a fox", scenes=[common_pb2.Scene(frame=n, description=f"scene {n}") for n in (1, 2)])
    final = sb.Storyboard(id="20261207-000000-00000000", plan=plan, frames=[sb.FrameResult(frame=n) for n in (1, 2)])
    outputs.write_plan_files("parts", plan)
    outputs.write_frames_metadata(Folder("parts"), plan, final.frames, [])
    outputs.write_report("parts", {})
    outputs.write_bytes_atomic("parts/bytes.bin", b"bytes")
    outputs.link_atomic("parts/bytes.bin", Folder("parts/linked.bin"))
    for n in (1, 2):
        Image.new("RGB", (32, 32), (40 * n, 90, 160)).save(tmp_path / f"frame_{n}.png")
    frames = [Folder(tmp_path / "frame_1.png"), str(tmp_path / "frame_2.png")]
    documents.write_documents("parts", plan, frames, documents.document_text(final, []))
    assert sorted(p.name for p in (tmp_path / "parts").iterdir()) == [
        "bytes.bin", "frames.json", "linked.bin", "report.json", "scene_breakdown.json", "sdxl_prompts.json",
        "storyboard.pdf", "storyboard_grid.png",
    ]  # fmt: skip


def test_link_atomic_puts_the_same_file_in_place_without_copying(tmp_path):
    source = tmp_path / "attempts" / "frame_001_attempt_2.png"
    source.parent.mkdir()
    source.write_bytes(b"new frame")
    target = tmp_path / "frame_001.png"
    target.write_bytes(b"old frame")
    outputs.link_atomic(source, target)
    assert target.read_bytes() == b"new frame"
    assert target.stat().st_ino == source.stat().st_ino  # a hard link: no bytes were read or written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["attempts", "frame_001.png"]  # no temporary left


def test_link_atomic_onto_the_same_file_again_leaves_no_temporary_link(tmp_path):
    # A gateway killed between keeping a frame and recording it keeps the same attempt again when it resumes. rename(2)
    # of one hard link onto another of the same file does nothing and succeeds, which left the temporary link behind.
    source = tmp_path / "attempts" / "frame_001_attempt_1.png"
    source.parent.mkdir()
    source.write_bytes(b"frame")
    target = tmp_path / "frame_001.png"
    outputs.link_atomic(source, target)
    outputs.link_atomic(source, target)
    assert target.read_bytes() == b"frame" and target.stat().st_ino == source.stat().st_ino
    assert sorted(p.name for p in tmp_path.iterdir()) == ["attempts", "frame_001.png"]


def test_link_atomic_copies_where_no_hard_link_can_be_made(tmp_path):
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs a second filesystem (/dev/shm) to make os.link fail across devices")
    source = shm / f"storyboard-test-{tmp_path.name}.png"
    source.write_bytes(b"frame bytes")
    try:
        target = tmp_path / "frame_001.png"
        outputs.link_atomic(source, target)
        assert target.read_bytes() == b"frame bytes"
        assert target.stat().st_ino != source.stat().st_ino
        assert [p.name for p in tmp_path.iterdir()] == ["frame_001.png"]
    finally:
        source.unlink()
