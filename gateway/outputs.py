"""The files of a storyboard folder, as the original system wrote them and as the gateway writes them now.

    scene_breakdown.json   the story and its scenes ({frame, description, camera, mood} plus our extras)
    sdxl_prompts.json      an array of prompt strings, one per frame
    frame_001.png ...      the frames
    storyboard_grid.png    a captioned contact sheet of all frames
    frames.json            per-frame metadata: prompt, kept seed, every attempt with its seed, scores and timings
    report.json            the storyboard's summary: consistency (average, min), thresholds, parameters, timings
    storyboard.pdf         the storyboard as a printable document: a title page, then the frames with captions

Every file is written atomically (a temporary file renamed into place), so a reader never sees half a file. The grid
and the PDF are drawn by ``gateway.documents``.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from storyboard.v1 import common_pb2, storyboards_pb2
from storyboard_common.validation import DEFAULT_SHOT_SECONDS

SCENE_BREAKDOWN = "scene_breakdown.json"
SDXL_PROMPTS = "sdxl_prompts.json"
GRID = "storyboard_grid.png"
FRAMES_METADATA = "frames.json"
REPORT = "report.json"
PDF = "storyboard.pdf"

StrPath = str | os.PathLike[str]  # what every function here taking a file or folder accepts


def frame_file_name(frame: int) -> str:
    """``frame_001.png`` for frame 1: the original's naming."""
    return f"frame_{frame:03d}.png"


def write_bytes_atomic(path: StrPath, data: bytes) -> None:
    """Write ``data`` to ``path`` so that the file is either absent, the old one, or whole."""
    path = Path(path)
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


def link_atomic(source: StrPath, path: StrPath) -> None:
    """Make ``path`` the same file as ``source`` (a hard link, renamed into place, so that ``path`` is never partial),
    without reading or writing its bytes; where the filesystem has no hard links, a copy (``write_bytes_atomic``)."""
    source, path = Path(source), Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        os.link(source, tmp)
    except OSError:
        write_bytes_atomic(path, source.read_bytes())
        return
    try:
        os.replace(tmp, path)
    finally:
        # Gone after a rename, except where ``path`` already was ``source`` (a resumed job keeping the same attempt
        # again): rename(2) between two links to one file does nothing, and succeeds.
        tmp.unlink(missing_ok=True)


def json_bytes(value: Any) -> bytes:
    """A JSON file's bytes, as every JSON file of a storyboard folder is written."""
    return (json.dumps(value, indent=2, ensure_ascii=False) + "\n").encode()


def write_json_atomic(path: StrPath, value: Any) -> None:
    write_bytes_atomic(path, json_bytes(value))


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
                "duration_seconds": shot_seconds(scene),
                # Lets `generate --plan` tell a prompt edited by hand (rendered as written) from the planner's, which
                # is written again from the scene when its description or shot was edited.
                "prompt_sha256": hashlib.sha256(scene.prompt.encode()).hexdigest(),
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


def shot_seconds(scene: common_pb2.Scene) -> float:
    """How long the scene's frame is held in the animatic: its own duration, else the default."""
    return round(scene.duration_seconds or DEFAULT_SHOT_SECONDS, 3)


def sdxl_prompts(plan: common_pb2.Plan) -> list[str]:
    """The content of sdxl_prompts.json: one prompt per frame, in frame order."""
    return [scene.prompt for scene in plan.scenes]


def plan_files(plan: common_pb2.Plan, timestamp: datetime | None = None) -> dict[str, bytes]:
    """scene_breakdown.json and sdxl_prompts.json, by name, as a storyboard folder holds them."""
    return {
        SCENE_BREAKDOWN: json_bytes(scene_breakdown(plan, timestamp)),
        SDXL_PROMPTS: json_bytes(sdxl_prompts(plan)),
    }


def write_plan_files(folder: StrPath, plan: common_pb2.Plan, timestamp: datetime | None = None) -> list[str]:
    """Write scene_breakdown.json and sdxl_prompts.json; returns the file names written."""
    files = plan_files(plan, timestamp)
    for name, data in files.items():
        write_bytes_atomic(Path(folder) / name, data)
    return list(files)


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
    scores: dict[str, Any] = {
        "consistency": _rounded(score.consistency),
        "alignment": _rounded(score.alignment),
        "repetition": _rounded(score.repetition),
        "most_similar_frame": frames[similar] if 0 <= similar < len(frames) else None,
    }
    if score.characters:  # cross consistency: to each shown character's reference pictures
        scores["characters"] = {c.trigger_token: _rounded(c.consistency) for c in score.characters}
    return scores


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


def _repeats(score: common_pb2.FrameScore, thresholds: common_pb2.Thresholds | None) -> bool:
    """Whether a frame is nearly the same picture as another. Its verdict names only its first failed check
    (consistency, then alignment, then repetition), so the threshold decides, where it is known."""
    if thresholds is None:
        return score.verdict == common_pb2.VERDICT_REPETITIVE
    return score.repetition > thresholds.repetition


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
            "reference_consistency": _rounded(thresholds.reference_consistency or thresholds.consistency),
        },
        "consistency": consistency,
        "reference_consistency": _reference_consistency(scored, thresholds),
        "alignment": _summary([score.alignment for _, score in scored]),
        "repetition": {
            "max": _rounded(max((score.repetition for _, score in scored), default=0.0)),
            "repetitive_frames": [
                {
                    "frame": frame,
                    "similar_to": _scores(score, numbers)["most_similar_frame"],  # type: ignore[index]
                    "repetition": _rounded(score.repetition),
                }
                for frame, score in scored
                if _repeats(score, thresholds)
            ],
        },
        "verdicts": verdicts,
        "frames": len(storyboard.frames),
        "attempts": len(attempts),
        "retries": max(0, len(attempts) - len(storyboard.frames)),
        "timings": timings,
        "warnings": [*plan.warnings, *notes],
    }


def _reference_consistency(
    scored: Sequence[tuple[int, common_pb2.FrameScore]], thresholds: common_pb2.Thresholds | None
) -> dict[str, Any] | None:
    """Cross consistency, by character: how alike the frames showing it are to its reference pictures (None when no
    character had pictures)."""
    by_character: dict[str, list[tuple[int, float]]] = {}
    for frame, score in scored:
        for character in score.characters:
            by_character.setdefault(character.trigger_token, []).append((frame, character.consistency))
    if not by_character:
        return None
    least = (thresholds.reference_consistency or thresholds.consistency) if thresholds is not None else None
    report = {}
    for token, frames in by_character.items():
        summary = _summary([value for _, value in frames]) or {}
        summary["frames"] = [frame for frame, _ in frames]
        if least is not None:
            summary["frames_below_threshold"] = [frame for frame, value in frames if value < least]
        report[token] = summary
    return report


def write_frames_metadata(
    folder: StrPath,
    plan: common_pb2.Plan,
    frames: Sequence[storyboards_pb2.FrameResult],
    attempts: Iterable[AttemptInfo],
) -> str:
    """Write frames.json; returns its file name."""
    write_json_atomic(Path(folder) / FRAMES_METADATA, frames_metadata(plan, frames, attempts))
    return FRAMES_METADATA


def write_report(folder: StrPath, report: dict[str, Any]) -> str:
    """Write report.json (made by ``storyboard_report``); returns its file name."""
    write_json_atomic(Path(folder) / REPORT, report)
    return REPORT
