"""bench/gpu: the device benchmark end to end on the CPU (--tiny), the LoRA it writes loads through the renderer, the
rows it would skip say why, the wheels it carries come from the lock, and the renderer's backend imports nothing of
the SDK's (PNG/PDF) dependencies."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

from bench.gpu import run, wheels

ROOT = Path(__file__).resolve().parents[2]


def test_the_tiny_run_writes_results_json_and_the_table(tmp_path: Path, capsys):
    threads = torch.get_num_threads()
    try:
        assert run.main(["--tiny", "--threads", "1", "--repeats", "1", str(tmp_path)]) == 0
    finally:
        torch.set_num_threads(threads)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["size"] == 64 and results["steps"] == 2
    assert results["bf16_matmul_tflops"] > 0 and results["frame_tflop"] == results["step_tflop"] * 2
    rows = results["rows"]
    planned = [(c.compile, lora, b) for c in run.configurations(tiny=True) for lora in _loras(c) for b in c.batches]
    assert [(row["compile"], row["lora"], row["batch"]) for row in rows] == planned
    fields = _renderer_fields()
    for row in rows:
        assert row["note"] != run.UNFINISHED
        if row["note"].startswith("skipped"):
            assert row["seconds_per_frame"] is None and "has no --" in row["note"]
            continue
        assert row["seconds_per_frame"] > 0 and row["denoise_per_frame"] > 0 and row["decode_per_frame"] > 0
        assert row["share_of_floor"] == results["floor_seconds_per_frame"] / row["seconds_per_frame"]
    measured = {(row["compile"], row["lora"], row["batch"]) for row in rows if row["seconds_per_frame"]}
    assert {("off", "none", 1), ("off", "none", 4), ("off", "unmerged", 1), ("off", "unmerged", 4)} <= measured
    if "merge_loras" in fields:
        assert ("off", "merged", 4) in measured
    if "compile" in fields:
        assert ("regional", "merged", 1) in measured
    table = (tmp_path / "results.md").read_text()
    assert table.startswith("# SDXL on the renderer's diffusers backend: tiny SDXL-shaped model")
    assert "| peft |" in table and "at the measured bf16 matmul rate" in table
    assert len([line for line in table.splitlines() if line.startswith("| float32 |")]) == len(rows)
    assert table in capsys.readouterr().out


def _loras(configuration: run.Configuration) -> list[str]:
    return (["none"] if configuration.also_without_lora else []) + [configuration.lora]


def _renderer_fields() -> set[str]:
    from services.renderer.settings import RendererSettings

    return set(RendererSettings.model_fields)


def test_the_written_lora_is_the_original_layout_and_loads_through_the_renderer(tmp_path: Path):
    from bench import sdxl_bench
    from services.renderer.adapters import AdapterCatalog
    from services.renderer.lora import LoraAdapters

    folder = run.write_peft_checkpoint(tmp_path / "hero", run.lora_state(run.model_configs(tiny=True), seed=1))
    assert sorted(p.name for p in folder.iterdir()) == ["text_encoder_one_lora", "text_encoder_two_lora", "unet_lora"]
    config = json.loads((folder / "unet_lora" / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"]) == (64, 32)
    assert sorted(config["target_modules"]) == sorted(run.UNET_TARGETS)
    pipe = sdxl_bench.build_toy_pipeline("cpu", torch.float32)
    adapters = LoraAdapters(pipe, AdapterCatalog(tmp_path), max_loaded=2)
    adapters.activate([_weight("hero")])
    assert adapters.loaded_names() == ("hero",)
    for component in ("unet", "text_encoder", "text_encoder_2"):
        assert any(".lora_A." in name for name, _ in getattr(pipe, component).named_parameters()), component


def _weight(name: str):  # type: ignore[no-untyped-def]
    from services.renderer.backend import AdapterWeight

    return AdapterWeight(name, 1.0)


def test_a_row_the_renderer_cannot_run_is_skipped_naming_the_setting():
    merged = run.Configuration("bfloat16", compile="regional", lora="merged")
    expected = "skipped: the renderer in this tree has no --compile, --merge-loras setting"
    assert run.unsupported(merged, {"dtype"}) == expected
    assert run.unsupported(merged, {"dtype", "compile", "merge_loras", "vae_upcast"}) == ""
    unmerged = run.Configuration("bfloat16", lora="unmerged")  # what a renderer without the setting does anyway
    assert run.unsupported(unmerged, {"dtype"}) == ""
    assert unmerged.settings({"dtype", "merge_loras"}) == {"dtype": "bfloat16", "merge_loras": False}
    assert run.Configuration("float16").settings(set())["vae_upcast"] == "never"  # decoded as the fp16-fix VAE does


def test_no_row_starts_once_the_budget_is_spent(tmp_path: Path):
    result = run.Run("m", 64, 2, 5.0, 1, {}, 1, step_tflop=1.0, bf16_matmul_tflops=1.0)
    saved = []
    bench = run.Bench(
        None, None, tmp_path, result, lambda _: None, lambda: saved.append(len(result.rows)), deadline=0.0
    )
    run.measure_configuration(bench, run.Configuration("float32"), {"dtype"})  # no backend is even built
    assert [(row.batch, row.note) for row in result.rows] == [(1, run.BUDGET_SPENT), (4, run.BUDGET_SPENT)]
    assert saved == [2]


def test_the_floor_is_the_frames_flops_at_the_matmul_rate():
    result = run.Run("m", 1024, 40, 5.0, 1, {}, 1, step_tflop=13.5, bf16_matmul_tflops=800.0)
    assert result.frame_tflop == 540.0
    assert abs(result.floor_seconds - 0.675) < 1e-12
    assert run.share_of_floor(1.35, result.floor_seconds) == 0.5


def test_the_carried_wheels_are_the_lock_pins_and_only_the_missing_ones_install():
    pins = wheels.lock_pins((ROOT / "requirements.lock").read_text())
    assert set(pins) == {wheels.normalized(name) for name in wheels.CARRIED}
    assert pins["diffusers"] and pins["pydantic-settings"]
    text = "".join(f"{name}=={version}\n" for name, version in pins.items())
    assert wheels.read_pins(text) == pins
    there = {"diffusers": None, "pydantic": "2.0.0", "typing-extensions": "99.0"}
    wanted = wheels.missing({k: pins[k] for k in there}, there.get)
    assert wanted == {"diffusers": pins["diffusers"], "pydantic": pins["pydantic"]}  # absent or older: carried
    assert wheels.missing(pins, wheels.installed_version) == {}  # this venv has them all: nothing to install here


def test_the_renderer_backend_and_the_benchmark_import_none_of_the_sdk_or_its_png_pdf_dependencies():
    code = (
        "import sys; import services.renderer.diffusers_backend; import bench.gpu.run; import bench.sdxl_bench; "
        "print(' '.join(sorted(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    loaded = {name.split(".")[0] for name in out.split()}
    assert not loaded & {"storyboard", "reportlab", "av", "fastapi", "open_clip", "openai", "rich"}, loaded
    assert not [name for name in out.split() if name.startswith(("services.planner", "services.validator"))]
    assert "diffusers" not in loaded  # imported lazily, when a model is loaded or adopted
