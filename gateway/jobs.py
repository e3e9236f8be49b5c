"""Storyboard jobs and their event logs, held in memory.

A job's state is a ``Storyboard`` message; everything that happens to it is appended to its event log, numbered
from 1, so a watcher can (re)start after any sequence number. Frame images are not kept in the log: an event that
carries one records the file it was written to, and the servicer attaches the bytes when it sends the event.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf.timestamp_pb2 import Timestamp

from storyboard.v1 import storyboards_pb2 as sb
from storyboard_common.errors import InvalidArgument, NotFound

TERMINAL_STATES = frozenset({sb.STORYBOARD_STATE_COMPLETED, sb.STORYBOARD_STATE_FAILED, sb.STORYBOARD_STATE_CANCELLED})
_ID = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{8}$")
DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE = 20, 100


def new_job_id() -> str:
    """A sortable, unguessable id that is also safe as a folder name: ``20261124-040500-3f9a2c1b``."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(4)


def check_job_id(job_id: str, field: str = "id") -> str:
    if not _ID.match(job_id):
        raise InvalidArgument(field, "is not a storyboard id (like 20261124-040500-3f9a2c1b)")
    return job_id


def _now() -> Timestamp:
    stamp = Timestamp()
    stamp.GetCurrentTime()
    return stamp


@dataclass
class LoggedEvent:
    """An event as stored: the message without image bytes, and the file that holds the image, if any."""

    event: sb.StoryboardEvent
    image_path: Path | None = None


@dataclass
class Job:
    """One storyboard: its state, its event log and the means to cancel its work."""

    storyboard: sb.Storyboard
    output_dir: Path
    events: list[LoggedEvent] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    cancel_requested: bool = False
    _cancel_hooks: set[Callable[[], object]] = field(default_factory=set)

    @property
    def id(self) -> str:
        return self.storyboard.id

    @property
    def finished(self) -> bool:
        return self.storyboard.state in TERMINAL_STATES


class JobStore:
    """Jobs by id, with an idempotency index, one lock and one condition that wakes watchers on every change."""

    def __init__(self, outputs_root: Path) -> None:
        self._outputs_root = outputs_root
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._by_idempotency_key: dict[str, str] = {}
        self._changed = threading.Condition()

    def create(self, spec: sb.StoryboardSpec, idempotency_key: str = "") -> tuple[Job, bool]:
        """A new queued job for ``spec`` (True), or the job an earlier call with the same key created (False)."""
        with self._changed:
            if idempotency_key and idempotency_key in self._by_idempotency_key:
                return self._jobs[self._by_idempotency_key[idempotency_key]], False
            job_id = new_job_id()
            while job_id in self._jobs:
                job_id = new_job_id()
            now = _now()
            storyboard = sb.Storyboard(
                id=job_id,
                state=sb.STORYBOARD_STATE_QUEUED,
                spec=spec,
                output_dir=str(self._outputs_root / job_id),
                create_time=now,
                update_time=now,
            )
            job = Job(storyboard=storyboard, output_dir=self._outputs_root / job_id)
            self._jobs[job_id] = job
            if idempotency_key:
                self._by_idempotency_key[idempotency_key] = job_id
            return job, True

    def get(self, job_id: str) -> Job:
        check_job_id(job_id)
        with self._changed:
            job = self._jobs.get(job_id)
        if job is None:
            raise NotFound(f"no storyboard with id {job_id}")
        return job

    def snapshot(self, job: Job) -> sb.Storyboard:
        """A copy of the job's current state, safe to send while the job goes on."""
        with self._changed:
            copy = sb.Storyboard()
            copy.CopyFrom(job.storyboard)
            return copy

    def list(self, page_size: int, page_token: str) -> tuple[list[sb.Storyboard], str]:
        """A page of storyboards, newest first; the token is the id the next page starts after."""
        if page_size < 0 or page_size > MAX_PAGE_SIZE:
            raise InvalidArgument("page_size", f"must be between 1 and {MAX_PAGE_SIZE}, or 0 for {DEFAULT_PAGE_SIZE}")
        size = page_size or DEFAULT_PAGE_SIZE
        if page_token:
            check_job_id(page_token, "page_token")
        with self._changed:
            ids = list(reversed(self._jobs))
            start = ids.index(page_token) + 1 if page_token in self._jobs else 0
            page = ids[start : start + size]
            more = start + size < len(ids)
            return [self.snapshot(self._jobs[i]) for i in page], (page[-1] if more and page else "")

    def list_unfinished(self) -> list[str]:
        """Ids of the jobs that have not ended."""
        with self._changed:
            return [job_id for job_id, job in self._jobs.items() if not job.finished]

    def update(self, job: Job, change: Callable[[sb.Storyboard], object]) -> None:
        """Apply ``change`` to the job's state under the lock."""
        with self._changed:
            change(job.storyboard)
            job.storyboard.update_time.CopyFrom(_now())
            self._changed.notify_all()

    def append(self, job: Job, image_path: Path | None = None, **event: object) -> sb.StoryboardEvent:
        """Log one event, e.g. ``append(job, plan_ready=sb.PlanReady(plan=plan))``, and wake its watchers."""
        with self._changed:
            message = sb.StoryboardEvent(storyboard_id=job.id, sequence=len(job.events) + 1, time=_now(), **event)
            job.events.append(LoggedEvent(message, image_path))
            job.storyboard.last_event_sequence = message.sequence
            self._changed.notify_all()
            return message

    def finish(self, job: Job, state: int, error: str = "", **event: object) -> None:
        """End the job: set its final state and log its final event in one step, so that a watcher that sees the
        job finished has also seen its last event."""
        with self._changed:
            job.storyboard.state = state
            job.storyboard.error = error
            job.storyboard.update_time.CopyFrom(_now())
            self.append(job, **event)

    def follow(self, job: Job, after_sequence: int, is_active: Callable[[], bool]) -> Iterator[LoggedEvent]:
        """Events after ``after_sequence``, then each new one as it is logged, until the job has ended and every
        event was sent, or the watcher has gone away."""
        if after_sequence < 0:
            raise InvalidArgument("after_sequence", "must not be negative")
        sent = after_sequence
        while is_active():
            with self._changed:
                while len(job.events) <= sent and not job.finished and is_active():
                    self._changed.wait(timeout=1.0)
                pending = job.events[sent:]
                done = job.finished
            yield from pending
            sent += len(pending)
            if done and sent >= len(job.events):
                return

    def add_cancel_hook(self, job: Job, hook: Callable[[], object]) -> None:
        """Run ``hook`` if the job is cancelled while it is registered (e.g. to cancel an in-flight render)."""
        with self._changed:
            job._cancel_hooks.add(hook)
        if job.stopping.is_set():
            hook()

    def remove_cancel_hook(self, job: Job, hook: Callable[[], object]) -> None:
        with self._changed:
            job._cancel_hooks.discard(hook)

    def request_cancel(self, job: Job) -> None:
        """A user's cancel: the job ends CANCELLED (unless it already ended)."""
        with self._changed:
            job.cancel_requested = not job.finished
        self.stop_work(job)

    def stop_work(self, job: Job) -> None:
        """Stop the job's in-flight work now: set its stop flag and run its cancel hooks."""
        with self._changed:
            job.stopping.set()
            hooks = list(job._cancel_hooks)
        for hook in hooks:
            hook()
