"""The local stack's supervisor with real processes: no service outlives ``storyboard up`` or ``generate``, whether
they are stopped by a signal during start-up or killed outright; a busy port is named before anything starts; a
service that exits is restarted, or the stack stops naming it.

Every service a test's stack starts inherits a marker in its environment, so that the test finds exactly its own
processes in /proc, whatever their parent has become.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from storyboard import Client
from tests.support.processes import free_port

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds processes through /proc"),
]
MARKER = "STORYBOARD_TEST_SUPERVISOR"
READY = "ready; Ctrl-C stops it"
STORY = "A fox crosses a frozen river at dawn, finds its den under an old oak and sleeps"


def _env(tmp_path: Path, marker: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        MARKER: marker,
        "STORYBOARD_GATEWAY": f"127.0.0.1:{free_port()}",  # nothing listens there
        "STORYBOARD_OUTPUTS": str(tmp_path / "outputs"),
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


def _services(marker: str) -> dict[int, str]:
    """pid -> command line of every live service process carrying ``marker`` (zombies have no environment)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if f"{MARKER}={marker}".encode() in environ and "storyboard.cli" not in command:
            found[int(entry.name)] = command
    return found


def _pids_of(marker: str, module: str) -> set[int]:
    return {pid for pid, command in _services(marker).items() if f"-m {module} " in f"{command} "}


