"""The gateway SIGKILLed in the middle of a storyboard and started again on the same job store, over and over: the
storyboard resumes and completes, its event numbers run on without a gap or a repeat, no frame is missing or sent
twice, frames kept before the kill are not drawn again, and no reader of the output folder ever sees a partial PNG,
JSON or PDF file (a thread reads every visible file in a loop the whole time, kill included).

The kill point moves from run to run: after 1, 2, ... kept frames.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from storyboard.v1 import storyboards_pb2, storyboards_pb2_grpc
from tests.reliability.checks import FolderWatcher, is_temporary, storyboard_problems, wait_for, watch_to_end
from tests.reliability.conftest import RUNS, Tally
from tests.support.processes import ProcessGroup, ServiceProcess
from tests.support.scripted import read_render_log

pytestmark = [pytest.mark.reliability, pytest.mark.slow, pytest.mark.timeout(120 + 60 * RUNS)]
SCENARIO = "gateway SIGKILLed and restarted"
STORY = "A young fox sneaks into the henhouse at night, the farmer chases it across the field, and it escapes."
FRAMES = 8


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[dict]:
    folder = tmp_path_factory.mktemp("gateway-kill")
    log = folder / "renders.jsonl"
    with ProcessGroup(folder / "logs") as group:
        planner = group.planner()
        renderers = [group.scripted_renderer("--delay", "0.3", "--log", str(log)) for _ in range(2)]
        gateway = group.gateway(
            planner.address, ",".join(r.address for r in renderers), folder / "outputs",
            "--job-store", str(folder / "state" / "jobs.sqlite3"), "--frames-in-flight", "2",
        )  # fmt: skip
        yield {"group": group, "gateway": gateway, "log": log}


def test_a_killed_gateway_resumes_every_storyboard_whole(stack, tally: Tally):
    group: ProcessGroup = stack["group"]
    gateway: ServiceProcess = stack["gateway"]
    for run in range(RUNS):
        kept_at_kill = 1 + run % (FRAMES - 2)
        spec = storyboards_pb2.StoryboardSpec(
            story=STORY, num_frames=FRAMES, num_inference_steps=3, width=256, height=256, base_seed=7 + 100 * run
        )
        request = storyboards_pb2.CreateRequest(spec=spec, idempotency_key=f"gateway-kill-{run}")
        with grpc.insecure_channel(gateway.address) as channel:
            created = storyboards_pb2_grpc.StoryboardsStub(channel).Create(request, timeout=10)
        folder = Path(created.output_dir)
        with FolderWatcher(folder) as watcher:
            wait_for(lambda: len(list(folder.glob("frame_*.png"))) >= kept_at_kill, 60, f"{kept_at_kill} kept frames")  # noqa: B023
            gateway.kill()
            kept_before = {int(path.stem[-3:]) for path in folder.glob("frame_*.png")}
            drawn_before = len(read_render_log(stack["log"]))
            gateway = group.restart(gateway, "storyboard.v1.Storyboards")
            with grpc.insecure_channel(gateway.address) as channel:
                stub = storyboards_pb2_grpc.StoryboardsStub(channel)
                same = stub.Create(request, timeout=10)  # the idempotency key outlives the crash
                events = watch_to_end(stub, created.id, timeout=90)
        problems = storyboard_problems(events, folder)
        problems += [f"partial file seen: {problem}" for problem in watcher.problems]
        if watcher.reads < 10:
            problems.append(f"the folder watcher read only {watcher.reads} files")
        if same.id != created.id:
            problems.append(f"the idempotency key made a second storyboard {same.id}")
        drawn_after = read_render_log(stack["log"])[drawn_before:]
        redrawn = {e["frame"] for e in drawn_after if e["event"] == "start"} & kept_before
        if redrawn:
            problems.append(f"frames kept before the kill were drawn again: {sorted(redrawn)}")
        leftovers = [path.name for path in folder.rglob("*") if is_temporary(path)]
        if leftovers:
            problems.append(f"temporary files left behind: {leftovers}")
        detail = f"run {run} (killed after {kept_at_kill} kept frames): {problems}"
        tally.record(SCENARIO, "lost" if problems else "completed", detail)
    stack["gateway"] = gateway
    assert not tally.lost(SCENARIO)
