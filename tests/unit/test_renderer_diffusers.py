"""The renderer's diffusers backend on in-process servers (port 0), loading a tiny random SDXL pipeline and tiny LoRAs
in all three formats through the real loading code: adapters, determinism, batching, streaming, cancellation, bounds,
errors, readiness and metrics. CPU only; 64x64 frames (a 32x32 latent) keep every render to a fraction of a second."""

from __future__ import annotations

import io
import os
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
import torch
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image

from services.renderer.__main__ import main
from services.renderer.backend import FrameSpec
from services.renderer.backends import create_backend
from services.renderer.diffusers_backend import DiffusersBackend
from services.renderer.metrics import RendererMetrics
from services.renderer.server import create_server
from services.renderer.settings import RendererSettings
from storyboard.v1 import common_pb2
from storyboard_common.v1 import renderer_pb2, renderer_pb2_grpc
from tests.support.tiny_sdxl import (
    KOHYA_TEXT_TARGETS,
    TINY_SIZE,
    TinySdxl,
    build_tiny_sdxl,
    write_diffusers_lora,
    write_kohya_lora,
    write_peft_checkpoint,
)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
TIMEOUT = 30
# Batched frames may differ from the same frame rendered alone by floating-point rounding in the UNet's batched
# matrix kernels (see diffusers_backend.py); this is the most, in levels of 255, any pixel channel may move.
BATCH_TOLERANCE = 2


# --- assets: one tiny model and a folder of adapters, built once for the module ---------------------------------------


