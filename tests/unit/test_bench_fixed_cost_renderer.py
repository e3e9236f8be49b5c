"""The benchmarks' fixed-cost renderer, served over real gRPC: its cost per frame is what the orchestration benchmark's
ideal assumes, whether given per frame or per step, and every frame's bytes are its own."""

from __future__ import annotations

import grpc
import pytest

from bench.fixed_cost_renderer import FixedCostRenderer, with_seed
from bench.natural_image import natural_image
from storyboard_common.images import decode, encode
from storyboard_common.v1 import renderer_pb2, renderer_pb2_grpc
from tests.support.scripted import serve_renderer


@pytest.fixture
def render():
    """Render one 64x64 frame of ``steps`` steps on a served ``FixedCostRenderer``: (its RenderEvents, Info)."""
    servers = []

    def rendered(renderer: FixedCostRenderer, steps: int):
        server, port = serve_renderer(renderer)
        servers.append(server)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = renderer_pb2_grpc.RendererStub(channel)
            spec = renderer_pb2.FrameSpec(frame=1, prompt="a pot", seed=7, width=64, height=64, steps=steps)
            events = list(stub.Render(renderer_pb2.RenderRequest(frames=[spec]), timeout=30))
            return events, stub.Info(renderer_pb2.RendererInfoRequest(), timeout=30)

    yield rendered
    for server in servers:
        server.stop(0)


def test_a_frame_costs_the_frame_seconds_whatever_its_steps(render):
    events, info = render(FixedCostRenderer(frame_seconds=0.02), steps=4)
    assert [e.progress.step for e in events if e.HasField("progress")] == [1, 2, 3, 4]
    frame = events[-1].frame
    assert frame.timings.denoise_seconds == pytest.approx(0.02)
    assert frame.image.data.startswith(b"\x89PNG")
    assert info.model == "sleep 0.02 s per frame"


@pytest.mark.parametrize("steps", [2, 6])
def test_with_step_seconds_a_frame_costs_its_steps_times_the_step(render, steps):
    events, info = render(FixedCostRenderer(frame_seconds=0.5, step_seconds=0.005), steps=steps)
    assert events[-1].frame.timings.denoise_seconds == pytest.approx(0.005 * steps)
    assert info.model == "sleep 0.005 s per step"


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_every_seed_gets_bytes_of_its_own_and_the_same_pixels(fmt):
    """The validator caches embeddings by a hash of the image bytes: frames repeating bytes would never be embedded."""
    picture = natural_image(64, 48)
    data, mime = encode(picture, fmt)
    first, second = with_seed(data, mime, 7), with_seed(data, mime, 2**63 + 7)
    assert len({data, first, second}) == 3
    pixels = decode(data, "data").tobytes()
    assert decode(first, "first").tobytes() == decode(second, "second").tobytes() == pixels


def test_a_served_frame_carries_its_seed(render):
    events, _ = render(FixedCostRenderer(frame_seconds=0.01), steps=1)
    image = decode(events[-1].frame.image.data, "image")
    assert image.info.get("seed") == "7" and image.size == (64, 64)
