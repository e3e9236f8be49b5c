"""The SDXL device benchmark as one prepared script: the renderer's own diffusers backend on real-size SDXL-base.

    make gpu-wheels                                        # here: the wheels the GPU machine lacks, bench/gpu/wheels/
    timeout 470 python3 bench/gpu/run.py $OUT              # there, carrying the wheels: no network, under 8 minutes
    .venv/bin/python bench/gpu/run.py --tiny OUT           # any CPU: the same script on a tiny model, in seconds

SDXL-base 1.0 is built from bench/sdxl_bench.py's configs with random weights (nothing downloaded; random weights cost
what trained ones do), with a random rank-64 LoRA written in the original system's checkpoint layout (unet_lora/,
text_encoder_one_lora/, text_encoder_two_lora/: PEFT folders) and loaded by the renderer from an adapters folder.
Each configuration is a ``DiffusersBackend`` set up by ``adopt`` from ``RendererSettings``, exactly as the service
sets up a loaded model, and each row renders batches through its ``render``: per-frame prompts and seeds, 40 Euler
steps with classifier-free guidance at 1024x1024, progress callbacks, one VAE decode per frame. A warm-up batch (2
steps, same size and batch, compilation included) runs before each row and is not timed.

Rows: eager float16 (the VAE decoding in float16, as the fp16-fix VAE does) and bfloat16; bfloat16 with the LoRA
unmerged and merged (``merge_loras``); compiled (``compile`` regional and full) with the LoRA; batch 1 and 4. A row
whose renderer setting this tree does not have is written as skipped, saying which. The chip's bf16 matmul rate is
measured in the same run; each row's seconds per frame are compared with the floor: the UNet's FLOPs per frame
(13.5 TFLOP per guided step x 40 steps: 540 TFLOP) at that rate. No row starts once ``--budget-s`` is spent (the
compiled rows come last: compiling takes minutes), and ``results.json`` and ``results.md`` are rewritten as every row
starts and ends, so a run stopped at its time limit still leaves what it measured.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # for bench and the services when run as a script

from bench.gpu import wheels  # noqa: E402  (standard library only: it installs what the imports below need)

ADAPTER = "hero"
LORA_RANK, LORA_ALPHA = 64, 32  # the original system's character LoRAs
UNET_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
TEXT_TARGETS = ("q_proj", "v_proj")
WARM_UP_STEPS = 2
LORA_STD = 0.01  # small, so the adapter changes the frames without pushing random float16 weights to overflow


@dataclass(frozen=True)
class Configuration:
    """One backend set-up: the renderer settings that differ between rows, and the rows rendered with it."""

    dtype: str
    compile: str = "off"  # RendererSettings.compile: off | regional | full
    lora: str = "none"  # none | unmerged | merged
    batches: tuple[int, ...] = (1, 4)
    also_without_lora: bool = False  # first rows of the same backend with no adapter on the frames

    @property
    def label(self) -> str:
        return f"{self.dtype}, compile {self.compile}, LoRA {self.lora}"

    def settings(self, fields: set[str]) -> dict[str, Any]:
        """The RendererSettings fields this configuration sets beyond the common ones. Unmerged LoRAs are what a
        renderer without ``merge_loras`` does, so they need the setting only where it exists."""
        chosen: dict[str, Any] = {"dtype": self.dtype}
        if self.compile != "off":
            chosen["compile"] = self.compile
        if self.lora == "merged" or (self.lora == "unmerged" and "merge_loras" in fields):
            chosen["merge_loras"] = self.lora == "merged"
        if self.dtype == "float16":
            chosen["vae_upcast"] = "never"  # as the fp16-fix VAE the deployments use decodes
        return chosen


def configurations(tiny: bool = False) -> list[Configuration]:
    """What is measured, in this order (the cheapest first, so a spent budget drops the compiled rows last). --tiny
    computes in float32 throughout: CPUs crawl in float16 and, without bf16 units, in bfloat16."""
    fp16, bf16 = ("float32", "float32") if tiny else ("float16", "bfloat16")
    return [
        Configuration(fp16),
        Configuration(bf16, lora="unmerged", also_without_lora=True),
        Configuration(bf16, lora="merged"),
        Configuration(bf16, compile="regional", lora="merged"),
        Configuration(bf16, compile="full", lora="merged", batches=(1,)),
    ]


def unsupported(configuration: Configuration, fields: set[str]) -> str:
    """Why this tree's renderer cannot run ``configuration`` (a setting it does not have), or ''."""
    absent = sorted(name for name in configuration.settings(fields) if name not in fields)
    if not absent:
        return ""
    names = ", ".join(f"--{name.replace('_', '-')}" for name in absent)
    return f"skipped: the renderer in this tree has no {names} setting"


