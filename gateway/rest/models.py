"""The REST bridge's bodies as JSON Schema (via pydantic), so that its OpenAPI document describes every request and
response. They follow the proto3 JSON mapping of storyboard.v1 with the proto field names: 64-bit integers in
responses are strings, enums are their names, timestamps RFC 3339, bytes base64; fields at their default are left out.

Requests are checked against these models first (a wrong type is a 400 naming the field), then turned into the proto
messages that the gRPC face receives too, so that both faces apply the very same edge checks.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.references import MAX_PICTURE_BYTES, MAX_PICTURES, MAX_SIDE, MIN_SIDE
from gateway.spec import (
    ASPECT_SIZES,
    MAX_GUIDANCE,
    MAX_NAMES,
    MAX_PROMPT_CHARS,
    MAX_SIZE,
    MAX_STEPS,
    MIN_SIZE,
    NAME_PATTERN,
)
from storyboard.v1 import common_pb2
from storyboard.v1 import storyboards_pb2 as sb
from storyboard_common.validation import (
    DEFAULT_SHOT_SECONDS,
    MAX_FRAMES,
    MAX_SCENE_TEXT_CHARS,
    MAX_SEED,
    MAX_SHOT_SECONDS,
    MAX_STORY_CHARS,
    MIN_FRAMES,
)

StoryboardStateName = Literal[tuple(sb.StoryboardState.keys())]  # type: ignore[valid-type]
VerdictName = Literal[tuple(common_pb2.Verdict.keys())]  # type: ignore[valid-type]
Int64 = str  # the proto3 JSON mapping writes 64-bit integers as strings


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Response(BaseModel):
    model_config = ConfigDict(extra="allow")


# -- requests -----------------------------------------------------------------------------------------------------


def _documented(low: float | None = None, high: float | None = None, **schema: Any) -> Any:
    """A field whose limits are documented in the schema but checked by the edge checks both faces share, so
    that REST and gRPC reject a value with the same words."""
    if low is not None:
        schema["minimum"] = low
    if high is not None:
        schema["maximum"] = high
    description = schema.pop("description", None)
    default = schema.pop("default", None)
    return Field(default, description=description, json_schema_extra=schema or None)


class AdapterRefIn(_Request):
    name: str = Field(
        description="the adapter's name in the renderers' adapters folder (see their Info)",
        json_schema_extra={"pattern": NAME_PATTERN},
    )
    weight: float | None = _documented(
        -4.0, 4.0, description="scale: 1.0 is full strength; 0 (the default, as in the proto) changes nothing"
    )


def _scene_text(description: str, required: bool = False) -> Any:
    extra: dict[str, Any] = {"maxLength": MAX_SCENE_TEXT_CHARS}
    if required:
        extra |= {"minLength": 1, "pattern": r"\S"}
    return Field(... if required else "", description=description, json_schema_extra=extra)


class SceneIn(_Request):
    """One frame of a plan a caller gives."""

    frame: int | None = Field(None, description="ignored: frames are numbered in order")
    description: str = _scene_text("what happens in the frame, in plain words", required=True)
    camera: str = _scene_text("shot type, e.g. 'wide shot'")
    mood: str = _scene_text("mood, e.g. 'adventurous'")
    setting: str = _scene_text("where it takes place")
    lighting: str = _scene_text("lighting or time of day")
    prompt: str = _scene_text("the SDXL prompt, rendered as written; empty: the planner writes it from the scene")
    prompt_2: str = _scene_text("a prompt for SDXL's second text encoder; empty: the same as prompt")
    trigger_tokens: list[str] = Field(
        default_factory=list, description="trigger tokens of the registered characters the frame shows"
    )
    duration_seconds: float = _documented(
        0.0, MAX_SHOT_SECONDS, default=0.0,
        description=f"how long the frame is held in the animatic, in seconds; 0: {DEFAULT_SHOT_SECONDS:g}",
    )  # fmt: skip
    prompt_tokens: int | None = Field(None, description="ignored: the planner counts the prompt's CLIP tokens")


class CharacterRefIn(_Request):
    """A character a plan names (as scene_breakdown.json lists them)."""

    name: str = ""
    trigger_token: str = ""
    adapter: str = ""
    aliases: list[str] = Field(default_factory=list)


class PlanIn(_Request):
    """A plan to render instead of asking the planner (e.g. one read, edited and approved); it is checked, and what
    is wrong with it comes back as its warnings, never as changes to what was written."""

    story: str = Field("", description="the story it tells; empty: the spec's")
    scenes: list[SceneIn] = Field(
        description=f"{MIN_FRAMES} to {MAX_FRAMES} scenes in frame order",
        json_schema_extra={"minItems": MIN_FRAMES, "maxItems": MAX_FRAMES},
    )
    negative_prompt: str = Field("", description="shared by every frame; empty: the planner's")
    warnings: list[str] = Field(default_factory=list, description="earlier warnings, kept")
    planner: str = Field("", description="who wrote the plan; empty: 'given'")
    characters: list[CharacterRefIn] = Field(
        default_factory=list, description="ignored: the characters are those the scenes' trigger_tokens name"
    )


class PictureIn(_Request):
    """A picture, as the proto3 JSON mapping writes bytes."""

    data: str = Field(
        description=f"the picture's bytes in base64: PNG, JPEG or WebP, at most {MAX_PICTURE_BYTES} bytes, "
        f"{MIN_SIDE} to {MAX_SIDE} pixels a side",
        json_schema_extra={"contentEncoding": "base64"},
    )
    mime_type: str = Field("", description="ignored: the bytes say what they are")


class CharacterPicturesIn(_Request):
    """Reference pictures of one registered character, for this storyboard."""

    trigger_token: str = Field(description="the character's trigger token")
    pictures: list[PictureIn] = Field(
        description=f"1 to {MAX_PICTURES} pictures", json_schema_extra={"minItems": 1, "maxItems": MAX_PICTURES}
    )
    scale: float = _documented(
        0.0, 1.0, default=0.0, description="how strongly they condition the frames (IP-Adapter); 0: the default"
    )


class StoryboardSpecIn(_Request):
    """What a user asks for; unset fields take the documented defaults."""

    story: str = Field(
        "",
        description=f"the story, 1 to {MAX_STORY_CHARS} characters, not blank, no control characters; may be empty "
        "with a plan (its story, or else its scenes' descriptions, are used)",
        json_schema_extra={"maxLength": MAX_STORY_CHARS},
    )
    num_frames: int | None = _documented(MIN_FRAMES, MAX_FRAMES, description="frames; unset: the planner chooses")
    base_seed: int | None = _documented(0, MAX_SEED, description="base seed, default 42")
    num_inference_steps: int | None = _documented(1, MAX_STEPS, description="denoising steps, default 40")
    guidance_scale: float | None = _documented(0.0, MAX_GUIDANCE, description="guidance scale, default 7.5")
    width: int | None = _documented(MIN_SIZE, MAX_SIZE, multipleOf=8, description="pixels, default 1024")
    height: int | None = _documented(MIN_SIZE, MAX_SIZE, multipleOf=8, description="pixels, default 1024")
    characters: list[str] = Field(
        default_factory=list,
        description=f"registered characters by name, at most {MAX_NAMES}",
        json_schema_extra={"maxItems": MAX_NAMES, "items": {"type": "string", "pattern": NAME_PATTERN}},
    )
    adapters: list[AdapterRefIn] = Field(
        default_factory=list,
        description=f"extra LoRA adapters applied to every frame, at most {MAX_NAMES}",
        json_schema_extra={"maxItems": MAX_NAMES},
    )
    temperature: float | None = _documented(0.0, 1.0, description="planner sampling temperature, default 0.7")
    deterministic: bool = Field(
        False,
        description="render every frame alone, never batched, so that the same request gives the same pixels on the "
        "same kind of device with the same software (a batched frame can differ by rounding)",
    )
    plan: PlanIn | None = Field(
        None, description="a plan to render as given instead of planning the story; num_frames, when set, must match"
    )
    aspect: str = Field(
        "",
        description="the frames' shape, mapped to a size SDXL was trained at ("
        + ", ".join(f"{name}: {w}x{h}" for name, (w, h) in ASPECT_SIZES.items())
        + "); with width or height, they must be its size",
        json_schema_extra={"enum": ["", *ASPECT_SIZES]},
    )
    negative_prompt: str = Field(
        "",
        description=f"every frame's negative prompt instead of the planner's, at most {MAX_PROMPT_CHARS} characters",
        json_schema_extra={"maxLength": MAX_PROMPT_CHARS},
    )
    character_references: list[CharacterPicturesIn] = Field(
        default_factory=list,
        description="reference pictures for this storyboard, by registered character, besides the registry's",
    )


class CreateBody(_Request):
    spec: StoryboardSpecIn
    idempotency_key: str = Field(
        "",
        description="makes a retried create return the same storyboard (or send the Idempotency-Key header)",
        json_schema_extra={"maxLength": 128},
    )


class PlanBody(_Request):
    spec: StoryboardSpecIn


class RegenerateBody(_Request):
    """A new attempt at one frame of a finished storyboard."""

    seed: int | None = _documented(0, MAX_SEED, description="the seed to render with; unset: a new one")
    prompt: str | None = Field(
        None,
        description=f"a new prompt for the frame, at most {MAX_PROMPT_CHARS} characters; unset: keep it",
        json_schema_extra={"minLength": 1, "maxLength": MAX_PROMPT_CHARS, "pattern": r"\S"},
    )


class KeepAttemptBody(_Request):
    """Which of a frame's attempts to keep."""

    attempt: int = Field(
        description="the attempt's number, as frames.json lists the frame's attempts", json_schema_extra={"minimum": 1}
    )


