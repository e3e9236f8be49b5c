"""The files of a storyboard folder, as the original system wrote them and as the gateway and SDK write them now.

    scene_breakdown.json   the story and its scenes ({frame, description, camera, mood} plus our extras)
    sdxl_prompts.json      an array of prompt strings, one per frame
    frame_001.png ...      the frames
    storyboard_grid.png    a captioned contact sheet of all frames

Every file is written atomically (a temporary file renamed into place), so a reader never sees half a file.
"""

from __future__ import annotations

import io
import json
import math
import os
import tempfile
import textwrap
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from storyboard.v1 import common_pb2

SCENE_BREAKDOWN = "scene_breakdown.json"
SDXL_PROMPTS = "sdxl_prompts.json"
GRID = "storyboard_grid.png"


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