@dataclass
class Row:
    """One measured (or skipped) row of the table."""

    dtype: str
    compile: str
    lora: str
    batch: int
    seconds_per_frame: float | None = None
    denoise_per_frame: float | None = None
    decode_per_frame: float | None = None
    share_of_floor: float | None = None
    peak_memory_gib: float | None = None
    compiled_graphs: int | None = None
    unusable_frames: int = 0
    note: str = ""


@dataclass
class Run:
    """Everything results.json holds."""

    model: str
    size: int
    steps: int
    guidance: float
    repeats: int
    machine: dict[str, str]
    unet_parameters: int
    step_tflop: float
    bf16_matmul_tflops: float
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def frame_tflop(self) -> float:
        return self.step_tflop * self.steps

    @property
    def floor_seconds(self) -> float:
        """A frame's UNet FLOPs at the chip's bf16 matmul rate: no frame can be faster."""
        return self.frame_tflop / self.bf16_matmul_tflops


def share_of_floor(seconds_per_frame: float, floor_seconds: float) -> float:
    return floor_seconds / seconds_per_frame


# --- models ---------------------------------------------------------------------------------------------------------


def model_configs(tiny: bool) -> dict[str, dict[str, Any]]:
    """The UNet and text encoder configs of the model (bench/sdxl_bench.py's), by pipeline component."""
    from bench import sdxl_bench as sdxl

    text = sdxl.TOY_TEXT_ENCODER if tiny else sdxl.SDXL_TEXT_ENCODER
    text_2 = sdxl.TOY_TEXT_ENCODER if tiny else sdxl.SDXL_TEXT_ENCODER_2
    return {
        "unet": dict(sdxl.TOY_UNET if tiny else sdxl.SDXL_UNET),
        "text_encoder": {**sdxl.CLIP_COMMON, **text},
        "text_encoder_2": {**sdxl.CLIP_COMMON, **text_2},
    }


def lora_state(configs: dict[str, dict[str, Any]], seed: int) -> dict[str, tuple[Any, dict[str, Any]]]:
    """A random LoRA (rank 64, alpha 32) per component: its peft ``LoraConfig`` and peft state dict. peft lays the
    adapter out on a copy of the model built on the meta device (no memory, no weights); the values are drawn here."""
    import torch
    from diffusers import UNet2DConditionModel
    from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    with torch.device("meta"):
        modules = {
            "unet": (UNet2DConditionModel(**configs["unet"]), UNET_TARGETS),
            "text_encoder": (CLIPTextModel(CLIPTextConfig(**configs["text_encoder"])), TEXT_TARGETS),
            "text_encoder_2": (CLIPTextModelWithProjection(CLIPTextConfig(**configs["text_encoder_2"])), TEXT_TARGETS),
        }
        layouts = {}
        for name, (module, targets) in modules.items():
            config = LoraConfig(r=LORA_RANK, lora_alpha=LORA_ALPHA, target_modules=list(targets))
            inject_adapter_in_model(config, module, adapter_name="default")
            layouts[name] = (config, get_peft_model_state_dict(module, adapter_name="default"))
    generator = torch.Generator("cpu").manual_seed(seed)
    lora = {}
    for name, (config, layout) in layouts.items():
        weights = {key: torch.randn(value.shape, generator=generator) * LORA_STD for key, value in layout.items()}
        lora[name] = (config, weights)
    return lora


