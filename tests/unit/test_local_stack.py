"""The local stack's checks before anything starts, and its signal handling (processes: tests/integration)."""

from __future__ import annotations

import dataclasses
import os
import signal
import socket

import pytest

from storyboard_server.local_stack import LocalStack, StackError, StackOptions, stop_on_signals
from tests.support.processes import free_port


def _options(**fields: object) -> StackOptions:
    """Offline, every port 0 (any free one) unless ``fields`` say otherwise."""
    chosen = {name: 0 for name in ("grpc_port", "http_port", "planner_port", "renderer_port", "validator_port")}
    return StackOptions(planner="offline", **{**chosen, **fields})  # type: ignore[arg-type]


def test_a_busy_port_is_named_with_its_flag_and_nothing_starts():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        busy = holder.getsockname()[1]
        stack = LocalStack(_options(validator_port=busy))
        with pytest.raises(StackError) as caught:
            stack.start()
    assert str(caught.value) == (
        f"port {busy} (--validator-port, validator) is in use; stop what holds it or pass --validator-port to move it"
    )
    assert all(process.popen is None for process in stack.processes)


def _listening_after_a_free_port() -> socket.socket:
    """A socket listening on a port whose predecessor is free."""
    for _ in range(100):
        holder = socket.socket()
        holder.bind(("127.0.0.1", 0))
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", holder.getsockname()[1] - 1))
            except OSError:
                holder.close()
                continue
        holder.listen()
        return holder
    raise AssertionError("no port with a free predecessor")


def test_a_later_renderer_replica_on_a_busy_port_is_named_as_such():
    with _listening_after_a_free_port() as holder:
        busy = holder.getsockname()[1]
        with pytest.raises(StackError, match=rf"^port {busy} \(--renderer-port, renderer 2 of 2\) is in use"):
            LocalStack(_options(renderer_port=busy - 1, renderers=2, validator_port=free_port())).start()


def test_one_port_given_twice_is_refused_naming_both_flags():
    port = free_port()
    with pytest.raises(StackError) as caught:
        LocalStack(_options(planner_port=port, grpc_port=port)).start()
    assert str(caught.value) == (
        f"port {port} is given to both --planner-port (planner) and --grpc-port (gateway gRPC); "
        "pass another port to one of them"
    )


def test_free_ports_picked_for_port_zero_are_all_different():
    stack = LocalStack(_options(renderers=4))
    stack.processes = stack._plan_processes()
    ports = [process.port for process in stack.processes] + [stack.http_port]
    assert len(set(ports)) == len(ports) == 8


def test_the_renderers_get_consistency_only_when_it_is_on():
    def renderer_args(**options: str) -> list[str]:
        stack = LocalStack(dataclasses.replace(_options(), **options))
        return next(process.args for process in stack._plan_processes() if process.name == "renderer")

    assert "--consistency" not in renderer_args()
    assert renderer_args(consistency="shared-attention")[-2:] == ["--consistency", "shared-attention"]


def test_stop_on_signals_turns_a_signal_into_a_stop_request_and_restores_the_handler():
    stack = LocalStack(_options())
    before = signal.getsignal(signal.SIGTERM)
    with stop_on_signals(stack):
        os.kill(os.getpid(), signal.SIGTERM)  # handled in this (the main) thread before kill returns
        assert stack._events.get(timeout=5) == ("signal", signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_local_stack_takes_str_paths_for_its_files_and_logs(tmp_path):
    options = StackOptions(
        planner="offline", characters=str(tmp_path / "missing.toml"), outputs=str(tmp_path / "out"),
        grpc_port=0, http_port=0, planner_port=0, renderer_port=0, validator_port=0,
    )  # fmt: skip
    with pytest.raises(StackError) as caught, LocalStack(options, log_dir=str(tmp_path / "logs")):
        pass
    assert "planner exited with status 2 while starting" in str(caught.value)
    assert "missing.toml does not exist" in str(caught.value)  # the tail of the log written under the str log_dir
    assert (tmp_path / "logs" / "planner.log").exists()


def test_the_renderers_get_the_ip_adapter_folder(tmp_path):
    with socket.socket() as holder:  # a busy port stops the stack after it has planned its processes, before any starts
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        stack = LocalStack(_options(validator_port=holder.getsockname()[1], ip_adapter=str(tmp_path)))
        with pytest.raises(StackError):
            stack.start()
    renderer = next(process for process in stack.processes if process.module == "services.renderer")
    assert renderer.args[renderer.args.index("--ip-adapter") + 1] == str(tmp_path)
