"""Checking a ScoreRequest field by field and turning it into a ``ScoreJob``.

Every problem is an InvalidArgument naming the field (``frames[3]: is 25000000 bytes; ...``); nothing is silently
corrected. Whether each image decodes is checked later, and only for images not already in the embedding cache
(a cached hash means the very same bytes decoded before); so is whether an image named by its SHA-256 alone is one
the validator has.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from services.validator.embeddings import content_key
from services.validator.scoring import ReferencePolicy, Thresholds, strip_trigger_tokens
from services.validator.settings import ScoreLimits
from storyboard.v1 import common_pb2
from storyboard_common.errors import InvalidArgument
from storyboard_common.v1 import validator_pb2
from storyboard_common.validation import check_text

POLICY_FROM_PROTO = {
    validator_pb2.REFERENCE_POLICY_REFERENCE_IMAGES: ReferencePolicy.REFERENCE_IMAGES,
    validator_pb2.REFERENCE_POLICY_FIRST_FRAME: ReferencePolicy.FIRST_FRAME,
    validator_pb2.REFERENCE_POLICY_CENTROID: ReferencePolicy.CENTROID,
}
POLICY_TO_PROTO = {policy: value for value, policy in POLICY_FROM_PROTO.items()}
MAX_TRIGGER_TOKENS = 64
MAX_TRIGGER_TOKEN_CHARS = 100
SHA256_BYTES = 32


@dataclass(frozen=True)
class EncodedImage:
    """An image as received: its bytes, their content hash and the request field it came from. ``data`` is empty
    for an image the request names by its SHA-256 alone."""

    field: str
    data: bytes
    key: str


@dataclass(frozen=True)
class CharacterJob:
    """A character's reference pictures and the 0-based indexes of the frames that show it."""

    trigger_token: str
    pictures: list[EncodedImage]
    frames: tuple[int, ...]


@dataclass(frozen=True)
class ScoreJob:
    """A checked Score request. ``prompts`` has one entry per frame, trigger tokens removed; "" means no prompt."""

    frames: list[EncodedImage]
    references: list[EncodedImage]
    prompts: list[str]
    policy: ReferencePolicy
    thresholds: Thresholds
    characters: list[CharacterJob]


def parse_score_request(
    request: validator_pb2.ScoreRequest,
    limits: ScoreLimits,
    default_policy: ReferencePolicy,
    default_thresholds: Thresholds,
) -> ScoreJob:
    """The job ``request`` asks for; InvalidArgument naming the first offending field."""
    if not request.frames:
        raise InvalidArgument("frames", "must hold at least one frame")
    if len(request.frames) > limits.max_frames:
        raise InvalidArgument("frames", f"holds {len(request.frames)} frames; the limit is {limits.max_frames}")
    if len(request.references) > limits.max_references:
        raise InvalidArgument(
            "references", f"holds {len(request.references)} images; the limit is {limits.max_references}"
        )
    frames = _images(request.frames, "frames", limits)
    references = _images(request.references, "references", limits)
    tokens = _trigger_tokens(request.trigger_tokens)
    prompts = _prompts(request.prompts, len(frames), tokens, limits)
    return ScoreJob(
        frames=frames,
        references=references,
        prompts=prompts,
        policy=_policy(request.policy, bool(references), default_policy),
        thresholds=_thresholds(request, default_thresholds),
        characters=_characters(request.characters, len(frames), limits),
    )


def _images(images: Sequence[common_pb2.Image], name: str, limits: ScoreLimits) -> list[EncodedImage]:
    return [_image(image, f"{name}[{index}]", limits) for index, image in enumerate(images)]


def _image(image: common_pb2.Image, field: str, limits: ScoreLimits) -> EncodedImage:
    if image.sha256 and len(image.sha256) != SHA256_BYTES:
        raise InvalidArgument(f"{field}.sha256", f"is {len(image.sha256)} bytes; a SHA-256 is {SHA256_BYTES}")
    if not image.data:
        if not image.sha256:
            raise InvalidArgument(
                field, "is empty; data must hold an encoded PNG, WebP or JPEG image (or sha256 name one sent before)"
            )
        return EncodedImage(field, b"", image.sha256.hex())
    if len(image.data) > limits.max_image_bytes:
        raise InvalidArgument(field, f"is {len(image.data)} bytes; the limit is {limits.max_image_bytes}")
    key = content_key(image.data)
    if image.sha256 and image.sha256.hex() != key:
        raise InvalidArgument(f"{field}.sha256", "does not match the SHA-256 of data")
    return EncodedImage(field, image.data, key)


