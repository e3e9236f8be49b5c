"""The renderer service on in-process servers (port 0) with the sketch backend: stream shape, order, determinism,
formats, every bad input, cancellation, deadlines, a full queue, readiness and Info."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image

from services.renderer.__main__ import main
from services.renderer.backend import FrameSpec
from services.renderer.scheduler import AllDone, RenderScheduler
from services.renderer.server import create_server
from services.renderer.settings import RendererSettings
from services.renderer.sketch import SketchBackend
from services.renderer.sketch_canvas import GROUNDS, SKIES, SKIN, Palette, character_cloth
from services.renderer.sketch_scene import Light, Place
from storyboard.v1 import common_pb2
from storyboard_common.v1 import renderer_pb2, renderer_pb2_grpc

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
TIMEOUT = 10


# --- helpers --------------------------------------------------------------------------------------------------------


class GatedSketch(SketchBackend):
    """A sketch backend whose every step waits for ``gate`` (or for the scheduler to say stop), so a test can hold
    a render mid-stream; it counts what it really did."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.steps_done = 0
        self.render_returned = threading.Event()

    def render(self, frames, on_step, should_stop):  # type: ignore[no-untyped-def]
        def held_step(index: int, step: int, total: int) -> None:
            self.steps_done += 1
            on_step(index, step, total)
            while not self.gate.wait(0.005):
                if should_stop():
                    return

        try:
            yield from super().render(frames, held_step, should_stop)
        finally:
            self.render_returned.set()


class HeldWarmUp(SketchBackend):
    """A sketch backend whose warm-up waits until the test lets it finish, or fails when told to."""

    def __init__(self, fail_with: str = "") -> None:
        super().__init__()
        self.release = threading.Event()
        self.fail_with = fail_with

    def warm_up(self) -> None:
        self.release.wait(TIMEOUT)
        if self.fail_with:
            raise RuntimeError(self.fail_with)
        super().warm_up()


@contextmanager
def serving(settings: RendererSettings, backend=None, *, wait_ready: bool = True) -> Iterator[grpc.Channel]:  # type: ignore[no-untyped-def]
    server, port = create_server(settings, backend)
    server.start()
    if wait_ready:
        assert server.ready.wait(TIMEOUT), server.not_ready_reason
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield channel
    finally:
        channel.close()
        server.stop(0)


def spec(frame: int = 1, **fields) -> renderer_pb2.FrameSpec:  # type: ignore[no-untyped-def]
    values = dict(
        frame=frame,
        prompt="aldar_kose_man riding horse across vast steppe, wide establishing shot, golden hour lighting",
        seed=42 + frame,
        width=256,
        height=256,
        steps=3,
        guidance_scale=7.5,
    )
    values.update(fields)
    return renderer_pb2.FrameSpec(**values)


def request(*frames: renderer_pb2.FrameSpec, **fields) -> renderer_pb2.RenderRequest:  # type: ignore[no-untyped-def]
    return renderer_pb2.RenderRequest(frames=list(frames) or [spec()], **fields)


def render(channel: grpc.Channel, req: renderer_pb2.RenderRequest) -> list[renderer_pb2.RenderEvent]:
    return list(renderer_pb2_grpc.RendererStub(channel).Render(req, timeout=TIMEOUT))


def frames_of(events: list[renderer_pb2.RenderEvent]) -> list[renderer_pb2.RenderedFrame]:
    return [event.frame for event in events if event.HasField("frame")]


def health(channel: grpc.Channel) -> int:
    check = health_pb2.HealthCheckRequest(service="storyboard.v1.Renderer")
    return health_pb2_grpc.HealthStub(channel).Check(check, timeout=TIMEOUT).status


def info(channel: grpc.Channel) -> renderer_pb2.RendererInfo:
    return renderer_pb2_grpc.RendererStub(channel).Info(renderer_pb2.RendererInfoRequest(), timeout=TIMEOUT)


def eventually(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.01)


