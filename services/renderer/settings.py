"""The renderer's settings: which backend draws, on what device, and the limits every request is held to."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import SettingsConfigDict

from storyboard_common.settings import ServiceSettings

# Backends this build can run. A backend that is named in --backend but not listed here fails at start with a clear
# message instead of being silently replaced by another one.
AVAILABLE_BACKENDS = ("sketch",)

# Hard bounds on what an operator may configure; the defaults below are what the issue promises to clients.
SIZE_FLOOR, SIZE_CEILING = 64, 4096
MAX_SEED = 2**63 - 1


@dataclass(frozen=True)
class RenderLimits:
    """The limits a renderer enforces on every request (reported by Info)."""

    min_size: int
    max_size: int
    max_steps: int
    max_guidance_scale: float
    max_prompt_chars: int
    max_frames_per_request: int
    max_seed: int = MAX_SEED


class RendererSettings(ServiceSettings):
    """Settings of the renderer service (flags ``--name`` or variables ``STORYBOARD_RENDERER_NAME``)."""

    model_config = SettingsConfigDict(env_prefix="STORYBOARD_RENDERER_")

    port: int = Field(50053, ge=0, le=65535, description="port to listen on; 0 picks a free one")
    backend: Literal["sketch", "diffusers"] = Field(
        "sketch",
        description="what draws the frames: 'sketch' (CPU layout panels, no weights) or 'diffusers' (SDXL + LoRA)",
    )
    base_model: str = Field(
        "",
        description="the SDXL base model for the diffusers backend: a local folder or a hub id (unused by sketch)",
    )
    adapters_dir: Path | None = Field(
        None, description="folder of LoRA adapters, each addressed by name (a sub-folder or NAME.safetensors)"
    )
    device: Literal["auto", "cpu", "cuda", "mps"] = Field(
        "auto", description="compute device; 'auto' picks cuda, then mps, then cpu (sketch always draws on the CPU)"
    )
    dtype: Literal["auto", "float16", "bfloat16", "float32"] = Field(
        "auto", description="compute dtype; 'auto' is float16 on cuda/mps and float32 on cpu"
    )
    max_batch_size: int = Field(4, ge=1, le=64, description="most frames rendered together in one pipeline call")
    max_queue: int = Field(
        32, ge=1, le=10_000, description="most frames waiting to be rendered; beyond it requests get RESOURCE_EXHAUSTED"
    )
    max_streams: int = Field(
        16,
        ge=1,
        le=1000,
        description="most Render calls open at once (running or waiting); must stay below --max-workers so that "
        "health checks and Info always find a free thread",
    )
    min_size: int = Field(256, ge=SIZE_FLOOR, le=SIZE_CEILING, description="smallest width or height, a multiple of 8")
    max_size: int = Field(2048, ge=SIZE_FLOOR, le=SIZE_CEILING, description="largest width or height, a multiple of 8")
    max_steps: int = Field(150, ge=1, le=1000, description="largest step count a frame may ask for")
    max_guidance_scale: float = Field(30.0, ge=0, le=100, description="largest guidance scale a frame may ask for")
    max_prompt_chars: int = Field(2000, ge=1, le=100_000, description="longest prompt (and scene text), in characters")
    max_frames_per_request: int = Field(16, ge=1, le=1000, description="most frames in one Render request")
    image_format: Literal["png", "webp", "jpeg"] = Field(
        "png", description="format of frames whose request leaves the format unspecified"
    )
    image_quality: int = Field(90, ge=1, le=100, description="quality of lossy formats when a request gives none")

    @field_validator("backend")
    @classmethod
    def _backend_is_built(cls, value: str) -> str:
        if value not in AVAILABLE_BACKENDS:
            raise ValueError(f"the {value} backend is not available in this build yet; use --backend sketch")
        return value

    @field_validator("adapters_dir")
    @classmethod
    def _adapters_dir_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_dir():
            raise ValueError(f"{value} is not an existing folder")
        return value

    @field_validator("min_size", "max_size")
    @classmethod
    def _multiple_of_eight(cls, value: int) -> int:
        if value % 8:
            raise ValueError(f"must be a multiple of 8, got {value}")
        return value

    # Cross-field checks hang on the later field (pydantic validates in declaration order), so that an error names
    # the flag to change instead of the settings as a whole.
    @field_validator("max_size")
    @classmethod
    def _max_size_not_below_min(cls, value: int, info: ValidationInfo) -> int:
        min_size = info.data.get("min_size")
        if min_size is not None and value < min_size:
            raise ValueError(f"{value} is smaller than --min-size {min_size}")
        return value

    @field_validator("max_frames_per_request")
    @classmethod
    def _largest_request_fits_the_queue(cls, value: int, info: ValidationInfo) -> int:
        max_queue = info.data.get("max_queue")
        if max_queue is not None and value > max_queue:
            raise ValueError(f"{value} exceeds --max-queue {max_queue}, so the largest request could never be queued")
        return value

    @field_validator("max_streams")
    @classmethod
    def _streams_leave_threads_free(cls, value: int, info: ValidationInfo) -> int:
        max_workers = info.data.get("max_workers")
        if max_workers is not None and value >= max_workers:
            raise ValueError(
                f"{value} must be below --max-workers {max_workers}, "
                "or open Render streams could take every thread from health checks"
            )
        return value

    def limits(self) -> RenderLimits:
        """The request limits these settings describe."""
        return RenderLimits(
            min_size=self.min_size,
            max_size=self.max_size,
            max_steps=self.max_steps,
            max_guidance_scale=self.max_guidance_scale,
            max_prompt_chars=self.max_prompt_chars,
            max_frames_per_request=self.max_frames_per_request,
        )
