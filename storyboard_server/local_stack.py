"""The local stack: planner, renderer replicas, validator and gateway as separate processes on loopback.

``storyboard up`` runs one until Ctrl-C or SIGTERM; ``storyboard generate`` starts one for a single run when no
gateway answers. The services come from the ``storyboard-server`` package, started as ``python -m <module>``.

It never leaves a service behind:

- Every port it will bind is checked before anything starts; a busy one is named, with the flag that moves it.
- ``stop_on_signals(stack)``, entered before ``start()``, turns SIGINT and SIGTERM into ``request_stop``: during
  start-up the services already started are stopped and ``start()`` raises ``StackInterrupted``; later the stack stops
  and ``wait()`` returns.
- Each service holds the read end of a lifeline pipe whose write end only this process holds (the reasons for a pipe
  are in ``storyboard_common/lifeline.py``): when this process ends, however it ends, SIGKILL included, every service
  stops itself. The services start no processes of their own, so there are no grandchildren to cover.
- A thread per service waits for it to exit. One that exits while the stack runs is restarted after a backoff and
  waited for until ready again, up to ``StackOptions.max_restarts`` times in a row; then the whole stack stops and
  ``wait()`` (or leaving the ``with``) raises a StackError naming it, with the end of its log.
"""

from __future__ import annotations

import errno
import importlib.util
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.outputs import StrPath
from storyboard_common.v1 import validator_pb2, validator_pb2_grpc
from storyboard_server.registry import characters_file

LOOPBACK = "127.0.0.1"
DEFAULT_GRPC_PORT, DEFAULT_HTTP_PORT = 50051, 8000
DEFAULT_PLANNER_PORT, DEFAULT_RENDERER_PORT, DEFAULT_VALIDATOR_PORT = 50052, 50053, 50054
LIFELINE_ENV = "STORYBOARD_LIFELINE_FD"  # read by storyboard_common.lifeline in each service
RESTART_BACKOFF_SECONDS = 0.5  # before a service's first restart; doubled for each further one in a row
STABLE_SECONDS = 60.0  # a service that served this long before it exited starts its count of restarts afresh
STOP_GRACE_SECONDS = 15.0  # how long a service may take to stop after SIGTERM before it is killed
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StackError(RuntimeError):
    """The local stack could not start, or stopped because a service exited. The message's first line says which
    service and why; the lines after it, when there are any, are the end of that service's log."""

    exit_status = 1  # for a command line tool


class StackInterrupted(StackError):
    """SIGINT or SIGTERM (``request_stop``) ended the stack before it was ready, or while a ``with`` body used it."""

    def __init__(self, signum: int, when: str) -> None:
        self.signum = signum
        self.exit_status = 128 + signum  # what a shell shows for a command a signal ended: 130 SIGINT, 143 SIGTERM
        name = signal.Signals(signum).name
        super().__init__(f"{name} received {when}; the services it had started were stopped")


@dataclass
class StackOptions:
    """What the local stack runs. Port 0 picks a free port."""

    planner: str = "auto"  # auto: the planner picks openai when an API key is configured, else offline
    renderer_backend: str = "sketch"
    base_model: str = ""
    adapters_dir: StrPath | None = None
    ip_adapter: StrPath | None = None  # the renderer's --ip-adapter folder (diffusers)
    consistency: str = "off"  # the renderers' --consistency: "off" or "shared-attention"
    characters: StrPath | None = None  # None: the default registry (storyboard_server.registry)
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
    max_restarts: int = 3  # restarts in a row of a service that exits while the stack runs; 0: the stack stops

    def __post_init__(self) -> None:
        # Paths may be given as str or path-like; held as Path, so that the stack's code has one type to handle.
        self.adapters_dir = _optional_path(self.adapters_dir)
        self.ip_adapter = _optional_path(self.ip_adapter)
        self.characters = characters_file(self.characters)
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


