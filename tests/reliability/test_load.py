"""Load: 100 storyboards asked for at once, half over gRPC (Generate) and half over REST (create, then the event
stream), from four API keys that may each have 20 at work (the rest wait their turn): every request either completes
or is refused cleanly with RESOURCE_EXHAUSTED / 429; nothing is lost (every accepted storyboard completes with all
its frames, and the gateway holds exactly the storyboards it accepted); the gateway's memory (RSS, from /proc) stays
bounded, and a second wave of 100 does not peak much higher than the first (no leak per storyboard).

Fast renderers: two sketch renderer processes, 256x256 frames, 2 steps.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest

from gateway.auth import hash_key
from storyboard.v1 import storyboards_pb2, storyboards_pb2_grpc
from tests.reliability.conftest import Tally
from tests.support.processes import ProcessGroup, ServiceProcess, rss_bytes

SCENARIO = "load: 100 concurrent storyboards"
CLIENTS, KEYS, PER_KEY = 100, 4, 20
CLIENT_DEADLINE = 240.0  # seconds one client may wait for its storyboard
STORY = "A fox crosses a frozen river at dawn to reach its den before the storm."
SPEC = {"story": STORY, "num_frames": 6, "num_inference_steps": 2, "width": 256, "height": 256}
MIB = 1 << 20
# At most 8 storyboards run at once (--max-running), each building its PDF in memory (~40 MB): the peak stays under
# MAX_RISE above the idle gateway. Peaks still vary by ~150 MB from wave to wave (the allocator keeps freed memory),
# so the last wave may peak at most MAX_GROWTH above the first: that catches a leak of ~3 MB per storyboard over two
# waves; more waves (STORYBOARD_RELIABILITY_LOAD_WAVES) catch smaller ones.
MAX_RISE, MAX_GROWTH = 768 * MIB, 256 * MIB
WAVES = max(2, int(os.environ.get("STORYBOARD_RELIABILITY_LOAD_WAVES", "2")))
pytestmark = [pytest.mark.reliability, pytest.mark.slow, pytest.mark.timeout(180 + 120 * WAVES)]


@dataclass
class Outcome:
    client: int
    face: str
    key: int
    result: str  # completed, refused, lost
    storyboard_id: str = ""
    detail: str = ""


def _key(index: int) -> str:
    return f"sbk_load-test-key-{index}-0123456789abcdef"


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[dict]:
    folder = tmp_path_factory.mktemp("load")
    entries = ",".join(f"load{index}:{hash_key(_key(index))}:{PER_KEY}" for index in range(KEYS))
    # glibc gives each busy thread its own malloc arena, which makes RSS swing by hundreds of MB from one burst to
    # the next; two arenas keep it steady enough that growth from wave to wave means a leak, not the allocator.
    with ProcessGroup(folder / "logs", env={"MALLOC_ARENA_MAX": "2"}) as group:
        planner = group.planner()
        renderers = [group.sketch_renderer() for _ in range(2)]
        gateway = group.gateway(
            planner.address, ",".join(r.address for r in renderers), folder / "outputs",
            "--auth", "required", "--api-keys", entries, "--frames-in-flight", "4", "--log-level", "WARNING",
        )  # fmt: skip
        yield {"gateway": gateway, "outputs": folder / "outputs"}


def _over_grpc(address: str, client: int, key: int) -> Outcome:
    metadata = (("authorization", f"Bearer {_key(key)}"),)
    request = storyboards_pb2.GenerateRequest(spec=storyboards_pb2.StoryboardSpec(**SPEC))
    storyboard_id, last = "", None
    try:
        with grpc.insecure_channel(address) as channel:
            stream = storyboards_pb2_grpc.StoryboardsStub(channel).Generate(
                request, timeout=CLIENT_DEADLINE, metadata=metadata
            )
            for event in stream:
                storyboard_id, last = event.storyboard_id, event
    except grpc.RpcError as error:
        if error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and not storyboard_id:
            return Outcome(client, "grpc", key, "refused")
        return Outcome(client, "grpc", key, "lost", storyboard_id, f"{error.code().name}: {error.details()}")
    if last is not None and last.HasField("completed"):
        return Outcome(client, "grpc", key, "completed", storyboard_id)
    return Outcome(client, "grpc", key, "lost", storyboard_id, f"ended with {last}")


def _over_rest(http_port: int, client: int, key: int) -> Outcome:
    headers = {"Authorization": f"Bearer {_key(key)}"}
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{http_port}", timeout=CLIENT_DEADLINE) as http:
            created = http.post("/v1/storyboards", json={"spec": SPEC}, headers=headers)
            if created.status_code == 429:
                return Outcome(client, "rest", key, "refused")
            if created.status_code != 202:
                return Outcome(client, "rest", key, "lost", "", f"create answered {created.status_code}")
            storyboard_id, kind = created.json()["id"], ""
            with http.stream("GET", f"/v1/storyboards/{storyboard_id}/events", headers=headers) as stream:
                for line in stream.iter_lines():
                    if line.startswith("event: "):
                        kind = line.removeprefix("event: ")
    except httpx.HTTPError as error:
        return Outcome(client, "rest", key, "lost", "", f"{type(error).__name__}: {error}")
    if kind == "completed":
        return Outcome(client, "rest", key, "completed", storyboard_id)
    return Outcome(client, "rest", key, "lost", storyboard_id, f"the event stream ended with {kind!r}")


class MemorySampler:
    """The peak RSS of a process, sampled on a thread."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.pid, self.interval, self.peak = pid, interval, rss_bytes(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, rss_bytes(self.pid))


