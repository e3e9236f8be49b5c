"""Shared self-attention (``--consistency shared-attention``): the processor on small tensors, and the diffusers
backend on in-process servers loading the tiny random SDXL pipeline through the real loading code (CPU, 64x64)."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator

import grpc
import pytest
import torch
from diffusers.models.attention_processor import Attention, AttnProcessor, AttnProcessor2_0
from PIL import Image

from services.renderer.__main__ import main
from services.renderer.settings import RendererSettings
from services.renderer.shared_attention import SharedAttention, SharedSelfAttention, sample_seed
from storyboard.v1 import common_pb2
from storyboard_common.v1 import renderer_pb2, renderer_pb2_grpc
from tests.support.tiny_sdxl import build_tiny_sdxl, write_peft_checkpoint
from tests.unit.test_renderer_diffusers import (  # noqa: F401 (one_torch_thread: an autouse fixture)
    BATCH_TOLERANCE,
    TIMEOUT,
    Assets,
    Served,
    adapter,
    eventually,
    frames_of,
    info,
    largest_difference,
    one_torch_thread,
    png,
    render,
    request,
    sample,
    serving,
    settings_for,
    spec,
)

SEEDS = (11, 12, 13)


def sharpen_self_attention(pipeline) -> None:  # type: ignore[no-untyped-def]
    """A random model's self-attention is nearly uniform: a frame's output is about the mean of whatever tokens it
    sees, so more tokens of the same kind barely move it (by one level of 255). A trained model's attention is sharp;
    scaling the queries and keys (the logits by 16) and the output makes the tiny model's sharp enough that sharing
    shows in the pixels."""
    with torch.no_grad():
        for name, module in pipeline.unet.named_modules():
            if name.endswith(".attn1"):
                for projection in (module.to_q, module.to_k, module.to_out[0]):
                    projection.weight.mul_(4.0)


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> Assets:
    root = tmp_path_factory.mktemp("shared")
    model = build_tiny_sdxl(root / "sdxl", transform=sharpen_self_attention)
    write_peft_checkpoint(model, root / "adapters" / "hero", seed=1)
    return Assets(model, root / "adapters")


@pytest.fixture(scope="module")
def off(assets: Assets) -> Iterator[Served]:
    with serving(settings_for(assets)) as s:
        yield s


@pytest.fixture(scope="module")
def on(assets: Assets) -> Iterator[Served]:
    with serving(settings_for(assets, consistency="shared-attention")) as s:
        yield s


def storyboard() -> list[renderer_pb2.FrameSpec]:
    return [spec(n, seed=seed) for n, seed in enumerate(SEEDS, start=1)]


# --- the processor, on small tensors ----------------------------------------------------------------------------------

CHANNELS, TOKENS = 8, 6


def one_layer(base: type, rate: float) -> tuple[Attention, SharedAttention]:
    """A lone self-attention layer named as in a UNet's decoder, with shared attention installed on it."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        layer = Attention(query_dim=CHANNELS, heads=2, dim_head=4)
    layer.set_processor(base())
    unet = torch.nn.ModuleDict({"up_blocks": torch.nn.ModuleDict({"0": torch.nn.ModuleDict({"attn1": layer})})})
    return layer, SharedAttention(unet, rate, ["up"])


@pytest.mark.parametrize("base", [AttnProcessor2_0, AttnProcessor])
def test_the_unconditional_half_never_sees_the_conditional_half(base):
    layer, shared = one_layer(base, rate=0.5)
    frames = len(SEEDS)
    hidden = torch.randn(2 * frames, TOKENS, CHANNELS)  # unconditional rows, then conditional rows
    changed = hidden.clone()
    changed[frames + 1 :] += 1.0  # every conditional row but frame 0's
    with torch.no_grad(), shared.sharing(SEEDS):
        before = layer(hidden)
    with torch.no_grad(), shared.sharing(SEEDS):
        after = layer(changed)
    assert torch.equal(after[:frames], before[:frames])  # the unconditional half: not a bit moved
    assert not torch.allclose(after[frames], before[frames])  # frame 0's conditional row sees the others' change


