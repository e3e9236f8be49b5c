"""The gateway's SQLite job store on its own (what survives a restart, idempotency, limits, owners), and the event
log watchers follow on an asyncio loop."""

from __future__ import annotations

import asyncio

import pytest

from gateway.events import EventLog
from gateway.outputs import AttemptInfo
from gateway.store import JobStore
from storyboard.v1 import common_pb2
from storyboard.v1 import storyboards_pb2 as sb
from storyboard_common.errors import FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted

SPEC = sb.StoryboardSpec(story="A fox crosses a frozen river", num_frames=6)


@pytest.fixture
def paths(tmp_path):
    return tmp_path / "outputs" / "jobs.sqlite3", tmp_path / "outputs"


def _open(paths) -> JobStore:
    return JobStore(*paths)


def test_a_job_its_state_attempts_and_events_survive_a_restart(paths):
    store = _open(paths)
    job, created = store.create(SPEC, "key-1", owner="alice")
    assert created and job.storyboard.state == sb.STORYBOARD_STATE_QUEUED
    plan = common_pb2.Plan(story=SPEC.story, scenes=[common_pb2.Scene(frame=n, prompt=f"p{n}") for n in range(1, 7)])

    def planned(storyboard: sb.Storyboard) -> None:
        storyboard.state = sb.STORYBOARD_STATE_RENDERING
        storyboard.plan.CopyFrom(plan)
        storyboard.frames.add(frame=1, seeds_tried=[42], attempts=1)

    attempt = AttemptInfo(frame=1, attempt=1, seed=42, prompt="p1", file="attempts/frame_001_attempt_1.png",
                          timings=common_pb2.FrameTimings(denoise_seconds=1.5), render_seconds=2.0)  # fmt: skip
    store.update(job, planned, attempt=attempt)
    store.append(job, plan_ready=sb.PlanReady(plan=plan))
    store.append(job, image_file=attempt.file, frame_rendered=sb.FrameRendered(frame=1, attempt=1, seed=42))
    attempt.score, attempt.verdict, attempt.validated = common_pb2.FrameScore(consistency=0.8), 1, True
    store.save_attempt(job, attempt)
    store.update_meta(job, lambda meta: meta.update(stage_seconds={"planning": 0.5}))
    store.close()

    again = _open(paths)
    [resumed] = again.unfinished()
    assert resumed.id == job.id and resumed.owner == "alice"
    assert resumed.storyboard.plan == plan and list(resumed.storyboard.frames[0].seeds_tried) == [42]
    assert resumed.storyboard.last_event_sequence == 3
    assert resumed.meta == {"stage_seconds": {"planning": 0.5}}
    [saved] = again.attempts(resumed)
    assert saved == attempt
    events, ended = again.events_after(resumed.id, 1, limit=10)
    assert [e.event.sequence for e in events] == [2, 3] and not ended
    assert events[1].image_path == paths[1] / job.id / attempt.file
    assert again.create(SPEC, "key-1", owner="alice")[0].id == job.id  # the idempotency key is remembered
    again.close()


async def _followed(log: EventLog, job_id: str, after: int) -> list[int]:
    return [logged.event.sequence async for logged in log.follow(job_id, after)]


def test_follow_ends_with_the_final_event_and_resumes_after_any_sequence(paths):
    store = _open(paths)
    job, _ = store.create(SPEC)
    for step in range(1, 4):
        store.append(job, frame_progress=sb.FrameRenderProgress(frame=1, attempt=1, step=step, total_steps=3))
    store.finish(job, sb.STORYBOARD_STATE_CANCELLED, failed=sb.Failed(code="CANCELLED", message="x"))
    store.close()
    again = _open(paths)

    async def follow() -> None:
        log = EventLog(again, asyncio.get_running_loop())
        everything = [logged.event async for logged in log.follow(job.id, 0)]
        assert [e.sequence for e in everything] == [1, 2, 3, 4, 5]
        assert everything[0].HasField("accepted") and everything[-1].HasField("failed")
        assert await _followed(log, job.id, 3) == [4, 5]
        assert await _followed(log, job.id, 5) == []
        with pytest.raises(InvalidArgument, match="after_sequence"):
            await _followed(log, job.id, -1)

    asyncio.run(follow())
    again.close()


def test_a_watcher_wakes_on_new_events_and_stops_at_the_end(paths):
    store = _open(paths)
    job, _ = store.create(SPEC)

    async def watch() -> list[int]:
        log = EventLog(store, asyncio.get_running_loop())
        watcher = asyncio.create_task(_followed(log, job.id, 0))
        await asyncio.sleep(0.05)
        assert not watcher.done()  # waiting for more
        store.append(job, plan_ready=sb.PlanReady())
        await asyncio.sleep(0.05)
        store.finish(job, sb.STORYBOARD_STATE_COMPLETED, completed=sb.Completed())
        return await asyncio.wait_for(watcher, 10)

    assert asyncio.run(watch()) == [1, 2, 3]
    store.close()