@pytest.fixture(scope="module")
def adapters_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("adapters")
    (folder / "aldar_kose").mkdir()
    (folder / "villain.safetensors").write_bytes(b"not read by the sketch backend")
    (folder / ".hidden").mkdir()
    (folder / "notes.txt").write_text("not an adapter")
    return folder


@pytest.fixture(scope="module")
def channel(adapters_dir: Path) -> Iterator[grpc.Channel]:
    with serving(RendererSettings(port=0, adapters_dir=adapters_dir)) as ch:
        yield ch


# --- the stream -----------------------------------------------------------------------------------------------------


def test_a_frame_streams_its_steps_then_the_frame(channel):
    events = render(channel, request(spec(frame=4, steps=5, seed=7)))
    kinds = [event.WhichOneof("event") for event in events]
    assert kinds == ["progress"] * 5 + ["frame"]
    assert [(e.progress.frame, e.progress.step, e.progress.total_steps) for e in events[:5]] == [
        (4, step, 5) for step in range(1, 6)
    ]
    frame = events[-1].frame
    assert (frame.frame, frame.seed, frame.backend) == (4, 7, "sketch")
    assert frame.image.mime_type == "image/png"
    assert (frame.image.width, frame.image.height) == (256, 256)
    timings = frame.timings
    assert min(timings.queue_seconds, timings.denoise_seconds, timings.decode_seconds, timings.encode_seconds) >= 0
    with Image.open(io.BytesIO(frame.image.data)) as image:
        assert (image.format, image.size) == ("PNG", (256, 256))


def test_every_frame_arrives_once_after_its_own_progress(channel):
    numbers = [5, 2, 9]
    events = render(channel, request(*(spec(frame=n, steps=n % 4 + 1) for n in numbers)))
    assert sorted(f.frame for f in frames_of(events)) == sorted(numbers)
    current: int | None = None
    steps_seen: dict[int, list[int]] = {}
    for event in events:
        if event.HasField("progress"):
            current = event.progress.frame
            steps_seen.setdefault(current, []).append(event.progress.step)
        else:
            assert event.frame.frame == current, "a frame came before its progress"
    assert steps_seen == {n: list(range(1, n % 4 + 2)) for n in numbers}


def test_frames_come_in_the_order_they_finish(channel):
    # Equal steps make one batch, which the sketch draws in the order given; 7 has other steps, so a batch of its own
    # that starts after the first one finishes.
    events = render(channel, request(spec(frame=5), spec(frame=7, steps=1), spec(frame=2), spec(frame=9)))
    assert [f.frame for f in frames_of(events)] == [5, 2, 9, 7]


def test_the_same_request_gives_the_same_bytes(channel):
    req = request(spec(frame=1), spec(frame=2, seed=99))
    first, second = frames_of(render(channel, req)), frames_of(render(channel, req))
    assert [f.image.data for f in first] == [f.image.data for f in second]


def test_seeds_and_cameras_change_the_panel(channel):
    def panel(seed: int, camera: str) -> bytes:
        scene = common_pb2.Scene(description="aldar_kose_man at his yurt", camera=camera, lighting="sunset")
        return frames_of(render(channel, request(spec(seed=seed, scene=scene))))[0].image.data

    assert panel(1, "wide shot") != panel(2, "wide shot")
    assert panel(1, "wide shot") != panel(1, "close-up")


@pytest.mark.parametrize(("interval", "expected"), [(0.0, list(range(1, 9))), (60.0, [1, 8])])
def test_progress_is_reported_at_most_once_per_interval_asked_but_always_first_and_last(channel, interval, expected):
    frames = [spec(frame=1, steps=8), spec(frame=2, steps=8)]
    events = render(channel, request(*frames, progress_interval_seconds=interval))
    for number in (1, 2):
        assert [e.progress.step for e in events if e.HasField("progress") and e.progress.frame == number] == expected
    assert len(frames_of(events)) == 2


