"""A plan to render as given, from the ``scene_breakdown.json`` that ``storyboard plan --output-dir`` writes (edited
by hand or not), its parsed JSON, or a ``Plan`` message.

The file's scenes keep the plan's field names (description, camera, mood, setting, lighting, prompt, prompt_2,
trigger_tokens); its other keys (timestamp, num_frames, frame numbers) are ignored, and the gateway checks the rest.
A scene's prompt edited by hand is rendered as written. One left as the planner wrote it (its ``prompt_sha256``, which
the file records, still matches) is written again from the scene, so that an edited description or shot is what the
frame shows; an empty prompt is written from the scene too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from storyboard.results import StrPath
from storyboard.v1 import common_pb2

PlanLike = common_pb2.Plan | Mapping[str, Any] | StrPath


def as_plan(plan: PlanLike) -> common_pb2.Plan:
    """``plan`` as a Plan message; ValueError naming what is wrong with a file or mapping that is not one."""
    if isinstance(plan, common_pb2.Plan):
        return plan
    if isinstance(plan, Mapping):
        return plan_from_json(plan)
    return read_plan(plan)


def read_plan(path: StrPath) -> common_pb2.Plan:
    """The plan in a scene_breakdown.json file."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: cannot read a plan: {error}") from None
    if not isinstance(data, Mapping):
        raise ValueError(f"{path}: a plan is a JSON object with a list of scenes")
    try:
        return plan_from_json(data)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


def plan_from_json(data: Mapping[str, Any]) -> common_pb2.Plan:
    """A plan from scene_breakdown.json's content (or the proto3 JSON of a Plan)."""
    if not isinstance(data.get("scenes"), list):
        raise ValueError("a plan needs a list of scenes")
    plan = common_pb2.Plan()
    try:
        json_format.ParseDict(data, plan, ignore_unknown_fields=True)
    except json_format.ParseError as error:
        raise ValueError(f"not a plan: {error}") from None
    for scene, written in zip(plan.scenes, data["scenes"], strict=True):
        if isinstance(written, Mapping) and _as_the_planner_wrote_it(scene.prompt, written.get("prompt_sha256")):
            scene.prompt = ""
    return plan


def _as_the_planner_wrote_it(prompt: str, digest: object) -> bool:
    return isinstance(digest, str) and hashlib.sha256(prompt.encode()).hexdigest() == digest
