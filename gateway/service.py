"""The gateway's use cases, shared by the gRPC servicer and the REST bridge: create, get, list, follow, cancel,
plan. Neither front end holds logic of its own beyond translating requests and errors."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

from gateway.jobs import Job, JobStore, LoggedEvent
from gateway.orchestrator import Downstream, Orchestrator
from gateway.spec import normalized_spec
from storyboard.v1 import common_pb2, planner_pb2
from storyboard.v1 import storyboards_pb2 as sb
from storyboard_common.errors import InvalidArgument, Unavailable

log = logging.getLogger(__name__)
MAX_IDEMPOTENCY_KEY = 128


class StoryboardService:
    """Accepts storyboards, runs them on a bounded pool, and answers questions about them."""

    def __init__(
        self, store: JobStore, downstream: Downstream, orchestrator: Orchestrator, max_running: int, plan_timeout: float
    ) -> None:
        self._store = store
        self._downstream = downstream
        self._orchestrator = orchestrator
        self._plan_timeout = plan_timeout
        self._pool = ThreadPoolExecutor(max_workers=max_running, thread_name_prefix="storyboard")
        self._closing = threading.Event()

    def create(self, spec: sb.StoryboardSpec, idempotency_key: str = "") -> Job:
        """Check the request at the edge, then create and schedule a job (or return the one this key made)."""
        if self._closing.is_set():
            raise Unavailable("the gateway is shutting down; try again shortly")
        if len(idempotency_key) > MAX_IDEMPOTENCY_KEY or not idempotency_key.isprintable():
            raise InvalidArgument("idempotency_key", f"must be printable and at most {MAX_IDEMPOTENCY_KEY} characters")
        normalized = normalized_spec(spec)
        job, created = self._store.create(normalized, idempotency_key)
        if created:
            self._store.append(job, accepted=sb.Accepted(storyboard=self._store.snapshot(job)))
            self._pool.submit(self._orchestrator.run, job)
        return job

    def get(self, job_id: str) -> Job:
        return self._store.get(job_id)

    def snapshot(self, job: Job) -> sb.Storyboard:
        return self._store.snapshot(job)

    def list(self, page_size: int, page_token: str) -> tuple[list[sb.Storyboard], str]:
        return self._store.list(page_size, page_token)

    def cancel(self, job_id: str) -> sb.Storyboard:
        job = self._store.get(job_id)
        self._store.request_cancel(job)
        if job.storyboard.state == sb.STORYBOARD_STATE_QUEUED:
            # Nothing runs yet; end it now so that watchers are released (the runner skips finished jobs).
            self._store.finish(
                job, sb.STORYBOARD_STATE_CANCELLED, failed=sb.Failed(code="CANCELLED", message="storyboard cancelled")
            )
        return self._store.snapshot(job)

    def follow(self, job: Job, after_sequence: int, is_active: Callable[[], bool]) -> Iterator[sb.StoryboardEvent]:
        """The job's events after ``after_sequence`` and then live ones, with frame images attached."""
        for logged in self._store.follow(job, after_sequence, is_active):
            yield with_image(logged)

    def plan(self, spec: sb.StoryboardSpec) -> common_pb2.Plan:
        """A plan for ``spec`` without rendering it."""
        normalized = normalized_spec(spec)
        options = planner_pb2.PlanOptions(temperature=normalized.temperature, seed=normalized.base_seed)
        if normalized.HasField("num_frames"):
            options.num_frames = normalized.num_frames
        options.characters.extend(normalized.characters)
        response = self._downstream.planner.Plan(
            planner_pb2.PlanRequest(story=normalized.story, options=options), timeout=self._plan_timeout
        )
        return response.plan

    def close(self) -> None:
        """Refuse new storyboards, stop the running ones, and release the downstream channels."""
        self._closing.set()
        for storyboard in self._store.list_unfinished():
            self._store.stop_work(self._store.get(storyboard))
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._downstream.close()


def with_image(logged: LoggedEvent) -> sb.StoryboardEvent:
    """The event to send: a copy with the frame's image bytes read back from the file they were written to."""
    if logged.image_path is None:
        return logged.event
    event = sb.StoryboardEvent()
    event.CopyFrom(logged.event)
    event.frame_rendered.image.data = logged.image_path.read_bytes()
    return event
