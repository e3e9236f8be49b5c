"""Collects a storyboard's events into its files, so a client writes the same folder the gateway writes."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from storyboard import outputs
from storyboard.v1 import common_pb2, storyboards_pb2


@dataclass
class StoryboardResult:
    """What a client has learned of one storyboard from its events."""

    storyboard_id: str = ""
    plan: common_pb2.Plan | None = None
    final: storyboards_pb2.Storyboard | None = None
    failure: storyboards_pb2.Failed | None = None
    attempts: dict[tuple[int, int], bytes] = field(default_factory=dict)  # (frame, seed) -> encoded image

    def add(self, event: storyboards_pb2.StoryboardEvent) -> None:
        self.storyboard_id = event.storyboard_id
        kind = event.WhichOneof("event")
        if kind == "plan_ready":
            self.plan = event.plan_ready.plan
        elif kind == "frame_rendered":
            rendered = event.frame_rendered
            self.attempts[(rendered.frame, rendered.seed)] = rendered.image.data
        elif kind == "completed":
            self.final = event.completed.storyboard
        elif kind == "failed":
            self.failure = event.failed

    def kept_frames(self) -> dict[int, bytes]:
        """Each frame's kept attempt (the one whose seed the final storyboard records)."""
        if self.final is None:
            return {}
        return {
            f.frame: self.attempts[(f.frame, f.seed)] for f in self.final.frames if (f.frame, f.seed) in self.attempts
        }

    def save(self, folder: Path) -> list[str]:
        """Write scene_breakdown.json, sdxl_prompts.json, frame_NNN.png and storyboard_grid.png to ``folder``."""
        if self.plan is None:
            raise ValueError("no plan was received; nothing to save")
        written = outputs.write_plan_files(folder, self.plan)
        frames = self.kept_frames()
        images = []
        for number, data in sorted(frames.items()):
            outputs.write_bytes_atomic(folder / outputs.frame_file_name(number), data)
            written.append(outputs.frame_file_name(number))
            images.append(Image.open(io.BytesIO(data)).convert("RGB"))
        if images and len(frames) == len(self.plan.scenes):
            written.append(outputs.write_grid(folder, images, self.plan.scenes))
        return written