def _wave(gateway: ServiceProcess) -> list[Outcome]:
    """CLIENTS storyboards asked for at the same moment (a barrier releases every client together)."""
    barrier = threading.Barrier(CLIENTS)

    def client(index: int) -> Outcome:
        key = index % KEYS
        barrier.wait(30)
        if index % 2:
            return _over_grpc(gateway.address, index, key)
        return _over_rest(gateway.http_port, index, key)

    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        return list(pool.map(client, range(CLIENTS)))


def _stored(gateway: ServiceProcess) -> dict[str, int]:
    """Every storyboard the gateway holds, id -> state, over all keys."""
    states: dict[str, int] = {}
    with grpc.insecure_channel(gateway.address) as channel:
        stub = storyboards_pb2_grpc.StoryboardsStub(channel)
        for key in range(KEYS):
            token = ""
            for _ in range(100):  # pages; bounded
                page = stub.List(storyboards_pb2.ListRequest(page_size=100, page_token=token), timeout=10,
                                 metadata=(("authorization", f"Bearer {_key(key)}"),))  # fmt: skip
                states.update({s.id: s.state for s in page.storyboards})
                token = page.next_page_token
                if not token:
                    break
    return states


def _settle(gateway: ServiceProcess, timeout: float = 30) -> int:
    """RSS once the gateway has been idle for a moment (the lowest of a few samples)."""
    deadline, low = time.monotonic() + timeout, rss_bytes(gateway.pid)
    for _ in range(10):
        if time.monotonic() > deadline:
            break
        time.sleep(0.3)
        low = min(low, rss_bytes(gateway.pid))
    return low


def _check_wave(outcomes: list[Outcome], stored_before: dict[str, int], gateway: ServiceProcess,
                outputs: Path) -> list[str]:  # fmt: skip
    problems = [f"client {o.client} ({o.face}): {o.detail}" for o in outcomes if o.result == "lost"]
    accepted = {o.storyboard_id for o in outcomes if o.result == "completed"}
    stored = _stored(gateway)
    new = set(stored) - set(stored_before)
    if new != accepted:
        problems.append(f"stored {len(new)} new storyboards, {len(accepted)} were accepted: "
                        f"{sorted(new ^ accepted)[:5]}")  # fmt: skip
    unfinished = [i for i in new if stored[i] != storyboards_pb2.STORYBOARD_STATE_COMPLETED]
    if unfinished:
        problems.append(f"not completed: {unfinished[:5]}")
    for storyboard_id in sorted(accepted)[:: max(1, len(accepted) // 10)]:  # every tenth folder, all frames
        frames = sorted(path.name for path in (outputs / storyboard_id).glob("frame_*.png"))
        if len(frames) != SPEC["num_frames"]:
            problems.append(f"{storyboard_id} has frames {frames}")
    return problems


def test_100_concurrent_storyboards_complete_or_are_refused_and_none_is_lost(stack, tally: Tally):
    gateway: ServiceProcess = stack["gateway"]
    outputs: Path = stack["outputs"]
    first = _over_rest(gateway.http_port, 0, 0)  # warm: first import paths, first grid and PDF
    assert first.result == "completed", first.detail
    baseline = _settle(gateway)
    rss_after: list[int] = []
    peaks: list[int] = []
    all_problems: list[str] = []
    for wave in range(WAVES):
        stored_before = _stored(gateway)
        with MemorySampler(gateway.pid) as sampler:
            outcomes = _wave(gateway)
        peaks.append(sampler.peak)
        problems = _check_wave(outcomes, stored_before, gateway, outputs)
        for outcome in outcomes:
            tally.record(SCENARIO, outcome.result, f"wave {wave}: client {outcome.client}: {outcome.detail}")  # type: ignore[arg-type]
        counts = Counter(o.result for o in outcomes)
        tally.note(f"load wave {wave + 1}: {dict(counts)}; gateway RSS peak {sampler.peak / MIB:.0f} MiB "
                   f"(idle before: {baseline / MIB:.0f} MiB)")  # fmt: skip
        if counts["completed"] < CLIENTS // 2:
            problems.append(f"only {counts['completed']} of {CLIENTS} completed: the limits refused too many")
        rss_after.append(_settle(gateway))
        all_problems += [f"wave {wave + 1}: {p}" for p in problems]
    growth = peaks[-1] - peaks[0]
    after = " / ".join(f"{value / MIB:.0f}" for value in rss_after)
    tally.note(f"load: gateway RSS after each wave, once idle: {after} MiB")
    if max(peaks) - baseline > MAX_RISE:
        all_problems.append(f"gateway RSS rose {(max(peaks) - baseline) / MIB:.0f} MiB above its baseline")
    if growth > MAX_GROWTH:
        all_problems.append(f"the last wave's peak RSS was {growth / MIB:.0f} MiB above the first's")
    assert gateway.alive()
    assert not all_problems, all_problems
    assert not tally.lost(SCENARIO)