# -- responses ----------------------------------------------------------------------------------------------------


class AdapterRef(_Response):
    name: str | None = None
    weight: float | None = None


class StoryboardSpec(_Response):
    story: str | None = None
    num_frames: int | None = None
    base_seed: Int64 | None = None
    num_inference_steps: int | None = None
    guidance_scale: float | None = None
    width: int | None = None
    height: int | None = None
    characters: list[str] | None = None
    adapters: list[AdapterRef] | None = None
    temperature: float | None = None
    deterministic: bool | None = None
    plan: Plan | None = None
    aspect: str | None = None
    negative_prompt: str | None = None
    character_references: list[CharacterPictures] | None = None


class Scene(_Response):
    frame: int | None = None
    description: str | None = None
    camera: str | None = None
    mood: str | None = None
    setting: str | None = None
    lighting: str | None = None
    prompt: str | None = None
    prompt_2: str | None = None
    trigger_tokens: list[str] | None = None
    duration_seconds: float | None = None
    prompt_tokens: int | None = Field(None, description="CLIP tokens the prompt takes; SDXL reads the first 77")


class PictureOut(_Response):
    sha256: str | None = Field(None, description="base64")
    mime_type: str | None = None
    width: int | None = None
    height: int | None = None


class CharacterPictures(_Response):
    trigger_token: str | None = None
    pictures: list[PictureOut] | None = None
    scale: float | None = None


