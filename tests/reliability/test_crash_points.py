"""The gateway dying at every single commit of a storyboard's life, one at a time: whatever was committed last, the
resumed storyboard completes and its event log tells every step of it once: one PlanReady, a FrameRendered for every
saved attempt, a FrameValidated for every validated one, and the final event.

A SIGKILL can land anywhere, so the kill scenario (test_gateway_kill.py) only samples a few moments. Here the job
store, the orchestrator and scripted services run in this process, and the store "dies" at its N-th transaction: that
transaction is rolled back (as SQLite does for a process killed before COMMIT) and every later one fails, as if the
process were gone. A new store then opens the same file and resumes the job, as a restarted gateway does. N runs over
every transaction of a whole storyboard, retries included.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.downstream import CallLimits, Downstream
from gateway.frames import FramePolicy
from gateway.metrics import Metrics
from gateway.run import StoryboardRun
from gateway.store import Job, JobStore
from storyboard.v1 import storyboards_pb2 as sb
from tests.reliability.conftest import Tally
from tests.support.scripted import ScriptedPlanner, ScriptedRenderer, ScriptedValidator, serve

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(600)]
SCENARIO = "gateway dies at every commit (in-process)"
LIMITS = CallLimits(plan_timeout=30, frame_timeout=30, validate_timeout=30)
SPEC = sb.StoryboardSpec(story="A fox crosses a frozen river", num_frames=6, num_inference_steps=1, width=256,
                         height=256, base_seed=5)  # fmt: skip


def _stride() -> int:
    """Every transaction, unless STORYBOARD_RELIABILITY_CRASH_STRIDE asks for every n-th (a quicker local run)."""
    return max(1, int(os.environ.get("STORYBOARD_RELIABILITY_CRASH_STRIDE", "1")))


class Crash(BaseException):
    """The process died: nothing after this point happens (BaseException, so no handler in the gateway runs)."""


class DyingStore(JobStore):
    """A job store whose process dies at its ``die_at``-th transaction (0: never); ``commits`` counts them."""

    def __init__(self, path: Path, outputs: Path, die_at: int = 0) -> None:
        super().__init__(path, outputs)
        self.die_at, self.commits, self.dead = die_at, 0, False
        self._count_lock = threading.Lock()

    def _transaction(self):  # type: ignore[no-untyped-def]
        store = self
        inner = super()._transaction()

        class Dying:
            def __enter__(self):  # type: ignore[no-untyped-def]
                if store.dead:
                    raise Crash("the gateway is gone")
                return inner.__enter__()

            def __exit__(self, kind, error, trace):  # type: ignore[no-untyped-def]
                if kind is not None:
                    return inner.__exit__(kind, error, trace)
                with store._count_lock:
                    outer = not store._db.in_transaction or inner._outer
                    if outer:
                        store.commits += 1
                    dies = outer and store.commits == store.die_at
                    if dies:
                        store.dead = True
                if dies:
                    inner.__exit__(Crash, None, None)  # rolled back: killed before COMMIT
                    raise Crash(f"killed at transaction {store.die_at}")
                return inner.__exit__(None, None, None)

        return Dying()


@pytest.fixture
def services() -> Iterator[tuple[str, str, str]]:
    # Frame 2's first attempt scores too low, so a retry (with its own events) is part of every run.
    planner = serve(ScriptedPlanner())
    renderer = serve(ScriptedRenderer())
    validator = serve(ScriptedValidator(consistency={2: [0.5]}))
    yield tuple(f"127.0.0.1:{port}" for _, port in (planner, renderer, validator))  # type: ignore[misc]
    for server, _ in (planner, renderer, validator):
        server.stop(0)


def _run(store: JobStore, addresses: tuple[str, str, str], job: Job) -> None:
    """Run the storyboard in this process as the gateway does; a store that dies raises Crash."""

    async def run() -> None:
        metrics = Metrics()
        downstream = Downstream(*addresses, LIMITS, metrics)
        policy = FramePolicy(max_retries=1, frames_in_flight=3)
        try:
            await StoryboardRun(job, store, downstream, metrics, policy, lambda: False).run(asyncio.Semaphore(1))
        finally:
            await downstream.close()

    try:
        asyncio.run(run())
    except BaseExceptionGroup as group:  # a frame's task died with the store, inside its task group
        if group.subgroup(Crash) is None:
            raise
        raise Crash("the gateway is gone") from None


def _events(store: JobStore, job: Job) -> list[sb.StoryboardEvent]:
    events, _ = store.events_after(job.id, 0, limit=10_000)
    return [logged.event for logged in events]


def _problems(store: JobStore, job: Job) -> list[str]:
    events = _events(store, job)
    problems = []
    if not events or not events[-1].HasField("completed"):
        problems.append(f"did not complete: {events[-1] if events else 'no events'}")
    if [e.sequence for e in events] != list(range(1, len(events) + 1)):
        problems.append("event numbers have gaps or repeats")
    kinds = Counter(e.WhichOneof("event") for e in events)
    if kinds["plan_ready"] != 1:
        problems.append(f"{kinds['plan_ready']} PlanReady events")
    rendered = Counter(
        (e.frame_rendered.frame, e.frame_rendered.attempt) for e in events if e.HasField("frame_rendered")
    )
    validated = {(e.frame_validated.frame, e.frame_validated.attempt) for e in events if e.HasField("frame_validated")}
    for attempt in store.attempts(job):
        key = (attempt.frame, attempt.attempt)
        if rendered[key] != 1:
            problems.append(f"frame {key[0]} attempt {key[1]} was saved; FrameRendered sent {rendered[key]} times")
        if attempt.validated and key not in validated:
            problems.append(f"frame {key[0]} attempt {key[1]} was validated; no FrameValidated was sent")
    return problems


def test_a_storyboard_resumed_after_a_crash_at_any_commit_tells_every_step_once(services, tmp_path, tally: Tally):
    # A run without a crash counts the transactions, and must itself be whole.
    store = DyingStore(tmp_path / "calm" / "jobs.sqlite3", tmp_path / "calm")
    job, _ = store.create(SPEC)
    start = store.commits
    _run(store, services, job)
    total = store.commits - start
    assert not _problems(store, job)
    store.close()
    assert total > 20
    failures = []
    for crash_at in range(1, total + 1, _stride()):
        folder = tmp_path / f"crash-{crash_at}"
        dying = DyingStore(folder / "jobs.sqlite3", folder)
        job, _ = dying.create(SPEC)
        dying.die_at = dying.commits + crash_at
        with contextlib.suppress(Crash):
            _run(dying, services, job)
        dying.close()
        store = JobStore(folder / "jobs.sqlite3", folder)  # the restarted gateway
        for unfinished in store.unfinished():
            _run(store, services, unfinished)
        problems = _problems(store, store.get(job.id))
        store.close()
        tally.record(SCENARIO, "lost" if problems else "completed", f"crash at transaction {crash_at}: {problems}")
        if problems:
            failures.append((crash_at, problems))
    assert not failures, failures[:5]


def test_a_resumed_storyboard_removes_the_temporaries_a_killed_gateway_left(services, tmp_path, tally: Tally):
    # A SIGKILL in the middle of an atomic write leaves its hidden temporary behind (seen in test_gateway_kill.py).
    store = DyingStore(tmp_path / "jobs.sqlite3", tmp_path)
    job, _ = store.create(SPEC)
    store.die_at = store.commits + 12  # some frames in
    with contextlib.suppress(Crash):
        _run(store, services, job)
    store.close()
    leftovers = [job.output_dir / ".frame_002.png.k3j4h5g6.tmp", job.output_dir / "attempts" / ".x.png.a1b2c3d4.tmp"]
    for path in leftovers:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\x89PNG\r\n\x1a\n half a frame")
    store = JobStore(tmp_path / "jobs.sqlite3", tmp_path)
    [resumed] = store.unfinished()
    _run(store, services, resumed)
    problems = _problems(store, resumed) + [f"{path.name} is still there" for path in leftovers if path.exists()]
    store.close()
    tally.record(SCENARIO, "lost" if problems else "completed", f"temporaries: {problems}")
    assert not problems
