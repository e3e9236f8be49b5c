"""Checking a RenderRequest field by field and turning it into validated ``FrameSpec``s.

Every problem is an InvalidArgument naming the field (``frames[2].width: ...``); nothing is silently corrected.
Unknown adapters are NOT_FOUND, checked only once every field is well-formed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from services.renderer.adapters import AdapterCatalog, check_adapter_name
from services.renderer.backend import AdapterWeight, CharacterReference, FrameSpec, ReferencePicture, SceneHints
from services.renderer.settings import RenderLimits
from storyboard.v1 import common_pb2
from storyboard_common import images
from storyboard_common.errors import InvalidArgument, NotFound
from storyboard_common.v1 import renderer_pb2
from storyboard_common.validation import check_image_size, check_range, check_seed, check_text

FORMAT_NAMES = {
    common_pb2.IMAGE_FORMAT_PNG: "PNG",
    common_pb2.IMAGE_FORMAT_WEBP: "WEBP",
    common_pb2.IMAGE_FORMAT_JPEG: "JPEG",
}
MAX_ADAPTER_WEIGHT = 10.0
MAX_ADAPTERS_PER_FRAME = 8
SCENE_TEXT_FIELDS = ("description", "camera", "mood", "setting", "lighting")
MAX_CHARACTERS_PER_SCENE, MAX_TRIGGER_TOKEN_CHARS = 16, 200
MAX_PROGRESS_INTERVAL = 60.0
MAX_PICTURES_PER_CHARACTER = 8


@dataclass(frozen=True)
class RenderJob:
    """A validated request: its frames, and how finished frames are encoded."""

    frames: list[FrameSpec]
    image_format: str
    quality: int
    progress_interval: float = 0.0  # least seconds between two progress messages of a frame; 0: every step


def _check_steps(steps: int, limits: RenderLimits, field: str) -> int:
    if not 1 <= steps <= limits.max_steps:
        raise InvalidArgument(field, f"must be between 1 and {limits.max_steps}, got {steps}")
    return steps


def _adapters(frame: renderer_pb2.FrameSpec, field: str) -> tuple[AdapterWeight, ...]:
    if len(frame.adapters) > MAX_ADAPTERS_PER_FRAME:
        raise InvalidArgument(f"{field}.adapters", f"at most {MAX_ADAPTERS_PER_FRAME}, got {len(frame.adapters)}")
    seen: set[str] = set()
    adapters = []
    for j, ref in enumerate(frame.adapters):
        name = check_adapter_name(ref.name, f"{field}.adapters[{j}].name")
        if name in seen:
            raise InvalidArgument(f"{field}.adapters[{j}].name", f"{name!r} is listed twice")
        seen.add(name)
        weight = check_range(ref.weight, -MAX_ADAPTER_WEIGHT, MAX_ADAPTER_WEIGHT, f"{field}.adapters[{j}].weight")
        adapters.append(AdapterWeight(name, float(weight)))
    return tuple(adapters)


def _scene(frame: renderer_pb2.FrameSpec, limits: RenderLimits, field: str) -> SceneHints | None:
    if not frame.HasField("scene"):
        return None
    texts = {
        name: check_text(getattr(frame.scene, name), limits.max_prompt_chars, f"{field}.scene.{name}")
        for name in SCENE_TEXT_FIELDS
    }
    tokens = frame.scene.trigger_tokens
    if len(tokens) > MAX_CHARACTERS_PER_SCENE:
        raise InvalidArgument(f"{field}.scene.trigger_tokens", f"at most {MAX_CHARACTERS_PER_SCENE}, got {len(tokens)}")
    characters = tuple(
        check_text(token, MAX_TRIGGER_TOKEN_CHARS, f"{field}.scene.trigger_tokens[{j}]", required=True)
        for j, token in enumerate(tokens)
    )
    return SceneHints(**texts, characters=characters)


class _PictureReader:
    """Decodes a request's reference pictures, each distinct picture once (a character's pictures usually come
    with every frame that shows it)."""

    def __init__(self) -> None:
        self._decoded: dict[str, ReferencePicture] = {}

    def read(self, picture: common_pb2.Image, field: str) -> ReferencePicture:
        digest = hashlib.sha256(picture.data).hexdigest()
        if digest not in self._decoded:
            self._decoded[digest] = ReferencePicture(digest, images.decode(picture.data, field))
        return self._decoded[digest]


def _references(
    frame: renderer_pb2.FrameSpec, field: str, reader: _PictureReader | None
) -> tuple[CharacterReference, ...]:
    """The frame's characters' reference pictures, decoded; none when the backend does not apply them (``reader``
    None). A character sent without pictures conditions nothing and is left out."""
    if reader is None:
        return ()
    if len(frame.references) > MAX_CHARACTERS_PER_SCENE:
        raise InvalidArgument(f"{field}.references", f"at most {MAX_CHARACTERS_PER_SCENE}, got {len(frame.references)}")
    references = []
    for j, character in enumerate(frame.references):
        where = f"{field}.references[{j}]"
        token = check_text(character.trigger_token, MAX_TRIGGER_TOKEN_CHARS, f"{where}.trigger_token")
        scale = check_range(character.scale, 0.0, 1.0, f"{where}.scale")
        if len(character.pictures) > MAX_PICTURES_PER_CHARACTER:
            raise InvalidArgument(
                f"{where}.pictures", f"at most {MAX_PICTURES_PER_CHARACTER}, got {len(character.pictures)}"
            )
        pictures = tuple(reader.read(picture, f"{where}.pictures[{k}]") for k, picture in enumerate(character.pictures))
        if pictures:
            references.append(CharacterReference(token, pictures, float(scale)))
    return tuple(references)


def _frame_spec(
    frame: renderer_pb2.FrameSpec, limits: RenderLimits, field: str, reader: _PictureReader | None
) -> FrameSpec:
    if frame.frame < 1:
        raise InvalidArgument(f"{field}.frame", f"must be 1 or more, got {frame.frame}")
    chars = limits.max_prompt_chars
    guidance = frame.guidance_scale
    return FrameSpec(
        frame=frame.frame,
        prompt=check_text(frame.prompt, chars, f"{field}.prompt", required=True),
        prompt_2=check_text(frame.prompt_2, chars, f"{field}.prompt_2"),
        negative_prompt=check_text(frame.negative_prompt, chars, f"{field}.negative_prompt"),
        seed=check_seed(frame.seed, f"{field}.seed"),
        width=check_image_size(frame.width, limits.min_size, limits.max_size, f"{field}.width"),
        height=check_image_size(frame.height, limits.min_size, limits.max_size, f"{field}.height"),
        steps=_check_steps(frame.steps, limits, f"{field}.steps"),
        guidance_scale=check_range(guidance, 0.0, limits.max_guidance_scale, f"{field}.guidance_scale"),
        adapters=_adapters(frame, field),
        scene=_scene(frame, limits, field),
        deterministic=frame.deterministic,
        references=_references(frame, field, reader),
    )


def _image_format(request: renderer_pb2.RenderRequest, default_format: str) -> str:
    if request.format == common_pb2.IMAGE_FORMAT_UNSPECIFIED:
        return default_format.upper()
    if request.format not in FORMAT_NAMES:
        raise InvalidArgument("format", f"unknown image format {request.format}")
    return FORMAT_NAMES[request.format]


def _require_adapters(frames: list[FrameSpec], catalog: AdapterCatalog, backend_applies_adapters: bool) -> None:
    """NotFound for the first adapter the folder lacks. Without a folder, a backend that ignores adapters (sketch)
    accepts any well-formed name, so a preview works with the same requests as a real render."""
    if not catalog.configured and not backend_applies_adapters:
        return
    for i, frame in enumerate(frames):
        for j, adapter in enumerate(frame.adapters):
            try:
                catalog.path_for(adapter.name)
            except NotFound as error:
                raise NotFound(f"frames[{i}].adapters[{j}].name: {error.message}") from None


def parse_render_request(
    request: renderer_pb2.RenderRequest,
    limits: RenderLimits,
    catalog: AdapterCatalog,
    *,
    backend_applies_adapters: bool,
    backend_applies_references: bool = False,
    default_format: str,
    default_quality: int,
) -> RenderJob:
    """The request's frames as validated FrameSpecs, with the image format and quality to encode them in. Reference
    pictures are decoded (and checked) only for a backend that applies them; others ignore them, as the contract
    says."""
    if not request.frames:
        raise InvalidArgument("frames", "must not be empty")
    if len(request.frames) > limits.max_frames_per_request:
        raise InvalidArgument(
            "frames", f"at most {limits.max_frames_per_request} frames per request, got {len(request.frames)}"
        )
    image_format = _image_format(request, default_format)
    if not 0 <= request.quality <= 100:
        raise InvalidArgument(
            "quality", f"must be between 0 and 100 (0: the renderer's default), got {request.quality}"
        )
    frames: list[FrameSpec] = []
    first_index_of: dict[int, int] = {}
    reader = _PictureReader() if backend_applies_references else None
    for i, frame in enumerate(request.frames):
        spec = _frame_spec(frame, limits, f"frames[{i}]", reader)
        if spec.frame in first_index_of:
            raise InvalidArgument(
                f"frames[{i}].frame", f"frame {spec.frame} is already used by frames[{first_index_of[spec.frame]}]"
            )
        first_index_of[spec.frame] = i
        frames.append(spec)
    _require_adapters(frames, catalog, backend_applies_adapters)
    interval = check_range(request.progress_interval_seconds, 0, MAX_PROGRESS_INTERVAL, "progress_interval_seconds")
    return RenderJob(frames, image_format, request.quality or default_quality, interval)
