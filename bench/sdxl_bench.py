"""SDXL benchmark: seconds per 1024x1024 frame at 40 guided steps, on the real SDXL-base architecture.

The UNet, VAE and both text encoders are built from SDXL-base 1.0's configs written below, with random weights:
nothing is downloaded, and random weights cost exactly what trained ones do (the pictures are noise). Each
configuration renders a batch through the renderer's own diffusers backend (``DiffusersBackend.adopt`` sets the
pipeline up as the service does; ``render`` is the service's code path): per-frame prompts and seeds, 40 Euler steps
with classifier-free guidance (so the UNet sees twice the batch), progress callbacks, then a VAE decode per frame (in
float32 when computing in float16, as SDXL's VAE needs). SDPA attention, and channels-last on GPUs; ``--compile``
adds the renderer's own ``--compile`` (``--compile-mode full``: UNet and VAE decoder; ``regional``: the UNet's
transformer blocks). PNG encoding (done by the RPC threads, beside the next batch)
is not included.

FLOPs: one guided UNet step for one frame (batch 2 at a 128x128 latent) is counted with torch's FlopCounterMode on
the meta device (no memory, no weights): ~13.5 TFLOP. Achieved TFLOP/s = frames x steps x that / denoising seconds,
printed beside a plain matmul's TFLOP/s measured on the same device in the same dtype.

    .venv/bin/python bench/sdxl_bench.py                   # no CUDA: --toy, a tiny SDXL-shaped model on the CPU (seconds)
    python bench/sdxl_bench.py --device cuda               # real size: float16 and bfloat16, batch 1, 4 and 8
    python bench/sdxl_bench.py --device cuda --compile     # the same with torch.compile
    .venv/bin/python bench/sdxl_bench.py --flops-only      # real-size construction + FLOP count on the meta device only

Writes a markdown table (machine, versions, date, settings, results) to ``bench/results/sdxl_<device>.md`` (or
``--output``) and prints it.
"""  # noqa: E501

from __future__ import annotations

import argparse
import copy
import datetime
import os
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # for bench and the services when run as a script

from bench.common import cpu_model  # noqa: E402

RESULTS = REPO / "bench" / "results"
# Under 77 characters less spaces: one token per character with clip_tokenizer, so no prompt is truncated.
PROMPT = "aldar_kose_man rides a horse across the steppe, wide shot, golden hour"

# stabilityai/stable-diffusion-xl-base-1.0, unet/config.json: 2,567,463,684 parameters.
SDXL_UNET: dict[str, Any] = {
    "act_fn": "silu",
    "addition_embed_type": "text_time",
    "addition_embed_type_num_heads": 64,
    "addition_time_embed_dim": 256,
    "attention_head_dim": [5, 10, 20],
    "block_out_channels": [320, 640, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 2048,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "projection_class_embeddings_input_dim": 2816,  # 6 time ids x 256 + the second encoder's 1280-d projection
    "sample_size": 128,
    "transformer_layers_per_block": [1, 2, 10],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "use_linear_projection": True,
}
SDXL_UNET_PARAMETERS = 2_567_463_684
# vae/config.json
SDXL_VAE: dict[str, Any] = {
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "force_upcast": True,
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "sample_size": 1024,
    "scaling_factor": 0.13025,
}
# text_encoder/config.json (OpenAI CLIP ViT-L/14's text tower) and text_encoder_2/config.json (OpenCLIP ViT-bigG/14's)
SDXL_TEXT_ENCODER: dict[str, Any] = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "projection_dim": 768,
    "hidden_act": "quick_gelu",
}
SDXL_TEXT_ENCODER_2: dict[str, Any] = {
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_attention_heads": 20,
    "num_hidden_layers": 32,
    "projection_dim": 1280,
    "hidden_act": "gelu",
}
CLIP_COMMON = {"vocab_size": 49408, "max_position_embeddings": 77, "bos_token_id": 49406, "eos_token_id": 49407}
# scheduler/scheduler_config.json
SDXL_SCHEDULER: dict[str, Any] = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "interpolation_type": "linear",
    "use_karras_sigmas": False,
}

