"""The job store: storyboards, their attempts and their events in SQLite, so that a gateway that crashed or restarted
resumes its unfinished work. It is a store and nothing more: who follows the events (``gateway.events``) and who
works on which storyboard (``gateway.runs``) live elsewhere.

Three tables (stdlib ``sqlite3``, WAL journal, one connection used under one lock):

    jobs      one row per storyboard: the ``Storyboard`` message as protobuf bytes (the request with its defaults,
              the plan, each frame's state: attempts, seeds tried, kept seed, scores), the columns queries need
              (owner, state, idempotency key, creation time, whether a cancel was asked for), and bookkeeping the
              message has no field for (a pending regeneration, stage timings) as JSON.
    attempts  one row per rendered attempt at a frame: seed, prompt, image file, renderer timings, scores, verdict.
    events    every event of every storyboard, numbered from 1 per storyboard. Progress events are stored too,
              so sequence numbers never repeat or jump across a restart and Watch resumes after any number. Image
              bytes are not stored: an event that carries an image names the attempt file that holds it.

Every change is one transaction, and an event is written in the same transaction as the change it tells of, so a
crash never leaves one without the other. One gateway owns a store file at a time (an exclusive lock on
``<file>.lock``).
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
from collections.abc import Callable, Sequence
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
ACTIVE_STATES = tuple(state for state in sb.StoryboardState.values() if state and state not in TERMINAL_STATES)
WORKING_STATES = (sb.STORYBOARD_STATE_PLANNING, sb.STORYBOARD_STATE_RENDERING, sb.STORYBOARD_STATE_ASSEMBLING)
ID_PATTERN = r"^\d{8}-\d{6}-[0-9a-f]{8}$"
_ID = re.compile(ID_PATTERN)
DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE = 20, 100
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
    """One storyboard as the store holds it: its state and bookkeeping, and the folder of its files."""

    storyboard: sb.Storyboard
    output_dir: Path
    owner: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.storyboard.id

    @property
    def finished(self) -> bool:
        return self.storyboard.state in TERMINAL_STATES

    @property
    def cancel_requested(self) -> bool:
        return self.storyboard.cancel_requested

    def snapshot(self) -> sb.Storyboard:
        """A copy of the storyboard, safe to send while the job goes on."""
        copy = sb.Storyboard()
        copy.CopyFrom(self.storyboard)
        return copy


class JobStore:
    """Jobs, attempts and events in one SQLite file. ``on_event(job_id)`` is called after every commit that logged an
    event of that job."""

    def __init__(self, path: Path, outputs_root: Path, on_event: Callable[[str], None] = lambda _job_id: None) -> None:
        self._outputs_root = outputs_root
        self.on_event = on_event
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
        self._closed = False

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
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
            if idempotency_key and (earlier := self._by_key(owner, idempotency_key)) is not None:
                if earlier.storyboard.spec != spec:
                    raise AlreadyExists(
                        f"idempotency_key: {idempotency_key!r} was used for another request (storyboard "
                        f"{earlier.id}); send a new key for a new request"
                    )
                return earlier, False
            _check_active_limit(self._db, owner, max_active)
            job = _new_job(self._db, self._outputs_root, spec, owner)
            with self._transaction():
                self._db.execute(
                    "INSERT INTO jobs (id, owner, idempotency_key, state, created, storyboard, meta) "
                    "VALUES (?, ?, ?, ?, ?, ?, '{}')",
                    (job.id, owner, idempotency_key or None, job.storyboard.state, time.time(), b""),
                )
                self._append(job, None, accepted=sb.Accepted(storyboard=job.snapshot()))
                self._save(job)
        self.on_event(job.id)
        return job, True

    def _by_key(self, owner: str, key: str) -> Job | None:
        row = self._db.execute("SELECT id FROM jobs WHERE owner = ? AND idempotency_key = ?", (owner, key)).fetchone()
        return None if row is None else self._load(row[0])

    def get(self, job_id: str, owner: str | None = None) -> Job:
        """The job with this id, as stored now; NotFound also when it belongs to another owner (``None``: any)."""
        check_job_id(job_id)
        with self._lock:
            job = self._load(job_id)
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
        storyboard.last_event_sequence = self._last_sequence(job_id)
        # The folder is where this gateway keeps outputs now, whatever it was when the job was made.
        storyboard.output_dir = str(self._outputs_root / job_id)
        storyboard.cancel_requested = bool(row[3])  # the column is the record; stores before the field had only it
        return Job(storyboard, self._outputs_root / job_id, owner=row[1], meta=json.loads(row[2]))

    def _last_sequence(self, job_id: str) -> int:
        (last,) = self._db.execute("SELECT MAX(sequence) FROM events WHERE job_id = ?", (job_id,)).fetchone()
        return last or 0

    def list(self, page_size: int, page_token: str, owner: str) -> tuple[list[sb.Storyboard], str]:
        """A page of the owner's storyboards, newest first; the token is the id the next page starts after."""
        if page_size < 0 or page_size > MAX_PAGE_SIZE:
            raise InvalidArgument("page_size", f"must be between 1 and {MAX_PAGE_SIZE}, or 0 for {DEFAULT_PAGE_SIZE}")
        size = page_size or DEFAULT_PAGE_SIZE
        with self._lock:
            query, params = "SELECT id FROM jobs WHERE owner = ?", [owner]
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
            page = [self._load(job_id).storyboard for job_id in ids[:size]]
        return page, (ids[size - 1] if len(ids) > size else "")

    def unfinished(self) -> list[Job]:
        """The jobs that have not ended, oldest first."""
        marks = ",".join("?" * len(ACTIVE_STATES))
        with self._lock:
            rows = self._db.execute(
                f"SELECT id FROM jobs WHERE state IN ({marks}) ORDER BY created, rowid", ACTIVE_STATES
            ).fetchall()
            return [self._load(job_id) for (job_id,) in rows]

    def count(self, states: Sequence[int]) -> int:
        """How many jobs are in one of ``states`` (e.g. queued: the queue depth)."""
        marks = ",".join("?" * len(states))
        with self._lock:
            if self._closed:
                return 0
            return self._db.execute(f"SELECT COUNT(*) FROM jobs WHERE state IN ({marks})", tuple(states)).fetchone()[0]

    # -- changes ------------------------------------------------------------------------------------------------

    def update(
        self,
        job: Job,
        change: Callable[[sb.Storyboard], object],
        *,
        attempt: AttemptInfo | None = None,
        image_file: str | None = None,
        **event: Any,
    ) -> None:
        """Apply ``change`` to the job's state and save it; with ``attempt``, save that attempt in the same step, and
        with an event (``frame_rendered=...``, as for ``append``) log it in the same transaction too."""
        with self._lock:
            change(job.storyboard)
            job.storyboard.update_time.CopyFrom(_now())
            with self._transaction():
                if event:
                    self._append(job, image_file, **event)
                self._save(job)
                if attempt is not None:
                    self._save_attempt(job, attempt)
        if event:
            self.on_event(job.id)

    def update_meta(self, job: Job, change: Callable[[dict[str, Any]], object]) -> None:
        """Apply ``change`` to the job's bookkeeping (stage timings, a pending regeneration) and save it."""
        with self._lock:
            change(job.meta)
            with self._transaction():
                self._db.execute("UPDATE jobs SET meta = ? WHERE id = ?", (json.dumps(job.meta), job.id))

    def _save(self, job: Job) -> None:
        # Not the cancel: the run that saves its copy of the job may not have heard of it yet (request_cancel).
        self._db.execute(
            "UPDATE jobs SET state = ?, storyboard = ?, meta = ? WHERE id = ?",
            (job.storyboard.state, job.storyboard.SerializeToString(), json.dumps(job.meta), job.id),
        )

    def request_cancel(self, job: Job) -> None:
        """A user's cancel: recorded (it holds across a restart) unless the job already ended."""
        with self._lock:
            job.storyboard.cancel_requested = not job.finished
            with self._transaction():
                self._db.execute(
                    "UPDATE jobs SET cancel_requested = ? WHERE id = ?", (int(job.storyboard.cancel_requested), job.id)
                )

    def reopen(self, job_id: str, change: Callable[[Job], object], max_active: int) -> Job:
        """Put a finished job back to work (a frame regeneration): ``change`` edits it and the job becomes queued
        again. FailedPrecondition while it runs; ResourceExhausted when its owner is at the limit."""
        with self._lock:
            job = self._load(job_id)
            if not job.finished:
                raise FailedPrecondition(f"storyboard {job_id} is still being worked on; try again once it has ended")
            _check_active_limit(self._db, job.owner, max_active)
            change(job)
            job.storyboard.state = sb.STORYBOARD_STATE_QUEUED
            job.storyboard.error = ""
            job.storyboard.cancel_requested = False
            job.storyboard.update_time.CopyFrom(_now())
            with self._transaction():
                self._save(job)
                self._db.execute("UPDATE jobs SET cancel_requested = 0 WHERE id = ?", (job_id,))
            return job

    def finish(self, job: Job, state: int, error: str = "", **event: Any) -> None:
        """End the job: its final state and its final event in one transaction, so that a watcher that sees the job
        finished has also seen its last event."""
        with self._lock:
            job.storyboard.state = state
            job.storyboard.error = error
            job.storyboard.update_time.CopyFrom(_now())
            with self._transaction():
                self._append(job, None, **event)
                self._save(job)
        self.on_event(job.id)

    # -- attempts -----------------------------------------------------------------------------------------------

    def save_attempt(self, job: Job, attempt: AttemptInfo, **event: Any) -> None:
        """Insert or replace one attempt (e.g. once validated), logging ``event`` (if given) in the same transaction."""
        with self._lock, self._transaction():
            self._save_attempt(job, attempt)
            if event:
                self._append(job, None, **event)
        if event:
            self.on_event(job.id)

    def _save_attempt(self, job: Job, a: AttemptInfo) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO attempts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                job.id, a.frame, a.attempt, a.seed, a.prompt, a.file, a.backend,
                a.timings.SerializeToString() if a.timings is not None else None, a.render_seconds, int(a.validated),
                a.score.SerializeToString() if a.score is not None else None, a.verdict, a.reason, a.validate_seconds,
            ),
        )  # fmt: skip

    def attempts(self, job: Job, frame: int | None = None) -> list[AttemptInfo]:
        """The job's attempts (of one frame, when given), in frame and attempt order."""
        query = "SELECT * FROM attempts WHERE job_id = ?" + (" AND frame = ?" if frame is not None else "")
        params = (job.id,) if frame is None else (job.id, frame)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY frame, attempt", params).fetchall()
        return [_attempt(row) for row in rows]

    # -- events -------------------------------------------------------------------------------------------------

    def append(self, job: Job, image_file: str | None = None, **event: Any) -> sb.StoryboardEvent:
        """Log one event, e.g. ``append(job, plan_ready=sb.PlanReady(plan=plan))``. ``image_file`` names the file
        (relative to the job's folder) whose bytes the event carries when sent."""
        with self._lock, self._transaction():
            message = self._append(job, image_file, **event)
        self.on_event(job.id)
        return message

    def _append(self, job: Job, image_file: str | None, **event: Any) -> sb.StoryboardEvent:
        # Numbered from the log itself, not from the job's copy: whoever logs next, the numbers never repeat.
        sequence = self._last_sequence(job.id) + 1
        message = sb.StoryboardEvent(storyboard_id=job.id, sequence=sequence, time=_now(), **event)
        self._db.execute(
            "INSERT INTO events (job_id, sequence, event, image_file) VALUES (?, ?, ?, ?)",
            (job.id, sequence, message.SerializeToString(), image_file),
        )
        job.storyboard.last_event_sequence = sequence
        return message

    def events_after(self, job_id: str, after: int, limit: int) -> tuple[list[LoggedEvent], bool]:
        """Up to ``limit`` events after sequence ``after``, and whether the job has ended (read first: a job seen
        ended has its final event logged)."""
        with self._lock:
            if self._closed:
                return [], True
            state = self._db.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
            rows = self._db.execute(
                "SELECT event, image_file FROM events WHERE job_id = ? AND sequence > ? ORDER BY sequence LIMIT ?",
                (job_id, after, limit),
            ).fetchall()
        folder = self._outputs_root / job_id
        events = [
            LoggedEvent(sb.StoryboardEvent.FromString(data), folder / image if image else None) for data, image in rows
        ]
        return events, state is None or state[0] in TERMINAL_STATES


