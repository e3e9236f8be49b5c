"""The storyboard request at the edge: defaults, limits and seeds. Checked before anything is persisted."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Sequence

from storyboard.v1 import common_pb2, storyboards_pb2
from storyboard_common.errors import InvalidArgument
from storyboard_common.validation import (
    MAX_STORY_CHARS,
    check_image_size,
    check_num_frames,
    check_plan_scenes,
    check_range,
    check_seed,
    check_story,
    check_text,
)

DEFAULT_BASE_SEED = 42
DEFAULT_STEPS = 40
DEFAULT_GUIDANCE = 7.5
DEFAULT_SIZE = 1024
DEFAULT_TEMPERATURE = 0.7
MAX_STEPS = 150
MAX_GUIDANCE = 30.0
MIN_SIZE, MAX_SIZE = 256, 2048
MAX_NAMES = 8
MAX_PROMPT_CHARS = 1000
# Sizes SDXL was trained at (its aspect buckets), by the aspect ratio a storyboard asks for.
ASPECT_SIZES = {
    "1:1": (1024, 1024),
    "16:9": (1344, 768),
    "9:16": (768, 1344),
    "4:3": (1152, 896),
    "3:4": (896, 1152),
    "2.39:1": (1536, 640),
}
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 _.'-]{0,63}$"
_NAME = re.compile(NAME_PATTERN)


def _check_name(name: str, field: str) -> None:
    # Names are looked up in registries; they never become paths, but reject path-like ones outright.
    if not _NAME.match(name) or ".." in name:
        raise InvalidArgument(field, f"{name!r} is not a valid name (letters, digits, space, _ . ' -; at most 64)")


def normalized_spec(spec: storyboards_pb2.StoryboardSpec) -> storyboards_pb2.StoryboardSpec:
    """A copy of ``spec`` with every limit checked and every unset default filled in; raises InvalidArgument."""
    out = storyboards_pb2.StoryboardSpec()
    out.CopyFrom(spec)
    if spec.HasField("plan"):
        _check_given_plan(spec, out)
    out.story = check_story(out.story, "spec.story")
    if spec.HasField("num_frames"):
        check_num_frames(spec.num_frames, "spec.num_frames")
    out.base_seed = check_seed(spec.base_seed, "spec.base_seed") if spec.HasField("base_seed") else DEFAULT_BASE_SEED
    out.num_inference_steps = DEFAULT_STEPS
    if spec.HasField("num_inference_steps"):
        out.num_inference_steps = int(check_range(spec.num_inference_steps, 1, MAX_STEPS, "spec.num_inference_steps"))
    out.guidance_scale = DEFAULT_GUIDANCE
    if spec.HasField("guidance_scale"):
        out.guidance_scale = check_range(spec.guidance_scale, 0.0, MAX_GUIDANCE, "spec.guidance_scale")
    for field, default in zip(("width", "height"), _aspect_size(spec), strict=True):
        value = getattr(spec, field) if spec.HasField(field) else default
        setattr(out, field, check_image_size(value, MIN_SIZE, MAX_SIZE, f"spec.{field}"))
    out.negative_prompt = check_text(spec.negative_prompt.strip(), MAX_PROMPT_CHARS, "spec.negative_prompt")
    out.temperature = DEFAULT_TEMPERATURE
    if spec.HasField("temperature"):
        out.temperature = check_range(spec.temperature, 0.0, 1.0, "spec.temperature")
    if len(spec.characters) > MAX_NAMES:
        raise InvalidArgument("spec.characters", f"at most {MAX_NAMES} characters")
    for index, name in enumerate(spec.characters):
        _check_name(name, f"spec.characters[{index}]")
    if len(spec.adapters) > MAX_NAMES:
        raise InvalidArgument("spec.adapters", f"at most {MAX_NAMES} adapters")
    for index, adapter in enumerate(spec.adapters):
        _check_name(adapter.name, f"spec.adapters[{index}].name")
        check_range(adapter.weight, -4.0, 4.0, f"spec.adapters[{index}].weight")
    del out.adapters[:]
    out.adapters.extend(_distinct_adapters(spec.adapters))
    return out


def _aspect_size(spec: storyboards_pb2.StoryboardSpec) -> tuple[int, int]:
    """The size the spec's aspect stands for (the default size without one); a width or height given with an aspect
    must be its."""
    if not spec.aspect:
        return DEFAULT_SIZE, DEFAULT_SIZE
    size = ASPECT_SIZES.get(spec.aspect.strip())
    if size is None:
        raise InvalidArgument("spec.aspect", f"{spec.aspect!r} is not one of {', '.join(ASPECT_SIZES)}")
    for field, value in zip(("width", "height"), size, strict=True):
        if spec.HasField(field) and getattr(spec, field) != value:
            raise InvalidArgument(
                f"spec.{field}", f"is {getattr(spec, field)}, but aspect {spec.aspect} is {size[0]}x{size[1]}; give one"
            )
    return size


def _check_given_plan(spec: storyboards_pb2.StoryboardSpec, out: storyboards_pb2.StoryboardSpec) -> None:
    """A plan to render instead of planning: drawable, its frame count the storyboard's, its characters its own.
    A storyboard without a story of its own takes the plan's, or else its scenes' descriptions."""
    check_plan_scenes(spec.plan, "spec.plan")
    count = len(spec.plan.scenes)
    if spec.HasField("num_frames") and spec.num_frames != count:
        raise InvalidArgument("spec.num_frames", f"is {spec.num_frames}, but the plan has {count} scenes")
    if spec.characters:
        raise InvalidArgument("spec.characters", "must be empty with a plan: its scenes' trigger_tokens name them")
    out.num_frames = count
    if not spec.story.strip():
        told = spec.plan.story.strip() or " ".join(scene.description.strip() for scene in spec.plan.scenes)
        out.story = textwrap.shorten(told, MAX_STORY_CHARS, placeholder=" …")


def _distinct_adapters(adapters: Sequence[common_pb2.AdapterRef]) -> list[common_pb2.AdapterRef]:
    """The adapters with each named once: the same adapter at the same weight twice is one adapter; at two weights
    the request is ambiguous and refused, naming the second."""
    weights: dict[str, float] = {}
    for index, adapter in enumerate(adapters):
        if weights.setdefault(adapter.name, adapter.weight) != adapter.weight:
            raise InvalidArgument(
                f"spec.adapters[{index}].weight",
                f"{adapter.name!r} is listed twice, at {weights[adapter.name]:g} and {adapter.weight:g}; give one",
            )
    return [common_pb2.AdapterRef(name=name, weight=weight) for name, weight in weights.items()]


def check_prompt(prompt: str, field: str = "prompt") -> str:
    """A user's prompt for one frame: the story's rules (not empty, no control characters), at most 1,000 chars."""
    text = check_story(prompt, field)
    if len(text) > MAX_PROMPT_CHARS:
        raise InvalidArgument(field, f"is {len(text)} characters long; the limit is {MAX_PROMPT_CHARS}")
    return text
