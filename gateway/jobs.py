"""Storyboard jobs, persisted in SQLite so that a gateway that crashed or restarted resumes its unfinished work.

Three tables (stdlib ``sqlite3``, WAL journal, one connection used under one lock):

    jobs      one row per storyboard: the ``Storyboard`` message as protobuf bytes (the request with its defaults,
              the plan, each frame's state: attempts, seeds tried, kept seed, scores), the columns queries need
              (owner, state, idempotency key, creation time), whether a cancel was asked for, and bookkeeping the
              message has no field for (a pending regeneration, stage timings) as JSON.
    attempts  one row per rendered attempt at a frame: seed, prompt, image file, renderer timings, scores, verdict.
    events    every event of every storyboard, numbered from 1 per storyboard. Progress events are stored too,
              so sequence numbers never repeat or jump across a restart and Watch resumes after any number. Image
              bytes are not stored: an event that carries an image names the attempt file that holds it.

A job being worked on in this process is held in memory (``Job``), with its stop flag and cancel hooks; every change
to it is written through before the lock is released. One gateway owns a store file at a time (an exclusive lock on
``<file>.lock``), so two gateways never resume the same job.
"""

from __future__ import annotations

import fcntl
import json
import logging
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from gateway.outputs import AttemptInfo
from storyboard.v1 import common_pb2
from storyboard.v1 import storyboards_pb2 as sb
from storyboard_common.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted

log = logging.getLogger(__name__)

