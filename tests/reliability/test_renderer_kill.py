"""A renderer replica SIGKILLed in the middle of a storyboard, over and over: every storyboard completes, with every
frame present once in the events and in the folder, and the frame the dead replica was drawing drawn by another.

Three scripted renderer processes (plain panels, 0.25 s a frame, each render logged with its process id) behind one
gateway process; in each run the replica caught mid-frame is killed and then started again on its port, so the next
run has three replicas again.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from storyboard.v1 import storyboards_pb2, storyboards_pb2_grpc
from tests.reliability.checks import storyboard_problems, wait_for, watch_to_end
from tests.reliability.conftest import RUNS, Tally
from tests.support.processes import ProcessGroup, ServiceProcess
from tests.support.scripted import read_render_log

pytestmark = [pytest.mark.reliability, pytest.mark.slow, pytest.mark.timeout(120 + 40 * RUNS)]
SCENARIO = "renderer replica SIGKILLed"
STORY = "Aldar Kose tricks a wealthy merchant at the bazaar, then rides home across the steppe at sunset."


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[dict]:
    folder = tmp_path_factory.mktemp("renderer-kill")
    log = folder / "renders.jsonl"
    with ProcessGroup(folder / "logs") as group:
        planner = group.planner()
        replicas = [group.scripted_renderer("--delay", "0.25", "--log", str(log)) for _ in range(3)]
        gateway = group.gateway(
            planner.address, ",".join(r.address for r in replicas), folder / "outputs", "--frames-in-flight", "3"
        )
        yield {"group": group, "replicas": replicas, "gateway": gateway, "log": log}


def test_every_storyboard_completes_with_each_frame_once_when_a_replica_dies_mid_frame(stack, tally: Tally):
    group: ProcessGroup = stack["group"]
    replicas: list[ServiceProcess] = stack["replicas"]
    log: Path = stack["log"]
    with grpc.insecure_channel(stack["gateway"].address) as channel:
        stub = storyboards_pb2_grpc.StoryboardsStub(channel)
        for run in range(RUNS):
            skip = len(read_render_log(log))
            frames = 6 + run % 5  # 6 to 10 frames
            spec = storyboards_pb2.StoryboardSpec(
                story=STORY, num_frames=frames, num_inference_steps=4, width=256, height=256, base_seed=1000 * run
            )
            created = stub.Create(storyboards_pb2.CreateRequest(spec=spec), timeout=10)

            def a_replica_mid_frame() -> int | None:
                entries = read_render_log(log)[skip:]  # noqa: B023 - read at once, inside this run
                done = {(e["pid"], e["frame"]) for e in entries if e["event"] == "done"}
                busy = [e["pid"] for e in entries if e["event"] == "start" and (e["pid"], e["frame"]) not in done]
                return busy[0] if busy and done else None

            victim_pid = wait_for(a_replica_mid_frame, 30, "a replica in the middle of a frame", interval=0.01)
            index = next(i for i, replica in enumerate(replicas) if replica.pid == victim_pid)
            replicas[index].kill()
            events = watch_to_end(stub, created.id, timeout=90)
            problems = storyboard_problems(events, Path(created.output_dir))
            entries = read_render_log(log)[skip:]
            lost = {e["frame"] for e in entries if e["pid"] == victim_pid and e["event"] == "start"} - {
                e["frame"] for e in entries if e["pid"] == victim_pid and e["event"] == "done"
            }
            redrawn = {e["frame"] for e in entries if e["pid"] != victim_pid and e["event"] == "done"}
            if not lost <= redrawn:
                problems.append(f"frames {sorted(lost - redrawn)} of the dead replica were not drawn by another")
            tally.record(SCENARIO, "lost" if problems else "completed", f"run {run}: {problems}")
            replicas[index] = group.restart(replicas[index], "storyboard.v1.Renderer")
    assert not tally.lost(SCENARIO)