class CharacterRef(_Response):
    name: str | None = None
    trigger_token: str | None = None
    adapter: str | None = None
    aliases: list[str] | None = None
    reference_images: int | None = Field(None, description="pictures at /v1/characters/{trigger_token}/references/{n}")
    adapter_weight: float | None = Field(None, description="the weight its LoRA is applied at; unset: 1.0")
    reference_scale: float | None = Field(None, description="how strongly its pictures condition its frames")


class CharactersResponse(_Response):
    characters: list[CharacterRef] | None = None


class Plan(_Response):
    story: str | None = None
    scenes: list[Scene] | None = None
    negative_prompt: str | None = None
    warnings: list[str] | None = None
    planner: str | None = None
    characters: list[CharacterRef] | None = None


class FrameScore(_Response):
    index: int | None = None
    consistency: float | None = None
    alignment: float | None = None
    repetition: float | None = None
    most_similar_index: int | None = None
    verdict: VerdictName | None = None


class FrameResult(_Response):
    frame: int | None = None
    seed: Int64 | None = None
    attempts: int | None = None
    seeds_tried: list[Int64] | None = None
    score: FrameScore | None = None
    rendered: bool | None = None
    verdict: VerdictName | None = None
    file_name: str | None = None


class Storyboard(_Response):
    """A storyboard: request, plan, frames and where its files are."""

    id: str | None = None
    state: StoryboardStateName | None = None
    spec: StoryboardSpec | None = None
    plan: Plan | None = None
    frames: list[FrameResult] | None = None
    output_dir: str | None = None
    error: str | None = None
    create_time: str | None = Field(None, description="RFC 3339")
    update_time: str | None = Field(None, description="RFC 3339")
    last_event_sequence: Int64 | None = Field(None, description="follow the events after this number")
    cancel_requested: bool | None = Field(None, description="a cancel was accepted; the work is stopping")
    queue_position: int | None = Field(None, description="while it waits to start: its place in line (1: next)")


class ListResponse(_Response):
    storyboards: list[Storyboard] | None = None
    next_page_token: str | None = None


class PlanResponse(_Response):
    plan: Plan | None = None


class ErrorDetail(BaseModel):
    code: str = Field(description="the gRPC status code name, e.g. INVALID_ARGUMENT")
    message: str = Field(description="what went wrong; a field error starts with the field's name")


class ErrorBody(BaseModel):
    error: ErrorDetail


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    ready: bool


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "a bad request; the message names the field"},
    401: {"model": ErrorBody, "description": "no API key, or not a valid one"},
    404: {"model": ErrorBody, "description": "no such storyboard (or not yours), or no such file yet"},
    409: {"model": ErrorBody, "description": "the idempotency key was used for another request"},
    429: {"model": ErrorBody, "description": "too many unfinished storyboards for this API key"},
    503: {"model": ErrorBody, "description": "a service the gateway needs is unavailable"},
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The documented error responses of a route."""
    return {code: ERRORS[code] for code in codes}
