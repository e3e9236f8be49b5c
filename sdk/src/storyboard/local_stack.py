"""The local stack: planner, renderer replicas, validator and gateway as separate processes on loopback.

``storyboard up`` runs one until Ctrl-C or SIGTERM; ``storyboard generate`` starts one for a single run when no
gateway answers. The services come from the ``storyboard-server`` package, started as ``python -m <module>``.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from storyboard.results import StrPath
from storyboard_common.v1 import validator_pb2, validator_pb2_grpc

LOOPBACK = "127.0.0.1"
DEFAULT_GRPC_PORT, DEFAULT_HTTP_PORT = 50051, 8000
DEFAULT_PLANNER_PORT, DEFAULT_RENDERER_PORT, DEFAULT_VALIDATOR_PORT = 50052, 50053, 50054


class StackError(RuntimeError):
    """The local stack could not start; the message says which service and why."""


@dataclass
class StackOptions:
    """What the local stack runs. Port 0 picks a free port."""

    planner: str = "auto"  # auto: the planner picks openai when an API key is configured, else offline
    renderer_backend: str = "sketch"
    base_model: str = ""
    adapters_dir: StrPath | None = None
    characters: StrPath | None = None
    clip_model: str = ""
    clip_pretrained: str = ""
    device: str = "auto"
    renderers: int = 1
    outputs: StrPath = Path("outputs")
    grpc_port: int = DEFAULT_GRPC_PORT
    http_port: int = DEFAULT_HTTP_PORT
    planner_port: int = DEFAULT_PLANNER_PORT
    renderer_port: int = DEFAULT_RENDERER_PORT
    validator_port: int = DEFAULT_VALIDATOR_PORT
    startup_timeout: float = 300.0

    def __post_init__(self) -> None:
        # Paths may be given as str or path-like; held as Path, so that the stack's code has one type to handle.
        self.adapters_dir = _optional_path(self.adapters_dir)
        self.characters = _optional_path(self.characters)
        self.outputs = Path(self.outputs)


def _optional_path(value: StrPath | None) -> Path | None:
    return None if value is None else Path(value)


def renderer_ports(first: int, count: int, validator_port: int) -> list[int]:
    """Replica ports: ``first``, then the ports after it that the validator does not use (50053, 50055, 50056…)."""
    ports: list[int] = []
    candidate = first
    while len(ports) < count:
        if candidate != validator_port:
            ports.append(candidate)
        candidate += 1
    return ports


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


@dataclass
class _Process:
    name: str
    module: str
    args: list[str]
    port: int
    health_service: str
    popen: subprocess.Popen[bytes] | None = None


@dataclass
class LocalStack:
    """Start with ``start()`` (or ``with LocalStack(options) as stack``); ``stop()`` sends SIGTERM to each service,
    gateway first, and waits for it to exit."""

    options: StackOptions
    log_dir: StrPath | None = None
    processes: list[_Process] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.log_dir = _optional_path(self.log_dir)

    @property
    def gateway_address(self) -> str:
        return f"{LOOPBACK}:{self._gateway.port}"

    @property
    def http_port(self) -> int:
        return self._http_port

    @property
    def _gateway(self) -> _Process:
        return self.processes[-1]

    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def start(self) -> None:
        _require_server_packages()
        self.processes = self._plan_processes()
        try:
            for process in self.processes:
                self._spawn(process)
                self._wait_ready(process)
        except BaseException:
            self.stop()
            raise

    def stop(self, grace: float = 15.0) -> None:
        for process in reversed(self.processes):
            if process.popen is not None and process.popen.poll() is None:
                process.popen.terminate()
                try:
                    process.popen.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    process.popen.kill()
                    process.popen.wait()

    def addresses(self) -> list[tuple[str, str]]:
        """(name, address) of every service, for printing."""
        rows = [(p.name, f"{LOOPBACK}:{p.port}") for p in self.processes]
        if self._http_port:
            rows.append(("rest", f"http://{LOOPBACK}:{self._http_port}"))
        return rows

    # -- internals ----------------------------------------------------------------------------------------------

    def _port(self, port: int) -> int:
        return port or _free_port()

    def _plan_processes(self) -> list[_Process]:
        o = self.options
        if o.renderers < 1:
            raise StackError("--renderers must be at least 1")
        planner_port, validator_port = self._port(o.planner_port), self._port(o.validator_port)
        if o.renderer_port:
            render_ports = renderer_ports(o.renderer_port, o.renderers, validator_port)
        else:
            render_ports = [_free_port() for _ in range(o.renderers)]
        self._http_port = self._port(o.http_port)
        planner_args = [] if o.planner == "auto" else ["--backend", o.planner]
        if o.characters:
            planner_args += ["--characters-file", str(o.characters)]
        renderer_args = ["--backend", o.renderer_backend, "--device", o.device]
        if o.base_model:
            renderer_args += ["--base-model", o.base_model]
        if o.adapters_dir:
            renderer_args += ["--adapters-dir", str(o.adapters_dir)]
        validator_args = ["--device", o.device]
        if o.clip_model:
            validator_args += ["--clip-model", o.clip_model]
        if o.clip_pretrained:
            validator_args += ["--clip-pretrained", o.clip_pretrained]
        processes = [_Process("planner", "services.planner", planner_args, planner_port, "storyboard.v1.Planner")]
        for index, port in enumerate(render_ports):
            name = "renderer" if o.renderers == 1 else f"renderer-{index + 1}"
            processes.append(_Process(name, "services.renderer", renderer_args, port, "storyboard.v1.Renderer"))
        processes.append(
            _Process("validator", "services.validator", validator_args, validator_port, "storyboard.v1.Validator")
        )
        gateway_args = [
            "--planner", f"{LOOPBACK}:{planner_port}",
            "--renderers", ",".join(f"{LOOPBACK}:{port}" for port in render_ports),
            "--validator", f"{LOOPBACK}:{validator_port}",
            "--outputs", str(o.outputs),
            "--http-port", str(self._http_port),
        ]  # fmt: skip
        processes.append(
            _Process("gateway", "gateway", gateway_args, self._port(o.grpc_port), "storyboard.v1.Storyboards")
        )
        return processes

    def _spawn(self, process: _Process) -> None:
        command = [sys.executable, "-m", process.module, "--port", str(process.port), *process.args]
        log: IO[bytes] | None = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log = open(self.log_dir / f"{process.name}.log", "ab")  # noqa: SIM115 - the child owns it
        # A session of its own, so a Ctrl-C in the terminal reaches only this parent, which stops services in order.
        process.popen = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, env=os.environ.copy()
        )
        if log is not None:
            log.close()

    def _wait_ready(self, process: _Process) -> None:
        """Wait until the service reports SERVING. A validator with no model configured stays NOT_SERVING by
        design: once it answers, its reason is noted and the stack goes on (frames are then not validated)."""
        deadline = time.monotonic() + self.options.startup_timeout
        tolerate_not_serving = process.name == "validator" and not self.options.clip_model
        with grpc.insecure_channel(f"{LOOPBACK}:{process.port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                assert process.popen is not None
                if process.popen.poll() is not None:
                    raise StackError(self._died_message(process))
                try:
                    status = health.Check(health_pb2.HealthCheckRequest(service=process.health_service), timeout=1)
                except grpc.RpcError:
                    time.sleep(0.1)
                    continue
                if status.status == health_pb2.HealthCheckResponse.SERVING:
                    return
                if tolerate_not_serving:
                    info = validator_pb2_grpc.ValidatorStub(channel).Info(
                        validator_pb2.ValidatorInfoRequest(), timeout=5
                    )
                    if not info.ready:
                        self.notes.append(f"validator not ready, frames will not be validated: {info.reason}")
                        return
                time.sleep(0.1)
        raise StackError(f"{process.name} did not become ready within {self.options.startup_timeout:.0f} s")

    def _died_message(self, process: _Process) -> str:
        assert process.popen is not None
        message = f"{process.name} exited with status {process.popen.returncode} while starting"
        if self.log_dir is not None:
            tail = (self.log_dir / f"{process.name}.log").read_text(errors="replace").strip().splitlines()[-5:]
            message += f"; its log ({self.log_dir / (process.name + '.log')}) ends:\n  " + "\n  ".join(tail)
        return message


def _require_server_packages() -> None:
    missing = [m for m in ("services.planner", "services.renderer", "services.validator", "gateway") if not _has(m)]
    if missing:
        raise StackError(
            "the local stack needs the Storyboard services (pip install storyboard-server); missing: "
            + ", ".join(missing)
        )


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False
