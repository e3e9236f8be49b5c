"""The files of a storyboard folder, as the original system wrote them and as the gateway and SDK write them now.

    scene_breakdown.json   the story and its scenes ({frame, description, camera, mood} plus our extras)
    sdxl_prompts.json      an array of prompt strings, one per frame
    frame_001.png ...      the frames
    storyboard_grid.png    a captioned contact sheet of all frames
    frames.json            per-frame metadata: prompt, kept seed, every attempt with its seed, scores and timings
    report.json            the storyboard's summary: consistency (average, min), thresholds, parameters, timings
    storyboard.pdf         the storyboard as a printable document: a title page, then the frames with captions

Every file is written atomically (a temporary file renamed into place), so a reader never sees half a file.
"""

from __future__ import annotations

import io
import json
import math
import os
import tempfile
import textwrap
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from storyboard.v1 import common_pb2, storyboards_pb2

SCENE_BREAKDOWN = "scene_breakdown.json"
SDXL_PROMPTS = "sdxl_prompts.json"
GRID = "storyboard_grid.png"
FRAMES_METADATA = "frames.json"
REPORT = "report.json"
PDF = "storyboard.pdf"


def frame_file_name(frame: int) -> str:
    """``frame_001.png`` for frame 1: the original's naming."""
    return f"frame_{frame:03d}.png"


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that the file is either absent, the old one, or whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, value: Any) -> None:
    write_bytes_atomic(path, (json.dumps(value, indent=2, ensure_ascii=False) + "\n").encode())


def scene_breakdown(plan: common_pb2.Plan, timestamp: datetime | None = None) -> dict[str, Any]:
    """The content of scene_breakdown.json: the original's keys first, our extras after them."""
    return {
        "story": plan.story,
        "timestamp": (timestamp or datetime.now(UTC)).isoformat(),
        "num_frames": len(plan.scenes),
        "scenes": [
            {
                "frame": scene.frame,
                "description": scene.description,
                "camera": scene.camera,
                "mood": scene.mood,
                "setting": scene.setting,
                "lighting": scene.lighting,
                "prompt": scene.prompt,
                **({"prompt_2": scene.prompt_2} if scene.prompt_2 else {}),
                "trigger_tokens": list(scene.trigger_tokens),
            }
            for scene in plan.scenes
        ],
        "negative_prompt": plan.negative_prompt,
        "warnings": list(plan.warnings),
        "planner": plan.planner,
        "characters": [
            {"name": c.name, "trigger_token": c.trigger_token, "adapter": c.adapter} for c in plan.characters
        ],
    }


def sdxl_prompts(plan: common_pb2.Plan) -> list[str]:
    """The content of sdxl_prompts.json: one prompt per frame, in frame order."""
    return [scene.prompt for scene in plan.scenes]


def write_plan_files(folder: Path, plan: common_pb2.Plan, timestamp: datetime | None = None) -> list[str]:
    """Write scene_breakdown.json and sdxl_prompts.json; returns the file names written."""
    write_json_atomic(folder / SCENE_BREAKDOWN, scene_breakdown(plan, timestamp))
    write_json_atomic(folder / SDXL_PROMPTS, sdxl_prompts(plan))
    return [SCENE_BREAKDOWN, SDXL_PROMPTS]