@dataclass(frozen=True)
class Assets:
    model: TinySdxl
    adapters: Path


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """The tiny model gains nothing from a second thread, and on a busy 2-core machine torch's threads waiting on
    each other can make a render 20 times slower; one thread keeps these tests fast whatever else runs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> Assets:
    root = tmp_path_factory.mktemp("diffusers")
    model = build_tiny_sdxl(root / "sdxl")
    adapters = root / "adapters"
    adapters.mkdir()
    # Three different characters, one per format.
    write_peft_checkpoint(model, adapters / "hero", seed=1)
    write_diffusers_lora(model, adapters / "villain.safetensors", seed=2)
    write_kohya_lora(model, adapters / "style.safetensors", seed=3)
    # One LoRA (seed 4) in all three formats, and once more without its alpha.
    write_peft_checkpoint(model, adapters / "same_peft", seed=4, text_targets=KOHYA_TEXT_TARGETS)
    write_diffusers_lora(model, adapters / "same_diffusers.safetensors", seed=4, text_targets=KOHYA_TEXT_TARGETS)
    write_kohya_lora(model, adapters / "same_kohya.safetensors", seed=4)
    write_diffusers_lora(
        model, adapters / "same_without_alpha.safetensors", seed=4, keep_alpha=False, text_targets=KOHYA_TEXT_TARGETS
    )
    write_peft_checkpoint(model, adapters / "unet_only", seed=5, text_encoders=False)
    # Broken ones.
    (adapters / "garbage.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    write_diffusers_lora(model, adapters / "nan_weights.safetensors", seed=6, transform=_poison)
    write_peft_checkpoint(model, adapters / "bad_config", seed=7)
    (adapters / "bad_config" / "unet_lora" / "adapter_config.json").write_text("{ this is not json")
    (adapters / "empty").mkdir()
    (adapters / "pickled").mkdir()
    (adapters / "pickled" / "adapter_model.bin").write_bytes(b"pickle")
    return Assets(model, adapters)


def _poison(state: dict[str, torch.Tensor]) -> None:
    key = next(key for key in state if "up" in key)
    state[key] = torch.full_like(state[key], float("nan"))


def settings_for(assets: Assets, **fields) -> RendererSettings:  # type: ignore[no-untyped-def]
    values = dict(
        port=0,
        backend="diffusers",
        base_model=assets.model.base_model,
        adapters_dir=assets.adapters,
        min_size=TINY_SIZE,
        max_size=256,
        max_batch_size=4,
        batch_window_ms=0,
    )
    values.update(fields)
    return RendererSettings(**values)


@dataclass
class Served:
    channel: grpc.Channel
    backend: DiffusersBackend
    metrics: RendererMetrics
    metrics_port: int


@contextmanager
def serving(settings: RendererSettings, backend=None, *, wait_ready: bool = True) -> Iterator[Served]:  # type: ignore[no-untyped-def]
    metrics = RendererMetrics()
    backend = backend if backend is not None else create_backend(settings, metrics)
    server, port = create_server(settings, backend, metrics)
    server.start()
    if wait_ready:
        assert server.ready.wait(TIMEOUT), server.not_ready_reason
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield Served(channel, backend, metrics, server.endpoints.get("metrics", 0))
    finally:
        channel.close()
        server.stop(0)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def served(assets: Assets) -> Iterator[Served]:
    with serving(settings_for(assets, metrics_port=free_port(), max_loaded_adapters=16)) as s:
        yield s


# --- requests ---------------------------------------------------------------------------------------------------------


def adapter(name: str, weight: float = 1.0) -> common_pb2.AdapterRef:
    return common_pb2.AdapterRef(name=name, weight=weight)


def spec(frame: int = 1, **fields) -> renderer_pb2.FrameSpec:  # type: ignore[no-untyped-def]
    values = dict(
        frame=frame,
        prompt="aldar_kose_man riding a horse across the steppe, golden hour",
        seed=1000 + frame,
        width=TINY_SIZE,
        height=TINY_SIZE,
        steps=3,
        guidance_scale=5.0,
    )
    values.update(fields)
    return renderer_pb2.FrameSpec(**values)


def request(*frames: renderer_pb2.FrameSpec, **fields) -> renderer_pb2.RenderRequest:  # type: ignore[no-untyped-def]
    return renderer_pb2.RenderRequest(frames=list(frames) or [spec()], **fields)


def render(channel: grpc.Channel, req: renderer_pb2.RenderRequest) -> list[renderer_pb2.RenderEvent]:
    return list(renderer_pb2_grpc.RendererStub(channel).Render(req, timeout=TIMEOUT))


def frames_of(events: list[renderer_pb2.RenderEvent]) -> list[renderer_pb2.RenderedFrame]:
    return [event.frame for event in events if event.HasField("frame")]


def png(channel: grpc.Channel, *frames: renderer_pb2.FrameSpec) -> list[bytes]:
    return [frame.image.data for frame in frames_of(render(channel, request(*frames)))]


def pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"), dtype=np.int16)


def largest_difference(a: bytes, b: bytes) -> int:
    return int(np.abs(pixels(a) - pixels(b)).max())


def rpc_error(call: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


def info(channel: grpc.Channel) -> renderer_pb2.RendererInfo:
    return renderer_pb2_grpc.RendererStub(channel).Info(renderer_pb2.RendererInfoRequest(), timeout=TIMEOUT)


def health(channel: grpc.Channel) -> int:
    check = health_pb2.HealthCheckRequest(service="storyboard.v1.Renderer")
    return health_pb2_grpc.HealthStub(channel).Check(check, timeout=TIMEOUT).status


def eventually(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.01)


def sample(metrics: RendererMetrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels or None)
    return 0.0 if value is None else value


# --- adapters ---------------------------------------------------------------------------------------------------------


def test_a_lora_changes_the_frame_and_weight_zero_gives_the_base_frame_exactly(served):
    base, hero, hero_at_zero = (
        png(served.channel, spec())[0],
        png(served.channel, spec(adapters=[adapter("hero")]))[0],
        png(served.channel, spec(adapters=[adapter("hero", 0.0)]))[0],
    )
    assert largest_difference(base, hero) > 20  # a real change, not rounding
    assert hero_at_zero == base
    assert png(served.channel, spec())[0] == base  # and turning adapters off again restores the base exactly


def test_every_format_loads_and_one_lora_in_three_formats_draws_one_frame(served):
    frames = {
        name: png(served.channel, spec(adapters=[adapter(name)]))[0]
        for name in ("same_peft", "same_diffusers", "same_kohya", "same_without_alpha", "villain", "style")
    }
    # PEFT folders, diffusers files and kohya files of the same weights, rank and alpha give the same frame.
    assert frames["same_peft"] == frames["same_diffusers"] == frames["same_kohya"]
    # Without the alpha in the file's metadata, diffusers falls back to alpha = rank: the scale halves, the frame moves.
    assert largest_difference(frames["same_diffusers"], frames["same_without_alpha"]) > 10
    assert len({frames["same_peft"], frames["villain"], frames["style"]}) == 3


def test_a_unet_only_peft_adapter_loads(served):
    base = png(served.channel, spec())[0]
    assert png(served.channel, spec(adapters=[adapter("unet_only")]))[0] != base


def test_several_adapters_mix_by_weight(served):
    hero = png(served.channel, spec(adapters=[adapter("hero")]))[0]
    mixed = png(served.channel, spec(adapters=[adapter("hero", 0.6), adapter("villain", 0.6)]))[0]
    hero_and_nothing = png(served.channel, spec(adapters=[adapter("hero"), adapter("villain", 0.0)]))[0]
    assert mixed != hero
    assert hero_and_nothing == hero


def test_switching_adapters_between_requests_never_reloads_the_base_model(served):
    pipeline = served.backend.pipeline
    first = png(served.channel, spec(adapters=[adapter("hero")]))[0]
    for name in ("villain", "style", "hero", "villain"):
        png(served.channel, spec(adapters=[adapter(name)]))
    assert png(served.channel, spec(adapters=[adapter("hero")]))[0] == first
    assert served.backend.pipeline is pipeline
    assert served.backend.base_loads == 1
    loaded = list(info(served.channel).loaded_adapters)
    assert {"hero", "villain", "style"} <= set(loaded)
    assert loaded[-1] == "hero"  # most recently used last


@pytest.fixture(scope="module")
def small(assets: Assets) -> Iterator[Served]:
    """A renderer with small bounds: two adapters loaded at most, two frames queued at most, one frame per batch."""
    settings = settings_for(
        assets, max_loaded_adapters=2, max_queue=2, max_frames_per_request=2, max_batch_size=1, max_streams=4
    )
    with serving(settings) as s:
        yield s


def test_the_least_recently_used_adapter_is_evicted_past_the_limit(small):
    s = small
    loads, evictions = (sample(s.metrics, f"storyboard_renderer_adapter_{n}_total") for n in ("loads", "evictions"))
    hero = png(s.channel, spec(adapters=[adapter("hero")]))[0]
    png(s.channel, spec(adapters=[adapter("villain")]))
    assert list(info(s.channel).loaded_adapters) == ["hero", "villain"]
    png(s.channel, spec(adapters=[adapter("style")]))  # hero is the least recently used: out it goes
    assert list(info(s.channel).loaded_adapters) == ["villain", "style"]
    png(s.channel, spec(adapters=[adapter("villain")]))  # villain is used: style becomes the oldest
    assert png(s.channel, spec(adapters=[adapter("hero")]))[0] == hero  # loaded again, the same frame
    assert list(info(s.channel).loaded_adapters) == ["villain", "hero"]
    # A batch that needs more adapters than the limit keeps them all while it runs.
    assert len(png(s.channel, spec(adapters=[adapter("hero"), adapter("villain"), adapter("style")]))) == 1
    assert sample(s.metrics, "storyboard_renderer_adapter_loads_total") - loads == 5
    assert sample(s.metrics, "storyboard_renderer_adapter_evictions_total") - evictions == 2
    assert s.backend.base_loads == 1


def test_an_adapter_whose_file_changed_is_loaded_again(small, assets):
    file = assets.adapters / "retrained.safetensors"
    write_diffusers_lora(assets.model, file, seed=8)
    before = png(small.channel, spec(adapters=[adapter("retrained")]))[0]
    write_diffusers_lora(assets.model, file, seed=9)  # same shapes, same size: only the modification time tells
    stat = file.stat()
    os.utime(file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # coarse file-system clocks
    after = png(small.channel, spec(adapters=[adapter("retrained")]))[0]
    assert after != before
    assert list(info(small.channel).loaded_adapters).count("retrained") == 1


@pytest.mark.parametrize(
    ("name", "code", "message"),
    [
        ("nobody", grpc.StatusCode.NOT_FOUND, "adapter 'nobody' not found in the adapters folder"),
        ("garbage", grpc.StatusCode.FAILED_PRECONDITION, "adapter 'garbage': cannot load garbage.safetensors: "),
        ("nan_weights", grpc.StatusCode.FAILED_PRECONDITION, "nan_weights.safetensors: has NaN or infinite weights"),
        ("bad_config", grpc.StatusCode.FAILED_PRECONDITION, "cannot load bad_config/unet_lora/adapter_config.json"),
        ("empty", grpc.StatusCode.FAILED_PRECONDITION, "cannot load empty: holds no LoRA weights"),
        ("pickled", grpc.StatusCode.FAILED_PRECONDITION, "holds only pickle weights (adapter_model.bin)"),
    ],
)
def test_unknown_and_corrupt_adapters_get_specific_codes_naming_the_file(served, name, code, message):
    error = rpc_error(lambda: render(served.channel, request(spec(adapters=[adapter(name)]))))
    assert error.code() == code
    assert message in error.details()
    assert name not in info(served.channel).loaded_adapters
    assert len(png(served.channel, spec(adapters=[adapter("hero")]))) == 1  # still serving, adapters intact


# --- determinism and batching -----------------------------------------------------------------------------------------


def test_the_same_request_gives_the_same_bytes_and_seeds_matter(served):
    req = (spec(1), spec(2, negative_prompt="blurry"))
    assert png(served.channel, *req) == png(served.channel, *req)
    assert png(served.channel, spec(seed=1))[0] != png(served.channel, spec(seed=2))[0]


def test_a_batched_frame_equals_the_same_frame_rendered_alone(served):
    frames = [
        spec(1, seed=11),
        spec(2, seed=12, prompt="a yurt under the stars", negative_prompt="blurry"),
        spec(3, seed=13, prompt_2="a different prompt for the second encoder"),
        spec(4, seed=14),
    ]
    batches_before = sample(served.metrics, "storyboard_renderer_batch_size_count")
    together = png(served.channel, *frames)
    assert sample(served.metrics, "storyboard_renderer_batch_size_count") == batches_before + 1  # one pipeline call
    alone = [png(served.channel, frame)[0] for frame in frames]
    for batched, single in zip(together, alone, strict=True):
        assert largest_difference(batched, single) <= BATCH_TOLERANCE
    assert len(set(together)) == 4


def test_deterministic_frames_are_rendered_alone_and_equal_the_frame_alone_bit_for_bit(served):
    frames = [spec(n, seed=10 + n, deterministic=True) for n in range(1, 5)]
    batches_before = sample(served.metrics, "storyboard_renderer_batch_size_count")
    sizes_before = sample(served.metrics, "storyboard_renderer_batch_size_sum")
    together = png(served.channel, *frames)
    assert sample(served.metrics, "storyboard_renderer_batch_size_count") == batches_before + 4  # a call each
    assert sample(served.metrics, "storyboard_renderer_batch_size_sum") == sizes_before + 4
    alone = [png(served.channel, frame)[0] for frame in frames]
    assert together == alone
    assert alone[0] == png(served.channel, spec(1, seed=11))[0]  # alone, the flag changes nothing but batching


def test_frames_of_different_concurrent_requests_share_a_batch(served):
    stub = renderer_pb2_grpc.RendererStub(served.channel)
    busy = stub.Render(request(spec(1, steps=150)), timeout=TIMEOUT)
    next(busy)  # the worker is rendering it; what comes now waits in the queue together
    sizes_before = sample(served.metrics, "storyboard_renderer_batch_size_sum")
    results: dict[str, list[bytes]] = {}

    def send(name: str, frame: renderer_pb2.FrameSpec) -> None:
        results[name] = [f.image.data for f in frames_of(list(stub.Render(request(frame), timeout=TIMEOUT)))]

    threads = [
        threading.Thread(target=send, args=("a", spec(1, seed=21))),
        threading.Thread(target=send, args=("b", spec(1, seed=22, prompt="a merchant counts his coins"))),
    ]
    for thread in threads:
        thread.start()
    eventually(lambda: info(served.channel).queue_depth == 2, "both requests are queued")
    busy.cancel()  # the worker is free: the two waiting frames, from two requests, go in one pipeline call
    for thread in threads:
        thread.join(TIMEOUT)
    assert sample(served.metrics, "storyboard_renderer_batch_size_sum") == sizes_before + 2  # a and b, together
    assert largest_difference(results["a"][0], png(served.channel, spec(1, seed=21))[0]) <= BATCH_TOLERANCE


# --- the stream -------------------------------------------------------------------------------------------------------


def test_progress_comes_for_every_step_then_frames_in_the_order_they_finish(served):
    # Frames 5 and 2 share a batch (same steps); 7 has more steps, so it is a batch of its own that finishes later.
    events = render(served.channel, request(spec(5, steps=2), spec(7, steps=4), spec(2, steps=2)))
    assert [f.frame for f in frames_of(events)] == [5, 2, 7]
    steps: dict[int, list[tuple[int, int]]] = {}
    finished: set[int] = set()
    for event in events:
        if event.HasField("progress"):
            assert event.progress.frame not in finished
            steps.setdefault(event.progress.frame, []).append((event.progress.step, event.progress.total_steps))
        else:
            finished.add(event.frame.frame)
            assert event.frame.backend == "diffusers"
            assert event.frame.seed == 1000 + event.frame.frame
            assert event.frame.timings.denoise_seconds > 0 and event.frame.timings.decode_seconds > 0
    assert steps == {5: [(1, 2), (2, 2)], 2: [(1, 2), (2, 2)], 7: [(s, 4) for s in range(1, 5)]}


def test_frames_come_in_the_requested_format_and_size(served):
    req = request(spec(width=128, height=64), format=common_pb2.IMAGE_FORMAT_WEBP, quality=80)
    frame = frames_of(render(served.channel, req))[0]
    assert frame.image.mime_type == "image/webp"
    with Image.open(io.BytesIO(frame.image.data)) as image:
        assert (image.format, image.size) == ("WEBP", (128, 64))


def test_a_client_that_cancels_stops_the_denoising_loop_and_frees_the_request(served):
    steps_before = sample(served.metrics, "storyboard_renderer_steps_total")
    cancelled_before = sample(served.metrics, "storyboard_renderer_frames_total", outcome="cancelled")
    call = renderer_pb2_grpc.RendererStub(served.channel).Render(
        request(spec(1, steps=150), spec(2, steps=150, width=72)), timeout=TIMEOUT
    )
    assert next(call).progress.step == 1
    call.cancel()
    eventually(
        lambda: sample(served.metrics, "storyboard_renderer_frames_total", outcome="cancelled") == cancelled_before + 2,
        "both frames are counted as cancelled (the running one and the queued one)",
    )
    assert sample(served.metrics, "storyboard_renderer_steps_total") - steps_before < 150
    assert sample(served.metrics, "storyboard_renderer_inflight_frames") == 0
    assert info(served.channel).queue_depth == 0
    assert len(png(served.channel, spec())) == 1


@pytest.mark.parametrize(
    ("stop_in", "blocks_left_to_run"),
    [("unet", lambda pipe: pipe.unet.up_blocks[-1]), ("vae", lambda pipe: pipe.vae.decoder.up_blocks[-1])],
)
def test_a_batch_nobody_wants_stops_inside_a_step_or_a_decode_not_after_it(served, stop_in, blocks_left_to_run):
    # A step (or a decode) of a large frame can take minutes on a CPU: a cancel must not wait for it to end. The
    # cancel comes while the first block of the UNet's second step (or of the VAE's decoder) runs.
    pipe = served.backend.pipeline
    first_block = pipe.unet.down_blocks[0] if stop_in == "unet" else pipe.vae.decoder.mid_block
    calls = {"first": 0, "last": 0}
    wanted = threading.Event()
    wanted.set()

    def first_block_runs(_module, _inputs, _output):
        calls["first"] += 1
        if stop_in == "vae" or calls["first"] == 2:
            wanted.clear()

    def last_block_runs(_module, _inputs, _output):
        calls["last"] += 1

    hooks = [
        first_block.register_forward_hook(first_block_runs),
        blocks_left_to_run(pipe).register_forward_hook(last_block_runs),
    ]
    try:
        frames = [FrameSpec(frame=1, prompt="a yurt", seed=1, width=TINY_SIZE, height=TINY_SIZE, steps=5,
                            guidance_scale=1.0)]  # fmt: skip
        results = list(served.backend.render(frames, lambda *_: None, lambda: not wanted.is_set()))
    finally:
        for hook in hooks:
            hook.remove()
    assert results == []
    # The UNet's last block ran in the first step only; the decoder's last block never ran.
    assert calls["last"] == (1 if stop_in == "unet" else 0)
    assert len(png(served.channel, spec())) == 1  # and the renderer goes on serving


def test_a_full_queue_is_resource_exhausted(small):
    s = small
    stub = renderer_pb2_grpc.RendererStub(s.channel)
    running = stub.Render(request(spec(1, steps=150)), timeout=TIMEOUT)
    next(running)
    waiting = stub.Render(request(spec(1), spec(2)), timeout=TIMEOUT)
    eventually(lambda: info(s.channel).queue_depth == 2, "the second request is queued")
    error = rpc_error(lambda: render(s.channel, request(spec(1))))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "queue is full" in error.details()
    running.cancel()
    assert len(frames_of(list(waiting))) == 2
    assert sample(s.metrics, "storyboard_renderer_rejected_requests_total", reason="queue_full") == 1
    assert len(png(s.channel, spec())) == 1  # room again


# --- failures ---------------------------------------------------------------------------------------------------------


def test_out_of_memory_is_resource_exhausted_and_the_renderer_keeps_serving(served):
    def run_out(_module, _args):  # what torch raises when CUDA memory runs out, raised by the UNet itself
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    hook = served.backend.pipeline.unet.register_forward_pre_hook(run_out)
    try:
        error = rpc_error(lambda: render(served.channel, request(spec(1), spec(2))))
    finally:
        hook.remove()
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "out of device memory rendering 2 frame(s) of 64x64" in error.details()
    assert sample(served.metrics, "storyboard_renderer_out_of_memory_total") >= 1
    assert len(png(served.channel, spec())) == 1
    assert health(served.channel) == SERVING


def test_a_frame_that_decodes_to_nan_is_an_error_not_a_picture(served):
    def overflow(_module, _args, output):  # what a float16 VAE does when it overflows
        return torch.full_like(output, float("nan"))

    hook = served.backend.pipeline.vae.decoder.register_forward_hook(overflow)
    try:
        error = rpc_error(lambda: render(served.channel, request(spec(3))))
    finally:
        hook.remove()
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "frame 3 is not a usable picture (NaN/inf in its decoded pixels" in error.details()
    assert "--vae-upcast always" in error.details()
    assert sample(served.metrics, "storyboard_renderer_frames_total", outcome="failed") >= 1
    assert len(png(served.channel, spec())) == 1


def test_a_model_whose_vae_outputs_nan_never_becomes_ready(tmp_path):
    def nan_vae(pipeline) -> None:  # type: ignore[no-untyped-def]
        torch.nn.init.constant_(pipeline.vae.decoder.conv_out.bias, float("nan"))

    broken = build_tiny_sdxl(tmp_path / "broken", transform=nan_vae)
    settings = RendererSettings(port=0, backend="diffusers", base_model=broken.base_model, min_size=TINY_SIZE)
    backend = create_backend(settings)
    server, port = create_server(settings, backend)
    server.start()
    try:
        eventually(lambda: "warm-up" in server.not_ready_reason, "the warm-up fails")
        assert "NaN/inf in its decoded pixels" in server.not_ready_reason
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            assert health(channel) == NOT_SERVING
            error = rpc_error(lambda: render(channel, request(spec())))
            assert error.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        server.stop(0)


# --- readiness, Info, metrics, settings -------------------------------------------------------------------------------


class HeldWarmUpRender(DiffusersBackend):
    """Loads the model for real, then holds its warm-up generation until the test lets it go."""

    def __init__(self, settings: RendererSettings) -> None:
        super().__init__(settings)
        self.rendering = threading.Event()
        self.release = threading.Event()

    def render(self, frames, on_step, should_stop):  # type: ignore[no-untyped-def]
        self.rendering.set()
        self.release.wait(TIMEOUT)
        yield from super().render(frames, on_step, should_stop)


def test_not_serving_until_the_model_is_loaded_and_a_warm_up_frame_rendered(assets):
    settings = settings_for(assets)
    backend = HeldWarmUpRender(settings)
    with serving(settings, backend, wait_ready=False) as s:
        assert backend.rendering.wait(TIMEOUT)
        assert backend.pipeline is not None  # loaded, but the warm-up frame is not rendered yet
        assert health(s.channel) == NOT_SERVING
        assert rpc_error(lambda: render(s.channel, request(spec()))).code() == grpc.StatusCode.UNAVAILABLE
        assert info(s.channel).backend == "diffusers"
        backend.release.set()
        eventually(lambda: health(s.channel) == SERVING, "the renderer reports SERVING")
        assert len(png(s.channel, spec())) == 1


def test_info_describes_the_diffusers_renderer(served, assets):
    png(served.channel, spec(adapters=[adapter("villain")]))
    described = info(served.channel)
    assert (described.backend, described.model, described.device, described.dtype) == (
        "diffusers",
        assets.model.base_model,
        "cpu",
        "float32",
    )
    assert "villain" in described.loaded_adapters
    assert {"hero", "villain", "style", "same_kohya"} <= set(described.available_adapters)
    assert (described.limits.min_size, described.limits.max_size, described.max_batch_size) == (64, 256, 4)


def test_metrics_are_served_for_prometheus(served):
    png(served.channel, spec(adapters=[adapter("hero")]), spec(2, adapters=[adapter("hero")]))
    assert served.metrics_port
    settled = ("storyboard_renderer_queue_frames 0.0", "storyboard_renderer_inflight_frames 0.0")
    deadline = time.monotonic() + TIMEOUT
    while True:  # the client has its last frame a moment before the scheduler marks the batch done
        with urllib.request.urlopen(f"http://127.0.0.1:{served.metrics_port}/metrics", timeout=TIMEOUT) as response:
            page = response.read().decode()
        if all(line in page for line in settled) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    for line in (
        "# TYPE storyboard_renderer_frames_total counter",
        'storyboard_renderer_frames_total{outcome="rendered"}',
        "storyboard_renderer_steps_total",
        "storyboard_renderer_steps_per_second",
        "storyboard_renderer_queue_frames 0.0",
        "storyboard_renderer_inflight_frames 0.0",
        'storyboard_renderer_batch_size_bucket{le="2.0"}',
        "storyboard_renderer_adapter_loads_total",
        "storyboard_renderer_adapter_evictions_total",
        "storyboard_renderer_ready 1.0",
    ):
        assert line in page, line
    rendered = sample(served.metrics, "storyboard_renderer_frames_total", outcome="rendered")
    assert f'storyboard_renderer_frames_total{{outcome="rendered"}} {rendered}' in page
    assert sample(served.metrics, "storyboard_renderer_steps_per_second") > 0


def test_a_hub_id_is_looked_up_offline_when_the_hub_is_offline(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    settings = RendererSettings(backend="diffusers", base_model="storyboard-tests/no-such-sdxl", device="cpu")
    backend = DiffusersBackend(settings)
    with pytest.raises(RuntimeError) as caught:
        backend.warm_up()
    assert backend.pipeline is None
    assert "cannot load --base-model storyboard-tests/no-such-sdxl (hub id" in str(caught.value)


@pytest.mark.parametrize(
    ("argv", "flag", "problem"),
    [
        (["--backend", "diffusers"], "--base-model", "the diffusers backend needs --base-model"),
        (["--backend", "diffusers", "--base-model", "/no/such/sdxl"], "--base-model", "is not an existing folder"),
        (["--backend", "diffusers", "--base-model", "./models/sdxl"], "--base-model", "is not an existing folder"),
        (["--vae", "/no/such/vae"], "--vae", "is not an existing folder"),
        (["--vae-upcast", "sometimes"], "--vae-upcast", ""),
        (["--attention", "flash"], "--attention", ""),
        (["--max-loaded-adapters", "0"], "--max-loaded-adapters", ""),
        (["--batch-window-ms", "-1"], "--batch-window-ms", ""),
        (["--metrics-port", "70000"], "--metrics-port", ""),
        (["--compile", "fast"], "--compile", ""),
        (["--scheduler", "ddim"], "--scheduler", ""),
        (["--compile", "regional", "--consistency", "shared-attention"], "--consistency", "cannot run compiled"),
        (["--warm-up-sizes", "1024"], "--warm-up-sizes", "is not WIDTHxHEIGHT"),
        (["--warm-up-sizes", "100x100"], "--warm-up-sizes", "is not a frame size this renderer serves"),
        (["--warm-up-batches", "1,8"], "--warm-up-batches", "exceeds --max-batch-size 4"),
        (["--warm-up-batches", "two"], "--warm-up-batches", "is not a batch size"),
    ],
)
def test_bad_diffusers_settings_fail_fast(capsys, argv, flag, problem):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert flag in err and problem in err


def test_a_folder_that_is_not_a_pipeline_fails_fast(capsys, tmp_path):
    with pytest.raises(SystemExit):
        main(["--backend", "diffusers", "--base-model", str(tmp_path)])
    assert "is a folder but not a diffusers pipeline folder (no model_index.json in it)" in capsys.readouterr().err


def test_the_settings_take_a_model_folder_or_a_hub_id(assets):
    from_folder = settings_for(assets, vae=str(assets.model.folder / "vae"))
    assert (from_folder.base_model, from_folder.vae) == (assets.model.base_model, str(assets.model.folder / "vae"))
    hub = RendererSettings(backend="diffusers", base_model="stabilityai/stable-diffusion-xl-base-1.0")
    assert hub.base_model == "stabilityai/stable-diffusion-xl-base-1.0"
    assert RendererSettings(vae="madebyollin/sdxl-vae-fp16-fix").vae == "madebyollin/sdxl-vae-fp16-fix"