# The toy (--toy, the default without CUDA): SDXL's structure (text_time conditioning, cross-attention on both text
# encoders' hidden states) at toy widths, built in a second, to show on a CPU that the script works. The VAE
# downsamples by 2, so a 64x64 frame is a 32x32 latent.
TOY_TEXT_ENCODER: dict[str, Any] = {
    "hidden_size": 32,
    "intermediate_size": 37,
    "num_attention_heads": 4,
    "num_hidden_layers": 2,
    "projection_dim": 32,
    "hidden_act": "gelu",
}
TOY_TIME_EMBED_DIM = 8
TOY_UNET: dict[str, Any] = {
    "block_out_channels": (32, 64),
    "layers_per_block": 1,
    "sample_size": 32,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
    "attention_head_dim": (2, 4),
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": TOY_TIME_EMBED_DIM,
    "transformer_layers_per_block": (1, 1),
    # six time ids, each embedded, plus the second encoder's pooled projection
    "projection_class_embeddings_input_dim": 6 * TOY_TIME_EMBED_DIM + TOY_TEXT_ENCODER["projection_dim"],
    "cross_attention_dim": 2 * TOY_TEXT_ENCODER["hidden_size"],  # both encoders' hidden states, concatenated
    "norm_num_groups": 8,
}
TOY_VAE: dict[str, Any] = {
    "block_out_channels": [16, 32],
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 2,
    "up_block_types": ["UpDecoderBlock2D"] * 2,
    "latent_channels": 4,
    "sample_size": 64,
    "norm_num_groups": 8,
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu", "mps"])
    parser.add_argument("--toy", action="store_true", help="tiny SDXL-shaped model (the default without CUDA)")
    parser.add_argument("--real", action="store_true", help="the real SDXL-base size even without CUDA (slow on CPU)")
    parser.add_argument("--flops-only", action="store_true", help="count the real UNet's FLOPs on meta and exit")
    parser.add_argument(
        "--dtypes", default="", help="float16,bfloat16,float32 (comma list); default float16,bfloat16 (cpu: float32)"
    )
    parser.add_argument("--batches", default="", help="comma list of batch sizes; default 1,4,8 (toy: 1,2)")
    parser.add_argument("--steps", type=int, default=0, help="denoising steps; default 40 (toy: 4)")
    parser.add_argument("--size", type=int, default=0, help="frame width and height; default 1024 (toy: 64)")
    parser.add_argument("--guidance", type=float, default=5.0, help="guidance scale (above 1: the UNet runs twice)")
    parser.add_argument("--repeats", type=int, default=0, help="timed runs per configuration; default 2 (toy: 1)")
    parser.add_argument("--compile", action="store_true", help="also run every configuration under torch.compile")
    parser.add_argument(
        "--compile-mode", default="full", choices=["regional", "full"], help="the renderer's --compile setting"
    )
    parser.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="channels-last memory format for the UNet and VAE; default on for cuda (on CPUs it is ~10x slower)",
    )
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads; 0 keeps torch's default")
    parser.add_argument(
        "--output", type=Path, default=None, help="markdown file; default bench/results/sdxl_<device>.md"
    )
    return parser.parse_args(argv)


@dataclass
class Plan:
    """What to run, resolved from the arguments and the machine."""

    device: str
    toy: bool
    dtypes: list[str]
    batches: list[int]
    steps: int
    size: int
    guidance: float
    repeats: int
    compile_modes: list[str | None]
    channels_last: bool


@dataclass
class Result:
    dtype: str
    batch: int
    compiled: str | None
    seconds_per_frame: float
    denoise_per_frame: float
    decode_per_frame: float
    unet_tflops: float
    peak_memory_gib: float | None


def make_plan(args: argparse.Namespace) -> Plan:
    import torch

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    toy = args.toy or (device != "cuda" and not args.real)
    default_dtypes = "float32" if device == "cpu" else "float16,bfloat16"  # CPUs without bf16 units crawl in it
    dtypes = [d for d in (args.dtypes or default_dtypes).split(",") if d]
    for name in dtypes:
        if name not in ("float16", "bfloat16", "float32"):
            raise SystemExit(f"--dtypes: unknown dtype {name!r}")
    batches = [int(b) for b in (args.batches or ("1,2" if toy else "1,4,8")).split(",") if b]
    return Plan(
        device=device,
        toy=toy,
        dtypes=dtypes,
        batches=batches,
        steps=args.steps or (4 if toy else 40),
        size=args.size or (64 if toy else 1024),
        guidance=args.guidance,
        repeats=args.repeats or (1 if toy else 2),
        compile_modes=[None, args.compile_mode] if args.compile else [None],
        channels_last=args.channels_last if args.channels_last is not None else device == "cuda",
    )


# --- models ---------------------------------------------------------------------------------------------------------


def real_unet_config() -> dict[str, Any]:
    return dict(SDXL_UNET)


