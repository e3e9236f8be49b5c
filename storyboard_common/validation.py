"""Checks of request fields shared by the services that receive them, so that every edge says the same thing.

Each check raises ``InvalidArgument`` naming the field; none of them silently corrects the input.
"""

from __future__ import annotations

import math
import unicodedata

from storyboard.v1 import common_pb2
from storyboard_common.errors import InvalidArgument

MAX_STORY_CHARS = 4000
MIN_FRAMES, MAX_FRAMES = 6, 10
MAX_SEED = 2**63 - 1
MAX_SCENE_TEXT_CHARS = 1000  # a description, prompt or other field of one scene of a plan
# How long a scene's frame is held in the animatic when its plan does not say, and the longest it may ask for: a shot
# held longer than a minute is a mistake in a storyboard, not a choice.
DEFAULT_SHOT_SECONDS, MAX_SHOT_SECONDS = 2.0, 60.0
_SCENE_TEXT_FIELDS = ("camera", "mood", "setting", "lighting", "prompt", "prompt_2")


def check_text(text: str, max_chars: int, field: str, *, required: bool = False) -> str:
    """``text`` unchanged if it is within ``max_chars``, has no control characters but newline and tab, and (when
    ``required``) is not blank."""
    if required and not text.strip():
        raise InvalidArgument(field, "must not be empty")
    if len(text) > max_chars:
        raise InvalidArgument(field, f"is {len(text)} characters long; the limit is {max_chars}")
    for char in text:
        if unicodedata.category(char) == "Cc" and char not in "\n\t\r":
            raise InvalidArgument(field, f"contains the control character U+{ord(char):04X}")
    return text


def check_story(story: str, field: str = "story") -> str:
    """The story with surrounding whitespace removed; rejects empty, over-long or control-character stories."""
    return check_text(story.strip(), MAX_STORY_CHARS, field, required=True)


def check_num_frames(num_frames: int, field: str = "num_frames") -> int:
    if not MIN_FRAMES <= num_frames <= MAX_FRAMES:
        raise InvalidArgument(field, f"must be between {MIN_FRAMES} and {MAX_FRAMES}, got {num_frames}")
    return num_frames


def check_seed(seed: int, field: str = "seed") -> int:
    if not 0 <= seed <= MAX_SEED:
        raise InvalidArgument(field, f"must be between 0 and 2^63-1, got {seed}")
    return seed


def check_range(value: float, low: float, high: float, field: str) -> float:
    """A finite number within [low, high]."""
    if not math.isfinite(value) or not low <= value <= high:
        raise InvalidArgument(field, f"must be between {low:g} and {high:g}, got {value:g}")
    return value


def check_image_size(value: int, low: int, high: int, field: str) -> int:
    if value % 8 or not low <= value <= high:
        raise InvalidArgument(field, f"must be a multiple of 8 between {low} and {high}, got {value}")
    return value


def check_plan_scenes(plan: common_pb2.Plan, field: str = "plan") -> None:
    """A plan a caller wrote can be drawn: 6 to 10 scenes, each with a description, no field over-long or with
    control characters, each held in the animatic for 0 (the default) to MAX_SHOT_SECONDS seconds. What makes a plan
    weak rather than impossible (an empty shot type, a broken rule) is the planner's to warn of, not a reason to
    refuse it."""
    count = len(plan.scenes)
    if not MIN_FRAMES <= count <= MAX_FRAMES:
        raise InvalidArgument(f"{field}.scenes", f"has {count} scenes; a storyboard has {MIN_FRAMES} to {MAX_FRAMES}")
    for index, scene in enumerate(plan.scenes):
        scene_field = f"{field}.scenes[{index}]"
        check_text(scene.description, MAX_SCENE_TEXT_CHARS, f"{scene_field}.description", required=True)
        if not any(char.isalpha() for char in scene.description):
            raise InvalidArgument(f"{scene_field}.description", "has no words to draw a frame from")
        for name in _SCENE_TEXT_FIELDS:
            check_text(getattr(scene, name), MAX_SCENE_TEXT_CHARS, f"{scene_field}.{name}")
        check_range(scene.duration_seconds, 0.0, MAX_SHOT_SECONDS, f"{scene_field}.duration_seconds")
