"""Characters that stay themselves, end to end on the tiny models built in code and loaded through the real loaders:
two registered characters, each with a tiny LoRA and a reference picture, in one storyboard (and in one frame), on
the diffusers renderer with a tiny IP-Adapter and the validator on a tiny CLIP."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest
from PIL import Image

from storyboard import Client
from storyboard_common.v1 import renderer_pb2, renderer_pb2_grpc
from tests.support.stack import in_process_stack
from tests.support.tiny_clip import build_tiny_clip
from tests.support.tiny_ip_adapter import build_tiny_ip_adapter
from tests.support.tiny_sdxl import build_tiny_sdxl, write_diffusers_lora

pytestmark = pytest.mark.integration
STORY = "Aldar Kose tricks the merchant at the bazaar and sells him a magical pot, then the merchant chases Aldar Kose"
REGISTRY = """
[[characters]]
name = "Aldar Kose"
trigger_token = "aldar_kose_man"
adapter = "aldar"
reference_images = ["aldar.png"]
reference_scale = 0.8

[[characters]]
name = "the merchant"
aliases = ["merchant"]
trigger_token = "rich_merchant"
adapter = "merchant"
adapter_weight = 0.7
reference_images = ["merchant.png"]
"""


def test_two_characters_with_loras_and_pictures_in_one_storyboard_and_one_frame(tmp_path):
    model = build_tiny_sdxl(tmp_path / "sdxl")
    (tmp_path / "adapters").mkdir()
    write_diffusers_lora(model, tmp_path / "adapters" / "aldar.safetensors", seed=1)
    write_diffusers_lora(model, tmp_path / "adapters" / "merchant.safetensors", seed=2)
    ip_adapter = build_tiny_ip_adapter(model, tmp_path / "ip_adapter")
    for name, colour in (("aldar", "saddlebrown"), ("merchant", "gold")):
        Image.new("RGB", (96, 96), colour).save(tmp_path / f"{name}.png")
    (tmp_path / "characters.toml").write_text(REGISTRY)
    renderer = {"backend": "diffusers", "base_model": model.base_model, "adapters_dir": tmp_path / "adapters",
                "ip_adapter": ip_adapter.folder, "min_size": 256, "max_size": 256, "batch_window_ms": 0}  # fmt: skip
    planner = {"characters_file": tmp_path / "characters.toml"}
    validator = build_tiny_clip(tmp_path / "clip").settings()
    with in_process_stack(tmp_path / "outputs", planner=planner, renderer=renderer, validator=validator) as stack:
        with Client(stack.address) as client:
            result = client.generate(story=STORY, num_frames=6, width=256, height=256, num_inference_steps=2).wait()
        with grpc.insecure_channel(stack.renderer_address) as channel:
            info = renderer_pb2_grpc.RendererStub(channel).Info(renderer_pb2.RendererInfoRequest(), timeout=30)
    assert result.failure is None, result.failure
    assert info.ip_adapter and {"aldar", "merchant"} <= set(info.loaded_adapters)
    folder = Path(result.final.output_dir)
    plan = result.plan
    both = [s.frame for s in plan.scenes if {"aldar_kose_man", "rich_merchant"} <= set(s.trigger_tokens)]
    assert both, [list(s.trigger_tokens) for s in plan.scenes]
    frames = json.loads((folder / "frames.json").read_text())["frames"]
    for entry, scene in zip(frames, plan.scenes, strict=True):
        # Every character the frame shows is scored against its own picture.
        assert set(entry["scores"].get("characters", {})) == set(scene.trigger_tokens), entry
        assert all(attempt["backend"] == "diffusers" for attempt in entry["attempts"])
    report = json.loads((folder / "report.json").read_text())
    assert set(report["reference_consistency"]) == {"aldar_kose_man", "rich_merchant"}
    assert {both[0]} <= set(report["reference_consistency"]["rich_merchant"]["frames"])
    assert [c.adapter_weight for c in plan.characters] == [pytest.approx(1.0), pytest.approx(0.7)]