@pytest.mark.parametrize("base", [AttnProcessor2_0, AttnProcessor])
def test_at_rate_one_each_frame_attends_to_every_token_of_its_half(base):
    layer, shared = one_layer(base, rate=1.0)
    hidden = torch.randn(len(SEEDS), TOKENS, CHANNELS)  # no guidance: one half
    with torch.no_grad(), shared.sharing(SEEDS):
        together = layer(hidden)
    with torch.no_grad():
        for i in range(len(SEEDS)):
            everything = torch.cat([hidden[i], *(hidden[j] for j in range(len(SEEDS)) if j != i)])[None]
            expected = base()(layer, hidden[i : i + 1], everything)
            torch.testing.assert_close(together[i : i + 1], expected)


def test_without_a_batch_or_with_one_frame_the_layer_is_its_own_processor_bit_for_bit():
    layer, shared = one_layer(AttnProcessor2_0, rate=1.0)
    hidden = torch.randn(2, TOKENS, CHANNELS)  # one frame, guided
    with torch.no_grad():
        plain = AttnProcessor2_0()(layer, hidden)
        assert torch.equal(layer(hidden), plain)  # outside a batch
        with shared.sharing([SEEDS[0]]):
            assert torch.equal(layer(hidden), plain)  # a batch of one: nothing to share


def test_the_sample_depends_on_the_batch_not_its_order_and_changes_with_layer_and_step():
    seed = sample_seed([3, 1, 2], 1, "up_blocks.0.attn1", 0)
    assert seed == sample_seed([1, 2, 3], 1, "up_blocks.0.attn1", 0)
    others = {sample_seed([1, 2, 3], 2, "up_blocks.0.attn1", 0), sample_seed([1, 2, 3], 1, "up_blocks.1.attn1", 0)}
    others |= {sample_seed([1, 2, 3], 1, "up_blocks.0.attn1", 1), sample_seed([1, 2, 4], 1, "up_blocks.0.attn1", 0)}
    assert seed not in others and len(others) == 4


def test_a_batch_refuses_to_run_once_something_replaced_the_processors():
    layer, shared = one_layer(AttnProcessor2_0, rate=0.5)
    layer.set_processor(AttnProcessor2_0())  # what loading an IP-Adapter after the install would do
    with pytest.raises(RuntimeError, match="self-attention processors were replaced"), shared.sharing(SEEDS):
        pass
    shared.remove()
    assert isinstance(layer.processor, AttnProcessor2_0)


# --- frames -----------------------------------------------------------------------------------------------------------


def test_frames_rendered_together_share_and_the_same_request_gives_the_same_bytes(on, off):
    shared = png(on.channel, *storyboard())
    alone = png(off.channel, *storyboard())
    for with_sharing, without in zip(shared, alone, strict=True):
        assert largest_difference(with_sharing, without) > 10  # a real change, not batching's rounding
    assert png(on.channel, *storyboard()) == shared


def test_the_order_of_the_frames_in_the_request_moves_them_by_rounding_at_most(on):
    def by_frame(*frames: renderer_pb2.FrameSpec) -> dict[int, bytes]:
        return {frame.frame: frame.image.data for frame in frames_of(render(on.channel, request(*frames)))}

    ordered, reversed_order = by_frame(*storyboard()), by_frame(*reversed(storyboard()))
    assert ordered.keys() == reversed_order.keys() == {1, 2, 3}
    for frame, data in ordered.items():
        assert largest_difference(data, reversed_order[frame]) <= BATCH_TOLERANCE