def test_a_watcher_sleeps_through_the_events_of_other_storyboards(paths, monkeypatch):
    """An event wakes its own storyboard's watchers only: waking every watcher on every event would make the gateway's
    work per event grow with the storyboards streaming at once."""
    store = _open(paths)
    quiet, _ = store.create(SPEC)
    busy, _ = store.create(SPEC)
    looks: list[str] = []
    real = store.events_after
    monkeypatch.setattr(store, "events_after", lambda job_id, *args: looks.append(job_id) or real(job_id, *args))

    async def watch() -> None:
        log = EventLog(store, asyncio.get_running_loop())
        watcher = asyncio.create_task(_followed(log, quiet.id, 1))
        await asyncio.sleep(0.05)
        for step in range(1, 101):
            store.append(busy, frame_progress=sb.FrameRenderProgress(frame=1, attempt=1, step=step, total_steps=100))
            await asyncio.sleep(0)  # room for a woken watcher to look
        assert looks == [quiet.id]  # the first look only
        store.finish(quiet, sb.STORYBOARD_STATE_COMPLETED, completed=sb.Completed())
        assert await asyncio.wait_for(watcher, 10) == [2]

    asyncio.run(watch())
    store.close()


def test_idempotency_keys_and_visibility_belong_to_one_owner(paths):
    store = _open(paths)
    alices, _ = store.create(SPEC, "same-key", owner="alice")
    bobs, created = store.create(SPEC, "same-key", owner="bob")
    assert created and bobs.id != alices.id
    assert store.get(alices.id, "alice").id == alices.id
    with pytest.raises(NotFound):
        store.get(alices.id, "bob")
    assert [s.id for s in store.list(10, "", "bob")[0]] == [bobs.id]
    store.close()


def test_the_per_owner_limit_counts_unfinished_storyboards(paths):
    store = _open(paths)
    first, _ = store.create(SPEC, owner="alice", max_active=2)
    store.create(SPEC, owner="alice", max_active=2)
    with pytest.raises(ResourceExhausted, match="limit is 2"):
        store.create(SPEC, owner="alice", max_active=2)
    store.create(SPEC, owner="bob", max_active=2)  # another key has its own count
    store.finish(first, sb.STORYBOARD_STATE_FAILED, failed=sb.Failed(code="INTERNAL"))
    store.create(SPEC, owner="alice", max_active=2)
    store.close()


def test_listing_pages_newest_first(paths):
    store = _open(paths)
    ids = [store.create(SPEC)[0].id for _ in range(5)]
    first, token = store.list(2, "", "")
    second, token2 = store.list(2, token, "")
    third, token3 = store.list(2, token2, "")
    assert [s.id for s in first + second + third] == list(reversed(ids)) and token3 == ""
    with pytest.raises(InvalidArgument, match="page_size"):
        store.list(101, "", "")
    with pytest.raises(InvalidArgument, match="page_token"):
        store.list(2, "../etc", "")
    store.close()


def test_only_a_finished_job_is_reopened(paths):
    store = _open(paths)
    job, _ = store.create(SPEC, owner="alice")
    with pytest.raises(FailedPrecondition):
        store.reopen(job.id, lambda current: None, max_active=0)
    store.finish(job, sb.STORYBOARD_STATE_COMPLETED, completed=sb.Completed())
    reopened = store.reopen(job.id, lambda current: current.meta.update(regenerate={"frame": 1}), max_active=0)
    assert reopened.storyboard.state == sb.STORYBOARD_STATE_QUEUED and reopened.meta["regenerate"] == {"frame": 1}
    assert [j.id for j in store.unfinished()] == [job.id]
    store.close()


def test_a_second_gateway_cannot_open_the_same_store(paths):
    store = _open(paths)
    with pytest.raises(SystemExit, match="in use by another gateway"):
        _open(paths)
    store.close()
    _open(paths).close()  # free again once the first one is closed


def test_events_are_numbered_from_the_log_whoever_logs_them(paths):
    # The gateway's faces and a storyboard's run each hold their own copy of a job: the log decides the next number.
    store = _open(paths)
    job, _ = store.create(SPEC)
    other_copy = store.get(job.id)
    store.append(job, plan_ready=sb.PlanReady())
    store.finish(other_copy, sb.STORYBOARD_STATE_CANCELLED, failed=sb.Failed(code="CANCELLED"))
    events, ended = store.events_after(job.id, 0, limit=10)
    assert [e.event.sequence for e in events] == [1, 2, 3] and ended
    store.close()


def test_a_cancel_is_recorded_for_the_job_and_cleared_when_it_is_reopened(paths):
    store = _open(paths)
    job, _ = store.create(SPEC)
    running_copy = store.get(job.id)
    store.request_cancel(job)
    store.update(running_copy, lambda storyboard: setattr(storyboard, "state", sb.STORYBOARD_STATE_RENDERING))
    assert store.get(job.id).cancel_requested  # a run saving its own copy does not undo the cancel
    store.finish(running_copy, sb.STORYBOARD_STATE_CANCELLED, failed=sb.Failed(code="CANCELLED"))
    assert not store.reopen(job.id, lambda current: None, max_active=0).cancel_requested
    store.close()
