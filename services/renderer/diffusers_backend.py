"""The ``diffusers`` backend: SDXL with LoRA adapters through diffusers' ``StableDiffusionXLPipeline``.

One pipeline call renders a whole compatible batch (same size, steps, guidance, adapters and reference pictures; an
IP-Adapter is in ``ip_adapter.py``). Each frame's starting noise comes from its own CPU ``torch.Generator`` seeded with
the frame's seed, so it does not depend on the other frames of its batch (nor on the GPU: CPU generators draw the same
noise everywhere). Prompts are encoded one frame at a time and latents are decoded one frame at a time
(``--vae-slicing``, the default), so the text encoders and the VAE see the same shapes whether a frame is batched or
alone. The UNet does see the batch: its matrix kernels may sum in another order for another batch size, so a batched
frame can differ from the same frame rendered alone by floating-point rounding (a level of 255 in a few pixels). A frame
asked for as ``deterministic`` is therefore always rendered alone (``FrameSpec.batch_key``): the same request then gives
the same bits on the same device and software, whatever else the renderer is doing.

Progress comes from ``callback_on_step_end``, which also checks whether anyone still wants the batch and, if not,
sets ``pipe._interrupt`` so the loop stops at the next step; the unfinished latents are then dropped without being
decoded. A step, or a decode, can itself take minutes (a large frame on a CPU, a big batch on a small GPU), so the
same check also runs before each residual and attention layer of the UNet and of the VAE's decoder, and stops the
batch there; except in layers that ``--compile`` compiled, which a hook calling into the service would break
(``compilation.py``): there the batch stops at the end of its step.

Speed settings: ``--compile`` (``compilation.py``: compiled at warm-up, at every ``--warm-up-sizes`` x
``--warm-up-batches`` shape, before SERVING; the compile cache saved after it), ``--merge-loras`` (``lora.py``:
the batch's UNet LoRAs merged into the weights, restored exactly), ``--channels-last`` (UNet and VAE) and
``--scheduler``.

The pipeline returns latents (``output_type="latent"``) and this module decodes them, so it can time denoising and
decoding apart, check every frame for NaN/inf (fp16 overflow: the frame is refused as FAILED_PRECONDITION with what to
change, not sent as a black picture), and send each frame as soon as it is decoded.

Out of device memory is RESOURCE_EXHAUSTED: the batch's tensors are dropped, the allocator's cache is emptied, and
the service goes on serving the next batch.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from services.renderer.adapters import AdapterCatalog
from services.renderer.backend import (
    BackendDescription,
    BackendTimings,
    CharacterReference,
    FrameResult,
    FrameSpec,
    StepCallback,
    StopCheck,
)
from services.renderer.compilation import compile_pipeline, load_cache, outside_compiled, save_cache
from services.renderer.ip_adapter import ReferenceConditioning, load_ip_adapter, warm_up_references
from services.renderer.lora import LoraAdapters
from services.renderer.metrics import RendererMetrics
from services.renderer.settings import RendererSettings, is_local_folder, shared_attention_groups
from services.renderer.shared_attention import SharedAttention
from storyboard_common import images
from storyboard_common.errors import FailedPrecondition, ResourceExhausted, Unavailable

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

WARM_UP_STEPS = 2
WARM_UP_GUIDANCE = 5.0  # above 1, so warm-up runs the classifier-free guidance path every real frame takes
WARM_UP_PROMPT = "warm-up: aldar_kose_man on the steppe, wide establishing shot, golden hour lighting"
BLACK_LEVEL = 2  # a frame whose every channel stays at or below this (of 255) is black, not a picture
LATENTS_NOT_FINITE = "NaN/inf in its denoised latents"
PIXELS_NOT_FINITE = "NaN/inf in its decoded pixels"
ALL_BLACK = "it is all black"


class _Stopped(Exception):
    """Raised inside the UNet or the VAE when nobody wants the batch any more, to leave a step or a decode early."""


@contextmanager
def _stopping_between_layers(modules: Sequence[Any], should_stop: StopCheck) -> Iterator[None]:
    """While the ``with`` body runs, each of ``modules`` raises ``_Stopped`` before it runs once ``should_stop()``."""

    def check(_module: Any, _inputs: Any) -> None:
        if should_stop():
            raise _Stopped

    handles = [module.register_forward_pre_hook(check) for module in modules]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _stop_points(pipe: Any) -> list[Any]:
    """Where a step or a decode can stop early: each residual and attention layer of the UNet and of the VAE's
    decoder, the units a step is made of (a block of them can itself take seconds on a CPU). Layers inside compiled
    regions are left out: a hook calling back into the service would break their graphs (see compilation.py)."""
    from diffusers.models.attention_processor import Attention
    from diffusers.models.resnet import ResnetBlock2D

    return [
        module
        for model in (pipe.unet, pipe.vae.decoder)
        for module in outside_compiled(model)
        if isinstance(module, Attention | ResnetBlock2D)
    ]


class NonFiniteFrame(FailedPrecondition):
    """A frame came out NaN/inf or black: the model overflowed. Not the caller's fault, but retrying the same frame
    on the same renderer gives the same result, so it is not UNAVAILABLE either."""


def resolve_device(name: str) -> torch.device:
    """The torch device ``--device`` names; 'auto' is cuda, then mps, then cpu. RuntimeError if it is not there."""
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(
                f"--device cuda, but torch {torch.__version__} sees no CUDA device "
                f"(built for CUDA {torch.version.cuda or 'none'}); use --device cpu or auto"
            )
        return torch.device("cuda", torch.cuda.current_device())
    if name == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError("--device mps, but torch sees no Apple GPU; use --device cpu or auto")
    return torch.device(name)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """The torch dtype ``--dtype`` names; 'auto' is float16 on GPUs and float32 on the CPU."""
    import torch

    if name == "auto":
        name = "float32" if device.type == "cpu" else "float16"
    if name == "float16" and device.type == "cpu":
        log.warning("float16 on the CPU is slow and some kernels lack it; bfloat16 or float32 are better there")
    return {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}[name]


class DiffusersBackend:
    """Renders frames with an SDXL pipeline loaded once, at warm-up, and LoRA adapters loaded by name on demand."""

    name = "diffusers"
    applies_adapters = True
    png_level = images.PNG_LEVEL  # photographic frames barely compress: stored, they cost the least CPU

    def __init__(self, settings: RendererSettings, metrics: RendererMetrics | None = None) -> None:
        self._settings = settings
        self._catalog = AdapterCatalog(settings.adapters_dir)
        self._metrics = metrics if metrics is not None else RendererMetrics()
        self.pipeline: Any = None  # the loaded StableDiffusionXLPipeline (tests check it is never replaced)
        self.adapters: LoraAdapters | None = None
        self.references: ReferenceConditioning | None = None  # set when --ip-adapter is loaded
        self.shared_attention: SharedAttention | None = None  # --consistency shared-attention
        self.base_loads = 0  # how many times the base model was loaded: once per process
        self._device: torch.device | None = None
        self._dtype: torch.dtype | None = None

    @property
    def applies_references(self) -> bool:
        return self._settings.ip_adapter is not None

    # --- RenderBackend ----------------------------------------------------------------------------------------------

    def describe(self) -> BackendDescription:
        settings = self._settings
        loaded = self.adapters.loaded_names() if self.adapters is not None else ()
        device = str(self._device) if self._device is not None else settings.device
        dtype = str(self._dtype).removeprefix("torch.") if self._dtype is not None else settings.dtype
        return BackendDescription(
            self.name,
            settings.base_model,
            device,
            dtype,
            loaded,
            ip_adapter=self.references is not None,
            consistency=settings.consistency,
        )

    def warm_up(self) -> None:
        """Load the pipeline, then render a small guided batch at each warm-up shape (--warm-up-sizes x
        --warm-up-batches: with --compile, this is when the shapes are compiled), then save the compile cache;
        NOT_SERVING until all of it has worked."""
        if self.pipeline is None:
            self._load_pipeline()
        settings = self._settings
        variants = warm_up_reference_sets(
            self.references is not None, settings.compile != "off", settings.ip_adapter_scale
        )
        for width, height, batch in settings.warm_up_shapes():
            for references in variants:
                self._warm_up_batch(width, height, batch, references)
        if settings.compile != "off":
            save_cache(settings.compile_cache)

    def _warm_up_batch(self, width: int, height: int, batch: int, references: tuple[CharacterReference, ...]) -> None:
        frames = [
            FrameSpec(
                frame=index + 1,
                prompt=WARM_UP_PROMPT,
                seed=index,
                width=width,
                height=height,
                steps=WARM_UP_STEPS,
                guidance_scale=WARM_UP_GUIDANCE,
                references=references,
            )
            for index in range(batch)
        ]
        started = time.perf_counter()
        results = list(self.render(frames, lambda *_: None, lambda: False))
        if len(results) != batch or any(result.image is None for result in results):
            problems = [result.error for result in results if result.image is None] or ["a frame did not come back"]
            raise RuntimeError(f"the warm-up batch ({batch} x {width}x{height}) failed: {problems[0]}")
        log.info(
            "warm-up batch (%d x %dx%d, %d steps) took %.2fs",
            batch,
            width,
            height,
            WARM_UP_STEPS,
            time.perf_counter() - started,
        )

    def render(
        self, frames: Sequence[FrameSpec], on_step: StepCallback, should_stop: StopCheck
    ) -> Iterator[FrameResult]:
        import torch

        out_of_memory = False
        try:
            yield from self._render(frames, on_step, should_stop)
        except torch.OutOfMemoryError:
            # Leaving the except block drops the exception and with it the traceback's frames, which hold the
            # batch's tensors; only then can the memory be given back.
            out_of_memory = True
        if out_of_memory:
            self._free_memory()
            self._metrics.out_of_memory.inc()
            first = frames[0]
            raise ResourceExhausted(
                f"out of device memory rendering {len(frames)} frame(s) of {first.width}x{first.height}; "
                "retry with fewer or smaller frames (the renderer's --max-batch-size, --cpu-offload and --vae-tiling "
                "lower its memory use)"
            )

    def close(self) -> None:
        """Drop the adapters and the pipeline and give their memory back."""
        if self.adapters is not None:
            try:
                self.adapters.unload_all()
            except Exception:
                log.exception("unloading adapters failed")
        self.adapters = None
        self.references = None
        self.pipeline = None
        self._free_memory()

    # --- loading ----------------------------------------------------------------------------------------------------

    def _load_pipeline(self) -> None:
        from diffusers import AutoencoderKL, StableDiffusionXLPipeline
        from huggingface_hub import constants as hub

        settings = self._settings
        device = resolve_device(settings.device)
        dtype = resolve_dtype(settings.dtype, device)
        _no_progress_bars()
        started = time.perf_counter()
        options: dict[str, Any] = {"dtype": dtype}
        if settings.model_variant:
            options["variant"] = settings.model_variant
        if settings.vae:
            with _naming_failures("--vae", settings.vae):
                options["vae"] = AutoencoderKL.from_pretrained(
                    settings.vae, dtype=dtype, local_files_only=_offline(settings.vae, hub.HF_HUB_OFFLINE)
                )
        with _naming_failures("--base-model", settings.base_model):
            pipe = StableDiffusionXLPipeline.from_pretrained(
                settings.base_model, local_files_only=_offline(settings.base_model, hub.HF_HUB_OFFLINE), **options
            )
        self.base_loads += 1
        self.adopt(pipe, device, dtype)
        log.info(
            "loaded %s on %s in %s (VAE in %s) in %.1fs",
            settings.base_model,
            device,
            str(dtype).removeprefix("torch."),
            str(pipe.vae.dtype).removeprefix("torch."),
            time.perf_counter() - started,
        )

    def adopt(self, pipe: Any, device: torch.device, dtype: torch.dtype) -> None:
        """Make ``pipe`` (already in ``dtype``) this backend's pipeline, set up as the settings say: attention
        kernels, memory format, VAE precision, device or CPU offload. Loading calls it; the benchmark calls it with a
        pipeline built in code, so that it measures exactly what the service runs."""
        import torch
        from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

        settings = self._settings
        pipe.set_progress_bar_config(disable=True)
        processor = AttnProcessor2_0 if settings.attention == "sdpa" else AttnProcessor
        pipe.unet.set_attn_processor(processor())
        pipe.vae.set_attn_processor(processor())
        self.references = self._load_ip_adapter(pipe)
        use_scheduler(pipe, settings.scheduler)
        if settings.channels_last:
            pipe.unet.to(memory_format=torch.channels_last)
            pipe.vae.to(memory_format=torch.channels_last)
        if settings.vae_tiling:
            pipe.vae.enable_tiling()
        if settings.cpu_offload and device.type == "cuda":
            pipe.enable_model_cpu_offload(device=device)
        else:
            if settings.cpu_offload:
                log.warning("--cpu-offload needs a cuda device; rendering on %s without it", device)
            pipe.to(device)
        if self._vae_needs_upcast(pipe, dtype):
            # Kept in float32 for good rather than cast for every decode as diffusers does: 84 M parameters.
            pipe.vae.to(dtype=torch.float32)
        self.pipeline = pipe
        self.adapters = LoraAdapters(
            pipe, self._catalog, settings.max_loaded_adapters, self._metrics, merge=settings.merge_loras
        )
        if settings.consistency == "shared-attention":
            # Last: anything that sets the UNet's attention processors afterwards would remove these.
            groups = shared_attention_groups(settings.shared_attention_layers)
            self.shared_attention = SharedAttention(pipe.unet, settings.shared_attention_rate, groups)
        for component in pipe.components.values():
            if isinstance(component, torch.nn.Module):
                # Inference only (the IP-Adapter's layers included). And torch.compile guards on requires_grad:
                # loading a LoRA freezes the base weights, which would recompile what warm-up compiled trainable.
                component.requires_grad_(False)
        if settings.compile != "off":
            if not settings.merge_loras:
                log.warning("--compile with --no-merge-loras: every new adapter set recompiles the UNet's LoRA layers")
            load_cache(settings.compile_cache)  # before anything compiles: compiling then reads what it can from it
            compile_pipeline(pipe, settings.compile, device.type)
        self._device, self._dtype = device, dtype

    def _load_ip_adapter(self, pipe: Any) -> ReferenceConditioning | None:
        """The IP-Adapter of --ip-adapter loaded into ``pipe`` (on the CPU still, so it moves or is offloaded with
        the rest), or None without one."""
        settings = self._settings
        if settings.ip_adapter is None:
            return None
        with _naming_failures("--ip-adapter", str(settings.ip_adapter)):
            load_ip_adapter(pipe, settings.ip_adapter, math_attention=settings.attention == "math")
        encoder = sum(parameter.numel() for parameter in pipe.image_encoder.parameters())
        log.info("loaded the IP-Adapter %s (image encoder: %.0f M parameters)", settings.ip_adapter, encoder / 1e6)
        return ReferenceConditioning(pipe, settings.ip_adapter_scale)

    def _vae_needs_upcast(self, pipe: Any, dtype: torch.dtype) -> bool:
        import torch

        choice = self._settings.vae_upcast
        if choice != "auto":
            return choice == "always"
        return dtype == torch.float16 and bool(getattr(pipe.vae.config, "force_upcast", False))

    # --- rendering --------------------------------------------------------------------------------------------------

    def _render(
        self, frames: Sequence[FrameSpec], on_step: StepCallback, should_stop: StopCheck
    ) -> Iterator[FrameResult]:

        if self.pipeline is None or self.adapters is None:
            raise Unavailable("the diffusers backend has not loaded its model yet")
        if should_stop():
            return
        self.adapters.activate(frames[0].adapters)  # a batch shares its adapters (FrameSpec.batch_key)
        try:
            with _stopping_between_layers(_stop_points(self.pipeline), should_stop):
                yield from self._denoise_and_decode(frames, on_step, should_stop)
        except _Stopped:
            return  # nobody wants the rest of the batch; its unfinished frames are dropped

    def _denoise_and_decode(
        self, frames: Sequence[FrameSpec], on_step: StepCallback, should_stop: StopCheck
    ) -> Iterator[FrameResult]:
        import torch

        started = time.perf_counter()
        with torch.inference_mode(), self._sharing_attention(frames):
            latents = self._denoise(frames, on_step, should_stop)
        _synchronize(self._device)  # GPU work is asynchronous: without this, denoising time would count as decoding
        denoise_seconds = time.perf_counter() - started
        if latents is None:
            return  # stopped: nobody wants these frames any more
        group = 1 if self._settings.vae_slicing else len(frames)
        for first in range(0, len(frames), group):
            indices = range(first, min(first + group, len(frames)))
            if should_stop():
                return
            decode_started = time.perf_counter()
            with torch.inference_mode():
                decoded = self._decode(latents[indices.start : indices.stop])
            timings = BackendTimings(denoise_seconds, time.perf_counter() - decode_started)
            for index, (image, problem) in zip(indices, decoded, strict=True):
                if problem:
                    yield FrameResult(index, None, timings, error=self._non_finite(frames[index], problem))
                else:
                    yield FrameResult(index, image, timings)

    def _denoise(self, frames: Sequence[FrameSpec], on_step: StepCallback, should_stop: StopCheck) -> Any:
        """The batch's final latents, or None when it was stopped."""

        pipe = self.pipeline
        spec = frames[0]
        guided = spec.guidance_scale > 1.0
        embeddings = self._encode_prompts(frames, guided=guided)
        latents, generators = self.noise(frames, embeddings["prompt_embeds"].dtype)
        if self.references is not None:
            embeddings |= self.references.pipeline_arguments(frames, guided=guided)
        stopped = False

        def step_ended(pipeline: Any, step: int, _timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            nonlocal stopped
            if should_stop():
                stopped = True
                pipeline._interrupt = True  # the loop skips every remaining step; nothing is decoded
                return tensors
            total = pipeline.num_timesteps
            for index in range(len(frames)):
                on_step(index, step + 1, total)
            return tensors

        if should_stop():
            return None
        latents = pipe(
            **embeddings,
            width=spec.width,
            height=spec.height,
            num_inference_steps=spec.steps,
            guidance_scale=spec.guidance_scale,
            latents=latents,
            generator=generators,
            output_type="latent",
            callback_on_step_end=step_ended,
            return_dict=False,
        )[0]
        return None if stopped else latents

    def _sharing_attention(self, frames: Sequence[FrameSpec]) -> AbstractContextManager[None]:
        """With --consistency shared-attention, the batch's frames share their self-attention while it runs."""
        if self.shared_attention is None:
            return nullcontext()
        return self.shared_attention.sharing([frame.seed for frame in frames])

    def noise(self, frames: Sequence[FrameSpec], dtype: torch.dtype) -> tuple[Any, list[Any]]:
        """Each frame's starting latents, drawn from a CPU generator seeded with the frame's seed (the same values
        the pipeline would draw, on any device), and the generators the scheduler's steps get.

        Euler draws noise at every step (and, without churn, does not use it). With CPU generators that would copy
        a tensor to the GPU at each step and make the CPU wait for the GPU; so on a GPU the steps get generators on
        the device, seeded per frame: still deterministic, no waiting."""
        import torch
        from diffusers.utils.torch_utils import randn_tensor

        pipe = self.pipeline
        device = pipe._execution_device
        first = frames[0]
        scale = pipe.vae_scale_factor
        shape = (1, pipe.unet.config.in_channels, first.height // scale, first.width // scale)
        cpu = [torch.Generator("cpu").manual_seed(frame.seed) for frame in frames]
        latents = torch.cat([randn_tensor(shape, generator=g, device=device, dtype=dtype) for g in cpu])
        if device.type == "cpu":
            return latents, cpu
        return latents, [torch.Generator(device).manual_seed(frame.seed) for frame in frames]

    def _encode_prompts(self, frames: Sequence[FrameSpec], *, guided: bool) -> dict[str, Any]:
        """Prompt embeddings for the batch, each frame encoded on its own (batch-independent), then concatenated.

        An empty negative prompt is passed as None, so SDXL's ``force_zeros_for_empty_prompt`` applies exactly as
        when a frame is rendered alone through the pipeline's own prompt handling."""
        import torch

        pipe = self.pipeline
        device = pipe._execution_device
        parts: list[tuple[Any, Any, Any, Any]] = [
            pipe.encode_prompt(
                prompt=frame.prompt,
                prompt_2=frame.prompt_2 or None,
                device=device,
                num_images_per_prompt=1,
                do_classifier_free_guidance=guided,
                negative_prompt=frame.negative_prompt or None,
            )
            for frame in frames
        ]

        def joined(position: int) -> Any:
            return torch.cat([part[position] for part in parts]) if parts[0][position] is not None else None

        embeddings = {"prompt_embeds": joined(0), "pooled_prompt_embeds": joined(2)}
        if guided:
            embeddings["negative_prompt_embeds"] = joined(1)
            embeddings["negative_pooled_prompt_embeds"] = joined(3)
        return embeddings

    def _decode(self, latents: Any) -> list[tuple[Any, str]]:
        """Each latent's picture (PIL) and, when it is not a usable picture, what is wrong with it."""
        import torch

        pipe = self.pipeline
        vae = pipe.vae
        problems = ["" if bool(torch.isfinite(latent).all()) else LATENTS_NOT_FINITE for latent in latents]
        latents = latents.to(device=pipe._execution_device, dtype=vae.dtype)
        config = vae.config
        if getattr(config, "latents_mean", None) is not None and getattr(config, "latents_std", None) is not None:
            mean = torch.tensor(config.latents_mean).view(1, 4, 1, 1).to(latents.device, latents.dtype)
            std = torch.tensor(config.latents_std).view(1, 4, 1, 1).to(latents.device, latents.dtype)
            latents = latents * std / config.scaling_factor + mean
        else:
            latents = latents / config.scaling_factor
        pixels = vae.decode(latents, return_dict=False)[0]
        finite = torch.isfinite(pixels).flatten(1).all(dim=1).tolist()
        problems = [problem or ("" if ok else PIXELS_NOT_FINITE) for problem, ok in zip(problems, finite, strict=True)]
        if not all(finite):
            pixels = torch.nan_to_num(pixels)  # refused below anyway; this only keeps postprocess from warning
        if pipe.watermark is not None:
            pixels = pipe.watermark.apply_watermark(pixels)
        images = pipe.image_processor.postprocess(pixels.float(), output_type="pil")
        for index, image in enumerate(images):
            if not problems[index] and max(high for _low, high in image.getextrema()) <= BLACK_LEVEL:
                problems[index] = ALL_BLACK
        return list(zip(images, problems, strict=True))

    def _non_finite(self, frame: FrameSpec, problem: str) -> NonFiniteFrame:
        dtype = str(self._dtype).removeprefix("torch.")
        if problem == LATENTS_NOT_FINITE and frame.adapters:
            advice = "an adapter at this weight may overflow the UNet; try a lower weight"
        else:
            advice = (
                "the renderer should decode with --vae-upcast always or an fp16-safe --vae "
                "(e.g. madebyollin/sdxl-vae-fp16-fix), or compute in --dtype bfloat16"
            )
        return NonFiniteFrame(
            f"frame {frame.frame} is not a usable picture ({problem}, computing in {dtype}): {advice}"
        )

    def _free_memory(self) -> None:
        import torch

        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        elif torch.backends.mps.is_available():
            torch.mps.empty_cache()


def warm_up_reference_sets(
    ip_adapter: bool, compiled: bool, default_scale: float
) -> list[tuple[CharacterReference, ...]]:
    """The reference pictures each warm-up shape is rendered with. Without an IP-Adapter: none. With one: a
    reference, so that warm-up runs the image encoder and the IP-Adapter. Compiled, also what would otherwise compile
    on a request: the IP-Adapter's scale is a Python float that dynamo first compiles as a constant and, at the
    second value it sees, as a variable (so a second scale), and a frame without references takes the scale-0
    branch of diffusers' IP-Adapter processor."""
    if not ip_adapter:
        return [()]
    at_default = warm_up_references()
    if not compiled:
        return [at_default]
    other_scale = 1.0 if default_scale != 1.0 else 0.5
    at_other = tuple(replace(reference, scale=other_scale) for reference in at_default)
    return [at_default, at_other, ()]


def use_scheduler(pipe: Any, name: str) -> None:
    """Give ``pipe`` the sampler ``--scheduler`` names: 'euler' keeps the model's own (SDXL's Euler discrete);
    'dpmpp-2m' is DPM-Solver++ 2M with Karras sigmas, built from the model's scheduler config (its noise schedule)."""
    if name == "euler":
        return
    from diffusers import DPMSolverMultistepScheduler

    pipe.scheduler = DPMSolverMultistepScheduler.from_config(
        pipe.scheduler.config, algorithm_type="dpmsolver++", solver_order=2, use_karras_sigmas=True
    )


def _synchronize(device: torch.device | None) -> None:
    import torch

    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device is not None and device.type == "mps":
        torch.mps.synchronize()


def _no_progress_bars() -> None:
    """diffusers and transformers draw tqdm bars while loading (components, weights, every adapter): noise in a
    service's log, so this process turns them off."""
    import diffusers.utils.logging
    import transformers.utils.logging

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()


@contextmanager
def _naming_failures(flag: str, model: str) -> Iterator[None]:
    """Turn a loading failure into one line that says which setting and which model (readiness shows it)."""
    try:
        yield
    except Exception as error:
        where = "folder" if is_local_folder(model) else "hub id (HF_HUB_OFFLINE=1 looks only in the local cache)"
        raise RuntimeError(f"cannot load {flag} {model} ({where}): {type(error).__name__}: {error}") from error


def _offline(model: str, hub_offline: bool) -> bool:
    """local_files_only for a model setting: always for a folder; for a hub id, whatever HF_HUB_OFFLINE says."""
    return is_local_folder(model) or bool(hub_offline)
