"""The SDXL benchmark's CPU paths: the toy run end to end, and the real SDXL-base UNet built and counted on the meta
device (the real-size run itself needs a GPU)."""

from __future__ import annotations

from pathlib import Path

import torch

from bench import sdxl_bench


def test_the_toy_benchmark_runs_and_writes_its_table(tmp_path: Path, capsys):
    output = tmp_path / "sdxl_toy.md"
    argv = ["--toy", "--device", "cpu", "--dtypes", "float32", "--batches", "1,2", "--steps", "2", "--threads", "1"]
    threads = torch.get_num_threads()
    try:
        assert sdxl_bench.main([*argv, "--output", str(output)]) == 0
    finally:
        torch.set_num_threads(threads)
    table = output.read_text()
    assert table.startswith("# SDXL benchmark: tiny SDXL-shaped model")
    assert "2 Euler steps at 64x64 with guidance 5" in table
    for fact in ("| date |", "| cpu |", "| torch threads | 1 |", "| torch |", "| diffusers |", "| matmul float32 |"):
        assert fact in table
    rows = [line for line in table.splitlines() if line.startswith("| float32 |")]
    assert [row.split(" | ")[1] for row in rows] == ["1", "2"]
    seconds = [float(row.split(" | ")[3]) for row in rows]
    assert all(s > 0 for s in seconds)
    assert table in capsys.readouterr().out


def test_the_real_sdxl_unet_is_built_and_counted_on_the_meta_device():
    parameters, flops = sdxl_bench.count_guided_step_flops(sdxl_bench.real_unet_config(), 128)
    assert parameters == sdxl_bench.SDXL_UNET_PARAMETERS == 2_567_463_684
    assert 13.4e12 < flops < 13.6e12  # one guided step (batch 2) at 1024x1024
