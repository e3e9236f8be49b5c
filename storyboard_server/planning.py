"""Planning a story in this process, for ``storyboard plan`` without a gateway: the planner service's own planning
(the offline planner, or the LLM when an API key is set), with the files a storyboard's folder holds for the plan."""

from __future__ import annotations

import os
from collections.abc import Sequence

from gateway import outputs
from services.planner.planning import plan_story
from services.planner.settings import API_KEY_ENV, PlannerSettings
from storyboard.v1 import common_pb2
from storyboard_common.errors import ServiceError
from storyboard_server import registry

PLAN_TIMEOUT_SECONDS = 120.0


def plan_with_files(
    story: str,
    num_frames: int | None = None,
    *,
    characters: Sequence[str] = (),
    temperature: float | None = None,
    characters_file: str | os.PathLike[str] | None = None,
    api_key: str | None = None,
) -> tuple[common_pb2.Plan, dict[str, bytes]]:
    """The plan for ``story`` and its files by name (scene_breakdown.json, sdxl_prompts.json). Any failure is a
    ValueError whose message is one line a user can act on."""
    if api_key:
        os.environ[API_KEY_ENV] = api_key  # read by the planner's settings; never printed
    try:
        settings = PlannerSettings(characters_file=registry.characters_file(characters_file))
        plan = plan_story(story, num_frames, temperature=temperature, characters=list(characters),
                          settings=settings, timeout_seconds=PLAN_TIMEOUT_SECONDS)  # fmt: skip
    except ServiceError as error:
        raise ValueError(f"{error.code.name}: {error.message}") from None
    except ValueError as error:  # the settings: a missing registry file, say
        raise ValueError(str(error).splitlines()[-1].strip()) from None
    return plan, outputs.plan_files(plan)
