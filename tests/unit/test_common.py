"""The shared service frame: error mapping, request ids, settings, health, reflection and graceful stop."""

from __future__ import annotations

import asyncio
import socket
import threading

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from PIL import Image
from pydantic_settings import SettingsConfigDict

from storyboard.v1 import common_pb2
from storyboard_common import images
from storyboard_common.channels import (
    connect_every_replica,
    open_aio_channel,
    open_channel,
    replica_addresses,
    target_for,
)
from storyboard_common.errors import InvalidArgument, NotFound, ResourceExhausted
from storyboard_common.frames import rendered_frame_event
from storyboard_common.logs import request_id
from storyboard_common.progress import ProgressThrottle
from storyboard_common.server import Registration, build_server
from storyboard_common.settings import ServiceSettings, load_settings
from storyboard_common.v1 import planner_pb2, planner_pb2_grpc, renderer_pb2

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class ScriptedPlanner(planner_pb2_grpc.PlannerServicer):
    """Raises whatever the story names, so each mapping can be exercised."""

    def __init__(self) -> None:
        self.seen_request_ids: list[str] = []

    def Plan(self, request: planner_pb2.PlanRequest, context: grpc.ServicerContext) -> planner_pb2.PlanResponse:
        self.seen_request_ids.append(request_id.get())
        errors = {
            "invalid": InvalidArgument("story", "must not be empty"),
            "missing": NotFound("no character named Bob"),
            "busy": ResourceExhausted("queue full"),
            "bug": RuntimeError("password=hunter2 leaked in a bug"),
            "oom": MemoryError(),
        }
        if request.story in errors:
            raise errors[request.story]
        return planner_pb2.PlanResponse()


@pytest.fixture
def served():
    """A server hosting the scripted planner, warm-up held until the test releases it."""
    release = threading.Event()
    servicer = ScriptedPlanner()
    server, port = build_server(
        "test",
        ServiceSettings(port=0),
        [Registration("storyboard.v1.Planner", lambda s: planner_pb2_grpc.add_PlannerServicer_to_server(servicer, s))],
        warm_up=lambda: release.wait(10),
    )
    server.start()
    channel = open_channel(f"127.0.0.1:{port}")
    yield server, channel, servicer, release
    release.set()
    channel.close()
    server.stop(0)


def health_status(channel: grpc.Channel, service: str = "storyboard.v1.Planner") -> int:
    return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status


@pytest.mark.parametrize(
    ("story", "code", "message"),
    [
        ("invalid", grpc.StatusCode.INVALID_ARGUMENT, "story: must not be empty"),
        ("missing", grpc.StatusCode.NOT_FOUND, "no character named Bob"),
        ("busy", grpc.StatusCode.RESOURCE_EXHAUSTED, "queue full"),
        ("oom", grpc.StatusCode.RESOURCE_EXHAUSTED, "out of memory"),
    ],
)
def test_service_errors_map_to_specific_codes(served, story, code, message):
    _, channel, _, _ = served
    with pytest.raises(grpc.RpcError) as caught:
        planner_pb2_grpc.PlannerStub(channel).Plan(planner_pb2.PlanRequest(story=story), timeout=5)
    assert caught.value.code() == code
    assert message in caught.value.details()


def test_a_bug_is_internal_without_its_details(served):
    _, channel, _, _ = served
    with pytest.raises(grpc.RpcError) as caught:
        planner_pb2_grpc.PlannerStub(channel).Plan(planner_pb2.PlanRequest(story="bug"), timeout=5)
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert "hunter2" not in caught.value.details()
    assert "request id" in caught.value.details()


def test_request_id_is_propagated_and_echoed(served):
    _, channel, servicer, _ = served
    token = request_id.set("req-from-upstream")
    try:
        _, call = planner_pb2_grpc.PlannerStub(channel).Plan.with_call(planner_pb2.PlanRequest(story="ok"), timeout=5)
    finally:
        request_id.reset(token)
    assert servicer.seen_request_ids == ["req-from-upstream"]
    assert ("x-request-id", "req-from-upstream") in [(m.key, m.value) for m in call.trailing_metadata()]


def test_health_is_not_serving_until_warm_up_then_serving(served):
    server, channel, _, release = served
    assert health_status(channel) == NOT_SERVING
    assert health_status(channel, "") == NOT_SERVING
    release.set()
    assert server.ready.wait(5)
    assert health_status(channel) == SERVING


def test_a_failed_warm_up_stays_not_serving_with_its_reason():
    def fail() -> None:
        raise RuntimeError("no weights configured: set --clip-model")

    server, port = build_server("test", ServiceSettings(port=0), [], warm_up=fail)
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            for _ in range(50):
                if server.not_ready_reason != "starting":
                    break
                threading.Event().wait(0.05)
            assert server.not_ready_reason == "no weights configured: set --clip-model"
            assert health_status(channel, "") == NOT_SERVING
    finally:
        server.stop(0)


def test_reflection_lists_the_services(served):
    _, channel, _, _ = served
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)
    names = {service.name for response in responses for service in response.list_services_response.service}
    assert {"storyboard.v1.Planner", "grpc.health.v1.Health"} <= names


def test_stop_reports_not_serving_and_runs_closers():
    closed = []
    server, _ = build_server("test", ServiceSettings(port=0), [], closers=[lambda: closed.append(True)])
    server.start()
    assert server.ready.wait(5)
    server.stop(0)
    assert closed == [True]