TERMINAL_STATES = frozenset({sb.STORYBOARD_STATE_COMPLETED, sb.STORYBOARD_STATE_FAILED, sb.STORYBOARD_STATE_CANCELLED})
_ACTIVE_STATES = tuple(
    state for state in sb.StoryboardState.values() if state and state not in TERMINAL_STATES
)  # QUEUED, PLANNING, RENDERING, ASSEMBLING
ID_PATTERN = r"^\d{8}-\d{6}-[0-9a-f]{8}$"
_ID = re.compile(ID_PATTERN)
DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE = 20, 100
_EVENT_BATCH = 256
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    idempotency_key TEXT,
    state INTEGER NOT NULL,
    created REAL NOT NULL,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    storyboard BLOB NOT NULL,
    meta TEXT NOT NULL DEFAULT '{}'
);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_by_idempotency_key ON jobs (owner, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_by_owner ON jobs (owner, created);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state);
CREATE TABLE IF NOT EXISTS attempts (
    job_id TEXT NOT NULL,
    frame INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    seed INTEGER NOT NULL,
    prompt TEXT NOT NULL,
    file TEXT NOT NULL,
    backend TEXT NOT NULL,
    timings BLOB,
    render_seconds REAL NOT NULL,
    validated INTEGER NOT NULL,
    score BLOB,
    verdict INTEGER NOT NULL,
    reason TEXT NOT NULL,
    validate_seconds REAL NOT NULL,
    PRIMARY KEY (job_id, frame, attempt)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    job_id TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    event BLOB NOT NULL,
    image_file TEXT,
    PRIMARY KEY (job_id, sequence)
) WITHOUT ROWID;
"""


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
    """One storyboard as this process sees it: its state, bookkeeping, and the means to stop its work."""

    storyboard: sb.Storyboard
    output_dir: Path
    owner: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    cancel_requested: bool = False
    stopping: threading.Event = field(default_factory=threading.Event)
    suspended: bool = False  # stopped because the gateway shuts down: stays unfinished, to be resumed
    _cancel_hooks: set[Callable[[], object]] = field(default_factory=set)

    @property
    def id(self) -> str:
        return self.storyboard.id

    @property
    def finished(self) -> bool:
        return self.storyboard.state in TERMINAL_STATES


class JobStore:
    """Jobs, attempts and events in one SQLite file, behind one lock; a change to a job wakes that job's watchers."""

    def __init__(self, path: Path, outputs_root: Path) -> None:
        self._outputs_root = outputs_root
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_file = _exclusive_lock(path)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes; fsync at checkpoints
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, SCHEMA_VERSION):
            raise SystemExit(f"{path}: job store schema {version} is newer than this gateway's ({SCHEMA_VERSION})")
        self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        self._lock = threading.RLock()
        # A condition per watched job, on the one lock: an event wakes its own job's watchers only. Waking every
        # watcher would cost N wake-ups (and their queries) per event with N storyboards streaming.
        self._watches: dict[str, _Watch] = {}
        self._live: dict[str, Job] = {}  # jobs worked on (or waiting to be) in this process
        self._closed = False

    def _transaction(self) -> sqlite3.Connection:
        return _Transaction(self._db)  # type: ignore[return-value]

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for watch in self._watches.values():
                watch.condition.notify_all()
            self._db.close()
            self._lock_file.close()

    # -- jobs ---------------------------------------------------------------------------------------------------

    def create(
        self, spec: sb.StoryboardSpec, idempotency_key: str = "", owner: str = "", max_active: int = 0
    ) -> tuple[Job, bool]:
        """A new queued job for ``spec`` with its ``accepted`` event (True), or the job an earlier call of the same
        owner with the same key and the same spec created (False). AlreadyExists when that key was used for another
        spec; ResourceExhausted when the owner has ``max_active`` unfinished."""
        with self._lock:
            if idempotency_key:
                row = self._db.execute(
                    "SELECT id FROM jobs WHERE owner = ? AND idempotency_key = ?", (owner, idempotency_key)
                ).fetchone()
                if row is not None:
                    earlier = self._live.get(row[0]) or self._load(row[0])
                    if earlier.storyboard.spec != spec:
                        raise AlreadyExists(
                            f"idempotency_key: {idempotency_key!r} was used for another request (storyboard "
                            f"{earlier.id}); send a new key for a new request"
                        )
                    return earlier, False
            self._check_active_limit(owner, max_active)
            job_id = new_job_id()
            while self._db.execute("SELECT 1 FROM jobs WHERE id = ?", (job_id,)).fetchone():
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
            job = Job(storyboard=storyboard, output_dir=self._outputs_root / job_id, owner=owner)
            with self._transaction():
                self._db.execute(
                    "INSERT INTO jobs (id, owner, idempotency_key, state, created, storyboard, meta) "
                    "VALUES (?, ?, ?, ?, ?, ?, '{}')",
                    (job_id, owner, idempotency_key or None, storyboard.state, time.time(), b""),
                )
                self._append(job, None, accepted=sb.Accepted(storyboard=self._copy(job)))
                self._save(job)
            self._live[job_id] = job
            return job, True

    def _check_active_limit(self, owner: str, max_active: int) -> None:
        if max_active <= 0:
            return
        marks = ",".join("?" * len(_ACTIVE_STATES))
        # A storyboard whose cancel was accepted no longer counts, though its work may take a moment to stop: the
        # refusal tells the caller to cancel one, and a retry right after the cancel must then get through.
        (active,) = self._db.execute(
            f"SELECT COUNT(*) FROM jobs WHERE owner = ? AND cancel_requested = 0 AND state IN ({marks})",
            (owner, *_ACTIVE_STATES),
        ).fetchone()
        if active >= max_active:
            raise ResourceExhausted(
                f"this API key already has {active} unfinished storyboards (the limit is {max_active}); "
                "wait for one to finish or cancel one"
            )

    def get(self, job_id: str, owner: str | None = None) -> Job:
        """The job with this id; NotFound also when it belongs to another owner (``None``: any owner)."""
        check_job_id(job_id)
        with self._lock:
            job = self._live.get(job_id) or self._load(job_id)
        if owner is not None and job.owner != owner:
            raise NotFound(f"no storyboard with id {job_id}")
        return job

    def _load(self, job_id: str) -> Job:
        row = self._db.execute(
            "SELECT storyboard, owner, meta, cancel_requested FROM jobs WHERE id = ?", (job_id,)
        ).fetchone()
        if row is None:
            raise NotFound(f"no storyboard with id {job_id}")
        storyboard = sb.Storyboard.FromString(row[0])
        (last,) = self._db.execute("SELECT MAX(sequence) FROM events WHERE job_id = ?", (job_id,)).fetchone()
        storyboard.last_event_sequence = last or 0
        # The folder is where this gateway keeps outputs now, whatever it was when the job was made.
        storyboard.output_dir = str(self._outputs_root / job_id)
        storyboard.cancel_requested = bool(row[3])  # the column is the record; stores before the field had only it
        return Job(
            storyboard=storyboard,
            output_dir=self._outputs_root / job_id,
            owner=row[1],
            meta=json.loads(row[2]),
            cancel_requested=bool(row[3]),
        )

    def snapshot(self, job: Job) -> sb.Storyboard:
        """A copy of the job's current state, safe to send while the job goes on."""
        with self._lock:
            return self._copy(job)

    @staticmethod
    def _copy(job: Job) -> sb.Storyboard:
        copy = sb.Storyboard()
        copy.CopyFrom(job.storyboard)
        return copy

    def list(self, page_size: int, page_token: str, owner: str) -> tuple[list[sb.Storyboard], str]:
        """A page of the owner's storyboards, newest first; the token is the id the next page starts after."""
        if page_size < 0 or page_size > MAX_PAGE_SIZE:
            raise InvalidArgument("page_size", f"must be between 1 and {MAX_PAGE_SIZE}, or 0 for {DEFAULT_PAGE_SIZE}")
        size = page_size or DEFAULT_PAGE_SIZE
        with self._lock:
            query = "SELECT id FROM jobs WHERE owner = ?"
            params: list[object] = [owner]
            if page_token:
                check_job_id(page_token, "page_token")
                start = self._db.execute(
                    "SELECT created, rowid FROM jobs WHERE id = ? AND owner = ?", (page_token, owner)
                ).fetchone()
                if start is None:
                    raise InvalidArgument("page_token", "does not continue a listing of yours")
                query += " AND (created, rowid) < (?, ?)"
                params += list(start)
            rows = self._db.execute(f"{query} ORDER BY created DESC, rowid DESC LIMIT ?", (*params, size + 1))
            ids = [row[0] for row in rows]
            page = [self.snapshot(self._live.get(job_id) or self._load(job_id)) for job_id in ids[:size]]
            return page, (ids[size - 1] if len(ids) > size else "")

    def unfinished(self) -> list[Job]:
        """The jobs that have not ended, oldest first, made live in this process (to be resumed)."""
        with self._lock:
            marks = ",".join("?" * len(_ACTIVE_STATES))
            rows = self._db.execute(
                f"SELECT id FROM jobs WHERE state IN ({marks}) ORDER BY created, rowid", _ACTIVE_STATES
            ).fetchall()
            jobs = []
            for (job_id,) in rows:
                job = self._live.get(job_id) or self._load(job_id)
                self._live[job_id] = job
                jobs.append(job)
            return jobs

    def count_live(self, state: int) -> int:
        """How many jobs of this process are in ``state`` (e.g. queued: the queue depth)."""
        with self._lock:
            return sum(1 for job in self._live.values() if job.storyboard.state == state)

    def update(
        self,
        job: Job,
        change: Callable[[sb.Storyboard], object],
        *,
        attempt: AttemptInfo | None = None,
        image_file: str | None = None,
        **event: object,
    ) -> None:
        """Apply ``change`` to the job's state and save it; with ``attempt``, save that attempt in the same step, and
        with an event (``frame_rendered=...``, as for ``append``) log it in the same transaction too: a crash never
        leaves a change saved without the event that tells watchers about it (a resumed job would not send it)."""
        with self._lock:
            change(job.storyboard)
            job.storyboard.update_time.CopyFrom(_now())
            with self._transaction():
                if event:
                    self._append(job, image_file, **event)
                self._save(job)
                if attempt is not None:
                    self._save_attempt(job, attempt)
            self._wake(job.id)

    def update_meta(self, job: Job, change: Callable[[dict[str, Any]], object]) -> None:
        """Apply ``change`` to the job's bookkeeping (stage timings, a pending regeneration) and save it."""
        with self._lock:
            change(job.meta)
            with self._transaction():
                self._db.execute("UPDATE jobs SET meta = ? WHERE id = ?", (json.dumps(job.meta), job.id))

    def _save(self, job: Job) -> None:
        self._db.execute(
            "UPDATE jobs SET state = ?, storyboard = ?, meta = ?, cancel_requested = ? WHERE id = ?",
            (
                job.storyboard.state,
                job.storyboard.SerializeToString(),
                json.dumps(job.meta),
                int(job.cancel_requested),
                job.id,
            ),
        )

    def reopen(self, job: Job, change: Callable[[Job], object], max_active: int) -> Job:
        """Put a finished job back to work (a frame regeneration): ``change`` edits it under the lock and the job
        becomes queued again. FailedPrecondition while it runs; ResourceExhausted when its owner is at the limit."""
        with self._lock:
            current = self._live.get(job.id) or self._load(job.id)
            if not current.finished:
                raise FailedPrecondition(f"storyboard {job.id} is still being worked on; try again once it has ended")
            self._check_active_limit(current.owner, max_active)
            change(current)
            current.storyboard.state = sb.STORYBOARD_STATE_QUEUED
            current.storyboard.error = ""
            current.cancel_requested = current.storyboard.cancel_requested = False
            current.suspended = False
            current.stopping = threading.Event()
            current.storyboard.update_time.CopyFrom(_now())
            with self._transaction():
                self._save(current)
            self._live[current.id] = current
            self._wake(current.id)
            return current

    # -- attempts -----------------------------------------------------------------------------------------------

    def save_attempt(self, job: Job, attempt: AttemptInfo, **event: object) -> None:
        """Insert or replace one attempt (e.g. once it has been validated), and log ``event`` (if given) in the same
        transaction."""
        with self._lock:
            with self._transaction():
                self._save_attempt(job, attempt)
                if event:
                    self._append(job, None, **event)
            self._wake(job.id)

    def _save_attempt(self, job: Job, a: AttemptInfo) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO attempts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                job.id,
                a.frame,
                a.attempt,
                a.seed,
                a.prompt,
                a.file,
                a.backend,
                a.timings.SerializeToString() if a.timings is not None else None,
                a.render_seconds,
                int(a.validated),
                a.score.SerializeToString() if a.score is not None else None,
                a.verdict,
                a.reason,
                a.validate_seconds,
            ),
        )

    def attempts(self, job: Job, frame: int | None = None) -> list[AttemptInfo]:
        """The job's attempts (of one frame, when given), in frame and attempt order."""
        query = "SELECT * FROM attempts WHERE job_id = ?" + (" AND frame = ?" if frame is not None else "")
        params = (job.id,) if frame is None else (job.id, frame)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY frame, attempt", params).fetchall()
        return [
            AttemptInfo(
                frame=row[1],
                attempt=row[2],
                seed=row[3],
                prompt=row[4],
                file=row[5],
                backend=row[6],
                timings=common_pb2.FrameTimings.FromString(row[7]) if row[7] is not None else None,
                render_seconds=row[8],
                validated=bool(row[9]),
                score=common_pb2.FrameScore.FromString(row[10]) if row[10] is not None else None,
                verdict=row[11],
                reason=row[12],
                validate_seconds=row[13],
            )
            for row in rows
        ]

    # -- events -------------------------------------------------------------------------------------------------

    def append(self, job: Job, image_file: str | None = None, **event: object) -> sb.StoryboardEvent:
        """Log one event, e.g. ``append(job, plan_ready=sb.PlanReady(plan=plan))``, and wake its watchers.
        ``image_file`` names the file (relative to the job's folder) whose bytes the event carries when sent."""
        with self._lock:
            with self._transaction():
                message = self._append(job, image_file, **event)
            self._wake(job.id)
            return message

    def _append(self, job: Job, image_file: str | None, **event: object) -> sb.StoryboardEvent:
        message = sb.StoryboardEvent(
            storyboard_id=job.id, sequence=job.storyboard.last_event_sequence + 1, time=_now(), **event
        )
        self._db.execute(
            "INSERT INTO events (job_id, sequence, event, image_file) VALUES (?, ?, ?, ?)",
            (job.id, message.sequence, message.SerializeToString(), image_file),
        )
        job.storyboard.last_event_sequence = message.sequence
        return message

    def finish(self, job: Job, state: int, error: str = "", **event: object) -> None:
        """End the job: set its final state and log its final event in one transaction, so that a watcher that
        sees the job finished has also seen its last event."""
        with self._lock:
            job.storyboard.state = state
            job.storyboard.error = error
            job.storyboard.update_time.CopyFrom(_now())
            with self._transaction():
                self._append(job, None, **event)
                self._save(job)
            self._live.pop(job.id, None)
            self._wake(job.id)

    def follow(self, job: Job, after_sequence: int, is_active: Callable[[], bool]) -> Iterator[LoggedEvent]:
        """Events after ``after_sequence``, then each new one as it is logged, until the job has ended and every
        event was sent, or the watcher has gone away."""
        if after_sequence < 0:
            raise InvalidArgument("after_sequence", "must not be negative")
        sent = after_sequence
        watch = self._start_watching(job.id)
        try:
            while is_active():
                with self._lock:
                    if self._closed:
                        return
                    # The state is read before the events: a job seen finished has its final event committed.
                    row = self._db.execute("SELECT state FROM jobs WHERE id = ?", (job.id,)).fetchone()
                    finished = row is None or row[0] in TERMINAL_STATES
                    rows = self._db.execute(
                        "SELECT event, image_file FROM events WHERE job_id = ? AND sequence > ? "
                        "ORDER BY sequence LIMIT ?",
                        (job.id, sent, _EVENT_BATCH),
                    ).fetchall()
                    if not rows:
                        if finished:
                            return
                        watch.condition.wait(timeout=0.5)
                        continue
                for event_bytes, image_file in rows:
                    event = sb.StoryboardEvent.FromString(event_bytes)
                    sent = event.sequence
                    yield LoggedEvent(event, job.output_dir / image_file if image_file else None)
        finally:
            self._stop_watching(job.id)

    def _start_watching(self, job_id: str) -> _Watch:
        with self._lock:
            watch = self._watches.setdefault(job_id, _Watch(threading.Condition(self._lock)))
            watch.watchers += 1
            return watch

    def _stop_watching(self, job_id: str) -> None:
        with self._lock:
            watch = self._watches[job_id]
            watch.watchers -= 1
            if not watch.watchers:
                del self._watches[job_id]

    def _wake(self, job_id: str) -> None:
        """Wake the watchers of one job (the caller holds the lock)."""
        watch = self._watches.get(job_id)
        if watch is not None:
            watch.condition.notify_all()

    # -- cancelling ---------------------------------------------------------------------------------------------

    def add_cancel_hook(self, job: Job, hook: Callable[[], object]) -> None:
        """Run ``hook`` if the job is stopped while it is registered (e.g. to cancel an in-flight render)."""
        with self._lock:
            job._cancel_hooks.add(hook)
        if job.stopping.is_set():
            hook()

    def remove_cancel_hook(self, job: Job, hook: Callable[[], object]) -> None:
        with self._lock:
            job._cancel_hooks.discard(hook)

    def request_cancel(self, job: Job) -> None:
        """A user's cancel: the job ends CANCELLED (unless it already ended). Saved, so it also holds across a
        restart."""
        with self._lock:
            job.cancel_requested = job.storyboard.cancel_requested = not job.finished
            with self._transaction():
                self._save(job)
            self._wake(job.id)
        self.stop_work(job)

    def wait_finished(self, job: Job, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the job to end; True when it has."""
        deadline = time.monotonic() + timeout
        watch = self._start_watching(job.id)
        try:
            with self._lock:
                while not job.finished and not self._closed and (left := deadline - time.monotonic()) > 0:
                    watch.condition.wait(left)
                return job.finished
        finally:
            self._stop_watching(job.id)

    def suspend_all(self) -> None:
        """On shutdown: stop the work of every live job, leaving them unfinished for the next start to resume."""
        with self._lock:
            jobs = list(self._live.values())
            for job in jobs:
                job.suspended = True
        for job in jobs:
            self.stop_work(job)

    def stop_work(self, job: Job) -> None:
        """Stop the job's in-flight work now: set its stop flag and run its cancel hooks."""
        with self._lock:
            job.stopping.set()
            hooks = list(job._cancel_hooks)
        for hook in hooks:
            hook()


@dataclass
class _Watch:
    """The watchers of one job: the condition they wait on, and how many they are."""

    condition: threading.Condition
    watchers: int = 0


class _Transaction:
    """``with``: BEGIN ... COMMIT, or ROLLBACK on an error. Re-entrant (an inner one joins the outer one)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._outer = False

    def __enter__(self) -> sqlite3.Connection:
        self._outer = not self._db.in_transaction
        if self._outer:
            self._db.execute("BEGIN IMMEDIATE")
        return self._db

    def __exit__(self, kind: object, error: object, trace: object) -> None:
        if not self._outer:
            return
        self._db.execute("COMMIT" if kind is None else "ROLLBACK")


def _exclusive_lock(path: Path) -> Any:
    """Hold ``<path>.lock`` exclusively for this process's lifetime; a second gateway on the same store stops."""
    handle = open(path.with_name(path.name + ".lock"), "a+")  # noqa: SIM115 - held open until close()
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise SystemExit(f"{path} is in use by another gateway; give each gateway its own --job-store") from None
    return handle