def test_the_character_the_scene_names_wears_its_own_colour_in_every_panel(channel):
    # In daylight a figure is drawn flat in its clothes' colour as the light tints it: count those pixels.
    for tokens in (["aldar_kose_man"], ["merchant_man", "aldar_kose_man"]):  # the figure is the first named
        cloth = character_cloth(tokens[0])
        worn = Palette(SKIES[Light.DAY], GROUNDS[Place.STEPPE], cloth, SKIN).lit(cloth)
        for seed, camera in ((1, "wide shot"), (2, "medium shot"), (3, "close-up"), (4, "medium shot")):
            scene = common_pb2.Scene(
                description="on the steppe", camera=camera, lighting="midday", trigger_tokens=tokens
            )
            data = frames_of(render(channel, request(spec(seed=seed, scene=scene))))[0].image.data
            pixels = Image.open(io.BytesIO(data)).convert("RGB").getcolors(1 << 20)
            assert {colour: count for count, colour in pixels}.get(worn, 0) > 100, (tokens, seed, camera)


@pytest.mark.parametrize(("width", "height"), [(256, 256), (512, 264), (264, 512), (1024, 576)])
def test_the_requested_size_is_honoured(channel, width, height):
    frame = frames_of(render(channel, request(spec(width=width, height=height, steps=1))))[0]
    assert (frame.image.width, frame.image.height) == (width, height)
    with Image.open(io.BytesIO(frame.image.data)) as image:
        assert image.size == (width, height)


@pytest.mark.parametrize(
    ("image_format", "quality", "mime_type", "pil_format"),
    [
        (common_pb2.IMAGE_FORMAT_UNSPECIFIED, 0, "image/png", "PNG"),
        (common_pb2.IMAGE_FORMAT_PNG, 0, "image/png", "PNG"),
        (common_pb2.IMAGE_FORMAT_WEBP, 80, "image/webp", "WEBP"),
        (common_pb2.IMAGE_FORMAT_JPEG, 0, "image/jpeg", "JPEG"),
        (common_pb2.IMAGE_FORMAT_JPEG, 100, "image/jpeg", "JPEG"),
    ],
)
def test_each_format_decodes_with_its_mime_type(channel, image_format, quality, mime_type, pil_format):
    frame = frames_of(render(channel, request(spec(steps=1), format=image_format, quality=quality)))[0]
    assert frame.image.mime_type == mime_type
    with Image.open(io.BytesIO(frame.image.data)) as image:
        assert (image.format, image.size) == (pil_format, (256, 256))


def test_png_level_is_the_backends_unless_png_level_says_otherwise():
    pictures = {}
    for level in (None, 0):
        settings = (
            RendererSettings(port=0, backend="sketch")
            if level is None
            else RendererSettings(port=0, backend="sketch", png_level=level)
        )
        with serving(settings) as served:
            pictures[level] = frames_of(render(served, request(spec(steps=1))))[0].image.data
    raw_size = 256 * 256 * 3
    assert len(pictures[0]) > raw_size > 5 * len(pictures[None]), "sketch panels deflate (level 1); level 0 stores"
    decoded = [Image.open(io.BytesIO(data)).tobytes() for data in pictures.values()]
    assert decoded[0] == decoded[1]


def test_a_known_adapter_is_accepted_by_the_sketch(channel):
    adapters = [common_pb2.AdapterRef(name="aldar_kose", weight=1.0), common_pb2.AdapterRef(name="villain", weight=0.5)]
    assert len(frames_of(render(channel, request(spec(adapters=adapters))))) == 1


# --- bad input --------------------------------------------------------------------------------------------------------

