"""Collects a storyboard's events into its files, so a client writes the same folder the gateway writes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from storyboard import documents, outputs
from storyboard.v1 import common_pb2, storyboards_pb2


@dataclass
class StoryboardResult:
    """What a client has learned of one storyboard from its events."""

    storyboard_id: str = ""
    plan: common_pb2.Plan | None = None
    final: storyboards_pb2.Storyboard | None = None
    failure: storyboards_pb2.Failed | None = None
    attempts: dict[tuple[int, int], bytes] = field(default_factory=dict)  # (frame, seed) -> encoded image
    history: dict[tuple[int, int], outputs.AttemptInfo] = field(default_factory=dict)  # (frame, attempt) -> info

    def add(self, event: storyboards_pb2.StoryboardEvent) -> None:
        self.storyboard_id = event.storyboard_id
        kind = event.WhichOneof("event")
        if kind == "plan_ready":
            self.plan = event.plan_ready.plan
        elif kind == "frame_rendered":
            self._rendered(event.frame_rendered)
        elif kind == "frame_validated":
            self._validated(event.frame_validated)
        elif kind == "completed":
            self.final = event.completed.storyboard
        elif kind == "failed":
            self.failure = event.failed

    def _rendered(self, rendered: storyboards_pb2.FrameRendered) -> None:
        self.attempts[(rendered.frame, rendered.seed)] = rendered.image.data
        scenes = self.plan.scenes if self.plan is not None else []
        prompt = scenes[rendered.frame - 1].prompt if 0 < rendered.frame <= len(scenes) else ""
        self.history[(rendered.frame, rendered.attempt)] = outputs.AttemptInfo(
            frame=rendered.frame, attempt=rendered.attempt, seed=rendered.seed, prompt=prompt, file="",
            backend=rendered.backend, timings=rendered.timings,
        )  # fmt: skip

    def _validated(self, validated: storyboards_pb2.FrameValidated) -> None:
        info = self.history.get((validated.frame, validated.attempt))
        if info is None:
            return
        info.validated = True
        info.verdict, info.reason = validated.verdict, validated.reason
        info.score = validated.score if validated.HasField("score") else None

    def kept_frames(self) -> dict[int, bytes]:
        """Each frame's kept attempt (the one whose seed the final storyboard records)."""
        if self.final is None:
            return {}
        return {
            f.frame: self.attempts[(f.frame, f.seed)] for f in self.final.frames if (f.frame, f.seed) in self.attempts
        }

    def save(self, folder: outputs.StrPath) -> list[str]:
        """Write the storyboard's folder (a ``str`` or path-like): scene_breakdown.json, sdxl_prompts.json and
        frame_NNN.png, and once it is complete storyboard_grid.png, frames.json, report.json and storyboard.pdf.
        Returns the file names."""
        folder = Path(folder)
        plan = self.final.plan if self.final is not None and self.final.HasField("plan") else self.plan
        if plan is None:
            raise ValueError("no plan was received; nothing to save")
        written = outputs.write_plan_files(folder, plan)
        frames = self.kept_frames()
        for number, data in sorted(frames.items()):
            outputs.write_bytes_atomic(folder / outputs.frame_file_name(number), data)
            written.append(outputs.frame_file_name(number))
        if self.final is None or not frames or len(frames) != len(plan.scenes):
            return written
        attempts = list(self.history.values())
        written.append(outputs.write_frames_metadata(folder, plan, self.final.frames, attempts))
        written.append(outputs.write_report(folder, outputs.storyboard_report(self.final, attempts)))
        ordered = [frames[scene.frame] for scene in plan.scenes]
        written.extend(documents.write_documents(folder, plan, ordered, documents.document_text(self.final, attempts)))
        return written
