"""The gateway's SQLite job store on its own: what survives a restart, idempotency, limits, owners, events."""

from __future__ import annotations

import threading
import time

import pytest

from gateway.jobs import JobStore
from gateway.outputs import AttemptInfo
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
    events = _until(again, resumed, 1, count=2)
    assert [e.event.sequence for e in events] == [2, 3]
    assert events[1].image_path == paths[1] / job.id / attempt.file
    assert again.create(SPEC, "key-1", owner="alice")[0].id == job.id  # the idempotency key is remembered
    again.close()


def _until(store: JobStore, job, after: int, count: int):
    """The first ``count`` events after ``after`` (the job is unfinished, so follow would wait for more)."""
    received = []
    for logged in store.follow(job, after, lambda: len(received) < count):
        received.append(logged)
        if len(received) == count:
            break
    return received


def test_follow_ends_with_the_final_event_and_resumes_after_any_sequence(paths):
    store = _open(paths)
    job, _ = store.create(SPEC)
    for step in range(1, 4):
        store.append(job, frame_progress=sb.FrameRenderProgress(frame=1, attempt=1, step=step, total_steps=3))
    store.finish(job, sb.STORYBOARD_STATE_CANCELLED, failed=sb.Failed(code="CANCELLED", message="x"))
    store.close()
    again = _open(paths)
    job = again.get(job.id)
    everything = [logged.event for logged in again.follow(job, 0, lambda: True)]
    assert [e.sequence for e in everything] == [1, 2, 3, 4, 5]
    assert everything[0].HasField("accepted") and everything[-1].HasField("failed")
    assert [e.event.sequence for e in again.follow(job, 3, lambda: True)] == [4, 5]
    assert list(again.follow(job, 5, lambda: True)) == []
    with pytest.raises(InvalidArgument, match="after_sequence"):
        list(again.follow(job, -1, lambda: True))
    again.close()


def test_a_watcher_wakes_on_new_events_and_stops_at_the_end(paths):
    store = _open(paths)
    job, _ = store.create(SPEC)
    seen: list[int] = []
    watcher = threading.Thread(target=lambda: seen.extend(e.event.sequence for e in store.follow(job, 0, lambda: True)))
    watcher.start()
    store.append(job, plan_ready=sb.PlanReady())
    store.finish(job, sb.STORYBOARD_STATE_COMPLETED, completed=sb.Completed())
    watcher.join(10)
    assert not watcher.is_alive() and seen == [1, 2, 3]
    store.close()


def test_a_watcher_sleeps_through_the_events_of_other_storyboards(paths):
    """An event wakes its own storyboard's watchers only. Waking every watcher on every event made the gateway's CPU
    per storyboard grow with the storyboards streaming at once (1.5x at 48)."""
    store = _open(paths)
    quiet, _ = store.create(SPEC)
    busy, _ = store.create(SPEC)
    looks, stop = [], threading.Event()

    def still_wanted() -> bool:  # asked each time the watcher looks for new events
        looks.append(1)
        return not stop.is_set()

    watcher = threading.Thread(target=lambda: list(store.follow(quiet, 1, still_wanted)))
    watcher.start()
    while not looks:
        time.sleep(0.001)
    started = time.monotonic()
    for step in range(1, 101):
        store.append(busy, frame_progress=sb.FrameRenderProgress(frame=1, attempt=1, step=step, total_steps=100))
        time.sleep(0.001)  # room for a woken watcher to look
    looked = len(looks)
    timeouts = (time.monotonic() - started) // 0.5  # a waiting watcher looks again every half second anyway
    stop.set()
    store.append(quiet, plan_ready=sb.PlanReady())
    watcher.join(10)
    assert not watcher.is_alive()
    assert looked <= 2 + timeouts  # the first look, and at most one for the wait it was in
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
        store.reopen(job, lambda current: None, max_active=0)
    store.finish(job, sb.STORYBOARD_STATE_COMPLETED, completed=sb.Completed())
    reopened = store.reopen(job, lambda current: current.meta.update(regenerate={"frame": 1}), max_active=0)
    assert reopened.storyboard.state == sb.STORYBOARD_STATE_QUEUED and reopened.meta["regenerate"] == {"frame": 1}
    assert [j.id for j in store.unfinished()] == [job.id]
    store.close()


def test_a_second_gateway_cannot_open_the_same_store(paths):
    store = _open(paths)
    with pytest.raises(SystemExit, match="in use by another gateway"):
        _open(paths)
    store.close()
    _open(paths).close()  # free again once the first one is closed