def _free_port(taken: set[int]) -> int:
    while True:
        with socket.socket() as probe:
            probe.bind((LOOPBACK, 0))
            port = probe.getsockname()[1]
        if port not in taken:
            return port


def _bind_error(port: int) -> OSError | None:
    """Why a service could not listen on ``port`` now, or None when it could."""
    with socket.socket() as probe:
        # As the services' own listeners do, so that a port whose last connections linger in TIME_WAIT counts as free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((LOOPBACK, port))
        except OSError as error:
            return error
    return None


@dataclass
class _Process:
    name: str
    module: str
    args: list[str]
    port: int
    health_service: str
    popen: subprocess.Popen[bytes] | None = None
    exited: threading.Event = field(default_factory=threading.Event)  # set once ``popen`` has exited and is reaped
    ready_at: float = 0.0  # time.monotonic() when it last became ready
    failures: int = 0  # exits in a row while the stack ran


@dataclass(frozen=True)
class _Binding:
    """A port the stack binds, the flag that sets it and what listens on it, for the busy-port message."""

    port: int
    flag: str
    what: str


class _Abort(Exception):
    """A stop was requested (``signum``: by that signal; None: by ``stop()``) while the stack waited for something."""

    def __init__(self, signum: int | None) -> None:
        super().__init__(signum)
        self.signum = signum


class _ExitedWhileStarting(StackError):
    pass


def _say_on_stderr(message: str) -> None:
    print(f"storyboard: {message}", file=sys.stderr, flush=True)