def contact_sheet(frames: Sequence[Image.Image], captions: Sequence[str], columns: int = 0) -> Image.Image:
    """A grid of the frames, each with its caption underneath, on white: the storyboard at a glance."""
    if not frames:
        raise ValueError("a contact sheet needs at least one frame")
    columns = columns or min(len(frames), 4 if len(frames) > 6 else 3)
    rows = math.ceil(len(frames) / columns)
    cell = 384
    font = ImageFont.load_default(size=15)
    caption_lines = 4
    line_height = 19
    caption_height = caption_lines * line_height + 12
    margin = 16
    sheet = Image.new(
        "RGB",
        (columns * (cell + margin) + margin, rows * (cell + caption_height + margin) + margin),
        "white",
    )
    draw = ImageDraw.Draw(sheet)
    for index, (frame, caption) in enumerate(zip(frames, captions, strict=True)):
        x = margin + (index % columns) * (cell + margin)
        y = margin + (index // columns) * (cell + caption_height + margin)
        thumb = frame.convert("RGB").copy()
        thumb.thumbnail((cell, cell))
        sheet.paste(thumb, (x + (cell - thumb.width) // 2, y + (cell - thumb.height) // 2))
        draw.rectangle((x - 1, y - 1, x + cell, y + cell), outline=(60, 60, 60))
        lines = textwrap.wrap(caption, width=44)[:caption_lines]
        for line_no, line in enumerate(lines):
            draw.text((x, y + cell + 6 + line_no * line_height), line, fill=(20, 20, 20), font=font)
    return sheet


def caption(scene: common_pb2.Scene) -> str:
    """A frame's caption on the contact sheet: number, shot and what happens."""
    return f"{scene.frame}. {scene.camera}: {scene.description}"


def write_grid(folder: Path, frames: Sequence[Image.Image], scenes: Sequence[common_pb2.Scene]) -> str:
    """Write storyboard_grid.png from the frames and their scenes; returns its file name."""
    buffer = io.BytesIO()
    contact_sheet(frames, [caption(scene) for scene in scenes]).save(buffer, format="PNG")
    write_bytes_atomic(folder / GRID, buffer.getvalue())
    return GRID


# -- per-frame metadata and the report ----------------------------------------------------------------------------


@dataclass
class AttemptInfo:
    """One rendered attempt at a frame, as frames.json records it (the gateway also persists it as is)."""

    frame: int
    attempt: int
    seed: int
    prompt: str
    file: str  # the attempt's image, relative to the storyboard folder
    backend: str = ""
    timings: common_pb2.FrameTimings | None = None
    render_seconds: float = 0.0
    validated: bool = False  # True once scored, or once it was settled that it cannot be
    score: common_pb2.FrameScore | None = None
    verdict: int = common_pb2.VERDICT_UNSPECIFIED
    reason: str = ""
    validate_seconds: float = 0.0


def verdict_name(verdict: int) -> str:
    """``PASS`` for VERDICT_PASS: the verdict as files and reports spell it."""
    return common_pb2.Verdict.Name(verdict).removeprefix("VERDICT_")


def _rounded(value: float) -> float:
    return round(float(value), 4)


def _scores(score: common_pb2.FrameScore | None, frames: Sequence[int]) -> dict[str, Any] | None:
    """A score as JSON; ``most_similar_frame`` turns the validator's request index into a frame number."""
    if score is None:
        return None
    similar = score.most_similar_index
    return {
        "consistency": _rounded(score.consistency),
        "alignment": _rounded(score.alignment),
        "repetition": _rounded(score.repetition),
        "most_similar_frame": frames[similar] if 0 <= similar < len(frames) else None,
    }


def _attempt_timings(attempt: AttemptInfo) -> dict[str, float]:
    timings = {"render_seconds": _rounded(attempt.render_seconds)}
    if attempt.timings is not None:
        for name in ("queue_seconds", "denoise_seconds", "decode_seconds", "encode_seconds"):
            timings[name] = _rounded(getattr(attempt.timings, name))
    timings["validate_seconds"] = _rounded(attempt.validate_seconds)
    return timings


def kept_attempt(result: storyboards_pb2.FrameResult, attempts: Sequence[AttemptInfo]) -> AttemptInfo | None:
    """The attempt a frame kept: the latest one rendered with the kept seed."""
    matching = [attempt for attempt in attempts if attempt.frame == result.frame and attempt.seed == result.seed]
    return max(matching, key=lambda attempt: attempt.attempt) if matching and result.rendered else None


def frames_metadata(
    plan: common_pb2.Plan, frames: Sequence[storyboards_pb2.FrameResult], attempts: Iterable[AttemptInfo]
) -> dict[str, Any]:
    """The content of frames.json: each frame's prompt, kept seed, scores and timings, and every attempt made."""
    by_frame: dict[int, list[AttemptInfo]] = {}
    for attempt in attempts:
        by_frame.setdefault(attempt.frame, []).append(attempt)
    numbers = [scene.frame for scene in plan.scenes]
    entries = []
    for scene, result in zip(plan.scenes, frames, strict=True):
        history = sorted(by_frame.get(scene.frame, []), key=lambda attempt: attempt.attempt)
        kept = kept_attempt(result, history)
        entries.append(
            {
                "frame": scene.frame,
                "file": frame_file_name(scene.frame) if result.rendered else None,
                "prompt": scene.prompt,
                "prompt_2": scene.prompt_2,
                "camera": scene.camera,
                "description": scene.description,
                "seed": result.seed if result.rendered else None,
                "kept_attempt": kept.attempt if kept else None,
                "seeds_tried": list(result.seeds_tried),
                "verdict": verdict_name(result.verdict),
                "scores": _scores(result.score if result.HasField("score") else None, numbers),
                "timings": _attempt_timings(kept) if kept else None,
                "attempts": [
                    {
                        "attempt": attempt.attempt,
                        "seed": attempt.seed,
                        "prompt": attempt.prompt,
                        "file": attempt.file,
                        "backend": attempt.backend,
                        "verdict": verdict_name(attempt.verdict),
                        "scores": _scores(attempt.score, numbers),
                        "reason": attempt.reason,
                        "timings": _attempt_timings(attempt),
                    }
                    for attempt in history
                ],
            }
        )
    return {"negative_prompt": plan.negative_prompt, "frames": entries}


def _summary(values: Sequence[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"average": _rounded(sum(values) / len(values)), "min": _rounded(min(values)), "max": _rounded(max(values))}


def storyboard_report(
    storyboard: storyboards_pb2.Storyboard,
    attempts: Sequence[AttemptInfo],
    *,
    thresholds: common_pb2.Thresholds | None = None,
    validator_model: str = "",
    stage_seconds: dict[str, float] | None = None,
    notes: Sequence[str] = (),
    finished: datetime | None = None,
) -> dict[str, Any]:
    """The content of report.json: how consistent the storyboard is, by which thresholds, from which parameters,
    and how long each stage took."""
    spec, plan = storyboard.spec, storyboard.plan
    numbers = [scene.frame for scene in plan.scenes]
    scored = [(f.frame, f.score) for f in storyboard.frames if f.HasField("score")]
    consistency = _summary([score.consistency for _, score in scored])
    if consistency is not None:
        consistency["min_frame"] = min(scored, key=lambda pair: pair[1].consistency)[0]
        if thresholds is not None:
            consistency["frames_below_threshold"] = [
                frame for frame, score in scored if score.consistency < thresholds.consistency
            ]
    verdicts: dict[str, int] = {}
    for frame in storyboard.frames:
        verdicts[verdict_name(frame.verdict)] = verdicts.get(verdict_name(frame.verdict), 0) + 1
    created = storyboard.create_time.ToDatetime(tzinfo=UTC)
    finished = finished or datetime.now(UTC)
    timings = {f"{stage}_seconds": _rounded(seconds) for stage, seconds in (stage_seconds or {}).items()}
    timings["total_seconds"] = _rounded((finished - created).total_seconds())
    return {
        "storyboard_id": storyboard.id,
        "story": spec.story,
        "created": created.isoformat(),
        "finished": finished.isoformat(),
        "planner": plan.planner,
        "renderer_backends": sorted({attempt.backend for attempt in attempts if attempt.backend}),
        "validator_model": validator_model or None,
        "params": {
            "num_frames": len(plan.scenes),
            "base_seed": spec.base_seed,
            "num_inference_steps": spec.num_inference_steps,
            "guidance_scale": _rounded(spec.guidance_scale),
            "width": spec.width,
            "height": spec.height,
            "temperature": _rounded(spec.temperature),
            "characters": list(spec.characters) or [c.name for c in plan.characters],
            "adapters": [{"name": a.name, "weight": _rounded(a.weight)} for a in spec.adapters],
        },
        "thresholds": None
        if thresholds is None
        else {
            "consistency": _rounded(thresholds.consistency),
            "alignment": _rounded(thresholds.alignment),
            "repetition": _rounded(thresholds.repetition),
        },
        "consistency": consistency,
        "alignment": _summary([score.alignment for _, score in scored]),
        "repetition": {
            "max": _rounded(max((score.repetition for _, score in scored), default=0.0)),
            "repetitive_frames": [
                {"frame": frame, "similar_to": _scores(score, numbers)["most_similar_frame"]}  # type: ignore[index]
                for frame, score in scored
                if score.verdict == common_pb2.VERDICT_REPETITIVE
            ],
        },
        "verdicts": verdicts,
        "frames": len(storyboard.frames),
        "attempts": len(attempts),
        "retries": max(0, len(attempts) - len(storyboard.frames)),
        "timings": timings,
        "warnings": [*plan.warnings, *notes],
    }


def write_frames_metadata(
    folder: Path,
    plan: common_pb2.Plan,
    frames: Sequence[storyboards_pb2.FrameResult],
    attempts: Iterable[AttemptInfo],
) -> str:
    """Write frames.json; returns its file name."""
    write_json_atomic(folder / FRAMES_METADATA, frames_metadata(plan, frames, attempts))
    return FRAMES_METADATA


def write_report(folder: Path, report: dict[str, Any]) -> str:
    """Write report.json (made by ``storyboard_report``); returns its file name."""
    write_json_atomic(folder / REPORT, report)
    return REPORT


# -- the printable storyboard -------------------------------------------------------------------------------------

PDF_RESOLUTION = 150  # dots per inch: an A4 page is 1240 x 1754 pixels
PAGE_SIZE = (1240, 1754)
_PAGE_MARGIN = 90
_INK, _MUTED = (20, 20, 20), (95, 95, 95)


@cache
def _font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """DejaVu Sans where installed (it covers Cyrillic, Greek and more), else Pillow's own font."""
    try:
        return ImageFont.truetype("DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf", size)
    except OSError:
        return ImageFont.load_default(size=size)


def _wrap(draw: ImageDraw.ImageDraw, text: str, font: Any, width: int) -> list[str]:
    """``text`` broken into lines no wider than ``width`` pixels (over-long words are cut)."""
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        line = ""
        for word in paragraph.split():
            candidate = f"{line} {word}".strip()
            if draw.textlength(candidate, font=font) <= width:
                line = candidate
                continue
            if line:
                lines.append(line)
            while draw.textlength(word, font=font) > width and len(word) > 1:
                cut = max(1, int(len(word) * width / draw.textlength(word, font=font)) - 1)
                lines.append(word[:cut])
                word = word[cut:]
            line = word
        lines.append(line)
    return lines


def _text_block(
    draw: ImageDraw.ImageDraw, xy: tuple[int, int], text: str, font: Any, width: int, fill: Any, max_lines: int = 0
) -> int:
    """Draw wrapped text from ``xy``; returns the y below it."""
    x, y = xy
    lines = _wrap(draw, text, font, width)
    if max_lines and len(lines) > max_lines:
        lines = [*lines[: max_lines - 1], lines[max_lines - 1].rstrip() + " …"]
    step = int(getattr(font, "size", 16) * 1.35)
    for line in lines:
        draw.text((x, y), line, fill=fill, font=font)
        y += step
    return y


def _title_page(title: str, story: str, details: Sequence[str], overview: Image.Image | None) -> Image.Image:
    page = Image.new("RGB", PAGE_SIZE, "white")
    draw = ImageDraw.Draw(page)
    width = PAGE_SIZE[0] - 2 * _PAGE_MARGIN
    y = _text_block(draw, (_PAGE_MARGIN, _PAGE_MARGIN), title, _font(54, bold=True), width, _INK, max_lines=2)
    y = _text_block(draw, (_PAGE_MARGIN, y + 30), story, _font(26), width, _INK, max_lines=14)
    y += 20
    for detail in details:
        y = _text_block(draw, (_PAGE_MARGIN, y), detail, _font(20), width, _MUTED, max_lines=2)
    bottom = PAGE_SIZE[1] - _PAGE_MARGIN
    if overview is not None and bottom - (y + 40) > 300:
        thumb = overview.copy()
        thumb.thumbnail((width, bottom - (y + 40)))
        page.paste(thumb, (_PAGE_MARGIN + (width - thumb.width) // 2, y + 40))
    return page


def _frame_pages(
    frames: Sequence[Image.Image], scenes: Sequence[common_pb2.Scene], notes: Sequence[str], per_page: int = 2
) -> list[Image.Image]:
    width = PAGE_SIZE[0] - 2 * _PAGE_MARGIN
    slot = (PAGE_SIZE[1] - 2 * _PAGE_MARGIN) // per_page
    image_box = (width, slot - 230)
    pages = []
    for start in range(0, len(frames), per_page):
        page = Image.new("RGB", PAGE_SIZE, "white")
        draw = ImageDraw.Draw(page)
        for offset in range(min(per_page, len(frames) - start)):
            index = start + offset
            top = _PAGE_MARGIN + offset * slot
            thumb = frames[index].convert("RGB").copy()
            thumb.thumbnail(image_box)
            x = _PAGE_MARGIN + (width - thumb.width) // 2
            page.paste(thumb, (x, top))
            draw.rectangle((x - 1, top - 1, x + thumb.width, top + thumb.height), outline=(60, 60, 60))
            scene = scenes[index]
            heading = " · ".join(part for part in (f"Frame {scene.frame}", scene.camera, scene.mood) if part)
            y = _text_block(draw, (_PAGE_MARGIN, top + thumb.height + 16), heading, _font(26, True), width, _INK, 1)
            y = _text_block(draw, (_PAGE_MARGIN, y), scene.description, _font(22), width, _INK, max_lines=3)
            place = " · ".join(part for part in (scene.setting, scene.lighting) if part)
            note = " · ".join(part for part in (place, notes[index] if index < len(notes) else "") if part)
            _text_block(draw, (_PAGE_MARGIN, y), note, _font(18), width, _MUTED, max_lines=2)
        pages.append(page)
    return pages


def _number_pages(pages: Sequence[Image.Image]) -> None:
    font = _font(16)
    for number, page in enumerate(pages, start=1):
        label = f"{number} / {len(pages)}"
        draw = ImageDraw.Draw(page)
        x = PAGE_SIZE[0] - _PAGE_MARGIN - int(draw.textlength(label, font=font))
        draw.text((x, PAGE_SIZE[1] - _PAGE_MARGIN // 2), label, fill=_MUTED, font=font)


def storyboard_pdf(
    frames: Sequence[Image.Image],
    scenes: Sequence[common_pb2.Scene],
    *,
    title: str = "Storyboard",
    story: str = "",
    details: Sequence[str] = (),
    notes: Sequence[str] = (),
) -> bytes:
    """The storyboard as a printable A4 PDF: a title page (title, story, details and the contact sheet), then two
    frames a page, each with its shot, description, setting and a note (e.g. seed and scores)."""
    if not frames or len(frames) != len(scenes):
        raise ValueError("a storyboard PDF needs one scene per frame, and at least one frame")
    overview = contact_sheet(frames, [caption(scene) for scene in scenes])
    pages = [_title_page(title, story, details, overview), *_frame_pages(frames, scenes, notes)]
    _number_pages(pages)
    buffer = io.BytesIO()
    pages[0].save(
        buffer,
        format="PDF",
        save_all=True,
        append_images=pages[1:],
        resolution=PDF_RESOLUTION,
        title=title,
        subject=story[:200],
        author="Storyboard",
        creator="Storyboard",
        creationDate=time.gmtime(),
    )
    return buffer.getvalue()


def write_pdf(
    folder: Path,
    frames: Sequence[Image.Image],
    scenes: Sequence[common_pb2.Scene],
    **text: Any,
) -> str:
    """Write storyboard.pdf (see ``storyboard_pdf`` for ``text``: title, story, details, notes); returns its name."""
    write_bytes_atomic(folder / PDF, storyboard_pdf(frames, scenes, **text))
    return PDF
