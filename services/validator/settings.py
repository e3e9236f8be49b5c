"""The validator's settings: which CLIP model scores, on what device, the default thresholds and request limits."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import SettingsConfigDict

from services.validator.scoring import Thresholds
from services.validator.weights import WeightsSource, check_clip_model, check_clip_pretrained, weights_source
from storyboard_common.settings import ServiceSettings


@dataclass(frozen=True)
class ScoreLimits:
    """What one Score request may hold."""

    max_frames: int
    max_references: int
    max_image_bytes: int
    max_image_pixels: int
    max_prompt_chars: int


class ValidatorSettings(ServiceSettings):
    """Settings of the validator service (flags ``--name`` or variables ``STORYBOARD_VALIDATOR_NAME``)."""

    model_config = SettingsConfigDict(env_prefix="STORYBOARD_VALIDATOR_")

    port: int = Field(50054, ge=0, le=65535, description="port to listen on; 0 picks a free one")
    clip_model: str = Field(
        "ViT-L-14",
        description="open_clip model: a built-in name (e.g. ViT-L-14), local-dir:DIR (a folder with "
        "open_clip_config.json and weights) or hf-hub:ORG/REPO (from the local cache only)",
    )
    clip_pretrained: str = Field(
        "",
        description="weights for a built-in model name: an open_clip tag already in the local cache, or a checkpoint "
        "file; empty (with a built-in name) means no weights, and the validator reports NOT_SERVING",
    )
    device: Literal["auto", "cpu", "cuda", "mps"] = Field(
        "auto", description="compute device; 'auto' picks cuda, then mps, then cpu; cuda runs in float16"
    )
    reference_policy: Literal["first_frame", "centroid"] = Field(
        "first_frame",
        description="what consistency is measured against when a request gives no reference images and no policy",
    )
    consistency_threshold: float = Field(
        0.70, ge=-1, le=1, description="lowest cosine similarity to the reference that passes (as in the original)"
    )
    alignment_threshold: float = Field(
        0.20, ge=-1, le=1, description="lowest image-prompt cosine similarity that passes"
    )
    repetition_threshold: float = Field(
        0.95, ge=-1, le=1, description="similarity to another frame above which a frame counts as repetitive"
    )
    reference_consistency_threshold: float | None = Field(
        None,
        ge=-1,
        le=1,
        description="lowest cosine similarity of a frame to each character's reference pictures that passes; unset "
        "means the consistency threshold",
    )
    max_frames: int = Field(32, ge=1, le=1024, description="most frames in one Score request")
    max_references: int = Field(8, ge=0, le=256, description="most reference images in one Score request")
    max_image_bytes: int = Field(
        20 * 1024 * 1024, ge=1024, le=64 * 1024 * 1024, description="largest encoded image, in bytes"
    )
    max_image_pixels: int = Field(
        4096 * 4096, ge=64 * 64, le=16384 * 16384, description="largest image, in pixels (width times height)"
    )
    max_prompt_chars: int = Field(2000, ge=1, le=100_000, description="longest prompt, in characters")
    embedding_cache_size: int = Field(
        4096,
        ge=0,
        le=1_000_000,
        description="image embeddings kept, keyed by a hash of the image bytes (and as many prompt embeddings); "
        "0 disables the cache",
    )

    # A missing checkpoint file or local-dir folder fails here, at start, with its message.
    preprocess_workers: int = Field(
        0,
        ge=0,
        le=64,
        description="threads that decode and resize a call's images side by side; 0 means min(8, CPU count)",
    )

    @field_validator("clip_model")
    @classmethod
    def _clip_model_can_be_found(cls, value: str) -> str:
        return check_clip_model(value)

    @field_validator("clip_pretrained")
    @classmethod
    def _clip_pretrained_can_be_found(cls, value: str, info: ValidationInfo) -> str:
        if "clip_model" not in info.data:
            return value.strip()  # clip_model itself failed; its own message says why
        return check_clip_pretrained(info.data["clip_model"], value)

    def weights(self) -> WeightsSource:
        """Where the CLIP weights come from."""
        return weights_source(self.clip_model, self.clip_pretrained)

    def preprocess_threads(self) -> int:
        """How many threads decode images: the setting, or min(8, CPU count) for 0."""
        return self.preprocess_workers or min(8, os.cpu_count() or 1)

    def thresholds(self) -> Thresholds:
        """The default thresholds these settings describe."""
        reference = self.reference_consistency_threshold
        return Thresholds(
            consistency=self.consistency_threshold,
            alignment=self.alignment_threshold,
            repetition=self.repetition_threshold,
            reference_consistency=self.consistency_threshold if reference is None else reference,
        )

    def limits(self) -> ScoreLimits:
        """The request limits these settings describe."""
        return ScoreLimits(
            max_frames=self.max_frames,
            max_references=self.max_references,
            max_image_bytes=self.max_image_bytes,
            max_image_pixels=self.max_image_pixels,
            max_prompt_chars=self.max_prompt_chars,
        )