def test_settings_come_from_env_and_flags_with_flags_winning(monkeypatch):
    class Example(ServiceSettings):
        model_config = SettingsConfigDict(env_prefix="EXAMPLE_")

    monkeypatch.setenv("EXAMPLE_PORT", "6000")
    monkeypatch.setenv("EXAMPLE_GRACE_SECONDS", "3")
    settings = load_settings(Example, ["--port", "7000"])
    assert (settings.port, settings.grace_seconds) == (7000, 3)


def test_bad_settings_fail_fast_naming_flag_and_variable(capsys):
    class Example(ServiceSettings):
        model_config = SettingsConfigDict(env_prefix="EXAMPLE_")

    with pytest.raises(SystemExit) as exited:
        load_settings(Example, ["--port", "99999"], prog="example")
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert "--port" in error and "$EXAMPLE_PORT" in error


@pytest.mark.parametrize(
    ("addresses", "target"),
    [
        ("127.0.0.1:1", "127.0.0.1:1"),
        ("127.0.0.1:1, 127.0.0.1:2", "ipv4:127.0.0.1:1,127.0.0.1:2"),
        ("dns:///renderer:50053", "dns:///renderer:50053"),
    ],
)
def test_targets_for_one_address_a_list_or_a_dns_name(addresses, target):
    assert target_for(addresses) == target


@pytest.mark.parametrize(
    ("addresses", "replicas"),
    [
        ("127.0.0.1:1", ["127.0.0.1:1"]),
        ("127.0.0.1:1, 127.0.0.1:2", ["127.0.0.1:1", "127.0.0.1:2"]),
        ("dns:///127.0.0.1:50053", ["127.0.0.1:50053"]),
        ("dns://8.8.8.8/127.0.0.1:50053", ["127.0.0.1:50053"]),
        ("dns:///[::1]:50053", ["[::1]:50053"]),
        ("dns:///no-such-host.invalid:50053", []),
    ],
)
def test_the_replicas_behind_an_address_list_or_a_dns_name(addresses, replicas):
    assert replica_addresses(addresses) == replicas


def test_every_replica_is_connected_before_the_first_call_and_a_missing_one_does_not_block(served):
    server = served[0]
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        addresses = f"127.0.0.1:{server.port},127.0.0.1:{closed.getsockname()[1]}"

        async def connect() -> int:
            async with open_aio_channel(addresses) as channel:
                return await connect_every_replica(channel, addresses, timeout=2)

        assert asyncio.run(connect()) == 1


def test_healthcheck_probe_exits_zero_only_when_serving(served, capsys):
    from storyboard_common import healthcheck

    server, _, _, release = served
    port = server.port
    assert healthcheck.main([f"127.0.0.1:{port}", "storyboard.v1.Planner"]) == 1
    release.set()
    server.ready.wait(5)
    assert healthcheck.main([f"127.0.0.1:{port}", "storyboard.v1.Planner"]) == 0
    assert "SERVING" in capsys.readouterr().out


@pytest.mark.parametrize(
    "interval,expected",
    [(0.0, list(range(1, 21))), (1.0, [1, 5, 9, 13, 17, 20]), (3600.0, [1, 20])],
    ids=["every step", "one a second", "first and last"],
)
def test_progress_is_thinned_to_one_step_per_interval_but_keeps_the_first_and_last(interval, expected):
    now = [0.0]
    throttle = ProgressThrottle(interval, clock=lambda: now[0])
    passed = []
    for step in range(1, 21):
        now[0] = step * 0.25  # a step every quarter second
        if throttle.passes(step, 20):
            passed.append(step)
    assert passed == expected


# -- frame encoding ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("level", [0, 1, 3, 4, 9])
@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L"])
def test_png_frames_at_every_level_decode_to_the_same_rgb_pixels(level, mode):
    picture = Image.effect_noise((48, 40), 60).convert(mode)
    data, mime_type = images.encode(picture, "PNG", png_level=level)
    assert mime_type == "image/png"
    decoded = images.decode(data, "frame")
    assert (decoded.mode, decoded.tobytes()) == ("RGB", picture.convert("RGB").tobytes())


def test_png_level_0_stores_a_frame_and_1_shrinks_a_flat_one():
    flat = Image.new("RGB", (256, 256), (40, 90, 160))
    stored, _ = images.encode(flat, "PNG", png_level=0)
    deflated, _ = images.encode(flat, "PNG", png_level=1)
    raw_rows = 256 * (1 + 256 * 3)
    assert raw_rows < len(stored) < raw_rows + 1000
    assert len(deflated) * 50 < raw_rows


@pytest.mark.parametrize("fmt", ["WEBP", "JPEG"])
def test_lossy_frames_are_rgb_whatever_the_mode(fmt):
    data, mime_type = images.encode(Image.new("RGBA", (32, 32), (10, 20, 30, 128)), fmt)
    assert mime_type == f"image/{fmt.lower()}"
    assert images.decode(data, "frame").size == (32, 32)


def test_a_rendered_frame_event_built_in_place_is_the_message_nested_constructors_make():
    timings = common_pb2.FrameTimings(queue_seconds=0.5, denoise_seconds=1.5, decode_seconds=0.1, encode_seconds=0.01)
    seed, data = 2**63 - 1, b"\x89PNG..."
    event = rendered_frame_event(
        frame=3, seed=seed, data=data, mime_type="image/png", size=(1024, 768), timings=timings, backend="x"
    )
    image = common_pb2.Image(data=data, mime_type="image/png", width=1024, height=768)
    nested = renderer_pb2.RenderedFrame(frame=3, image=image, seed=seed, timings=timings, backend="x")
    assert event == renderer_pb2.RenderEvent(frame=nested)