def clip_tokenizer(pad_token: str = "<|endoftext|>") -> Any:
    """A ``CLIPTokenizer`` whose vocabulary is CLIP's 512 byte-level symbols and its two special tokens, without
    merges: built in code, with nothing to download or install (the GPU machine has no open_clip, whose file holds
    CLIP's merges). The text encoders see SDXL's full 77-token window either way (prompts are padded to it), so they
    cost what they cost with the real vocabulary; PROMPT fits the window one character per token."""
    tokenizer = copy.deepcopy(_clip_tokenizer())  # building one takes a second or two; copying, a fraction of that
    tokenizer.pad_token = pad_token  # SDXL's second tokenizer pads with "!"
    return tokenizer


@lru_cache(maxsize=1)
def _clip_tokenizer() -> Any:
    from transformers import CLIPTokenizer

    symbols = [chr(code) for code in _byte_codes()]
    vocabulary = [*symbols, *(symbol + "</w>" for symbol in symbols), "<|startoftext|>", "<|endoftext|>"]
    tokenizer = CLIPTokenizer(vocab={token: index for index, token in enumerate(vocabulary)}, merges=[])
    tokenizer.model_max_length = 77  # SDXL's window
    return tokenizer


def _byte_codes() -> list[int]:
    """The code points CLIP's byte-level BPE gives the 256 bytes (GPT-2's table): printable ones keep their own."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    unprintable = [byte for byte in range(256) if byte not in printable]
    return printable + [256 + index for index in range(len(unprintable))]


@contextmanager
def default_dtype(dtype: Any) -> Iterator[None]:
    """Build modules directly in ``dtype``: no float32 copy first (10 GB for the real UNet), no cast afterwards."""
    import torch

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def build_real_pipeline(device: str, dtype: Any) -> Any:
    """SDXL-base with random weights, built directly on ``device`` in ``dtype``."""
    import torch

    with torch.device(device), default_dtype(dtype):
        return _pipeline(real_unet_config(), SDXL_VAE, SDXL_TEXT_ENCODER, SDXL_TEXT_ENCODER_2)


def build_toy_pipeline(device: str, dtype: Any) -> Any:
    """The toy, random weights drawn from seed 0 (torch's global random state is kept)."""
    import torch

    with torch.device(device), default_dtype(dtype), torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return _pipeline(TOY_UNET, TOY_VAE, TOY_TEXT_ENCODER, TOY_TEXT_ENCODER)


def _pipeline(unet: dict[str, Any], vae: dict[str, Any], text: dict[str, Any], text_2: dict[str, Any]) -> Any:
    """An SDXL pipeline of these configurations, its modules made on the current default device and dtype."""
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    modules = {  # made in this order, so that a seed gives each the same weights
        "unet": UNet2DConditionModel(**unet),
        "vae": AutoencoderKL(**vae),
        "text_encoder": CLIPTextModel(CLIPTextConfig(**CLIP_COMMON, **text)),
        "text_encoder_2": CLIPTextModelWithProjection(CLIPTextConfig(**CLIP_COMMON, **text_2)),
    }
    return StableDiffusionXLPipeline(
        **modules,
        tokenizer=clip_tokenizer(),
        tokenizer_2=clip_tokenizer(pad_token="!"),
        scheduler=EulerDiscreteScheduler(**SDXL_SCHEDULER),
    )


def count_guided_step_flops(unet_config: dict[str, Any], latent_size: int) -> tuple[int, int]:
    """(parameters, FLOPs) of one guided UNet step for one frame: batch 2 (unconditional + conditional) at
    ``latent_size``², counted on the meta device."""
    import torch
    from diffusers import UNet2DConditionModel
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        unet = UNet2DConditionModel(**unet_config)
        parameters = sum(p.numel() for p in unet.parameters())
        cross = unet_config["cross_attention_dim"]
        pooled = unet_config["projection_class_embeddings_input_dim"] - 6 * unet_config["addition_time_embed_dim"]
        sample = torch.empty(2, unet_config["in_channels"], latent_size, latent_size)
        hidden = torch.empty(2, 77, cross)
        conditions = {"text_embeds": torch.empty(2, pooled), "time_ids": torch.empty(2, 6)}
        timestep = torch.tensor([999, 999])
    with FlopCounterMode(display=False) as counter:
        unet(sample, timestep, encoder_hidden_states=hidden, added_cond_kwargs=conditions)
    return parameters, int(counter.get_total_flops())


def renderer_backend(plan: Plan, pipe: Any, dtype_name: str, compile_mode: str | None) -> Any:
    """The renderer's own diffusers backend around ``pipe``, set up exactly as the service sets up a loaded model
    (SDPA, channels-last on GPUs, float32 VAE for float16, the renderer's --compile when asked)."""
    import torch

    from services.renderer.diffusers_backend import DiffusersBackend
    from services.renderer.settings import RendererSettings

    # The backend reads only its model options from the settings (``backend`` and ``base_model`` are not used).
    settings = RendererSettings(
        device=plan.device,
        dtype=dtype_name,
        attention="sdpa",
        channels_last=plan.channels_last,
        vae_slicing=True,
        compile=compile_mode or "off",
    )
    backend = DiffusersBackend(settings)
    device = torch.device("cuda", torch.cuda.current_device()) if plan.device == "cuda" else torch.device(plan.device)
    backend.adopt(pipe, device, getattr(torch, dtype_name))
    return backend


# --- timing ---------------------------------------------------------------------------------------------------------


def synchronize(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()
    elif device == "mps":
        torch.mps.synchronize()


@dataclass(frozen=True)
class BatchTime:
    total: float
    denoise: float
    decode: float
    unusable: int  # frames that came out NaN/black (random float16 weights may overflow); timed all the same


def render_batch(backend: Any, plan: Plan, batch: int, seed: int, adapters: tuple[Any, ...] = ()) -> BatchTime:
    """One batch through the renderer's backend, as a Render call's frames go: per-frame prompts and seeds, progress
    callbacks, latents decoded one frame at a time; ``adapters`` (``AdapterWeight``s) on every frame."""
    from services.renderer.backend import FrameSpec

    frames = [
        FrameSpec(
            frame=index + 1,
            prompt=f"{PROMPT}, frame {index + 1}",
            seed=seed + index,
            width=plan.size,
            height=plan.size,
            steps=plan.steps,
            guidance_scale=plan.guidance,
            adapters=adapters,
        )
        for index in range(batch)
    ]
    synchronize(plan.device)
    started = time.perf_counter()
    results = list(backend.render(frames, lambda *_: None, lambda: False))
    synchronize(plan.device)
    total = time.perf_counter() - started
    if len(results) != batch:
        raise RuntimeError(f"{len(results)} of {batch} frames came back")
    denoise = results[0].timings.denoise_seconds
    decode = sum(result.timings.decode_seconds for result in results)
    return BatchTime(total, denoise, decode, sum(result.error is not None for result in results))


def matmul_tflops(device: str, dtype: Any, size: int) -> float:
    """TFLOP/s of a plain square matmul in ``dtype`` on ``device``: the ceiling the UNet is compared with."""
    import torch

    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    synchronize(device)
    runs = 20 if device != "cpu" else 3
    started = time.perf_counter()
    for _ in range(runs):
        a @ b
    synchronize(device)
    return 2 * size**3 * runs / (time.perf_counter() - started) / 1e12


def measure(
    plan: Plan, build: Callable[[str, Any], Any], step_flops: int, log: Callable[[str], None]
) -> tuple[list[Result], dict[str, float]]:
    import torch

    from storyboard_common.errors import ResourceExhausted

    results: list[Result] = []
    peaks: dict[str, float] = {}
    for dtype_name in plan.dtypes:
        dtype = getattr(torch, dtype_name)
        peaks[dtype_name] = matmul_tflops(plan.device, dtype, 1024 if plan.device == "cpu" else 8192)
        for compile_mode in plan.compile_modes:
            backend = renderer_backend(plan, build(plan.device, dtype), dtype_name, compile_mode)
            for batch in plan.batches:
                label = f"{dtype_name} batch {batch}{' compiled' if compile_mode else ''}"
                log(f"{label}: warming up")
                if plan.device == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                try:
                    render_batch(backend, plan, batch, seed=batch)  # warm-up (and compilation), not timed
                    runs = [
                        render_batch(backend, plan, batch, seed=1000 * (r + 1) + batch) for r in range(plan.repeats)
                    ]
                except ResourceExhausted as error:  # the backend's answer to torch.OutOfMemoryError
                    log(f"{label}: {error.message}")
                    continue
                total = statistics.median(run.total for run in runs)
                denoise = statistics.median(run.denoise for run in runs)
                decode = statistics.median(run.decode for run in runs)
                if any(run.unusable for run in runs):
                    log(f"{label}: some frames came out NaN/black (random weights); timed all the same")
                tflops = batch * plan.steps * step_flops / denoise / 1e12
                results.append(
                    Result(
                        dtype=dtype_name,
                        batch=batch,
                        compiled=compile_mode,
                        seconds_per_frame=total / batch,
                        denoise_per_frame=denoise / batch,
                        decode_per_frame=decode / batch,
                        unet_tflops=tflops,
                        peak_memory_gib=torch.cuda.max_memory_allocated() / 2**30 if plan.device == "cuda" else None,
                    )
                )
                log(f"  {total / batch:.3f} s/frame, UNet {_tflop(tflops)} TFLOP/s")
            backend.close()
            del backend
    return results, peaks


# --- report ---------------------------------------------------------------------------------------------------------


def machine(device: str) -> dict[str, str]:
    import diffusers
    import torch
    import transformers

    info = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "host": platform.node(),
        "cpu": cpu_model(),
        "cpu cores": str(os.cpu_count()),
        "torch threads": str(torch.get_num_threads()),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
    }
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        info["gpu"] = f"{props.name}, {props.total_memory / 2**30:.0f} GiB"
        info["cuda"] = str(torch.version.cuda)
        info["cudnn"] = str(torch.backends.cudnn.version())
    return info


def device_slug(plan: Plan) -> str:
    import torch

    name = torch.cuda.get_device_name(0) if plan.device == "cuda" else plan.device
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return f"{slug}-toy" if plan.toy else slug


def report(
    plan: Plan, parameters: int, step_flops: int, results: list[Result], peaks: dict[str, float], facts: dict[str, str]
) -> str:
    size = f"{plan.size}x{plan.size}"
    latent = plan.size // 2 if plan.toy else plan.size // 8
    model = "tiny SDXL-shaped model (bench/sdxl_bench.py's toy) - NOT SDXL performance" if plan.toy else "SDXL-base 1.0"
    lines = [
        f"# SDXL benchmark: {model}",
        "",
        f"{plan.steps} Euler steps at {size} with guidance {plan.guidance:g} (the UNet runs on twice the batch), "
        "random weights, the renderer's diffusers backend, SDPA attention"
        + (", channels-last UNet" if plan.channels_last else "")
        + "; latents decoded one frame at a time (float32 VAE when computing in float16); PNG encoding not included.",
        f"UNet: {parameters:,} parameters; one guided step for one frame = {_tflop(step_flops / 1e12)} TFLOP "
        f"(FlopCounterMode on the meta device, batch 2 at {latent}x{latent} latents).",
        "",
        "| | |",
        "| --- | --- |",
        *(f"| {key} | {value} |" for key, value in facts.items()),
        *(f"| matmul {dtype} | {_tflop(tflops)} TFLOP/s |" for dtype, tflops in peaks.items()),
        "",
        "| dtype | batch | torch.compile | s/frame | denoise s/frame | decode s/frame | frames/s | UNet TFLOP/s "
        "| of matmul | peak GiB |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        share = f"{r.unet_tflops / peaks[r.dtype]:.0%}" if peaks.get(r.dtype) else "-"
        memory = f"{r.peak_memory_gib:.1f}" if r.peak_memory_gib is not None else "-"
        cells = [
            r.dtype,
            str(r.batch),
            r.compiled or "no",
            f"{r.seconds_per_frame:.3f}",
            f"{r.denoise_per_frame:.3f}",
            f"{r.decode_per_frame:.3f}",
            f"{1 / r.seconds_per_frame:.2f}",
            _tflop(r.unet_tflops),
            share,
            memory,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    if not results:
        lines.append("| (no configuration completed) | | | | | | | | | |")
    return "\n".join(lines) + "\n"


def _tflop(value: float) -> str:
    """Three significant digits: 13.5 for SDXL, 0.00154 for the toy."""
    return f"{value:.3g}"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    if args.flops_only:
        parameters, flops = count_guided_step_flops(real_unet_config(), 128)
        print(f"SDXL-base UNet: {parameters:,} parameters; one guided step at 1024x1024 (batch 2, 128x128 latents): "
              f"{flops / 1e12:.3f} TFLOP")  # fmt: skip
        return 0 if parameters == SDXL_UNET_PARAMETERS else 1
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    plan = make_plan(args)
    if plan.toy:
        unet_config = dict(TOY_UNET)
        parameters, step_flops = count_guided_step_flops(unet_config, plan.size // 2)  # the tiny VAE scales by 2
        build: Callable[[str, Any], Any] = build_toy_pipeline
    else:
        parameters, step_flops = count_guided_step_flops(real_unet_config(), plan.size // 8)
        build = build_real_pipeline
    log(f"{'toy' if plan.toy else 'SDXL-base'} on {plan.device}: {parameters:,} UNet parameters, "
        f"{_tflop(step_flops / 1e12)} TFLOP per guided step")  # fmt: skip
    results, peaks = measure(plan, build, step_flops, log)
    text = report(plan, parameters, step_flops, results, peaks, machine(plan.device))
    output = args.output or RESULTS / f"sdxl_{device_slug(plan)}.md"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    print(text)
    log(f"written to {output}")
    return 0 if results else 1


if __name__ == "__main__":
    sys.exit(main())