def write_peft_checkpoint(folder: Path, lora: dict[str, tuple[Any, dict[str, Any]]]) -> Path:
    """The original system's layout: one folder per component, each what ``PeftModel.save_pretrained`` writes
    (``adapter_config.json``, ``adapter_model.safetensors`` with keys under ``base_model.model.``; text encoder
    modules named as transformers 4, which trained the users' checkpoints, named them: ``text_model.``)."""
    from safetensors.torch import save_file

    from services.renderer.lora import PEFT_PARTS, PEFT_WEIGHTS  # the layout the renderer reads

    for component, (config, weights) in lora.items():
        target = folder / PEFT_PARTS[component]
        config.save_pretrained(str(target))
        prefix = "base_model.model." if component == "unet" else "base_model.model.text_model."
        tensors = {prefix + key.removeprefix("text_model."): value.contiguous() for key, value in weights.items()}
        save_file(tensors, str(target / PEFT_WEIGHTS), metadata={"format": "pt"})
    return folder


# --- measuring ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bench:
    """What every row shares: the plan (device, size, steps), how to build the model, where the adapter is."""

    plan: Any  # bench.sdxl_bench.Plan
    build: Callable[[str, Any], Any]
    adapters_dir: Path
    run: Run
    log: Callable[[str], None]
    save: Callable[[], None]
    deadline: float


def backend_for(bench: Bench, configuration: Configuration, fields: set[str]) -> Any:
    """The renderer's DiffusersBackend around a freshly built model, set up by ``adopt`` from RendererSettings."""
    import torch

    from services.renderer.diffusers_backend import DiffusersBackend, resolve_device
    from services.renderer.settings import RendererSettings

    plan = bench.plan
    settings = RendererSettings(
        device=plan.device,
        attention="sdpa",
        channels_last=plan.channels_last,
        vae_slicing=True,
        adapters_dir=bench.adapters_dir,
        **configuration.settings(fields),
    )
    backend = DiffusersBackend(settings)
    dtype = getattr(torch, configuration.dtype)
    backend.adopt(bench.build(plan.device, dtype), resolve_device(plan.device), dtype)
    return backend


def measure_row(bench: Bench, backend: Any, row: Row) -> None:
    """Warm up (not timed), then time ``plan.repeats`` batches; fills ``row`` in."""
    import torch

    from bench import sdxl_bench as sdxl
    from services.renderer.backend import AdapterWeight

    plan = bench.plan
    adapters = (AdapterWeight(ADAPTER, 1.0),) if row.lora != "none" else ()
    graphs_before = _compiled_graphs()
    if plan.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    warm_up = dataclasses.replace(plan, steps=WARM_UP_STEPS)
    sdxl.render_batch(backend, warm_up, row.batch, seed=row.batch, adapters=adapters)
    graphs_warm = _compiled_graphs()
    runs = [
        sdxl.render_batch(backend, plan, row.batch, seed=1000 * (r + 1) + row.batch, adapters=adapters)
        for r in range(plan.repeats)
    ]
    row.seconds_per_frame = statistics.median(run.total for run in runs) / row.batch
    row.denoise_per_frame = statistics.median(run.denoise for run in runs) / row.batch
    row.decode_per_frame = statistics.median(run.decode for run in runs) / row.batch
    row.share_of_floor = share_of_floor(row.seconds_per_frame, bench.run.floor_seconds)
    row.peak_memory_gib = torch.cuda.max_memory_allocated() / 2**30 if plan.device == "cuda" else None
    row.compiled_graphs = graphs_warm - graphs_before
    row.unusable_frames = sum(run.unusable for run in runs)
    recompiled = _compiled_graphs() - graphs_warm
    if recompiled:
        row.note = f"dynamo compiled {recompiled} graph(s) during the timed batches: their time includes compiling"
    elif row.compile != "off" and row.compiled_graphs == 0 and row.batch == 1:
        row.note = "compile was asked for, but dynamo compiled no graph: the row ran eager"