def test_a_frame_alone_equals_the_frame_with_consistency_off_bit_for_bit(on, off):
    assert png(on.channel, spec(1, seed=11))[0] == png(off.channel, spec(1, seed=11))[0]
    deterministic = spec(1, seed=11, deterministic=True)  # rendered alone by definition: nothing to share either
    assert png(on.channel, deterministic, spec(2, seed=12, deterministic=True))[0] == png(off.channel, deterministic)[0]


def test_loading_a_lora_keeps_the_shared_attention_and_the_lora_counts(on):
    hero = [spec(n, seed=seed, adapters=[adapter("hero")]) for n, seed in enumerate(SEEDS, start=1)]
    with_lora = png(on.channel, *hero)  # a batch whose processors were replaced would fail, not share nothing
    assert on.backend.shared_attention.installed()
    assert all(a != b for a, b in zip(with_lora, png(on.channel, *storyboard()), strict=True))


def test_consistency_off_installs_nothing_and_renders_as_before(off):
    processors = off.backend.pipeline.unet.attn_processors.values()
    assert off.backend.shared_attention is None
    assert not any(isinstance(processor, SharedSelfAttention) for processor in processors)
    assert info(off.channel).consistency == "off"


def test_info_says_shared_attention(on):
    assert info(on.channel).consistency == "shared-attention"


@pytest.mark.parametrize(("layers", "installed"), [("up", 2), ("mid,up", 3), ("all", 4), ("down", 1)])
def test_the_layers_setting_picks_the_self_attention_layers(assets, on, layers, installed):
    settings = settings_for(assets, consistency="shared-attention", shared_attention_layers=layers)
    with serving(settings) as s:
        shared = s.backend.shared_attention
        assert len(shared.processors) == installed
        assert all(processor.layer.endswith(".attn1") for processor in shared.processors)
        frames = png(s.channel, *storyboard())
    assert (frames == png(on.channel, *storyboard())) == (layers == "up")  # "up" is the default


def test_a_rate_too_small_to_offer_a_token_renders_the_frames_with_consistency_off(assets, off):
    settings = settings_for(assets, consistency="shared-attention", shared_attention_rate=0.001)  # 0 of 256 tokens
    with serving(settings) as s:
        assert png(s.channel, *storyboard()) == png(off.channel, *storyboard())


def test_the_rate_changes_the_frames(assets, on):
    with serving(settings_for(assets, consistency="shared-attention", shared_attention_rate=1.0)) as s:
        everything = png(s.channel, *storyboard())
    assert all(a != b for a, b in zip(everything, png(on.channel, *storyboard()), strict=True))


def test_frames_of_different_requests_are_never_batched_together(on):
    stub = renderer_pb2_grpc.RendererStub(on.channel)
    busy = stub.Render(request(spec(1, steps=150)), timeout=TIMEOUT)
    next(busy)  # the worker is rendering it; what comes now waits in the queue together
    batches_before = sample(on.metrics, "storyboard_renderer_batch_size_count")
    results: dict[str, int] = {}

    def send(name: str, *frames) -> None:  # type: ignore[no-untyped-def]
        results[name] = len(frames_of(list(stub.Render(request(*frames), timeout=TIMEOUT))))

    threads = [
        threading.Thread(target=send, args=("a", spec(1, seed=21), spec(2, seed=22))),
        threading.Thread(target=send, args=("b", spec(1, seed=23))),
    ]
    for thread in threads:
        thread.start()
    eventually(lambda: info(on.channel).queue_depth == 3, "both requests are queued")
    busy.cancel()
    for thread in threads:
        thread.join(TIMEOUT)
    assert results == {"a": 2, "b": 1}
    assert sample(on.metrics, "storyboard_renderer_batch_size_count") == batches_before + 2  # a's two, then b's one


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--consistency", "sometimes"], "--consistency"),
        (["--shared-attention-rate", "0"], "--shared-attention-rate"),
        (["--shared-attention-rate", "1.5"], "--shared-attention-rate"),
        (["--shared-attention-layers", "sideways"], "--shared-attention-layers"),
        (["--shared-attention-layers", "up,all"], "--shared-attention-layers"),
    ],
)
def test_bad_shared_attention_settings_fail_fast_naming_the_flag(capsys, argv, flag):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert flag in capsys.readouterr().err