def _wait_for(condition: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _assert_none_left(marker: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while _services(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _services(marker) == {}, "service processes outlived their supervisor"


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class Up:
    """``storyboard up`` on ports of its own, its output in a file (a pipe would be held open by the services)."""

    def __init__(self, tmp_path: Path, *flags: str) -> None:
        self.marker = uuid.uuid4().hex
        self.ports = {flag: free_port() for flag in ("--grpc-port", "--http-port", "--planner-port",
                                                      "--renderer-port", "--validator-port")}  # fmt: skip
        self.log_path = tmp_path / f"up-{self.marker[:8]}.log"
        port_flags = [part for flag, port in self.ports.items() for part in (flag, str(port))]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "storyboard.cli", "up", *port_flags, *flags],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=_env(tmp_path, self.marker),
            )  # fmt: skip

    @property
    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_output(self, text: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output:
                return
            assert self.process.poll() is None, f"up exited with {self.process.returncode}:\n{self.output}"
            time.sleep(0.05)
        raise AssertionError(f"{text!r} never appeared:\n{self.output}")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def up(tmp_path):
    started: list[Up] = []

    def start(*flags: str) -> Up:
        started.append(Up(tmp_path, *flags))
        return started[-1]

    yield start
    for each in started:
        each.close()
        _assert_none_left(each.marker)


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_during_start_up_stops_the_services_already_started(up, signum, status):
    stack = up()
    # The planner is up and the renderer starting: a stop mid-way through start-up, with services in both states.
    _wait_for(lambda: _pids_of(stack.marker, "services.renderer"), 120, "the renderer to start")
    stack.process.send_signal(signum)
    assert stack.process.wait(timeout=120) == status, stack.output
    assert f"{signal.Signals(signum).name} received while the local stack was starting" in stack.output
    assert READY not in stack.output
    _assert_none_left(stack.marker, timeout=10)  # the supervisor waited for them before it exited
    assert all(_bindable(port) for port in stack.ports.values())


def test_a_sigkilled_supervisor_leaves_no_service_behind(up):
    stack = up("--renderers", "2")
    stack.wait_for_output(READY)
    assert len(_services(stack.marker)) == 5  # planner, two renderers, validator, gateway
    stack.process.kill()
    stack.process.wait(timeout=30)
    _assert_none_left(stack.marker)
    assert all(_bindable(port) for port in stack.ports.values())


@pytest.mark.parametrize(("flag", "what"), [("--renderer-port", "first renderer"), ("--http-port", "gateway REST")])
def test_a_busy_port_is_named_with_its_flag_before_anything_starts(tmp_path, flag, what):
    marker = uuid.uuid4().hex
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        busy = holder.getsockname()[1]
        ports = {name: free_port() for name in ("--grpc-port", "--http-port", "--planner-port", "--renderer-port",
                                                 "--validator-port")}  # fmt: skip
        ports[flag] = busy
        result = subprocess.run(
            [sys.executable, "-m", "storyboard.cli", "up", *[part for item in ports.items() for part in
                                                              (item[0], str(item[1]))]],
            capture_output=True, text=True, timeout=120, env=_env(tmp_path, marker),
        )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr == (
        f"storyboard: port {busy} ({flag}, {what}) is in use; stop what holds it or pass {flag} to move it\n"
    )
    assert "listening on port" not in result.stdout + result.stderr  # no service ever started
    assert _services(marker) == {}


def test_a_killed_renderer_is_restarted_and_the_stack_keeps_serving(up):
    stack = up()
    stack.wait_for_output(READY)
    [renderer] = _pids_of(stack.marker, "services.renderer")
    os.kill(renderer, signal.SIGKILL)
    stack.wait_for_output("renderer is serving again")
    assert "renderer was killed by SIGKILL; restarting it" in stack.output
    [again] = _pids_of(stack.marker, "services.renderer")
    assert again != renderer
    with Client(f"127.0.0.1:{stack.ports['--grpc-port']}", timeout=120) as client:
        created = client.create(story=STORY, num_frames=6, num_inference_steps=2, width=256, height=256)
        assert client.fetch(created.id).final is not None
    stack.process.send_signal(signal.SIGTERM)
    assert stack.process.wait(timeout=120) == 0, stack.output


def test_a_gateway_that_keeps_exiting_stops_the_stack_naming_it(up):
    stack = up()
    stack.wait_for_output(READY)
    killed: set[int] = set()
    deadline = time.monotonic() + 240
    while stack.process.poll() is None and time.monotonic() < deadline:
        fresh = _pids_of(stack.marker, "gateway") - killed
        for pid in fresh:  # each new gateway, as soon as it appears: restarted ones count as they start, too
            os.kill(pid, signal.SIGKILL)
            killed.add(pid)
        time.sleep(0.05)
    assert stack.process.wait(timeout=120) == 1, stack.output
    assert len(killed) == 4  # the first one and three restarts
    assert "gateway keeps exiting; stopping the local stack" in stack.output
    assert "storyboard: gateway was killed by SIGKILL while the local stack ran, after 3 restarts" in stack.output
    _assert_none_left(stack.marker, timeout=10)


class SilentModel:
    """An "OpenAI" endpoint that accepts connections and never answers, until closed: a plan that hangs, so that a
    run is surely under way when a test kills a service, and that ends at once when the test lets it."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._connections: list[socket.socket] = []
        self.asked = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}/v1"

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            self._connections.append(connection)
            self.asked.set()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept(): closing alone would leave it accepting
        self._listener.close()
        for connection in self._connections:
            connection.close()


def test_generate_ends_with_an_error_naming_a_service_that_exits_mid_run(tmp_path):
    marker = uuid.uuid4().hex
    model = SilentModel()
    cli = subprocess.Popen(
        [sys.executable, "-m", "storyboard.cli", "generate", "--story", STORY, "--planner", "openai"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=_env(tmp_path, marker, OPENAI_API_KEY="sk-test", STORYBOARD_PLANNER_OPENAI_BASE_URL=model.base_url,
                 STORYBOARD_PLANNER_MAX_RETRIES="0"),
    )  # fmt: skip
    try:
        assert model.asked.wait(180), "the planner never asked the model"
        [renderer] = _pids_of(marker, "services.renderer")
        os.kill(renderer, signal.SIGKILL)
        time.sleep(0.5)  # not needed for the outcome: a moment for the stack to react before the plan ends too
        model.close()  # the plan fails now, so that the gateway's graceful stop has no call left to wait for
        out, err = cli.communicate(timeout=120)
    finally:
        model.close()
        if cli.poll() is None:
            cli.kill()
            cli.communicate()
    assert cli.returncode == 1, out + err
    assert "storyboard: renderer was killed by SIGKILL while the local stack ran; its log (" in err
    assert "Traceback" not in err
    _assert_none_left(marker, timeout=10)
