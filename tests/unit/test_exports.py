"""The exports made from a storyboard folder built by hand with the gateway's own writers: decoded for real (PyAV for
the MP4, Pillow for the GIF), the ZIP and the CSV opened and read back against the folder."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import av
import pytest
from PIL import Image, ImageSequence

from gateway import exports, files, outputs
from storyboard.v1 import common_pb2
from storyboard.v1 import storyboards_pb2 as sb
from storyboard_common.errors import InvalidArgument, NotFound

COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (220, 220, 40), (40, 220, 220), (220, 40, 220)]
DURATIONS = [0.0, 1.5, 3.0, 0.5, 2.25, 1.0]  # 0: the default, 2 s
HELD = [2.0, 1.5, 3.0, 0.5, 2.25, 1.0]
WIDTH, HEIGHT = 688, 384  # not square; the GIF scales it down


def _plan() -> common_pb2.Plan:
    return common_pb2.Plan(
        story="Aldar Kose sells a magical pot",
        scenes=[
            common_pb2.Scene(
                frame=n,
                description=f"aldar_kose_man shows the pot, beat {n}",
                camera="close-up" if n % 2 else "wide shot",
                prompt=f"prompt {n}",
                duration_seconds=DURATIONS[n - 1],
            )
            for n in range(1, 7)
        ],
        characters=[common_pb2.CharacterRef(name="Aldar Kose", trigger_token="aldar_kose_man")],
    )


def _results(plan: common_pb2.Plan) -> list[sb.FrameResult]:
    score = common_pb2.FrameScore(consistency=0.81234, alignment=0.25, verdict=common_pb2.VERDICT_PASS)
    return [
        sb.FrameResult(frame=s.frame, seed=100 + s.frame, rendered=True, verdict=common_pb2.VERDICT_PASS, score=score)
        for s in plan.scenes
    ]


def _write_frames_json(folder: Path, plan: common_pb2.Plan) -> None:
    attempts = [
        outputs.AttemptInfo(frame=s.frame, attempt=1, seed=100 + s.frame, prompt=s.prompt, file=f"attempts/{s.frame}")
        for s in plan.scenes
    ]
    outputs.write_frames_metadata(folder, plan, _results(plan), attempts)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A completed storyboard's folder: the plan files, six kept frames, an attempt, frames.json and a document."""
    folder = tmp_path / "20261207-160000-abcdef01"
    plan = _plan()
    outputs.write_plan_files(folder, plan)
    for scene, colour in zip(plan.scenes, COLOURS, strict=True):
        Image.new("RGB", (WIDTH, HEIGHT), colour).save(folder / outputs.frame_file_name(scene.frame))
    (folder / "attempts").mkdir()
    Image.new("RGB", (WIDTH, HEIGHT), "black").save(folder / "attempts" / "frame_001_attempt_1.png")
    (folder / outputs.PDF).write_bytes(b"%PDF-1.4 stand-in")
    _write_frames_json(folder, plan)
    return folder


def _make(folder: Path, name: str, **options: bool) -> Path:
    return exports.cached_export(folder, exports.export_format(name), exports.ExportOptions(**options))


