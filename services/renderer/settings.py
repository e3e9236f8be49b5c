"""The renderer's settings: which backend draws, on what device, and the limits every request is held to."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import SettingsConfigDict

from services.renderer.ip_adapter import check_ip_adapter_folder
from storyboard_common.settings import ServiceSettings

# Backends this build can run. A backend that is named in --backend but not listed here fails at start with a clear
# message instead of being silently replaced by another one.
AVAILABLE_BACKENDS = ("sketch", "diffusers")

# Hard bounds on what an operator may configure; the defaults below are what the issue promises to clients.
SIZE_FLOOR, SIZE_CEILING = 64, 4096
MAX_SEED = 2**63 - 1
# Parts of the UNet whose self-attention --shared-attention-layers can name (the encoder, the middle, the decoder).
SHARED_ATTENTION_GROUPS = ("down", "mid", "up")

# A Hugging Face hub id: "name" or "owner/name" (letters, digits, '-', '_', '.'). Anything else that is not an
# existing folder is a path that does not exist.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def _local_or_hub(value: str, what: str, required_file: str) -> str:
    """``value`` if it is an existing diffusers folder (holding ``required_file``) or looks like a hub id."""
    if not value:
        return value
    path = Path(value).expanduser()
    if path.is_dir():
        if not (path / required_file).is_file():
            raise ValueError(f"{value} is a folder but not a diffusers {what} folder (no {required_file} in it)")
        return str(path.resolve())
    looks_like_path = value.startswith(("/", ".", "~")) or "\\" in value or value.count("/") > 1
    if looks_like_path or path.exists() or not _HUB_ID.match(value):
        raise ValueError(f"{value} is not an existing folder (nor a hub id like 'owner/name')")
    return value


def is_local_folder(value: str) -> bool:
    """Whether a model setting names a folder on this machine (loaded with local_files_only) rather than a hub id."""
    return bool(value) and Path(value).is_dir()


def shared_attention_groups(value: str) -> tuple[str, ...]:
    """The UNet parts ``--shared-attention-layers`` names, in model order: 'up', 'mid,up', 'all'... ValueError
    naming the problem otherwise."""
    names = [name.strip().lower() for name in value.split(",") if name.strip()]
    if names == ["all"]:
        return SHARED_ATTENTION_GROUPS
    unknown = [name for name in names if name not in SHARED_ATTENTION_GROUPS]
    if unknown or not names:
        raise ValueError(f"{value!r} is not a comma-separated list of {', '.join(SHARED_ATTENTION_GROUPS)}, or 'all'")
    return tuple(group for group in SHARED_ATTENTION_GROUPS if group in names)


def warm_up_sizes(value: str) -> tuple[tuple[int, int], ...]:
    """The (width, height) pairs ``--warm-up-sizes`` names, e.g. '1024x1024,1344x768'; ValueError naming the
    problem otherwise."""
    sizes = []
    for item in (part.strip().lower() for part in value.split(",")):
        match = re.fullmatch(r"(\d+)x(\d+)", item)
        if match is None:
            raise ValueError(f"{item!r} is not WIDTHxHEIGHT; expected a comma-separated list like 1024x1024,1344x768")
        sizes.append((int(match[1]), int(match[2])))
    return tuple(dict.fromkeys(sizes))


def warm_up_batches(value: str) -> tuple[int, ...]:
    """The batch sizes ``--warm-up-batches`` names, e.g. '1,4'; ValueError naming the problem otherwise."""
    batches = []
    for item in (part.strip() for part in value.split(",")):
        if not item.isdigit() or int(item) < 1:
            raise ValueError(f"{item!r} is not a batch size (a whole number from 1); expected e.g. 1,4")
        batches.append(int(item))
    return tuple(dict.fromkeys(batches))


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
        description="the SDXL base model for the diffusers backend: a diffusers folder (loaded with no network) or "
        "a hub id such as stabilityai/stable-diffusion-xl-base-1.0 (from the local cache when HF_HUB_OFFLINE=1); "
        "required by --backend diffusers, unused by sketch",
    )
    model_variant: str = Field(
        "",
        description="diffusers backend: the weights variant to load, e.g. fp16 for *.fp16.safetensors files (half "
        "the download and disk); empty loads the default files",
    )
    vae: str = Field(
        "",
        description="diffusers backend: a separate VAE (folder or hub id) that replaces the base model's, e.g. "
        "madebyollin/sdxl-vae-fp16-fix, which decodes in float16 without overflowing; empty keeps the base model's",
    )
    vae_upcast: Literal["auto", "always", "never"] = Field(
        "auto",
        description="diffusers backend: decode latents in float32. 'auto' does so when computing in float16 with a VAE "
        "whose config asks for it (force_upcast, as SDXL's own VAE does); 'always' and 'never' override that",
    )
    vae_slicing: bool = Field(
        True,
        description="diffusers backend: decode a batch one frame at a time (less memory, and each frame is sent as "
        "soon as it is decoded); off decodes the whole batch in one VAE call",
    )
    vae_tiling: bool = Field(
        False, description="diffusers backend: decode in overlapping tiles, for very large frames on small GPUs"
    )
    cpu_offload: bool = Field(
        False,
        description="diffusers backend: keep models in CPU memory and move each to the GPU only while it runs "
        "(diffusers' model CPU offload: much less GPU memory, somewhat slower); needs a cuda device",
    )
    attention: Literal["sdpa", "math"] = Field(
        "sdpa",
        description="diffusers backend: attention kernels; 'sdpa' is torch's scaled_dot_product_attention "
        "(flash / memory-efficient kernels on GPUs), 'math' the plain matmul-softmax-matmul (a reference, more memory)",
    )
    channels_last: bool = Field(
        False,
        description="diffusers backend: keep the UNet and the VAE in channels-last memory format (often faster on "
        "GPUs, much slower on CPUs)",
    )
    compile: Literal["off", "regional", "full"] = Field(
        "off",
        description="diffusers backend: torch.compile. 'regional' compiles the UNet's repeated transformer blocks "
        "(diffusers' compile_repeated_blocks: short compile, most of the gain); 'full' the whole UNet and the VAE "
        "decoder with the inductor settings of diffusers' speed guide (longest compile, fastest steps). Compiling "
        "happens at warm-up (--warm-up-sizes, --warm-up-batches), before the renderer reports SERVING; "
        "--compile-cache makes a restart quick. Not with --consistency shared-attention",
    )
    compile_cache: Path | None = Field(
        None,
        description="diffusers backend with --compile: a folder where the compiled kernels are saved after warm-up "
        "(torch.compiler.save_cache_artifacts) and loaded from at start, so that a restart compiles little; created "
        "if missing",
    )
    merge_loras: bool = Field(
        True,
        description="diffusers backend: merge a batch's UNet LoRAs into the UNet's weights before it (no extra "
        "work per step) and restore the original weights exactly when the next batch wants other adapters; "
        "text-encoder LoRAs stay separate layers. --no-merge-loras runs every LoRA as its own layers",
    )
    scheduler: Literal["euler", "dpmpp-2m"] = Field(
        "euler",
        description="diffusers backend: the sampler. 'euler' is the model's own Euler discrete scheduler; 'dpmpp-2m' "
        "DPM-Solver++ 2M with Karras sigmas (good frames in fewer steps). A frame gets the steps it asks for either "
        "way",
    )
    consistency: Literal["off", "shared-attention"] = Field(
        "off",
        description="diffusers backend: how the frames of one batch are kept alike without a LoRA. 'shared-attention' "
        "makes each frame's self-attention also attend to tokens sampled from the other frames of its batch "
        "(StoryDiffusion's consistent self-attention): a storyboard should then come as one request, and "
        "--max-batch-size should hold its frames. 'off' leaves every frame to itself",
    )
    shared_attention_rate: float = Field(
        0.5,
        gt=0,
        le=1,
        description="with --consistency shared-attention: the share of each other frame's self-attention tokens a "
        "frame attends to (0 < rate <= 1; StoryDiffusion's 0.5). Attention then covers 1 + rate * (frames - 1) times "
        "a frame's own tokens",
    )
    shared_attention_layers: str = Field(
        "up",
        description="with --consistency shared-attention: the UNet's self-attention layers that share, a "
        "comma-separated list of 'down' (encoder), 'mid' (middle) and 'up' (decoder), or 'all'. StoryDiffusion "
        "shares in the decoder ('up')",
    )
    adapters_dir: Path | None = Field(
        None,
        description="folder of LoRA adapters, each addressed by name: NAME/ (a PEFT checkpoint with unet_lora/, "
        "text_encoder_one_lora/, text_encoder_two_lora/, or a diffusers LoRA folder) or NAME.safetensors "
        "(diffusers or kohya/A1111 LoRA file)",
    )
    ip_adapter: Path | None = Field(
        None,
        description="diffusers backend: an IP-Adapter folder (ip-adapter.safetensors and its CLIP image encoder in "
        "image_encoder/; see the README), loaded at warm-up without the network; frames are then conditioned on "
        "their characters' reference pictures (FrameSpec.references). Without it references are ignored",
    )
    ip_adapter_scale: float = Field(
        0.6,
        ge=0,
        le=1,
        description="diffusers backend: the IP-Adapter scale of a character whose reference pictures come with "
        "scale 0 (a frame showing several characters takes the mean of their scales)",
    )
    max_loaded_adapters: int = Field(
        8,
        ge=1,
        le=1000,
        description="diffusers backend: most adapters kept loaded; past it the least recently used one is unloaded "
        "(a batch that needs more than this keeps its own adapters loaded until it is done)",
    )
    device: Literal["auto", "cpu", "cuda", "mps"] = Field(
        "auto", description="compute device; 'auto' picks cuda, then mps, then cpu (sketch always draws on the CPU)"
    )
    dtype: Literal["auto", "float16", "bfloat16", "float32"] = Field(
        "auto", description="compute dtype; 'auto' is float16 on cuda/mps and float32 on cpu"
    )
    max_batch_size: int = Field(4, ge=1, le=64, description="most frames rendered together in one pipeline call")
    batch_window_ms: float = Field(
        20.0,
        ge=0,
        le=10_000,
        description="dynamic batching: how long the oldest waiting frame may wait for compatible frames of other "
        "requests to fill its batch (milliseconds; 0 renders whatever is waiting at once). A busy renderer does not "
        "wait: the window counts from when the frame arrived",
    )
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
    min_size: int = Field(
        256,
        ge=SIZE_FLOOR,
        le=SIZE_CEILING,
        description="smallest width or height, a multiple of 8 (the diffusers backend warms up at this size)",
    )
    max_size: int = Field(2048, ge=SIZE_FLOOR, le=SIZE_CEILING, description="largest width or height, a multiple of 8")
    warm_up_sizes: str = Field(
        "",
        description="diffusers backend: the frame sizes rendered at warm-up, before SERVING, as WIDTHxHEIGHT[,...] "
        "(e.g. 1024x1024,1344x768): with --compile, the sizes compiled before any request comes; empty: --min-size "
        "square",
    )
    warm_up_batches: str = Field(
        "1",
        description="diffusers backend: the batch sizes rendered at each warm-up size, e.g. 1,4 (each at most "
        "--max-batch-size)",
    )
    max_steps: int = Field(150, ge=1, le=1000, description="largest step count a frame may ask for")
    max_guidance_scale: float = Field(30.0, ge=0, le=100, description="largest guidance scale a frame may ask for")
    max_prompt_chars: int = Field(2000, ge=1, le=100_000, description="longest prompt (and scene text), in characters")
    max_frames_per_request: int = Field(16, ge=1, le=1000, description="most frames in one Render request")
    image_format: Literal["png", "webp", "jpeg"] = Field(
        "png", description="format of frames whose request leaves the format unspecified"
    )
    image_quality: int = Field(90, ge=1, le=100, description="quality of lossy formats when a request gives none")
    png_level: int | None = Field(
        None,
        ge=0,
        le=9,
        description="zlib level (0-9) of PNG frames; default: the backend's. diffusers stores them (0): photographic "
        "frames barely compress, so deflating costs CPU for few bytes; sketch uses 1: its flat panels shrink many "
        "times",
    )
    metrics_port: int = Field(
        0,
        ge=0,
        le=65535,
        description="port of the Prometheus metrics page (/metrics) on --host; 0 serves no metrics",
    )

    @field_validator("backend")
    @classmethod
    def _backend_is_built(cls, value: str) -> str:
        if value not in AVAILABLE_BACKENDS:
            raise ValueError(f"the {value} backend is not available in this build yet; use --backend sketch")
        return value

    @field_validator("base_model")
    @classmethod
    def _base_model_exists(cls, value: str, info: ValidationInfo) -> str:
        if info.data.get("backend") == "diffusers" and not value:
            raise ValueError("the diffusers backend needs --base-model: an SDXL diffusers folder or a hub id")
        return _local_or_hub(value, "pipeline", "model_index.json")

    @field_validator("vae")
    @classmethod
    def _vae_exists(cls, value: str) -> str:
        return _local_or_hub(value, "VAE", "config.json")

    @field_validator("shared_attention_layers")
    @classmethod
    def _known_layer_groups(cls, value: str) -> str:
        return ",".join(shared_attention_groups(value))

    @field_validator("compile_cache")
    @classmethod
    def _cache_is_a_folder(cls, value: Path | None) -> Path | None:
        if value is not None and value.exists() and not value.is_dir():
            raise ValueError(f"{value} exists and is not a folder")
        return value

    @field_validator("consistency")
    @classmethod
    def _consistency_is_not_compiled(cls, value: str, info: ValidationInfo) -> str:
        # Shared attention draws its token samples in Python at every step and layer: dynamo cannot trace that.
        if value == "shared-attention" and info.data.get("compile", "off") != "off":
            raise ValueError("shared-attention cannot run compiled; use --compile off with it")
        return value

    @field_validator("adapters_dir")
    @classmethod
    def _adapters_dir_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_dir():
            raise ValueError(f"{value} is not an existing folder")
        return value

    @field_validator("ip_adapter")
    @classmethod
    def _ip_adapter_is_one(cls, value: Path | None) -> Path | None:
        return check_ip_adapter_folder(value)

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

    @field_validator("warm_up_sizes")
    @classmethod
    def _warm_up_sizes_are_allowed(cls, value: str, info: ValidationInfo) -> str:
        if not value.strip():
            return ""
        low, high = info.data.get("min_size", SIZE_FLOOR), info.data.get("max_size", SIZE_CEILING)
        sizes = warm_up_sizes(value)
        for width, height in sizes:
            if width % 8 or height % 8 or not (low <= width <= high and low <= height <= high):
                raise ValueError(
                    f"{width}x{height} is not a frame size this renderer serves (multiples of 8 from --min-size {low} "
                    f"to --max-size {high})"
                )
        return ",".join(f"{width}x{height}" for width, height in sizes)

    @field_validator("warm_up_batches")
    @classmethod
    def _warm_up_batches_fit(cls, value: str, info: ValidationInfo) -> str:
        batches = warm_up_batches(value)
        largest = info.data.get("max_batch_size")
        if largest is not None and max(batches) > largest:
            raise ValueError(f"{max(batches)} exceeds --max-batch-size {largest}")
        return ",".join(str(batch) for batch in batches)

    def warm_up_shapes(self) -> list[tuple[int, int, int]]:
        """(width, height, batch) of every warm-up render: each warm-up size at each warm-up batch size."""
        sizes = warm_up_sizes(self.warm_up_sizes) if self.warm_up_sizes else ((self.min_size, self.min_size),)
        return [(width, height, batch) for width, height in sizes for batch in warm_up_batches(self.warm_up_batches)]

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
