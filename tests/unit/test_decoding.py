"""Requests whose bytes do not parse are refused with INVALID_ARGUMENT naming ``request`` on every service, unary and
server-streaming alike: grpcio alone would answer INTERNAL "Exception deserializing request!".

The real planner, sketch renderer, validator (on a tiny CLIP) and gateway run in-process on port 0; the bytes go
through a generic channel call, so no client-side serializer can refuse them first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.protobuf.message import Message

from gateway.server import create_server as create_gateway
from gateway.settings import GatewaySettings
from services.planner.server import create_server as create_planner
from services.planner.settings import PlannerSettings
from services.renderer.server import create_server as create_renderer
from services.renderer.settings import RendererSettings
from services.validator.server import create_server as create_validator
from services.validator.settings import ValidatorSettings
from storyboard.v1 import storyboards_pb2
from storyboard_common.server import ServiceServer
from storyboard_common.v1 import planner_pb2, renderer_pb2, validator_pb2
from tests.support.tiny_clip import build_tiny_clip

READY_TIMEOUT = 60  # the validator's first load in a process pays for importing open_clip
CALL_TIMEOUT = 10
PLACEHOLDER = "@@"  # text whose two bytes are swapped, once serialized, for two that are not UTF-8


def with_invalid_utf8(request: Message) -> bytes:
    """``request`` serialized, with the PLACEHOLDER in one of its string fields made invalid UTF-8."""
    data = request.SerializeToString()
    assert data.count(PLACEHOLDER.encode()) == 1
    return data.replace(PLACEHOLDER.encode(), b"\xff\xfe")


@dataclass(frozen=True)
class Method:
    service: str
    path: str
    streaming: bool
    invalid_utf8: bytes

    def call(self, channel: grpc.Channel, payload: bytes) -> None:
        """Send raw bytes; with no serializers, grpcio passes them through untouched both ways."""
        if self.streaming:
            list(channel.unary_stream(self.path)(payload, timeout=CALL_TIMEOUT))
        else:
            channel.unary_unary(self.path)(payload, timeout=CALL_TIMEOUT)


SPEC = storyboards_pb2.StoryboardSpec(story=PLACEHOLDER)
METHODS = [
    Method(
        "planner", "/storyboard.v1.Planner/Plan", False, with_invalid_utf8(planner_pb2.PlanRequest(story=PLACEHOLDER))
    ),
    Method(
        "renderer",
        "/storyboard.v1.Renderer/Render",
        True,
        with_invalid_utf8(renderer_pb2.RenderRequest(frames=[renderer_pb2.FrameSpec(frame=1, prompt=PLACEHOLDER)])),
    ),
    Method(
        "validator",
        "/storyboard.v1.Validator/Score",
        False,
        with_invalid_utf8(validator_pb2.ScoreRequest(prompts=[PLACEHOLDER])),
    ),
    Method(
        "gateway",
        "/storyboard.v1.Storyboards/Create",
        False,
        with_invalid_utf8(storyboards_pb2.CreateRequest(spec=SPEC)),
    ),
    Method(
        "gateway",
        "/storyboard.v1.Storyboards/Generate",
        True,
        with_invalid_utf8(storyboards_pb2.GenerateRequest(spec=SPEC)),
    ),
]
UNPARSABLE: dict[str, Callable[[Method], bytes]] = {
    "invalid UTF-8 in a string field": lambda method: method.invalid_utf8,
    "a truncated message": lambda _: b"\x0a\x40\x0a\x05fox",  # field 1 claims 64 bytes, 7 follow
    "a varint over 64 bits": lambda _: b"\x78" + b"\xff" * 10 + b"\x01",  # field 15, 11 bytes of varint
}


def _start(server: ServiceServer) -> None:
    server.start()
    assert server.ready.wait(READY_TIMEOUT), server.not_ready_reason


@pytest.fixture(scope="module")
def channels(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, grpc.Channel]]:
    """A channel to each running service, shared by the module."""
    tiny = build_tiny_clip(tmp_path_factory.mktemp("clip"))
    servers: dict[str, tuple[ServiceServer, int]] = {
        "planner": create_planner(PlannerSettings(port=0)),
        "renderer": create_renderer(RendererSettings(port=0, backend="sketch")),
        "validator": create_validator(ValidatorSettings(port=0, **tiny.settings())),
    }
    for server, _ in servers.values():
        _start(server)
    address = {name: f"127.0.0.1:{port}" for name, (_, port) in servers.items()}
    gateway_settings = GatewaySettings(
        port=0,
        rest=False,
        planner=address["planner"],
        renderers=address["renderer"],
        validator=address["validator"],
        outputs=Path(tmp_path_factory.mktemp("outputs")),
    )
    servers["gateway"] = create_gateway(gateway_settings)
    _start(servers["gateway"][0])
    opened = {name: grpc.insecure_channel(f"127.0.0.1:{port}") for name, (_, port) in servers.items()}
    yield opened
    for channel in opened.values():
        channel.close()
    for server, _ in reversed(servers.values()):
        server.stop(0)


@pytest.mark.parametrize("method", METHODS, ids=lambda method: method.path.rsplit(".", 1)[-1])
@pytest.mark.parametrize("payload", UNPARSABLE.values(), ids=UNPARSABLE.keys())
def test_unparsable_request_is_invalid_argument_naming_the_request(
    channels: dict[str, grpc.Channel], method: Method, payload: Callable[[Method], bytes]
) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        method.call(channels[method.service], payload(method))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, raised.value.details()
    assert raised.value.details().startswith("request: is not a valid storyboard.v1.")