@contextmanager
def stop_on_signals(stack: LocalStack, signals: Sequence[int] = STOP_SIGNALS) -> Iterator[LocalStack]:
    """While inside, each of ``signals`` calls ``stack.request_stop`` instead of having its usual effect. Enter it
    before ``start()`` so that no moment of start-up is left uncovered. Python lets only the main thread set signal
    handlers; in any other thread this changes nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield stack
        return

    def handler(signum: int, _frame: object) -> None:
        stack.request_stop(signum)

    previous = [(signum, signal.signal(signum, handler)) for signum in signals]
    try:
        yield stack
    finally:
        for signum, old in previous:
            signal.signal(signum, old if old is not None else signal.SIG_DFL)


@dataclass
class LocalStack:
    """Start with ``start()`` (or ``with LocalStack(options) as stack``); ``wait()`` until it stops by itself;
    ``stop()`` stops every service, gateway first, each with SIGTERM and a grace before SIGKILL.

    Leaving the ``with`` on an exception that a service's exit or a requested stop caused (a broken stream, say)
    raises the StackError that names the cause instead, chained to it."""

    options: StackOptions
    log_dir: StrPath | None = None
    processes: list[_Process] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    say: Callable[[str], None] = field(default=_say_on_stderr, repr=False)  # restarts and stops, as they happen
    # Called, from the supervisor's thread, when the stack begins to stop by itself (a requested stop, a service that
    # kept exiting): a client's close(), say, so that a call the ``with`` body is blocked in ends at once.
    on_stop: list[Callable[[], None]] = field(default_factory=list, repr=False)
    _events: queue.SimpleQueue[tuple[str, Any]] = field(default_factory=queue.SimpleQueue, init=False, repr=False)
    _deferred: deque[tuple[str, Any]] = field(default_factory=deque, init=False, repr=False)
    _bindings: list[_Binding] = field(default_factory=list, init=False, repr=False)
    _lifeline: tuple[int, int] | None = field(default=None, init=False, repr=False)
    _supervisor: threading.Thread | None = field(default=None, init=False, repr=False)
    _stop_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _stopped: bool = field(default=False, init=False, repr=False)
    _failure: StackError | None = field(default=None, init=False, repr=False)
    _stop_signal: int | None = field(default=None, init=False, repr=False)
    _http_port: int = field(default=0, init=False, repr=False)

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

    def __exit__(self, _type: object, error: BaseException | None, _tb: object) -> None:
        self.stop()
        if error is None or isinstance(error, (KeyboardInterrupt, StackError)):
            return
        if self._failure is not None:
            raise self._failure from error
        if self._stop_signal is not None:
            raise StackInterrupted(self._stop_signal, "while the local stack ran") from error

    def start(self) -> None:
        """Check every port, start the services in order, each waited for until ready, then supervise them from a
        background thread. A busy port or a service that fails to start raises StackError, a stop requested
        meanwhile raises StackInterrupted; either way nothing is left running."""
        _require_server_packages()
        self.processes = self._plan_processes()
        self._check_ports()
        self._lifeline = os.pipe()  # both ends close-on-exec: only the read end is passed on, by name
        try:
            for process in self.processes:
                self._poll_events(None, during_start=True, timeout=0)
                self._spawn(process)
                self._wait_ready(process, during_start=True)
        except _Abort as abort:
            self.stop()
            if abort.signum is None:
                raise StackError("the local stack was stopped while it started") from None
            raise StackInterrupted(abort.signum, "while the local stack was starting") from None
        except BaseException:
            self.stop()
            raise
        self._supervisor = threading.Thread(target=self._supervise, name="local-stack-supervisor", daemon=True)
        self._supervisor.start()

    def request_stop(self, signum: int = signal.SIGTERM) -> None:
        """Stop as if ``signum`` had arrived: during ``start()`` it stops what it started and raises
        StackInterrupted; afterwards every service stops and ``wait()`` returns ``signum``. Safe to call from a signal
        handler or any thread: it only puts an item on a reentrant queue."""
        self._events.put(("signal", signum))

    def wait(self) -> int | None:
        """Block until the started stack has stopped by itself: the signal that stopped it (``request_stop``), None
        when ``stop()`` did. A service that kept exiting raises StackError naming it."""
        if self._supervisor is None:
            raise RuntimeError("wait() needs a started stack")
        self._supervisor.join()
        if self._failure is not None:
            raise self._failure
        return self._stop_signal

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """Stop every service: SIGTERM to the gateway, then to the others, each with ``grace`` seconds to exit before
        SIGKILL (a second ``request_stop`` cuts the wait short). Idempotent; from any thread."""
        supervisor = self._supervisor
        if supervisor is not None and supervisor is not threading.current_thread():
            self._events.put(("quit", None))
            supervisor.join()
        self._stop_all(grace)

    def addresses(self) -> list[tuple[str, str]]:
        """(name, address) of every service, for printing."""
        rows = [(p.name, f"{LOOPBACK}:{p.port}") for p in self.processes]
        if self._http_port:
            rows.append(("rest", f"http://{LOOPBACK}:{self._http_port}"))
            rows.append(("studio", f"http://{LOOPBACK}:{self._http_port}/"))
        return rows

    # -- planning -----------------------------------------------------------------------------------------------

    def _plan_processes(self) -> list[_Process]:
        o = self.options
        if o.renderers < 1:
            raise StackError("--renderers must be at least 1")
        taken = {o.grpc_port, o.http_port, o.planner_port, o.validator_port} - {0}
        if o.renderer_port:  # the replicas' ports too, however many: a free port picked for another is never one
            taken.update(range(o.renderer_port, o.renderer_port + o.renderers + 1))

        def port(value: int) -> int:
            if value:
                return value
            picked = _free_port(taken)
            taken.add(picked)
            return picked

        planner_port, validator_port = port(o.planner_port), port(o.validator_port)
        if o.renderer_port:
            render_ports = renderer_ports(o.renderer_port, o.renderers, validator_port)
        else:
            render_ports = [port(0) for _ in range(o.renderers)]
        self._http_port = port(o.http_port)
        grpc_port = port(o.grpc_port)
        planner_args = [] if o.planner == "auto" else ["--backend", o.planner]
        if o.characters:
            planner_args += ["--characters-file", str(o.characters)]
        renderer_args = ["--backend", o.renderer_backend, "--device", o.device]
        if o.base_model:
            renderer_args += ["--base-model", o.base_model]
        if o.adapters_dir:
            renderer_args += ["--adapters-dir", str(o.adapters_dir)]
        if o.ip_adapter:
            renderer_args += ["--ip-adapter", str(o.ip_adapter)]
        if o.consistency != "off":
            renderer_args += ["--consistency", o.consistency]
        validator_args = ["--device", o.device]
        if o.clip_model:
            validator_args += ["--clip-model", o.clip_model]
        if o.clip_pretrained:
            validator_args += ["--clip-pretrained", o.clip_pretrained]
        processes = [_Process("planner", "services.planner", planner_args, planner_port, "storyboard.v1.Planner")]
        self._bindings = [_Binding(planner_port, "--planner-port", "planner")]
        for index, render_port in enumerate(render_ports):
            name = "renderer" if o.renderers == 1 else f"renderer-{index + 1}"
            processes.append(_Process(name, "services.renderer", renderer_args, render_port, "storyboard.v1.Renderer"))
            what = "first renderer" if index == 0 else f"renderer {index + 1} of {o.renderers}"
            self._bindings.append(_Binding(render_port, "--renderer-port", what))
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
        processes.append(_Process("gateway", "gateway", gateway_args, grpc_port, "storyboard.v1.Storyboards"))
        self._bindings += [
            _Binding(validator_port, "--validator-port", "validator"),
            _Binding(grpc_port, "--grpc-port", "gateway gRPC"),
            _Binding(self._http_port, "--http-port", "gateway REST"),
        ]
        return processes

    def _check_ports(self) -> None:
        """Every port the stack will bind, checked before anything starts, so that a busy one is named with the flag
        that moves it rather than found by a service failing to bind halfway through start-up."""
        seen: dict[int, _Binding] = {}
        for binding in self._bindings:
            other = seen.setdefault(binding.port, binding)
            if other is not binding:
                raise StackError(
                    f"port {binding.port} is given to both {other.flag} ({other.what}) and {binding.flag} "
                    f"({binding.what}); pass another port to one of them"
                )
            error = _bind_error(binding.port)
            if error is None:
                continue
            where = f"port {binding.port} ({binding.flag}, {binding.what})"
            if error.errno == errno.EADDRINUSE:
                raise StackError(f"{where} is in use; stop what holds it or pass {binding.flag} to move it")
            raise StackError(f"{where} cannot be used ({error.strerror}); pass {binding.flag} to use another")

    # -- processes ----------------------------------------------------------------------------------------------

    def _spawn(self, process: _Process) -> None:
        assert self._lifeline is not None
        lifeline = self._lifeline[0]
        command = [sys.executable, "-m", process.module, "--port", str(process.port), *process.args]
        log: IO[bytes] | None = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log = open(self.log_dir / f"{process.name}.log", "ab")  # noqa: SIM115 - the child owns it
        # A session of its own, so that a Ctrl-C in the terminal reaches only this supervisor, which stops the
        # services in order; should this process die first, the lifeline stops them.
        try:
            popen = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                env={**os.environ, LIFELINE_ENV: str(lifeline)}, pass_fds=(lifeline,),
            )  # fmt: skip
        finally:
            if log is not None:
                log.close()
        exited = threading.Event()
        process.popen, process.exited, process.ready_at = popen, exited, 0.0
        waiter = threading.Thread(
            target=self._wait_exit, args=(process, popen, exited), name=f"local-stack-{process.name}", daemon=True
        )
        waiter.start()

    def _wait_exit(self, process: _Process, popen: subprocess.Popen[bytes], exited: threading.Event) -> None:
        popen.wait()
        exited.set()
        self._events.put(("exited", (process, popen)))

    def _wait_ready(self, process: _Process, during_start: bool) -> None:
        """Wait until the service reports SERVING, handling events meanwhile (see ``_poll_events``). A validator with
        no model configured stays NOT_SERVING by design: once it answers, its reason is noted and the stack goes on
        (frames are then not validated)."""
        deadline = time.monotonic() + self.options.startup_timeout
        tolerate_not_serving = process.name == "validator" and not self.options.clip_model
        with grpc.insecure_channel(f"{LOOPBACK}:{process.port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                self._poll_events(process, during_start, timeout=0)
                try:
                    status = health.Check(health_pb2.HealthCheckRequest(service=process.health_service), timeout=1)
                except grpc.RpcError:
                    self._poll_events(process, during_start, timeout=0.1)
                    continue
                if status.status == health_pb2.HealthCheckResponse.SERVING:
                    process.ready_at = time.monotonic()
                    return
                if tolerate_not_serving:
                    info = validator_pb2_grpc.ValidatorStub(channel).Info(
                        validator_pb2.ValidatorInfoRequest(), timeout=5
                    )
                    if not info.ready:
                        if during_start:
                            self.notes.append(f"validator not ready, frames will not be validated: {info.reason}")
                        process.ready_at = time.monotonic()
                        return
                self._poll_events(process, during_start, timeout=0.1)
        raise StackError(f"{process.name} did not become ready within {self.options.startup_timeout:.0f} s")

    def _poll_events(self, starting: _Process | None, during_start: bool, timeout: float) -> None:
        """Handle what arrives within ``timeout`` seconds while the stack waits for ``starting`` (or for a restart's
        backoff): a requested stop raises _Abort; the exit of ``starting`` raises _ExitedWhileStarting; another
        service's exit fails start-up, or, once the stack runs, is kept for the supervisor to handle next."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                event = self._events.get(timeout=remaining) if remaining > 0 else self._events.get_nowait()
            except queue.Empty:
                return
            kind, payload = event
            if kind in ("signal", "quit"):
                raise _Abort(payload)
            process, popen = payload
            if popen is not process.popen:
                continue  # an earlier run of a service since restarted
            if process is starting:
                raise _ExitedWhileStarting(self._exit_message(process, "while starting"))
            if during_start:
                waiting_for = f"while {starting.name} was starting" if starting else "while the stack was starting"
                raise StackError(self._exit_message(process, waiting_for))
            self._deferred.append(event)

    # -- supervision --------------------------------------------------------------------------------------------

    def _supervise(self) -> None:
        """The background thread of a started stack: restarts a service that exits, stops the stack on a requested
        stop or when a service keeps exiting. On ``stop()`` it just ends; ``stop()`` does the stopping."""
        stop_here = True
        try:
            while True:
                kind, payload = self._deferred.popleft() if self._deferred else self._events.get()
                if kind == "quit":
                    stop_here = False
                    return
                if kind == "signal":
                    raise _Abort(payload)
                process, popen = payload
                if popen is process.popen:
                    self._restart(process)
        except _Abort as abort:
            if abort.signum is None:
                stop_here = False
                return
            self._stop_signal = abort.signum
            self.say(f"{signal.Signals(abort.signum).name} received; stopping the local stack")
        except StackError as error:
            self._failure = error
        except BaseException as error:  # a bug here must not leave the services running unsupervised
            self._failure = StackError(f"the local stack's supervisor failed: {error!r}")
        finally:
            if stop_here:
                for hook in self.on_stop:
                    try:
                        hook()
                    except Exception as error:  # the stack stops all the same
                        self.say(f"while stopping the local stack: {error!r}")
                self._stop_all(STOP_GRACE_SECONDS)

    def _restart(self, process: _Process) -> None:
        """``process`` exited while the stack ran: start it again after a backoff and wait until it is ready, up to
        ``max_restarts`` times in a row; beyond that, raise the StackError that names it."""
        limit = self.options.max_restarts
        if process.ready_at and time.monotonic() - process.ready_at >= STABLE_SECONDS:
            process.failures = 0
        while True:
            process.failures += 1
            if process.failures > limit:
                after = f", after {limit} restart{'s' if limit > 1 else ''}" if limit else ""
                self.say(f"{process.name} {'keeps exiting' if limit else 'exited'}; stopping the local stack")
                raise StackError(self._exit_message(process, f"while the local stack ran{after}"))
            delay = RESTART_BACKOFF_SECONDS * 2 ** (process.failures - 1)
            self.say(f"{self._exit_text(process)}; restarting it in {delay:g} s ({process.failures} of {limit})")
            self._poll_events(None, during_start=False, timeout=delay)
            self._spawn(process)
            try:
                self._wait_ready(process, during_start=False)
            except _ExitedWhileStarting:
                continue
            self.say(f"{process.name} is serving again")
            return

    def _stop_all(self, grace: float) -> None:
        with self._stop_lock:
            if self._stopped:
                return
            self._stopped = True
            started = [p for p in self.processes if p.popen is not None]
            self._note_exit_on_its_own(started)
            # The gateway first, so that no new work reaches the others while they finish theirs.
            gateway = [p for p in started if p.name == "gateway"]
            for group in (gateway, [p for p in started if p.name != "gateway"]):
                for process in group:
                    self._signal(process, signal.SIGTERM)
                self._await_exit(group, grace)
            if self._lifeline is not None:
                # The end of the lifeline: a service this stack lost track of (none should be) stops too.
                for fd in self._lifeline:
                    os.close(fd)
                self._lifeline = None

    def _note_exit_on_its_own(self, started: list[_Process]) -> None:
        """When the stack stops with no reason recorded yet, a service already gone is the reason: a body that saw
        the gateway vanish reaches ``__exit__`` before the supervisor may have seen the exit."""
        if self._failure is not None or self._stop_signal is not None:
            return
        for process in started:
            if _has_exited(process):
                process.exited.wait(5)
                self._failure = StackError(self._exit_message(process, "while the local stack ran"))
                return

    def _await_exit(self, group: list[_Process], grace: float) -> None:
        deadline = time.monotonic() + grace
        while True:
            running = [p for p in group if not p.exited.is_set()]
            if not running:
                return
            if self._stop_requested_again() or time.monotonic() >= deadline:
                for process in running:
                    self._signal(process, signal.SIGKILL)
                for process in running:
                    process.exited.wait(30)
                return
            running[0].exited.wait(0.1)

    def _stop_requested_again(self) -> bool:
        """Whether a signal arrived while stopping (a second Ctrl-C: stop waiting); other events no longer matter."""
        again = False
        while True:
            try:
                kind, _payload = self._events.get_nowait()
            except queue.Empty:
                return again
            again = again or kind == "signal"

    @staticmethod
    def _signal(process: _Process, signum: int) -> None:
        assert process.popen is not None
        if not process.exited.is_set():
            process.popen.send_signal(signum)  # a process gone meanwhile is no error

    # -- messages -----------------------------------------------------------------------------------------------

    @staticmethod
    def _exit_text(process: _Process) -> str:
        assert process.popen is not None
        code = process.popen.returncode
        if code is not None and code < 0:
            try:
                return f"{process.name} was killed by {signal.Signals(-code).name}"
            except ValueError:
                pass
        return f"{process.name} exited with status {code}"

    def _exit_message(self, process: _Process, when: str) -> str:
        message = f"{self._exit_text(process)} {when}"
        if self.log_dir is None:
            return message + " (its output is above)"
        path = self.log_dir / f"{process.name}.log"
        try:
            tail = path.read_text(errors="replace").strip().splitlines()[-5:]
        except OSError:
            return message
        return message + f"; its log ({path}) ends:\n  " + "\n  ".join(tail)


def _has_exited(process: _Process) -> bool:
    """Whether ``process`` has exited, even if its waiting thread has not yet noticed (it is then about to)."""
    assert process.popen is not None
    if process.exited.is_set():
        return True
    try:
        # WNOWAIT: look without reaping, so that the waiting thread still gets the exit status.
        return os.waitid(os.P_PID, process.popen.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True  # reaped already: its waiting thread is recording it
    except (AttributeError, OSError):
        return False


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
