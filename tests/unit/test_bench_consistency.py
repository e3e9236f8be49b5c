"""bench/consistency.py on the tiny SDXL, a tiny LoRA and the tiny CLIP, built in code: every mode runs end to end
through the renderer's and the validator's own services; without weights it says so and stops."""

from __future__ import annotations

import re

import pytest

from bench import consistency
from tests.support.tiny_clip import build_tiny_clip
from tests.support.tiny_ip_adapter import build_tiny_ip_adapter
from tests.support.tiny_sdxl import TINY_SIZE, build_tiny_sdxl, write_diffusers_lora


def test_without_weights_it_says_so_and_prints_the_anchors(capsys):
    assert consistency.main(["--base-model", "/no/such/sdxl"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("skipped: no SDXL weights on disk")
    assert "StoryDiffusion  0.888  0.876" in printed


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("consistency")
    model = build_tiny_sdxl(root / "sdxl")
    (root / "adapters").mkdir()
    write_diffusers_lora(model, root / "adapters" / "hero.safetensors", seed=1)
    build_tiny_ip_adapter(model, root / "ip_adapter")
    return model, root / "adapters", build_tiny_clip(root / "clip"), root


def test_each_mode_renders_and_scores_a_prompt_set_through_the_services(tiny):
    model, adapters, clip, root = tiny
    output = root / "consistency.md"
    argv = ["--base-model", model.base_model, "--clip-model", clip.clip_model, "--adapters-dir", str(adapters),
            "--lora", "hero", "--trigger-token", "hero_token", "--subjects", "1", "--size", str(TINY_SIZE),
            "--steps", "2", "--device", "cpu", "--ip-adapter", str(root / "ip_adapter"),
            "--modes", "lora", "ip-adapter", "shared-attention", "--output", str(output)]  # fmt: skip
    assert consistency.main(argv) == 0
    text = output.read_text()
    modes = r"none|lora|ip-adapter|shared-attention"
    rows = dict(re.findall(rf"^\| ({modes}) \| (-?\d\.\d{{3}} \| -?\d\.\d{{3}} \| 5) \|$", text, re.MULTILINE))
    # The IP-Adapter mode's references are the plain mode's first frames, so the plain mode runs too.
    assert set(rows) == {"none", "lora", "ip-adapter", "shared-attention"}, text
    assert rows["lora"] != rows["none"] and rows["ip-adapter"] != rows["none"]  # they change the pictures
    assert "| IP-Adapter | 0.846 | 0.943 |" in text