INVALID = grpc.StatusCode.INVALID_ARGUMENT
BAD_REQUESTS = [
    (renderer_pb2.RenderRequest(), INVALID, "frames: must not be empty"),
    (request(*(spec(frame=n) for n in range(1, 18))), INVALID, "frames: at most 16 frames per request, got 17"),
    (
        request(spec(1), spec(2), spec(3, width=100)),
        INVALID,
        "frames[2].width: must be a multiple of 8 between 256 and 2048, got 100",
    ),
    (request(spec(width=260)), INVALID, "frames[0].width: must be a multiple of 8"),
    (request(spec(height=2056)), INVALID, "frames[0].height: must be a multiple of 8 between 256 and 2048, got 2056"),
    (request(spec(height=0)), INVALID, "frames[0].height"),
    (request(spec(steps=0)), INVALID, "frames[0].steps: must be between 1 and 150, got 0"),
    (request(spec(steps=151)), INVALID, "frames[0].steps: must be between 1 and 150, got 151"),
    (request(spec(guidance_scale=-0.5)), INVALID, "frames[0].guidance_scale: must be between 0 and 30, got -0.5"),
    (request(spec(guidance_scale=31)), INVALID, "frames[0].guidance_scale"),
    (request(spec(guidance_scale=float("nan"))), INVALID, "frames[0].guidance_scale"),
    (request(spec(seed=-1)), INVALID, "frames[0].seed: must be between 0 and 2^63-1, got -1"),
    (request(spec(prompt="")), INVALID, "frames[0].prompt: must not be empty"),
    (request(spec(prompt="   ")), INVALID, "frames[0].prompt: must not be empty"),
    (request(spec(prompt="x" * 2001)), INVALID, "frames[0].prompt: is 2001 characters long; the limit is 2000"),
    (request(spec(prompt="a\x00b")), INVALID, "frames[0].prompt: contains the control character U+0000"),
    (request(spec(negative_prompt="x" * 2001)), INVALID, "frames[0].negative_prompt"),
    (request(spec(prompt_2="x" * 2001)), INVALID, "frames[0].prompt_2"),
    (
        request(spec(scene=common_pb2.Scene(description="x" * 2001))),
        INVALID,
        "frames[0].scene.description: is 2001 characters long",
    ),
    (
        request(spec(scene=common_pb2.Scene(trigger_tokens=["aldar_kose_man"] * 17))),
        INVALID,
        "frames[0].scene.trigger_tokens: at most 16, got 17",
    ),
    (
        request(spec(scene=common_pb2.Scene(trigger_tokens=["aldar_kose_man", ""]))),
        INVALID,
        "frames[0].scene.trigger_tokens[1]: must not be empty",
    ),
    (request(spec(), progress_interval_seconds=-1), INVALID, "progress_interval_seconds: must be between 0 and 60"),
    (request(spec(), progress_interval_seconds=61), INVALID, "progress_interval_seconds: must be between 0 and 60"),
    (request(spec(), progress_interval_seconds=float("nan")), INVALID, "progress_interval_seconds"),
    (request(spec(frame=0)), INVALID, "frames[0].frame: must be 1 or more, got 0"),
    (request(spec(frame=3), spec(frame=3)), INVALID, "frames[1].frame: frame 3 is already used by frames[0]"),
    (request(spec(), quality=101), INVALID, "quality: must be between 0 and 100"),
    (request(spec(), quality=-1), INVALID, "quality: must be between 0 and 100"),
    (request(spec(), format=9), INVALID, "format: unknown image format 9"),
    (
        request(spec(adapters=[common_pb2.AdapterRef(name="../secrets", weight=1)])),
        INVALID,
        "frames[0].adapters[0].name: must be an adapter name, not a path",
    ),
    (request(spec(adapters=[common_pb2.AdapterRef(name="a/b", weight=1)])), INVALID, "adapters[0].name"),
    (request(spec(adapters=[common_pb2.AdapterRef(name="a\\b", weight=1)])), INVALID, "adapters[0].name"),
    (request(spec(adapters=[common_pb2.AdapterRef(name="", weight=1)])), INVALID, "adapters[0].name: must not be"),
    (request(spec(adapters=[common_pb2.AdapterRef(name=".hidden", weight=1)])), INVALID, "adapters[0].name"),
    (
        request(spec(adapters=[common_pb2.AdapterRef(name="aldar_kose", weight=float("inf"))])),
        INVALID,
        "frames[0].adapters[0].weight",
    ),
    (
        request(spec(adapters=[common_pb2.AdapterRef(name="aldar_kose"), common_pb2.AdapterRef(name="aldar_kose")])),
        INVALID,
        "frames[0].adapters[1].name: 'aldar_kose' is listed twice",
    ),
    (
        request(spec(), spec(2, adapters=[common_pb2.AdapterRef(name="nobody", weight=1)])),
        grpc.StatusCode.NOT_FOUND,
        "frames[1].adapters[0].name: adapter 'nobody' not found in the adapters folder "
        "(available: aldar_kose, villain)",
    ),
]


