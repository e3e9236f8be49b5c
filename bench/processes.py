"""The benchmarks' services as real processes on loopback: free ports, logs in files (never a pipe that could fill
up), readiness through ``grpc.health.v1``, and a process's CPU time from /proc.

    with Processes(scratch / "logs") as processes:
        planner = processes.planner()
        renderer = processes.fixed_cost_renderer("--frame-seconds", "2")
        gateway = processes.gateway(planner.address, renderer.address, scratch / "outputs")

Every process runs with its checkout's code first on the import path (this one's, or another revision's for
``bench.compare``), in a session of its own; leaving the ``with`` kills the processes started here, and only those.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

REPO = Path(__file__).resolve().parents[1]
LOOPBACK = "127.0.0.1"

# A validator process that first builds a tiny random CLIP in a folder (argv[1]) and then serves on argv[2].
VALIDATOR_ON_A_TINY_CLIP = """
import runpy, sys
from bench.tiny_clip import build_tiny_clip
folder = build_tiny_clip(sys.argv[1])
sys.argv = ["storyboard-validator", "--port", sys.argv[2], f"--clip-model=local-dir:{folder}", *sys.argv[3:]]
runpy.run_module("services.validator", run_name="__main__")
"""


def free_port() -> int:
    """A port that was free on loopback a moment ago."""
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time that process ``pid`` has used, all its threads together, from /proc/<pid>/stat (the
    live form of its rusage; resolution one clock tick, 10 ms on Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5), counted from the state
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def serving(port: int, service: str, timeout: float = 1.0) -> bool:
    """Whether ``service`` reports SERVING on ``port``."""
    with grpc.insecure_channel(f"{LOOPBACK}:{port}") as channel:
        try:
            request = health_pb2.HealthCheckRequest(service=service)
            status = health_pb2_grpc.HealthStub(channel).Check(request, timeout=timeout).status
        except grpc.RpcError:
            return False
    return status == health_pb2.HealthCheckResponse.SERVING


def import_path(root: Path, extra: Sequence[Path] = ()) -> str:
    """PYTHONPATH for a process of the checkout in ``root``: its own code and its own SDK, then ``extra`` (packages its
    revision needs that this environment lacks), before what is installed."""
    return os.pathsep.join(str(path) for path in [root, root / "sdk" / "src", *extra])


@dataclass
class Service:
    """One started process: its gRPC port and log file."""

    name: str
    popen: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""

    def kill(self) -> None:
        if self.alive():
            self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(30)


@dataclass
class Processes:
    """The processes of one benchmark; leaving the ``with`` kills those still running."""

    folder: Path
    started: list[Service] = field(default_factory=list)

    def __enter__(self) -> Processes:
        self.folder.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, *_exc: object) -> None:
        for service in self.started:
            service.kill()

    def spawn(
        self, name: str, python_args: Sequence[str], port: int, root: Path = REPO, extra_path: Sequence[Path] = ()
    ) -> Service:
        """``python <python_args>`` in ``root`` (``import_path``), its output in ``<folder>/<name>-<n>.log``; not waited
        for."""
        log_path = self.folder / f"{name}-{len(self.started)}.log"
        with log_path.open("wb") as log:
            popen = subprocess.Popen(
                [sys.executable, *python_args],
                cwd=root,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, "PYTHONPATH": import_path(root, extra_path)},
            )
        service = Service(name, popen, port, log_path)
        self.started.append(service)
        return service

    def wait_serving(self, service: Service, health: str, timeout: float = 120) -> Service:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not service.alive():
                raise RuntimeError(f"{service.name} exited with {service.popen.returncode}: {service.log_tail()}")
            if serving(service.port, health):
                return service
            time.sleep(0.05)
        raise RuntimeError(f"{service.name} on port {service.port} never became SERVING: {service.log_tail()}")

    # -- the services ---------------------------------------------------------------------------------------------

    def planner(self, *args: str) -> Service:
        """The planner, offline unless ``args`` say otherwise; waited for."""
        port = free_port()
        args = args or ("--backend", "offline")
        service = self.spawn("planner", ["-m", "services.planner", "--port", str(port), *args], port)
        return self.wait_serving(service, "storyboard.v1.Planner")

    def tiny_clip_validator(self, clip_dir: Path, *args: str) -> Service:
        """The validator on a tiny random CLIP built in ``clip_dir``; not waited for (``wait_serving``)."""
        port = free_port()
        return self.spawn("validator", ["-c", VALIDATOR_ON_A_TINY_CLIP, str(clip_dir), str(port), *args], port)

    def fixed_cost_renderer(self, *args: str) -> Service:
        """A ``bench.fixed_cost_renderer`` replica; not waited for (``wait_serving``)."""
        port = free_port()
        return self.spawn("fixed-cost-renderer", ["-m", "bench.fixed_cost_renderer", "--port", str(port), *args], port)

    def gateway(
        self,
        planner: str,
        renderers: str,
        outputs: Path,
        *extra: str,
        validator: str = "",
        root: Path = REPO,
        extra_path: Sequence[Path] = (),
    ) -> Service:
        """The gateway of the checkout in ``root``, writing storyboards to ``outputs``; waited for."""
        port = free_port()
        args = ["-m", "gateway", "--port", str(port), "--http-port", str(free_port()), "--planner", planner,
                "--renderers", renderers, "--outputs", str(outputs), "--grace-seconds", "1"]  # fmt: skip
        if validator:
            args += ["--validator", validator]
        service = self.spawn("gateway", [*args, *extra], port, root=root, extra_path=extra_path)
        return self.wait_serving(service, "storyboard.v1.Storyboards")