def test_the_mp4_is_h264_yuv420p_at_an_even_size_of_the_frames_shape_each_frame_held_for_its_duration(folder):
    path = _make(folder, "mp4")
    data = path.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat"), "the index comes first (faststart)"
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        decoded = list(container.decode(stream))
    assert (decoded[0].width, decoded[0].height) == (WIDTH, HEIGHT)
    assert len(decoded) == round(sum(HELD) * exports.FPS)
    # Which frame is on screen when: the middle of each shot shows its colour.
    start = 0.0
    for seconds, colour in zip(HELD, COLOURS, strict=True):
        middle = decoded[int((start + seconds / 2) * exports.FPS)].to_image().getpixel((WIDTH // 2, HEIGHT // 2))
        assert all(abs(a - b) < 12 for a, b in zip(middle, colour, strict=True)), (start, middle, colour)
        start += seconds
    assert decoded[-1].time == pytest.approx(sum(HELD) - 1 / exports.FPS, abs=1e-6)


def test_a_crossfade_blends_the_last_frames_of_a_shot_into_the_next_and_keeps_the_length(folder):
    with av.open(str(_make(folder, "mp4", crossfade=True))) as container:
        decoded = [frame.to_image() for frame in container.decode(video=0)]
    assert len(decoded) == round(sum(HELD) * exports.FPS)
    cut = round(HELD[0] * exports.FPS)
    fade = round(exports.CROSSFADE_SECONDS * exports.FPS)
    red, green = decoded[cut - fade - 1].getpixel((10, 10)), decoded[cut].getpixel((10, 10))
    halfway = decoded[cut - fade // 2].getpixel((10, 10))
    assert red[0] > 180 and green[1] > 180
    assert 60 < halfway[0] < 170 and 60 < halfway[1] < 170, halfway


def test_captions_are_burned_into_the_bottom_of_the_pictures_and_nowhere_else(folder):
    plain = _first_picture(_make(folder, "mp4"))
    captioned = _first_picture(_make(folder, "mp4", captions=True))
    assert captioned.getpixel((WIDTH // 2, 20)) == pytest.approx(plain.getpixel((WIDTH // 2, 20)), abs=8)
    bottom = captioned.crop((0, HEIGHT - 20, WIDTH, HEIGHT)).convert("L")
    assert bottom.getextrema()[1] > 200 and bottom.getextrema()[0] < 80  # white words on a dark band


def _first_picture(path: Path) -> Image.Image:
    with av.open(str(path)) as container:
        return next(container.decode(video=0)).to_image()


def test_a_large_frame_is_scaled_to_the_video_limit_keeping_its_shape_at_even_sides():
    assert exports.even_size(2048, 1024, 1920) == (1920, 960)
    assert exports.even_size(1536, 640, 1920) == (1536, 640)
    assert exports.even_size(301, 199, 1920) == (300, 200)
    assert exports.even_size(1344, 768, 512) == (512, 292)


def test_shot_boundaries_follow_the_running_total_and_no_shot_is_empty():
    assert exports.frame_boundaries([2.0, 1.5, 3.0]) == [48, 84, 156]
    assert exports.frame_boundaries([1 / 3] * 3, fps=10) == [3, 7, 10]
    assert exports.frame_boundaries([0.01, 0.01]) == [1, 2]


def test_the_gif_is_small_loops_and_shows_each_frame_for_its_duration(folder):
    with Image.open(_make(folder, "gif")) as gif:
        assert gif.size == (exports.GIF_SIDE, 286) and gif.info["loop"] == 0
        durations = [frame.info["duration"] for frame in ImageSequence.Iterator(gif)]
        assert gif.n_frames == len(HELD)
    assert durations == [round(seconds * 1000) for seconds in HELD]


def test_the_zip_holds_the_folder_under_its_name_without_attempts_or_exports_unless_asked(folder):
    _make(folder, "csv")  # an export in the folder is never in the ZIP
    with zipfile.ZipFile(_make(folder, "zip")) as archive:
        names = archive.namelist()
        assert archive.read(f"{folder.name}/frame_003.png") == (folder / "frame_003.png").read_bytes()
    expected = [name for name in files.folder_files(folder) if not name.startswith("attempts/")]
    assert names == [f"{folder.name}/{name}" for name in expected]
    assert f"{folder.name}/frames.json" in names and f"{folder.name}/storyboard.pdf" in names
    assert not any("/exports/" in name or "/attempts/" in name for name in names)
    with zipfile.ZipFile(_make(folder, "zip", attempts=True)) as archive:
        assert f"{folder.name}/attempts/frame_001_attempt_1.png" in archive.namelist()


def test_the_shot_list_has_a_row_per_frame_from_frames_json_and_the_plan(folder):
    rows = list(csv.DictReader(io.StringIO(_make(folder, "csv").read_bytes().decode("utf-8-sig"))))
    frames = json.loads((folder / outputs.FRAMES_METADATA).read_text())["frames"]
    assert list(rows[0]) == list(exports.SHOT_LIST_COLUMNS)
    assert [row["frame"] for row in rows] == [str(entry["frame"]) for entry in frames]
    assert [float(row["duration (s)"]) for row in rows] == HELD
    assert [row["shot type"] for row in rows] == [entry["camera"] for entry in frames]
    assert rows[1]["description"] == "Aldar Kose shows the pot, beat 2"  # characters by name, for people
    assert rows[1]["prompt"] == "prompt 2" and rows[1]["seed"] == "102" and rows[1]["verdict"] == "PASS"
    assert (rows[1]["consistency"], rows[1]["alignment"]) == ("0.8123", "0.2500")
    assert rows[5]["file"] == "frame_006.png"


def test_an_export_is_made_once_and_again_when_frames_json_changes(folder, monkeypatch):
    made = []
    real = exports.MAKERS["gif"]
    monkeypatch.setitem(exports.MAKERS, "gif", lambda *args: made.append(1) or real(*args))
    first = _make(folder, "gif")
    assert _make(folder, "gif") == first and len(made) == 1
    # Another attempt chosen for frame 2: its picture and frames.json are rewritten.
    Image.new("RGB", (WIDTH, HEIGHT), (255, 255, 255)).save(folder / "frame_002.png")
    plan = _plan()
    plan.scenes[1].description = "aldar_kose_man counts his coins"
    _write_frames_json(folder, plan)
    second = _make(folder, "gif")
    assert second != first and len(made) == 2
    assert first.exists()  # kept one version more: a request that found it a moment ago still sends it whole
    with Image.open(second) as gif:
        gif.seek(1)
        assert gif.convert("RGB").getpixel((5, 5)) == (255, 255, 255)
    # Other options are another export of the same folder, kept beside it.
    assert _make(folder, "gif", captions=True) != second and second.exists()
    # An option the format does not use makes nothing again.
    assert _make(folder, "gif", attempts=True, crossfade=True) == second and len(made) == 3
    # A third version: the first goes, the second stays one version more.
    plan.scenes[1].description = "aldar_kose_man counts his coins twice"
    _write_frames_json(folder, plan)
    third = _make(folder, "gif")
    assert third.exists() and second.exists() and not first.exists()


def test_an_unknown_format_is_refused_naming_it():
    with pytest.raises(InvalidArgument, match="format: 'avi' is not one of mp4, gif, zip, csv"):
        exports.export_format("avi")


def test_a_folder_without_its_files_is_not_found_saying_which(tmp_path):
    with pytest.raises(NotFound, match=r"holds no (frames|scene_breakdown)\.json"):
        _make(tmp_path, "csv")


def test_the_exports_are_not_among_the_files_a_client_downloads(folder):
    _make(folder, "csv")
    assert list((folder / files.EXPORTS).iterdir())
    assert not [name for name in files.folder_files(folder) if name.startswith("exports")]


def test_exports_made_at_the_same_time_are_each_whole(folder):
    with ThreadPoolExecutor(4) as pool:
        paths = list(pool.map(lambda _: _make(folder, "gif"), range(4)))
    assert len(set(paths)) == 1 and [p.name for p in (folder / files.EXPORTS).iterdir()] == [paths[0].name]
    with Image.open(paths[0]) as gif:
        assert gif.n_frames == len(HELD)