def _new_job(db: sqlite3.Connection, outputs_root: Path, spec: sb.StoryboardSpec, owner: str) -> Job:
    job_id = new_job_id()
    while db.execute("SELECT 1 FROM jobs WHERE id = ?", (job_id,)).fetchone():
        job_id = new_job_id()
    now = _now()
    storyboard = sb.Storyboard(
        id=job_id,
        state=sb.STORYBOARD_STATE_QUEUED,
        spec=spec,
        output_dir=str(outputs_root / job_id),
        create_time=now,
        update_time=now,
    )
    return Job(storyboard=storyboard, output_dir=outputs_root / job_id, owner=owner)


def _check_active_limit(db: sqlite3.Connection, owner: str, max_active: int) -> None:
    if max_active <= 0:
        return
    marks = ",".join("?" * len(ACTIVE_STATES))
    # A storyboard whose cancel was accepted no longer counts, though its work may take a moment to stop: the
    # refusal tells the caller to cancel one, and a retry right after the cancel must then get through.
    (active,) = db.execute(
        f"SELECT COUNT(*) FROM jobs WHERE owner = ? AND cancel_requested = 0 AND state IN ({marks})",
        (owner, *ACTIVE_STATES),
    ).fetchone()
    if active >= max_active:
        raise ResourceExhausted(
            f"this API key already has {active} unfinished storyboards, at work or waiting (the limit is "
            f"{max_active}); wait for one to finish or cancel one"
        )


def _attempt(row: Sequence[Any]) -> AttemptInfo:
    return AttemptInfo(
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
        if self._outer:
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
