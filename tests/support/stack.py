"""The whole stack in this process: real planner, renderer and validator servers plus a gateway, on free ports."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from gateway.server import create_server as create_gateway
from gateway.settings import GatewaySettings
from services.planner.server import create_server as create_planner
from services.planner.settings import PlannerSettings
from services.renderer.server import create_server as create_renderer
from services.renderer.settings import RendererSettings
from services.validator.server import create_server as create_validator
from services.validator.settings import ValidatorSettings
from storyboard_common.server import ServiceServer


@dataclass
class InProcessStack:
    gateway: ServiceServer
    gateway_port: int

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gateway_port}"


def _started(factory, settings) -> tuple[ServiceServer, int]:  # type: ignore[no-untyped-def]
    server, port = factory(settings)
    server.start()
    return server, port


@contextmanager
def in_process_stack(outputs: Path, renderer_address: str | None = None) -> Iterator[InProcessStack]:
    """Planner (offline), sketch renderer (unless ``renderer_address`` names another), unconfigured validator and
    a gateway writing to ``outputs``; everything stopped on exit."""
    servers: list[ServiceServer] = []
    try:
        planner, planner_port = _started(create_planner, PlannerSettings(port=0, backend="offline"))
        validator, validator_port = _started(create_validator, ValidatorSettings(port=0))
        servers += [planner, validator]
        if renderer_address is None:
            renderer, renderer_port = _started(create_renderer, RendererSettings(port=0, backend="sketch"))
            servers.append(renderer)
            renderer_address = f"127.0.0.1:{renderer_port}"
        gateway, gateway_port = _started(
            create_gateway,
            GatewaySettings(
                port=0, http_port=0, planner=f"127.0.0.1:{planner_port}", renderers=renderer_address,
                validator=f"127.0.0.1:{validator_port}", outputs=outputs,
            ),
        )  # fmt: skip
        servers.append(gateway)
        if not gateway.ready.wait(60):
            raise RuntimeError(f"gateway not ready: {gateway.not_ready_reason}")
        yield InProcessStack(gateway, gateway_port)
    finally:
        for server in reversed(servers):
            server.stop(0)
