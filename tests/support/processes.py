"""Services as real processes on loopback, for the reliability suite and the benchmarks: free ports, logs in files
(never a pipe that could fill up), readiness through ``grpc.health.v1``, SIGKILL or SIGTERM by process id.

    with ProcessGroup(tmp_path) as group:
        planner = group.planner()
        renderer = group.start("renderer", "services.renderer", "--backend", "sketch", health="storyboard.v1.Renderer")
        gateway = group.gateway(planner.address, renderer.address, tmp_path / "outputs")

Every process is started in a session of its own and only the processes started here are ever signalled.
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

ROOT = Path(__file__).resolve().parents[2]
LOOPBACK = "127.0.0.1"
SERVING = health_pb2.HealthCheckResponse.SERVING

# A validator process that first builds its tiny CLIP: one import of open_clip instead of two.
VALIDATOR_ON_A_TINY_CLIP = """
import runpy, sys
from tests.support.tiny_clip import build_tiny_clip
tiny = build_tiny_clip(sys.argv[1])
sys.argv = ["storyboard-validator", "--port", sys.argv[2], *tiny.cli_args(), *sys.argv[3:]]
runpy.run_module("services.validator", run_name="__main__")
"""


def free_port() -> int:
    """A port that was free on loopback a moment ago."""
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


def health_status(port: int, service: str, timeout: float = 1.0) -> int | None:
    """The health status ``service`` reports on ``port``, or None when nothing answers."""
    with grpc.insecure_channel(f"{LOOPBACK}:{port}") as channel:
        try:
            request = health_pb2.HealthCheckRequest(service=service)
            return health_pb2_grpc.HealthStub(channel).Check(request, timeout=timeout).status
        except grpc.RpcError:
            return None


def _import_path(root: Path) -> dict[str, str]:
    """For a process started in another checkout: its own code (and its SDK) before the installed one."""
    if root == ROOT:
        return {}
    return {"PYTHONPATH": os.pathsep.join([str(root), str(root / "sdk" / "src")])}


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time process ``pid`` has used, from /proc (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    """Resident memory of process ``pid`` from /proc (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


@dataclass
class ServiceProcess:
    """One started service: its process, gRPC port, REST port (gateways) and log file."""

    name: str
    popen: subprocess.Popen[bytes]
    port: int
    log_path: Path
    command: list[str]
    http_port: int = 0

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
        """SIGKILL: no goodbye, open streams just break."""
        if self.alive():
            self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(30)

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM and wait for the exit status."""
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise


@dataclass
class ProcessGroup:
    """Processes started for one test or benchmark; ``close()`` (or leaving the ``with``) kills what is left."""

    folder: Path
    env: dict[str, str] = field(default_factory=dict)
    started: list[ServiceProcess] = field(default_factory=list)

    def __enter__(self) -> ProcessGroup:
        self.folder.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        for service in self.started:
            if service.alive():
                service.kill()

    def spawn(
        self, name: str, python_args: Sequence[str], port: int, http_port: int = 0, root: Path = ROOT
    ) -> ServiceProcess:
        """Start ``python <python_args>`` in ``root`` (the repository's, or another checkout's, whose code then comes
        first on the import path), its output in ``<folder>/<name>-<n>.log``."""
        log_path = self.folder / f"{name}-{len(self.started)}.log"
        command = [sys.executable, *python_args]
        with log_path.open("wb") as log:
            popen = subprocess.Popen(
                command,
                cwd=root,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, **self.env, **_import_path(root)},
            )
        service = ServiceProcess(name, popen, port, log_path, command, http_port)
        self.started.append(service)
        return service

    def restart(self, service: ServiceProcess, health: str, timeout: float = 90) -> ServiceProcess:
        """The same command again (same ports), once the old process is gone; waits until it serves."""
        if service.alive():
            service.kill()
        again = self.spawn(service.name, service.command[1:], service.port, service.http_port)
        self.wait_serving(again, health, timeout)
        return again

    def start(
        self, name: str, module: str, *args: str, health: str, port: int = 0, timeout: float = 90
    ) -> ServiceProcess:
        """``python -m module --port PORT *args``, waited for until ``health`` is SERVING."""
        port = port or free_port()
        service = self.spawn(name, ["-m", module, "--port", str(port), *args], port)
        self.wait_serving(service, health, timeout)
        return service

    def wait_serving(self, service: ServiceProcess, health: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not service.alive():
                raise RuntimeError(f"{service.name} exited with {service.popen.returncode}: {service.log_tail()}")
            if health_status(service.port, health) == SERVING:
                return
            time.sleep(0.05)
        raise RuntimeError(f"{service.name} on port {service.port} never became SERVING: {service.log_tail()}")

    # -- the services ---------------------------------------------------------------------------------------------

    def planner(self, *args: str) -> ServiceProcess:
        """The planner (offline unless ``args`` say otherwise)."""
        return self.start(
            "planner", "services.planner", *(args or ("--backend", "offline")), health="storyboard.v1.Planner"
        )

    def sketch_renderer(self, *args: str) -> ServiceProcess:
        return self.start(
            "renderer", "services.renderer", "--backend", "sketch", *args, health="storyboard.v1.Renderer"
        )

    def scripted_renderer(self, *args: str, port: int = 0) -> ServiceProcess:
        """``tests.support.scripted renderer``: plain panels, ``--delay`` seconds a frame, ``--log`` of renders."""
        port = port or free_port()
        service = self.spawn("scripted-renderer", ["-m", "tests.support.scripted", "renderer", "--port", str(port),
                                                   *args], port)  # fmt: skip
        self.wait_serving(service, "storyboard.v1.Renderer")
        return service

    def tiny_clip_validator(self, clip_dir: Path, *args: str, wait: bool = True) -> ServiceProcess:
        """The validator on a tiny random CLIP built (or reused) in ``clip_dir``."""
        port = free_port()
        service = self.spawn("validator", ["-c", VALIDATOR_ON_A_TINY_CLIP, str(clip_dir), str(port), *args], port)
        if wait:
            self.wait_serving(service, "storyboard.v1.Validator", timeout=180)
        return service

    def gateway(
        self,
        planner: str,
        renderers: str,
        outputs: Path,
        *extra: str,
        validator: str = "",
        timeout: float = 90,
        root: Path = ROOT,
    ) -> ServiceProcess:
        """The gateway (from the checkout in ``root``) on free gRPC and REST ports, writing storyboards to
        ``outputs``; waited for until ready."""
        port, http_port = free_port(), free_port()
        args = ["-m", "gateway", "--port", str(port), "--http-port", str(http_port), "--planner", planner,
                "--renderers", renderers, "--outputs", str(outputs), "--grace-seconds", "1"]  # fmt: skip
        if validator:
            args += ["--validator", validator]
        service = self.spawn("gateway", [*args, *extra], port, http_port, root=root)
        self.wait_serving(service, "storyboard.v1.Storyboards", timeout)
        return service