def _compiled_graphs() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


BUDGET_SPENT = "skipped: the run's --budget-s was spent"
UNFINISHED = "started, not finished: the run stopped here"


def measure_configuration(bench: Bench, configuration: Configuration, fields: set[str]) -> None:
    """Every row of one configuration, appended to the run as it is measured (or skipped, saying why)."""
    loras = (["none"] if configuration.also_without_lora else []) + [configuration.lora]
    rows = [
        Row(configuration.dtype, configuration.compile, lora, batch)
        for lora in loras
        for batch in configuration.batches
    ]
    reason = unsupported(configuration, fields) or (BUDGET_SPENT if time.monotonic() > bench.deadline else "")
    if reason:
        skip(bench, f"{configuration.label}", rows, reason)
        return
    try:
        backend = backend_for(bench, configuration, fields)
    except Exception as error:  # one failed configuration must not lose the others of a one-shot device run
        bench.log(traceback.format_exc())
        skip(bench, configuration.label, rows, f"failed to set up: {type(error).__name__}: {error}"[:300])
        return
    try:
        for index, row in enumerate(rows):
            if time.monotonic() > bench.deadline:
                skip(bench, configuration.label, rows[index:], BUDGET_SPENT)
                return
            bench.log(f"{configuration.label}, batch {row.batch}{' (no LoRA on the frames)' * (row.lora == 'none')}")
            record_row(bench, backend, row)
    finally:
        backend.close()


def skip(bench: Bench, label: str, rows: list[Row], reason: str) -> None:
    for row in rows:
        row.note = reason
    bench.run.rows += rows
    bench.log(f"{label}: {reason}")
    bench.save()


def record_row(bench: Bench, backend: Any, row: Row) -> None:
    """Measure ``row`` and save it; saved first as unfinished, so a run stopped mid-row still says where."""
    from storyboard_common.errors import ResourceExhausted

    row.note = UNFINISHED
    bench.run.rows.append(row)
    bench.save()
    row.note = ""
    try:
        measure_row(bench, backend, row)
    except ResourceExhausted as error:  # the backend's answer to running out of device memory
        row.note = f"out of memory: {error.message}"
    except Exception as error:  # one failed row must not lose the others of a one-shot device run
        row.note = f"failed: {type(error).__name__}: {error}"[:300]
        bench.log(traceback.format_exc())
    bench.log(f"  {_seconds(row.seconds_per_frame)} s/frame, {_share(row.share_of_floor)} of the floor")
    bench.save()


# --- report ---------------------------------------------------------------------------------------------------------


