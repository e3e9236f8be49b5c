"""Every service as a real process on loopback: health, reflection, SIGTERM; the local stack; the demo path."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from storyboard_server.local_stack import renderer_ports
from tests.support.tiny_clip import build_tiny_clip

pytestmark = pytest.mark.integration
SERVING = health_pb2.HealthCheckResponse.SERVING


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _health(port: int, service: str) -> int | None:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            request = health_pb2.HealthCheckRequest(service=service)
            return health_pb2_grpc.HealthStub(channel).Check(request, timeout=1).status
        except grpc.RpcError:
            return None


def _wait_serving(port: int, service: str, process: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read().decode() if process.stderr else "exited"
        if _health(port, service) == SERVING:
            return
        time.sleep(0.2)
    raise AssertionError(f"{service} on port {port} never became SERVING")


def _reflected_services(port: int) -> set[str]:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        responses = stub.ServerReflectionInfo(iter([request]), timeout=5)
        return {s.name for r in responses for s in r.list_services_response.service}


def _spawn(module: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", module, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )


def _sigterm_and_wait(process: subprocess.Popen, timeout: float = 30) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=timeout)


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    return build_tiny_clip(tmp_path_factory.mktemp("clip"))


@pytest.fixture(scope="module")
def backends(tiny_clip):
    """Planner, renderer and validator processes, started once for the module."""
    ports = {name: _free_port() for name in ("planner", "renderer", "validator")}
    processes = {
        "planner": _spawn("services.planner", "--port", str(ports["planner"])),
        "renderer": _spawn("services.renderer", "--port", str(ports["renderer"]), "--backend", "sketch"),
        "validator": _spawn("services.validator", "--port", str(ports["validator"]), *tiny_clip.cli_args()),
    }
    yield ports, processes
    for process in processes.values():
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.parametrize(
    ("name", "service"),
    [
        ("planner", "storyboard.v1.Planner"),
        ("renderer", "storyboard.v1.Renderer"),
        ("validator", "storyboard.v1.Validator"),
    ],
)
def test_each_service_serves_health_and_reflection(backends, name, service):
    ports, processes = backends
    _wait_serving(ports[name], service, processes[name])
    assert _health(ports[name], "") == SERVING
    assert {service, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= _reflected_services(
        ports[name]
    )


def test_gateway_serves_then_every_service_stops_cleanly_on_sigterm(backends, tmp_path):
    ports, processes = backends
    for name, service in (("planner", "Planner"), ("renderer", "Renderer"), ("validator", "Validator")):
        _wait_serving(ports[name], f"storyboard.v1.{service}", processes[name])
    gateway_port = _free_port()
    gateway = _spawn(
        "gateway",
        "--port", str(gateway_port),
        "--http-port", str(_free_port()),
        "--planner", f"127.0.0.1:{ports['planner']}",
        "--renderers", f"127.0.0.1:{ports['renderer']}",
        "--validator", f"127.0.0.1:{ports['validator']}",
        "--outputs", str(tmp_path / "outputs"),
    )  # fmt: skip
    _wait_serving(gateway_port, "storyboard.v1.Storyboards", gateway)
    assert "storyboard.v1.Storyboards" in _reflected_services(gateway_port)
    assert _sigterm_and_wait(gateway) == 0
    for name in ("planner", "renderer", "validator"):
        assert _sigterm_and_wait(processes[name]) == 0, processes[name].stderr.read().decode()


def test_a_service_with_a_bad_setting_fails_fast_with_a_message(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "--port", "0", "--planner", "127.0.0.1:1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "--renderers" in result.stderr


def _stack_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        STORYBOARD_GATEWAY=f"127.0.0.1:{_free_port()}",  # nothing listens there
        STORYBOARD_OUTPUTS=str(tmp_path / "outputs"),
        PYTHONUNBUFFERED="1",
    )
    return env


def test_storyboard_up_starts_replicas_reports_addresses_and_stops_on_sigterm(tmp_path):
    ports = [_free_port() for _ in range(4)]
    command = [
        sys.executable, "-m", "storyboard.cli", "up", "--renderers", "2",
        "--grpc-port", str(ports[0]), "--http-port", "0", "--planner-port", str(ports[1]),
        "--renderer-port", "0", "--validator-port", str(ports[2]),
    ]  # fmt: skip
    up = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=_stack_env(tmp_path))
    lines: list[str] = []
    assert up.stdout is not None
    for raw in up.stdout:
        lines.append(raw.decode())
        if "ready; Ctrl-C stops it" in lines[-1]:
            break
    output = "".join(lines)
    assert "renderer-1" in output and "renderer-2" in output, output
    studio = re.search(r"studio\s+(http://127\.0\.0\.1:\d+/)", output)
    assert studio, output
    page = httpx.get(studio.group(1), timeout=10)
    assert page.status_code == 200 and "content-security-policy" in page.headers and "studio" in page.text
    renderer_addresses = re.findall(r"renderer-\d\s+127\.0\.0\.1:(\d+)", output)
    assert len(set(renderer_addresses)) == 2
    assert _health(ports[0], "storyboard.v1.Storyboards") == SERVING
    assert all(_health(int(port), "storyboard.v1.Renderer") == SERVING for port in renderer_addresses)
    up.send_signal(signal.SIGTERM)
    assert up.wait(timeout=60) == 0
    assert _health(ports[0], "storyboard.v1.Storyboards") is None
    assert all(_health(int(port), "storyboard.v1.Renderer") is None for port in renderer_addresses)


def test_generate_without_a_gateway_runs_a_local_stack_and_writes_the_folder(tmp_path):
    result = subprocess.run(
        [
            sys.executable, "-m", "storyboard.cli", "generate",
            "--story", "A fox crosses a frozen river at dawn, finds its den under an old oak and sleeps",
            "--num-frames", "6", "--num-inference-steps", "3", "--output-dir", str(tmp_path / "mine"),
        ],
        capture_output=True, text=True, timeout=300, env=_stack_env(tmp_path),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "starting a local stack" in result.stdout
    folder = Path(re.search(r"storyboard written to (\S+)", result.stdout).group(1))
    outputs = tmp_path / "outputs"  # as _stack_env sets it
    studio = (
        f"studio: run `storyboard up --outputs {outputs}` and open http://127.0.0.1:8000/#/storyboards/{folder.name}"
    )
    assert studio in result.stdout
    expected = {"scene_breakdown.json", "sdxl_prompts.json", "storyboard_grid.png"} | {
        f"frame_{n:03d}.png" for n in range(1, 7)
    }
    assert expected <= {p.name for p in folder.iterdir()}
    assert expected <= {p.name for p in (tmp_path / "mine").iterdir()}


def test_generate_rejects_bad_flags_naming_them(tmp_path):
    for flags, name in ((["--num-frames", "11"], "--num-frames"), (["--guidance-scale", "-1"], "--guidance-scale")):
        result = subprocess.run(
            [sys.executable, "-m", "storyboard.cli", "generate", "--story", "x", *flags],
            capture_output=True, text=True, timeout=60, env=_stack_env(tmp_path),
        )  # fmt: skip
        assert result.returncode == 2 and name in result.stderr


def test_renderer_replica_ports_skip_the_validator():
    assert renderer_ports(50053, 3, 50054) == [50053, 50055, 50056]
