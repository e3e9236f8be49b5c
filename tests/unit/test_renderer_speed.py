"""The renderer's speed settings on the tiny SDXL pipeline (CPU, 64x64, 2 steps), through the backend's real loading
and rendering code: LoRAs merged into the UNet (equal to the unmerged frames within rounding, restored bit for bit),
the DPM-Solver++ 2M scheduler, and torch.compile (regional, on the CPU's inductor: no recompiling when adapters
change; the compile cache written and read back)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from services.renderer.backend import AdapterWeight, FrameSpec
from services.renderer.compilation import cache_file, load_cache
from services.renderer.diffusers_backend import DiffusersBackend, warm_up_reference_sets
from services.renderer.settings import RendererSettings
from tests.support.tiny_sdxl import TINY_SIZE
from tests.unit import test_renderer_diffusers as diffusers_tests
from tests.unit.test_renderer_diffusers import Assets

# Fixtures shared with the diffusers tests: the tiny model and its adapters (hero: a PEFT checkpoint, villain: a
# diffusers file), and one torch thread.
assets = diffusers_tests.assets
one_torch_thread = diffusers_tests.one_torch_thread

STEPS = 2
# A LoRA merged into the UNet's float32 weights sums in another order than the same LoRA as separate layers: the
# frames may differ by rounding, at most this many levels of 255 in any pixel channel.
MERGE_TOLERANCE = 1


def backend_for(assets: Assets, **fields) -> DiffusersBackend:  # type: ignore[no-untyped-def]
    settings = RendererSettings(
        backend="diffusers",
        base_model=assets.model.base_model,
        adapters_dir=assets.adapters,
        device="cpu",
        min_size=TINY_SIZE,
        max_size=256,
        **fields,
    )
    backend = DiffusersBackend(settings)
    backend.warm_up()
    return backend


def frame(*adapters: AdapterWeight, seed: int = 7) -> FrameSpec:
    return FrameSpec(
        frame=1,
        prompt="aldar_kose_man on the steppe",
        seed=seed,
        width=TINY_SIZE,
        height=TINY_SIZE,
        steps=STEPS,
        guidance_scale=5.0,
        adapters=adapters,
    )


def pixels(backend: DiffusersBackend, spec: FrameSpec) -> np.ndarray:
    (result,) = backend.render([spec], lambda *_: None, lambda: False)
    assert result.image is not None, result.error
    return np.asarray(result.image, dtype=np.int16)


def unet_weights(backend: DiffusersBackend) -> dict[str, torch.Tensor]:
    """The UNet's own weights (LoRA layers' base weights, not the adapters'), copied."""
    return {
        name.replace(".base_layer", ""): tensor.clone()
        for name, tensor in backend.pipeline.unet.state_dict().items()
        if ".lora_" not in name
    }


HERO, VILLAIN = AdapterWeight("hero", 1.0), AdapterWeight("villain", 0.8)


@pytest.fixture(scope="module")
def merging(assets: Assets) -> DiffusersBackend:
    return backend_for(assets)  # --merge-loras is the default


@pytest.fixture(scope="module")
def unmerged(assets: Assets) -> DiffusersBackend:
    return backend_for(assets, merge_loras=False)


def test_a_merged_lora_draws_the_unmerged_frame_within_rounding(merging, unmerged):
    for adapters in ((HERO,), (VILLAIN,), (HERO, VILLAIN)):
        merged, separate = pixels(merging, frame(*adapters)), pixels(unmerged, frame(*adapters))
        assert np.abs(merged - separate).max() <= MERGE_TOLERANCE, adapters
        assert np.abs(merged - pixels(merging, frame())).max() > 10, "the LoRA must change the frame"


def test_after_a_merged_batch_the_unet_and_the_base_frame_are_restored_bit_for_bit(merging):
    pixels(merging, frame())  # no adapters: nothing merged
    base_frame, base_weights = pixels(merging, frame()), unet_weights(merging)
    pixels(merging, frame(HERO))
    assert any(not torch.equal(base_weights[name], tensor) for name, tensor in unet_weights(merging).items())
    pixels(merging, frame(VILLAIN))  # another set: hero restored, villain merged
    assert np.array_equal(pixels(merging, frame()), base_frame)
    after = unet_weights(merging)
    assert after.keys() == base_weights.keys()
    assert all(torch.equal(base_weights[name], tensor) for name, tensor in after.items())