def markdown(run: Run) -> str:
    """results.md: what was run, on what, and the table."""
    lines = [
        f"# SDXL on the renderer's diffusers backend: {run.model}",
        "",
        f"{run.steps} Euler steps at {run.size}x{run.size}, guidance {run.guidance:g} (the UNet runs on twice the "
        f"batch), random weights, SDPA attention; latents decoded one frame at a time; PNG encoding not included. "
        f"Warm-up batches excluded; median of {run.repeats} timed batch(es) per row.",
        f"Floor: {run.step_tflop:.3g} TFLOP per guided step x {run.steps} = {run.frame_tflop:.3g} TFLOP per frame "
        f"({run.unet_parameters:,}-parameter UNet, FlopCounterMode) at the measured bf16 matmul rate of "
        f"{run.bf16_matmul_tflops:.3g} TFLOP/s = {_seconds(run.floor_seconds)} s per frame.",
        "",
        "| | |",
        "| --- | --- |",
        *(f"| {key} | {value} |" for key, value in run.machine.items()),
        "",
        "| dtype | compile | LoRA | batch | s/frame | denoise s/frame | decode s/frame | share of floor | peak GiB "
        "| graphs compiled | note |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in run.rows:
        cells = [row.dtype, row.compile, row.lora, str(row.batch), _seconds(row.seconds_per_frame)]
        cells += [_seconds(row.denoise_per_frame), _seconds(row.decode_per_frame), _share(row.share_of_floor)]
        cells += [_number(row.peak_memory_gib, ".1f"), _number(row.compiled_graphs, "d"), _row_note(row)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", *(f"- {note}" for note in run.notes)] if run.notes else []
    return "\n".join(lines) + "\n"


def _row_note(row: Row) -> str:
    unusable = f"{row.unusable_frames} frame(s) NaN/black (random weights), timed all the same" * bool(
        row.unusable_frames
    )
    return "; ".join(part for part in (row.note, unusable) if part)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _number(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def save(run: Run, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    data = dataclasses.asdict(run) | {"frame_tflop": run.frame_tflop, "floor_seconds_per_frame": run.floor_seconds}
    (folder / "results.json").write_text(json.dumps(data, indent=2) + "\n")
    (folder / "results.md").write_text(markdown(run))


# --- main -----------------------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", type=Path, help="folder for results.json and results.md")
    parser.add_argument("--tiny", action="store_true", help="a tiny SDXL-shaped model at 64x64, 2 steps, on the CPU")
    parser.add_argument("--repeats", type=int, default=2, help="timed batches per row (median)")
    parser.add_argument("--budget-s", type=float, default=300.0, help="start no row after this many seconds")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads; 0 keeps torch's default")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    started = time.monotonic()
    args = parse_args(argv)

    def log(message: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {message}", file=sys.stderr, flush=True)

    wheels.install_missing(log=log)
    import torch

    from bench import sdxl_bench as sdxl
    from services.renderer.settings import RendererSettings

    if args.threads:
        torch.set_num_threads(args.threads)
    device = "cpu" if args.tiny else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run with --tiny on a CPU")
    toy = sdxl.TOY_UNET if args.tiny else sdxl.real_unet_config()
    plan = sdxl.Plan(
        device=device,
        toy=args.tiny,
        dtypes=[],
        batches=[],
        steps=2 if args.tiny else 40,
        size=64 if args.tiny else 1024,
        guidance=5.0,
        repeats=args.repeats,
        compile_modes=[None],
        channels_last=device == "cuda",
    )
    log("counting the UNet's FLOPs on the meta device; measuring the bf16 matmul rate")
    parameters, step_flops = sdxl.count_guided_step_flops(toy, plan.size // (2 if args.tiny else 8))
    run = Run(
        model="tiny SDXL-shaped model (--tiny): NOT SDXL performance" if args.tiny else "SDXL-base 1.0, random weights",
        size=plan.size,
        steps=plan.steps,
        guidance=plan.guidance,
        repeats=plan.repeats,
        machine=_machine(sdxl, device),
        unet_parameters=parameters,
        step_tflop=step_flops / 1e12,
        bf16_matmul_tflops=sdxl.matmul_tflops(device, torch.bfloat16, 1024 if args.tiny else 8192),
    )
    build = sdxl.build_toy_pipeline if args.tiny else sdxl.build_real_pipeline
    with tempfile.TemporaryDirectory(prefix="storyboard-gpu-bench-") as adapters:
        adapters_dir = Path(adapters)
        log(f"writing a random rank-{LORA_RANK} LoRA in the original's layout to {adapters_dir / ADAPTER}")
        write_peft_checkpoint(adapters_dir / ADAPTER, lora_state(model_configs(args.tiny), seed=1))
        bench = Bench(plan, build, adapters_dir, run, log, lambda: save(run, args.output), started + args.budget_s)
        fields = set(RendererSettings.model_fields)
        for configuration in configurations(args.tiny):
            measure_configuration(bench, configuration, fields)
    run.notes.append(f"whole run: {time.monotonic() - started:.0f} s")
    save(run, args.output)
    print(markdown(run))
    return 0 if any(row.seconds_per_frame for row in run.rows) else 1


def _machine(sdxl: Any, device: str) -> dict[str, str]:
    import peft

    return sdxl.machine(device) | {"peft": peft.__version__}


if __name__ == "__main__":
    sys.exit(main())