@pytest.mark.parametrize(("req", "code", "message"), BAD_REQUESTS, ids=[m for _, _, m in BAD_REQUESTS])
def test_bad_input_gets_a_specific_code_naming_the_field(channel, req, code, message):
    with pytest.raises(grpc.RpcError) as caught:
        render(channel, req)
    assert caught.value.code() == code
    assert message in caught.value.details()


def test_without_an_adapters_folder_the_sketch_ignores_adapter_names():
    with serving(RendererSettings(port=0)) as ch:
        adapters = [common_pb2.AdapterRef(name="anyone", weight=1.0)]
        assert len(frames_of(render(ch, request(spec(adapters=adapters))))) == 1
        assert list(info(ch).available_adapters) == []


def test_the_sketch_ignores_reference_pictures_even_undecodable_ones(channel):
    junk = common_pb2.CharacterPictures(trigger_token="hero", pictures=[common_pb2.Image(data=b"junk")], scale=5.0)
    with_references = frames_of(render(channel, request(spec(references=[junk]))))
    assert with_references[0].image.data == frames_of(render(channel, request(spec())))[0].image.data
    assert not info(channel).ip_adapter


# --- cancellation, deadlines, bounds ----------------------------------------------------------------------------------


def test_a_client_that_cancels_stops_the_render_and_frees_the_queue():
    backend = GatedSketch()
    with serving(RendererSettings(port=0, max_streams=1), backend) as ch:
        call = renderer_pb2_grpc.RendererStub(ch).Render(request(spec(1, steps=20), spec(2, steps=20)), timeout=TIMEOUT)
        first = next(call)
        assert first.progress.step == 1
        call.cancel()
        assert backend.render_returned.wait(TIMEOUT), "the backend kept rendering after the client left"
        assert backend.steps_done == 1  # stopped at the very next step
        assert backend.frames_drawn == 0
        # The request is gone: with room for one stream only, a new request is admitted and completes.
        backend.gate.set()
        assert len(frames_of(render(ch, request(spec(steps=2))))) == 1
        assert info(ch).queue_depth == 0


def test_a_passed_deadline_stops_the_render():
    backend = GatedSketch()
    with serving(RendererSettings(port=0), backend) as ch:
        with pytest.raises(grpc.RpcError) as caught:
            list(renderer_pb2_grpc.RendererStub(ch).Render(request(spec(steps=50)), timeout=0.5))
        assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert backend.render_returned.wait(TIMEOUT)
        assert backend.frames_drawn == 0 and backend.steps_done < 50


def test_a_full_queue_is_resource_exhausted():
    backend = GatedSketch()
    settings = RendererSettings(port=0, max_queue=2, max_frames_per_request=2, max_batch_size=1)
    with serving(settings, backend) as ch:
        stub = renderer_pb2_grpc.RendererStub(ch)
        running = stub.Render(request(spec(1)), timeout=TIMEOUT)
        next(running)  # its frame is on the backend now, out of the queue
        waiting = stub.Render(request(spec(1), spec(2)), timeout=TIMEOUT)
        eventually(lambda: info(ch).queue_depth == 2, "the second request is queued")
        with pytest.raises(grpc.RpcError) as caught:
            render(ch, request(spec(1)))
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "queue is full" in caught.value.details()
        backend.gate.set()
        assert len(frames_of(list(running))) == 1
        assert len(frames_of(list(waiting))) == 2
        assert len(frames_of(render(ch, request(spec(1))))) == 1  # room again