def test_the_layers_setting_reads_groups_in_any_order_and_case():
    assert RendererSettings(shared_attention_layers="UP, mid").shared_attention_layers == "mid,up"
    assert RendererSettings(shared_attention_layers="all").shared_attention_layers == "down,mid,up"


def test_a_cancelled_shared_batch_stops_and_the_renderer_goes_on(on):
    call = renderer_pb2_grpc.RendererStub(on.channel).Render(
        request(spec(1, steps=150), spec(2, steps=150)), timeout=TIMEOUT
    )
    assert next(call).progress.step == 1
    call.cancel()
    with pytest.raises(grpc.RpcError):
        list(call)
    eventually(lambda: on.backend.shared_attention.batch is None, "the batch stops, and its sharing with it")
    assert len(png(on.channel, *storyboard())) == 3


# --- with the IP-Adapter, and through the gateway ---------------------------------------------------------------------


def test_reference_pictures_and_shared_attention_condition_the_same_batch(assets, on, tmp_path):
    from tests.support.tiny_ip_adapter import build_tiny_ip_adapter

    ip_adapter = build_tiny_ip_adapter(assets.model, tmp_path / "ip_adapter")
    picture = common_pb2.Image(data=sample_picture(), mime_type="image/png")
    pictured = [spec(n, seed=seed, references=[common_pb2.CharacterPictures(trigger_token="hero", pictures=[picture])])
                for n, seed in enumerate(SEEDS, start=1)]  # fmt: skip
    with serving(settings_for(assets, consistency="shared-attention", ip_adapter=ip_adapter.folder)) as both:
        assert (info(both.channel).ip_adapter, info(both.channel).consistency) == (True, "shared-attention")
        conditioned = png(both.channel, *pictured)
        assert png(both.channel, *pictured) == conditioned
        plain = png(both.channel, *storyboard())  # no pictures: shared attention alone, as without an IP-Adapter
    assert plain == png(on.channel, *storyboard())
    assert all(largest_difference(a, b) > 0 for a, b in zip(conditioned, plain, strict=True))


def sample_picture() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), "saddlebrown").save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_storyboards_frames_go_through_the_gateway_as_one_shared_batch(assets, tmp_path):
    from services.renderer.server import create_server as create_renderer
    from storyboard import Client
    from tests.support.stack import in_process_stack

    settings = settings_for(assets, consistency="shared-attention", max_batch_size=6, min_size=256)
    renderer, port = create_renderer(settings)
    renderer.start()
    try:
        assert renderer.ready.wait(TIMEOUT), renderer.not_ready_reason
        story = "A fox crosses a frozen river at dawn and sleeps in its den"
        with (
            in_process_stack(tmp_path / "outputs", renderer_address=f"127.0.0.1:{port}") as stack,
            Client(stack.address) as client,
        ):
            run = client.generate(story=story, num_frames=6, width=256, height=256, num_inference_steps=2)
            result = run.wait()
            files = client.read_files(result.storyboard_id, ["frame_002.png"])
        plan, frames = result.plan, result.final.frames
        scene = plan.scenes[1]
        alone = spec(2, prompt=scene.prompt, negative_prompt=plan.negative_prompt, seed=frames[1].seed, width=256,
                     height=256, steps=2, guidance_scale=result.final.spec.guidance_scale)  # fmt: skip
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            [drawn_alone] = png(channel, alone)
    finally:
        renderer.stop(0)
    # Drawn with the other five, frame 2 took from their self-attention: it is not the frame drawn alone.
    assert largest_difference(files["frame_002.png"], drawn_alone) > 10