def test_a_batch_with_the_same_adapters_keeps_the_merge_and_its_frame(merging):
    first = pixels(merging, frame(HERO))
    weights = unet_weights(merging)
    assert np.array_equal(pixels(merging, frame(HERO)), first)
    assert all(torch.equal(weights[name], tensor) for name, tensor in unet_weights(merging).items())


def test_a_lora_for_the_text_encoders_alone_renders_merging(assets, tmp_path):
    import shutil

    adapters = tmp_path / "adapters"
    shutil.copytree(assets.adapters / "hero", adapters / "narrator")
    shutil.rmtree(adapters / "narrator" / "unet_lora")
    backend = backend_for(Assets(assets.model, adapters))
    narrated = pixels(backend, frame(AdapterWeight("narrator", 1.0)))
    assert np.abs(narrated - pixels(backend, frame())).max() > 10


def test_warm_up_renders_every_size_at_every_batch_size(assets, monkeypatch):
    shapes: list[tuple[int, int, int]] = []
    render = DiffusersBackend.render

    def recording(self, frames, on_step, should_stop):  # type: ignore[no-untyped-def]
        shapes.append((frames[0].width, frames[0].height, len(frames)))
        return render(self, frames, on_step, should_stop)

    monkeypatch.setattr(DiffusersBackend, "render", recording)
    backend_for(assets, warm_up_sizes="64x64,128x64", warm_up_batches="1,2", merge_loras=False)
    assert shapes == [(64, 64, 1), (64, 64, 2), (128, 64, 1), (128, 64, 2)]


def test_dpm_solver_changes_the_frames_and_is_deterministic(assets, merging):
    from diffusers import DPMSolverMultistepScheduler

    dpm = backend_for(assets, scheduler="dpmpp-2m")
    scheduler = dpm.pipeline.scheduler
    assert isinstance(scheduler, DPMSolverMultistepScheduler)
    assert (scheduler.config.algorithm_type, scheduler.config.solver_order) == ("dpmsolver++", 2)
    assert scheduler.config.use_karras_sigmas
    first = pixels(dpm, frame())
    assert np.array_equal(pixels(dpm, frame()), first)
    assert np.abs(first - pixels(merging, frame())).max() > 10
    progress: list[int] = []
    list(dpm.render([frame()], lambda _index, step, _total: progress.append(step), lambda: False))
    assert progress == list(range(1, STEPS + 1))  # the steps the frame asked for


def test_channels_last_covers_the_unet_and_the_vae(assets):
    backend = backend_for(assets, channels_last=True, merge_loras=False)
    for model in (backend.pipeline.unet, backend.pipeline.vae):
        convolution = next(module for module in model.modules() if isinstance(module, torch.nn.Conv2d))
        assert convolution.weight.is_contiguous(memory_format=torch.channels_last)


# --- torch.compile ----------------------------------------------------------------------------------------------------


def compiled_graphs() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


@pytest.mark.slow
def test_regional_compile_warms_up_saves_its_cache_and_adapter_changes_compile_nothing(assets, tmp_path, merging):
    torch._dynamo.reset()
    cache = tmp_path / "compile-cache"
    backend = backend_for(assets, compile="regional", compile_cache=cache)
    assert cache_file(cache).stat().st_size > 0  # saved after warm-up
    assert compiled_graphs() > 0  # the warm-up compiled
    # The first adapter ever loaded wraps the UNet's layers in LoRA layers (new code to trace, once per process);
    # one round of every state (adapters merged, adapters loaded but none active) compiles what it needs.
    for adapters in ((HERO,), (VILLAIN,), ()):
        pixels(backend, frame(*adapters))
    warm = compiled_graphs()
    frames = {adapters: pixels(backend, frame(*adapters)) for adapters in ((HERO,), (VILLAIN,), (HERO, VILLAIN), ())}
    assert compiled_graphs() == warm, "changing the merged adapters must not recompile"
    for adapters, picture in frames.items():
        assert np.abs(picture - pixels(merging, frame(*adapters))).max() <= MERGE_TOLERANCE, adapters
    assert load_cache(cache)


def test_compiled_warm_up_with_an_ip_adapter_also_covers_a_second_scale_and_no_references():
    assert warm_up_reference_sets(False, True, 0.6) == [()]
    (plain,) = warm_up_reference_sets(True, False, 0.6)
    default, other, none = warm_up_reference_sets(True, True, 0.6)
    assert default == plain and none == ()
    assert [reference.scale for reference in default] == [0.0]  # 0: the renderer's --ip-adapter-scale
    assert [reference.scale for reference in other] == [1.0]
    assert [reference.scale for reference in warm_up_reference_sets(True, True, 1.0)[1]] == [0.5]