def test_too_many_open_streams_is_resource_exhausted():
    backend = GatedSketch()
    with serving(RendererSettings(port=0, max_streams=1), backend) as ch:
        stub = renderer_pb2_grpc.RendererStub(ch)
        running = stub.Render(request(spec(1)), timeout=TIMEOUT)
        next(running)
        with pytest.raises(grpc.RpcError) as caught:
            render(ch, request(spec(1)))
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "Render calls are open" in caught.value.details()
        backend.gate.set()
        assert len(frames_of(list(running))) == 1


# --- readiness and Info -----------------------------------------------------------------------------------------------


def test_not_serving_until_warmed_up():
    backend = HeldWarmUp()
    with serving(RendererSettings(port=0), backend, wait_ready=False) as ch:
        assert health(ch) == NOT_SERVING
        with pytest.raises(grpc.RpcError) as caught:
            render(ch, request(spec()))
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert info(ch).backend == "sketch"  # Info answers while warming up
        backend.release.set()
        eventually(lambda: health(ch) == SERVING, "the renderer reports SERVING")
        assert len(frames_of(render(ch, request(spec())))) == 1


def test_a_failed_warm_up_stays_not_serving_and_says_why():
    backend = HeldWarmUp(fail_with="weights are missing")
    backend.release.set()
    with serving(RendererSettings(port=0), backend, wait_ready=False) as ch:
        eventually(lambda: "weights are missing" in _unavailable_details(ch), "Render reports the warm-up failure")
        assert health(ch) == NOT_SERVING


def _unavailable_details(ch: grpc.Channel) -> str:
    try:
        render(ch, request(spec()))
    except grpc.RpcError as error:
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        return error.details() or ""
    raise AssertionError("Render succeeded on a renderer whose warm-up failed")


def test_info_describes_the_renderer(channel):
    described = info(channel)
    assert (described.backend, described.model, described.device, described.dtype) == (
        "sketch",
        "sketch",
        "cpu",
        "none",
    )
    assert list(described.available_adapters) == ["aldar_kose", "villain"]
    assert list(described.loaded_adapters) == []
    limits = described.limits
    assert (limits.min_size, limits.max_size, limits.max_steps, limits.max_guidance_scale) == (256, 2048, 150, 30)
    assert (limits.max_frames_per_request, limits.max_prompt_chars) == (16, 2000)
    assert described.max_batch_size == 4
    assert described.queue_depth == 0
    assert health(channel) == SERVING


def test_configured_limits_are_enforced_and_reported():
    settings = RendererSettings(port=0, min_size=512, max_size=1024, max_steps=10, max_frames_per_request=2)
    with serving(settings) as ch:
        limits = info(ch).limits
        assert (limits.min_size, limits.max_size, limits.max_steps, limits.max_frames_per_request) == (512, 1024, 10, 2)
        with pytest.raises(grpc.RpcError) as caught:
            render(ch, request(spec(width=256)))
        assert "frames[0].width: must be a multiple of 8 between 512 and 1024, got 256" in caught.value.details()


# --- settings ---------------------------------------------------------------------------------------------------------


