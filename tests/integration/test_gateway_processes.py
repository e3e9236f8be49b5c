"""The gateway with every service as a real process on loopback: a storyboard end to end over gRPC and over REST with
server-sent events; a renderer replica killed mid-storyboard; the gateway itself killed mid-job and restarted.

Slow renders come from scripted renderer processes (``python -m tests.support.scripted renderer --delay ...``) that
log every render they start and finish, so a test can count what was drawn, and by which process.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.auth import hash_key
from storyboard.v1 import storyboards_pb2, storyboards_pb2_grpc
from tests.support.scripted import read_render_log

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
STORY = "Aldar Kose tricks a wealthy merchant by selling him a magical pot at the bazaar, then rides home at sunset"
KEY = "sbk_integration-test-key-0123456789"
AUTH = (("authorization", f"Bearer {KEY}"),)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Processes:
    """Started processes, their stderr in files (never a pipe that could fill up), all killed at the end."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self.started: list[subprocess.Popen] = []

    def spawn(self, name: str, module: str, *args: str) -> subprocess.Popen:
        return self.run(name, "-m", module, *args)

    def run(self, name: str, *python_args: str) -> subprocess.Popen:
        log = (self._folder / f"{name}-{len(self.started)}.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, *python_args],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        process.log_path = Path(log.name)  # type: ignore[attr-defined]
        self.started.append(process)
        return process

    def renderer(self, port: int, *args: str) -> subprocess.Popen:
        return self.spawn("renderer", "tests.support.scripted", "renderer", "--port", str(port), *args)

    def wait_serving(self, port: int, service: str, process: subprocess.Popen, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"{service} exited: {process.log_path.read_text()[-3000:]}")  # type: ignore[attr-defined]
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                try:
                    status = health_pb2_grpc.HealthStub(channel).Check(
                        health_pb2.HealthCheckRequest(service=service), timeout=1
                    )
                    if status.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass
            time.sleep(0.1)
        raise AssertionError(f"{service} on port {port} never became SERVING")

    def kill_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.kill()
                process.wait(10)


@pytest.fixture
def processes(tmp_path) -> Iterator[Processes]:
    started = Processes(tmp_path)
    yield started
    started.kill_all()


# A validator process that first builds its tiny CLIP: one import of open_clip (the slow part) instead of two.
_VALIDATOR_ON_A_TINY_CLIP = """
import runpy, sys
from tests.support.tiny_clip import build_tiny_clip
tiny = build_tiny_clip(sys.argv[1])
sys.argv = ["storyboard-validator", "--port", sys.argv[2], *tiny.cli_args()]
runpy.run_module("services.validator", run_name="__main__")
"""


@pytest.fixture(scope="module")
def backends(tmp_path_factory) -> Iterator[dict[str, object]]:
    """The planner, and a validator on a tiny CLIP that starts in the background (the end-to-end test, last in this
    module, waits for it; the others run meanwhile)."""
    folder = tmp_path_factory.mktemp("backends")
    started = Processes(folder)
    planner_port, validator_port = _free_port(), _free_port()
    validator = started.run("validator", "-c", _VALIDATOR_ON_A_TINY_CLIP, str(folder / "clip"), str(validator_port))
    planner = started.spawn("planner", "services.planner", "--port", str(planner_port))
    started.wait_serving(planner_port, "storyboard.v1.Planner", planner)
    yield {"planner": f"127.0.0.1:{planner_port}", "validator": (validator_port, validator, started)}
    started.kill_all()


@pytest.fixture
def planner(backends) -> str:
    return backends["planner"]  # type: ignore[return-value]


def _gateway(
    processes: Processes, planner: str, renderers: str, outputs: Path, *extra: str
) -> tuple[subprocess.Popen, int, int]:
    grpc_port, http_port = _free_port(), _free_port()
    process = processes.spawn(
        "gateway", "gateway",
        "--port", str(grpc_port), "--http-port", str(http_port), "--planner", planner, "--renderers", renderers,
        "--outputs", str(outputs), "--grace-seconds", "1", *extra,
    )  # fmt: skip
    processes.wait_serving(grpc_port, "storyboard.v1.Storyboards", process)
    return process, grpc_port, http_port


def _spec(**fields) -> storyboards_pb2.StoryboardSpec:
    return storyboards_pb2.StoryboardSpec(
        **{"story": STORY, "num_inference_steps": 4, "width": 256, "height": 256, **fields}
    )


def _wait_for(condition: Callable[[], object], timeout: float = 60, what: str = "a condition") -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_renderer_replica_killed_mid_storyboard_loses_no_frame(processes, planner, tmp_path):
    log = tmp_path / "renders.jsonl"
    ports = [_free_port() for _ in range(3)]
    replicas = [processes.renderer(port, "--delay", "0.6", "--log", str(log)) for port in ports]
    for port, replica in zip(ports, replicas, strict=True):
        processes.wait_serving(port, "storyboard.v1.Renderer", replica)
    renderers = ",".join(f"127.0.0.1:{port}" for port in ports)
    _, grpc_port, _ = _gateway(processes, planner, renderers, tmp_path / "outputs", "--frames-in-flight", "3")

    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        stub = storyboards_pb2_grpc.StoryboardsStub(channel)
        created = stub.Create(storyboards_pb2.CreateRequest(spec=_spec(num_frames=9)), timeout=10)

        def a_replica_mid_render() -> int | None:
            entries = read_render_log(log)
            done = {(e["pid"], e["frame"]) for e in entries if e["event"] == "done"}
            busy = [e for e in entries if e["event"] == "start" and (e["pid"], e["frame"]) not in done]
            if not (busy and done):
                return None
            # A replica in the middle of a frame, after some finished: the one that started last, whose frame has
            # the most of its 0.6 s left (the oldest one's may end between this look and the kill).
            return max(busy, key=lambda e: e["time"])["pid"]

        victim_pid = _wait_for(a_replica_mid_render, what="a replica in the middle of a render")
        victim = next(replica for replica in replicas if replica.pid == victim_pid)
        victim.kill()  # SIGKILL: no goodbye, the stream just breaks
        victim.wait(10)
        events = list(stub.Watch(storyboards_pb2.WatchRequest(id=created.id), timeout=120))

    assert events[-1].HasField("completed"), events[-1]
    rendered = [e.frame_rendered for e in events if e.HasField("frame_rendered")]
    assert sorted(r.frame for r in rendered) == list(range(1, 10))  # every frame present, once
    folder = Path(created.output_dir)
    assert sorted(path.name for path in folder.glob("frame_*.png")) == [f"frame_{n:03d}.png" for n in range(1, 10)]
    entries = read_render_log(log)
    lost = {e["frame"] for e in entries if e["pid"] == victim_pid and e["event"] == "start"} - {
        e["frame"] for e in entries if e["pid"] == victim_pid and e["event"] == "done"
    }
    assert lost, "the killed replica had a frame in flight"
    survivors_done = {e["frame"] for e in entries if e["pid"] != victim_pid and e["event"] == "done"}
    assert lost <= survivors_done  # what the dead replica was drawing, another one drew


def test_a_gateway_killed_mid_job_resumes_it_after_a_restart_without_rendering_kept_frames(
    processes, planner, tmp_path
):
    log, store = tmp_path / "renders.jsonl", tmp_path / "state" / "jobs.sqlite3"
    renderer_port = _free_port()
    renderer = processes.renderer(renderer_port, "--delay", "0.4", "--log", str(log))
    processes.wait_serving(renderer_port, "storyboard.v1.Renderer", renderer)
    arguments = (planner, f"127.0.0.1:{renderer_port}", tmp_path / "outputs", "--job-store", str(store),
                 "--frames-in-flight", "2")  # fmt: skip
    gateway, grpc_port, _ = _gateway(processes, *arguments)
    request = storyboards_pb2.CreateRequest(spec=_spec(num_frames=8), idempotency_key="kill-me-once")
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        created = storyboards_pb2_grpc.StoryboardsStub(channel).Create(request, timeout=10)
    folder = Path(created.output_dir)
    _wait_for(lambda: len(list(folder.glob("frame_*.png"))) >= 3, what="three kept frames")
    gateway.kill()  # SIGKILL mid-job
    gateway.wait(10)
    kept_before = {int(path.stem[-3:]) for path in folder.glob("frame_*.png")}
    assert 3 <= len(kept_before) < 8
    renders_before = len(read_render_log(log))

    _, grpc_port, _ = _gateway(processes, *arguments)
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        stub = storyboards_pb2_grpc.StoryboardsStub(channel)
        assert stub.Create(request, timeout=10).id == created.id  # the idempotency key survived the crash
        events = list(stub.Watch(storyboards_pb2.WatchRequest(id=created.id), timeout=120))
        tail = list(stub.Watch(storyboards_pb2.WatchRequest(id=created.id, after_sequence=10), timeout=10))
    assert events[-1].HasField("completed"), events[-1]
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    assert [e.sequence for e in tail] == [e.sequence for e in events[10:]]
    entries = read_render_log(log)
    started_after = {e["frame"] for e in entries[renders_before:] if e["event"] == "start"}
    assert started_after and not started_after & kept_before  # kept frames were not rendered again
    for frame in kept_before:
        assert sum(1 for e in entries if e["event"] == "done" and e["frame"] == frame) == 1
    assert sorted(int(path.stem[-3:]) for path in folder.glob("frame_*.png")) == list(range(1, 9))
    final = events[-1].completed.storyboard
    assert all(frame.rendered for frame in final.frames) and (folder / "storyboard.pdf").exists()


def test_a_storyboard_end_to_end_over_grpc_and_over_rest_with_server_sent_events(
    processes, backends, planner, tmp_path
):
    renderer_port = _free_port()
    renderer = processes.spawn("renderer", "services.renderer", "--port", str(renderer_port), "--backend", "sketch")
    validator_port, validator, its_processes = backends["validator"]
    processes.wait_serving(renderer_port, "storyboard.v1.Renderer", renderer)
    its_processes.wait_serving(validator_port, "storyboard.v1.Validator", validator)
    gateway, grpc_port, http_port = _gateway(
        processes, planner, f"127.0.0.1:{renderer_port}", tmp_path / "outputs",
        "--validator", f"127.0.0.1:{validator_port}", "--auth", "required", "--api-keys", f"ci:{hash_key(KEY)}",
    )  # fmt: skip

    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        stub = storyboards_pb2_grpc.StoryboardsStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.List(storyboards_pb2.ListRequest(), timeout=5)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        request = storyboards_pb2.GenerateRequest(spec=_spec(num_frames=6))
        events = list(stub.Generate(request, timeout=120, metadata=AUTH))
    assert events[-1].HasField("completed"), events[-1]
    folder = Path(events[-1].completed.storyboard.output_dir)
    expected = {"scene_breakdown.json", "sdxl_prompts.json", "storyboard_grid.png", "frames.json", "report.json",
                "storyboard.pdf", *(f"frame_{n:03d}.png" for n in range(1, 7))}  # fmt: skip
    assert expected <= {path.name for path in folder.iterdir()}
    assert set(events[-1].completed.files) == expected
    report = json.loads((folder / "report.json").read_text())
    assert report["consistency"]["average"] > 0 and report["thresholds"]["consistency"] > 0

    with httpx.Client(base_url=f"http://127.0.0.1:{http_port}", timeout=60) as http:
        assert http.post("/v1/storyboards", json={"spec": {"story": STORY}}).status_code == 401
        headers = {"Authorization": f"Bearer {KEY}"}
        spec = {"story": STORY, "num_frames": 6, "num_inference_steps": 2, "width": 256, "height": 256}
        created = http.post("/v1/storyboards", json={"spec": spec}, headers=headers)
        assert created.status_code == 202
        job_id = created.json()["id"]
        kinds, ids = [], []
        with http.stream("GET", f"/v1/storyboards/{job_id}/events", headers=headers) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            for line in stream.iter_lines():
                if line.startswith("event: "):
                    kinds.append(line.removeprefix("event: "))
                elif line.startswith("id: "):
                    ids.append(int(line.removeprefix("id: ")))
        assert kinds[0] == "accepted" and kinds[-1] == "completed" and ids == list(range(1, len(ids) + 1))
        assert kinds.count("frame_rendered") >= 6 and "plan_ready" in kinds
        pdf = http.get(f"/v1/storyboards/{job_id}/storyboard.pdf", headers=headers)
        assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
        frame = http.get(f"/v1/storyboards/{job_id}/frames/1", headers=headers)
        assert frame.headers["content-type"] == "image/png" and frame.content[:4] == b"\x89PNG"
        assert "storyboard_gateway_frames_total" in http.get("/metrics").text

    gateway.send_signal(signal.SIGTERM)
    assert gateway.wait(30) == 0
