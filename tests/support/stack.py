"""The whole stack in this process: real planner, renderer and validator servers plus a gateway, on free ports."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    renderer_address: str = ""

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gateway_port}"

    @property
    def http_port(self) -> int:
        return self.gateway.endpoints["http"]


def _started(factory, settings) -> tuple[ServiceServer, int]:  # type: ignore[no-untyped-def]
    server, port = factory(settings)
    server.start()
    return server, port


@contextmanager
def in_process_stack(
    outputs: Path,
    renderer_address: str | None = None,
    *,
    planner: dict[str, Any] | None = None,
    renderer: dict[str, Any] | None = None,
    validator: dict[str, Any] | None = None,
    gateway: dict[str, Any] | None = None,
) -> Iterator[InProcessStack]:
    """Planner (offline), sketch renderer (unless ``renderer_address`` names another), unconfigured validator and
    a gateway writing to ``outputs``; everything stopped on exit. ``planner``, ``renderer``, ``validator`` and
    ``gateway`` change those services' settings."""
    servers: list[ServiceServer] = []
    try:
        planner_server, planner_port = _started(
            create_planner, PlannerSettings(**{"port": 0, "backend": "offline", **(planner or {})})
        )
        validator_server, validator_port = _started(create_validator, ValidatorSettings(port=0, **(validator or {})))
        servers += [planner_server, validator_server]
        if validator and not validator_server.ready.wait(180):  # configured to score: frames wait for it
            raise RuntimeError(f"validator not ready: {validator_server.not_ready_reason}")
        if renderer_address is None:
            renderer_settings = RendererSettings(**{"port": 0, "backend": "sketch", **(renderer or {})})
            renderer_server, renderer_port = _started(create_renderer, renderer_settings)
            servers.append(renderer_server)
            renderer_address = f"127.0.0.1:{renderer_port}"
        gateway_server, gateway_port = _started(
            create_gateway,
            GatewaySettings(
                port=0, http_port=0, planner=f"127.0.0.1:{planner_port}", renderers=renderer_address,
                validator=f"127.0.0.1:{validator_port}", outputs=outputs, **(gateway or {}),
            ),
        )  # fmt: skip
        servers.append(gateway_server)
        if not gateway_server.ready.wait(120):
            raise RuntimeError(f"gateway not ready: {gateway_server.not_ready_reason}")
        yield InProcessStack(gateway_server, gateway_port, renderer_address)
    finally:
        for server in reversed(servers):
            server.stop(0)