def test_the_diffusers_backend_without_a_model_fails_at_start_with_one_clear_line(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--backend", "diffusers"])
    assert exited.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert "--base-model" in lines[0]
    assert "the diffusers backend needs --base-model: an SDXL diffusers folder or a hub id" in lines[0]


@pytest.mark.parametrize(
    ("argv", "flag", "problem"),
    [
        (["--adapters-dir", "/no/such/folder"], "--adapters-dir", "is not an existing folder"),
        (["--min-size", "300"], "--min-size", "must be a multiple of 8"),
        (["--min-size", "1024", "--max-size", "512"], "--max-size", "smaller than --min-size 1024"),
        (["--max-queue", "4"], "--max-frames-per-request", "exceeds --max-queue 4"),
        (["--max-streams", "32"], "--max-streams", "must be below --max-workers 32"),
        (["--device", "tpu"], "--device", ""),
    ],
)
def test_bad_settings_fail_fast(capsys, argv, flag, problem):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert flag in err and problem in err


def test_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("STORYBOARD_RENDERER_MAX_QUEUE", "7")
    monkeypatch.setenv("STORYBOARD_RENDERER_MAX_FRAMES_PER_REQUEST", "7")
    settings = RendererSettings()
    assert (settings.port, settings.max_queue, settings.backend) == (50053, 7, "sketch")


# --- the scheduler's batching (what the diffusers backend builds on) --------------------------------------------------


class RecordingSketch(GatedSketch):
    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[int]] = []

    def render(self, frames, on_step, should_stop):  # type: ignore[no-untyped-def]
        self.batches.append([frame.frame for frame in frames])
        yield from super().render(frames, on_step, should_stop)


def frame_spec(frame: int, height: int = 256) -> FrameSpec:
    return FrameSpec(frame=frame, prompt="p", seed=frame, width=256, height=height, steps=1, guidance_scale=5.0)


def test_compatible_frames_share_a_batch_up_to_the_batch_size():
    backend = RecordingSketch()
    scheduler = RenderScheduler(backend, max_batch_size=2, max_queue=10, max_streams=4)
    scheduler.warm_up()
    try:
        blocker = scheduler.submit([frame_spec(100)])
        assert blocker.next_event(TIMEOUT) is not None  # the worker is busy with it, held at its first step
        first = scheduler.submit([frame_spec(1), frame_spec(2), frame_spec(3, height=512)])
        second = scheduler.submit([frame_spec(4), frame_spec(5)])  # another request: may join a batch
        backend.gate.set()
        for ticket in (blocker, first, second):
            while not isinstance(event := ticket.next_event(TIMEOUT), AllDone):
                assert event is not None, "a request did not finish"
        assert backend.batches == [[100], [1, 2], [3], [4, 5]]
        assert scheduler.queue_depth == 0
    finally:
        scheduler.close()


def _finish(*tickets) -> None:  # type: ignore[no-untyped-def]
    for ticket in tickets:
        while not isinstance(event := ticket.next_event(TIMEOUT), AllDone):
            assert event is not None, "a request did not finish"


def test_a_batching_window_gathers_compatible_frames_of_other_requests():
    backend = RecordingSketch()
    backend.gate.set()
    # A long window: the test would take that long if the scheduler waited it out instead of stopping at a full batch.
    scheduler = RenderScheduler(backend, max_batch_size=4, max_queue=10, max_streams=4, batch_window=30.0)
    scheduler.warm_up()
    try:
        first = scheduler.submit([frame_spec(1)])
        other = scheduler.submit([frame_spec(5, height=512)])  # incompatible: waits for a batch of its own
        second = scheduler.submit([frame_spec(2)])
        third = scheduler.submit([frame_spec(3), frame_spec(4)])
        _finish(first, second, third)
        assert backend.batches[0] == [1, 2, 3, 4]  # three requests, one pipeline call
        scheduler.release(other)
    finally:
        scheduler.close()


def test_a_lone_frame_is_rendered_once_its_window_has_passed():
    backend = RecordingSketch()
    backend.gate.set()
    scheduler = RenderScheduler(backend, max_batch_size=4, max_queue=10, max_streams=4, batch_window=0.05)
    scheduler.warm_up()
    try:
        _finish(scheduler.submit([frame_spec(1)]))
        assert backend.batches == [[1]]
    finally:
        scheduler.close()