def _characters(
    characters: Sequence[validator_pb2.CharacterFrames], frame_count: int, limits: ScoreLimits
) -> list[CharacterJob]:
    jobs, seen = [], set()
    for index, entry in enumerate(characters):
        field = f"characters[{index}]"
        token = entry.character.trigger_token
        if not token.strip() or len(token) > MAX_TRIGGER_TOKEN_CHARS:
            raise InvalidArgument(f"{field}.character.trigger_token", "must be a trigger token (1 to 100 characters)")
        if token in seen:
            raise InvalidArgument(f"{field}.character.trigger_token", f"{token!r} is named twice")
        seen.add(token)
        pictures = entry.character.pictures
        if not 1 <= len(pictures) <= limits.max_references:
            raise InvalidArgument(f"{field}.character.pictures", f"must hold 1 to {limits.max_references} pictures")
        for frame in entry.frames:
            if not 0 <= frame < frame_count:
                raise InvalidArgument(f"{field}.frames", f"{frame} is not an index of the {frame_count} frames")
        images = _images(pictures, f"{field}.character.pictures", limits)
        jobs.append(CharacterJob(token, images, tuple(dict.fromkeys(entry.frames))))
    return jobs


def _trigger_tokens(tokens: Sequence[str]) -> list[str]:
    if len(tokens) > MAX_TRIGGER_TOKENS:
        raise InvalidArgument("trigger_tokens", f"holds {len(tokens)} tokens; the limit is {MAX_TRIGGER_TOKENS}")
    for index, token in enumerate(tokens):
        field = f"trigger_tokens[{index}]"
        if not token.strip():
            raise InvalidArgument(field, "must not be empty")
        if len(token) > MAX_TRIGGER_TOKEN_CHARS:
            raise InvalidArgument(field, f"is {len(token)} characters long; the limit is {MAX_TRIGGER_TOKEN_CHARS}")
    return list(tokens)


def _prompts(prompts: Sequence[str], frame_count: int, tokens: list[str], limits: ScoreLimits) -> list[str]:
    if not prompts:
        return [""] * frame_count
    if len(prompts) != frame_count:
        raise InvalidArgument(
            "prompts", f"holds {len(prompts)} prompts for {frame_count} frames; give none or exactly one per frame"
        )
    cleaned = []
    for index, prompt in enumerate(prompts):
        check_text(prompt, limits.max_prompt_chars, f"prompts[{index}]")
        cleaned.append(strip_trigger_tokens(prompt, tokens))
    return cleaned


def _policy(value: int, has_references: bool, default: ReferencePolicy) -> ReferencePolicy:
    if value == validator_pb2.REFERENCE_POLICY_UNSPECIFIED:
        return ReferencePolicy.REFERENCE_IMAGES if has_references else default
    policy = POLICY_FROM_PROTO.get(value)
    if policy is None:
        raise InvalidArgument("policy", f"unknown reference policy {value}")
    if policy is ReferencePolicy.REFERENCE_IMAGES and not has_references:
        raise InvalidArgument("references", "must hold at least one image with REFERENCE_POLICY_REFERENCE_IMAGES")
    return policy


def _thresholds(request: validator_pb2.ScoreRequest, defaults: Thresholds) -> Thresholds:
    """The request's thresholds; a field left at 0 (proto3 cannot tell 0 from unset) takes the default."""
    if not request.HasField("thresholds"):
        return defaults
    given = request.thresholds
    values = {}
    for name in ("consistency", "alignment", "repetition", "reference_consistency"):
        value = getattr(given, name)
        if not math.isfinite(value) or not -1.0 <= value <= 1.0:
            raise InvalidArgument(f"thresholds.{name}", f"must be a cosine similarity between -1 and 1, got {value:g}")
        values[name] = value if value != 0.0 else getattr(defaults, name)
    return Thresholds(**values)
