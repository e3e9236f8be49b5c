"""The gateway's use cases, shared by the gRPC servicer and the REST bridge: create, get, list, follow, cancel,
plan, regenerate a frame. Neither front end holds logic of its own beyond authenticating the caller and translating
requests and errors.

Storyboards belong to the API key that created them: another key's storyboards are NOT_FOUND to a caller, and each
key may have a limited number unfinished at once (RESOURCE_EXHAUSTED beyond it).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import grpc

from gateway import outputs
from gateway.auth import Caller
from gateway.catalog import NameCatalog, adapter_catalog, character_catalog, spec_error
from gateway.files import checked_names, file_chunks
from gateway.jobs import Job, JobStore, LoggedEvent
from gateway.orchestrator import Downstream, Orchestrator
from gateway.spec import check_prompt, frame_seed, normalized_spec
from storyboard.v1 import storyboards_pb2 as sb
from storyboard_common.errors import FailedPrecondition, InvalidArgument, Unavailable
from storyboard_common.v1 import planner_pb2
from storyboard_common.validation import check_seed

log = logging.getLogger(__name__)
MAX_IDEMPOTENCY_KEY = 128
# How long Cancel waits for a storyboard's work to stop before it answers with the storyboard still stopping: renders
# stop within a step, so this is seldom reached, and a caller is never held long.
CANCEL_WAIT_SECONDS = 5.0
ANONYMOUS = Caller(owner="", max_active=0)  # for in-process callers (tests, tools): no limit


class StoryboardService:
    """Accepts storyboards, runs them on a bounded pool, resumes unfinished ones, and answers questions about them."""

    def __init__(
        self,
        store: JobStore,
        downstream: Downstream,
        orchestrator: Orchestrator,
        max_running: int,
        plan_timeout: float,
        adapters: NameCatalog | None = None,
        characters: NameCatalog | None = None,
    ) -> None:
        self._store = store
        self._downstream = downstream
        self._orchestrator = orchestrator
        self._plan_timeout = plan_timeout
        self._adapters = adapters or adapter_catalog(downstream.renderer)
        self._characters = characters or character_catalog(downstream.planner)
        self._pool = ThreadPoolExecutor(max_workers=max_running, thread_name_prefix="storyboard")
        self._closing = threading.Event()

    def create(self, spec: sb.StoryboardSpec, idempotency_key: str = "", caller: Caller = ANONYMOUS) -> Job:
        """Check the request at the edge, then create and schedule a job (or return the one this key made)."""
        self._refuse_while_closing()
        if len(idempotency_key) > MAX_IDEMPOTENCY_KEY or not idempotency_key.isprintable():
            raise InvalidArgument("idempotency_key", f"must be printable and at most {MAX_IDEMPOTENCY_KEY} characters")
        normalized = normalized_spec(spec)
        self._adapters.check([adapter.name for adapter in normalized.adapters], "spec.adapters[{}].name")
        self._characters.check(list(normalized.characters), "spec.characters[{}]")
        job, created = self._store.create(normalized, idempotency_key, caller.owner, caller.max_active)
        if created:
            self._pool.submit(self._orchestrator.run, job)
        return job

    def resume_unfinished(self) -> int:
        """Schedule every job a previous run of the gateway left unfinished, oldest first; returns how many."""
        jobs = self._store.unfinished()
        for job in jobs:
            log.info("resuming storyboard %s", job.id)
            self._pool.submit(self._orchestrator.run, job)
        return len(jobs)

    def get(self, job_id: str, caller: Caller = ANONYMOUS) -> Job:
        return self._store.get(job_id, caller.owner)

    def snapshot(self, job: Job) -> sb.Storyboard:
        return self._store.snapshot(job)

    def list(self, page_size: int, page_token: str, caller: Caller = ANONYMOUS) -> tuple[list[sb.Storyboard], str]:
        return self._store.list(page_size, page_token, caller.owner)

    def cancel(self, job_id: str, caller: Caller = ANONYMOUS) -> sb.Storyboard:
        """Cancel the storyboard and answer with it as cancelled, or, if its work takes longer to stop, as
        cancelling (``cancel_requested``, its state still the running one)."""
        job = self._store.get(job_id, caller.owner)
        self._store.request_cancel(job)
        if job.storyboard.state == sb.STORYBOARD_STATE_QUEUED:
            # Nothing runs yet; end it now so that watchers are released (the runner skips finished jobs).
            self._store.finish(
                job, sb.STORYBOARD_STATE_CANCELLED, failed=sb.Failed(code="CANCELLED", message="storyboard cancelled")
            )
        elif not job.finished:
            self._store.wait_finished(job, CANCEL_WAIT_SECONDS)
        return self._store.snapshot(job)

    def follow(self, job: Job, after_sequence: int, is_active: Callable[[], bool]) -> Iterator[sb.StoryboardEvent]:
        """The job's events after ``after_sequence`` and then live ones, with frame images attached."""
        for logged in self._store.follow(job, after_sequence, is_active):
            yield with_image(logged)

    def plan(self, spec: sb.StoryboardSpec) -> sb.StoryboardsPlanResponse:
        """A plan for ``spec`` without rendering it, with the files a storyboard's folder would hold for it."""
        normalized = normalized_spec(spec)
        self._adapters.check([adapter.name for adapter in normalized.adapters], "spec.adapters[{}].name")
        self._characters.check(list(normalized.characters), "spec.characters[{}]")
        options = planner_pb2.PlanOptions(temperature=normalized.temperature, seed=normalized.base_seed)
        if normalized.HasField("num_frames"):
            options.num_frames = normalized.num_frames
        options.characters.extend(normalized.characters)
        try:
            response = self._downstream.planner.Plan(
                planner_pb2.PlanRequest(story=normalized.story, options=options), timeout=self._plan_timeout
            )
        except grpc.RpcError as error:
            raise spec_error(error) from None
        files = outputs.plan_files(response.plan)
        return sb.StoryboardsPlanResponse(
            plan=response.plan, files=[sb.FileChunk(name=name, data=data, last=True) for name, data in files.items()]
        )

    def download(self, job_id: str, names: Sequence[str], caller: Caller = ANONYMOUS) -> Iterator[sb.FileChunk]:
        """The files of the storyboard's folder (``names``, or every one), in chunks; the names are checked first."""
        job = self._store.get(job_id, caller.owner)
        return file_chunks(job.output_dir, checked_names(job.output_dir, names))

    def regenerate(
        self, job_id: str, frame: int, seed: int | None, prompt: str | None, caller: Caller = ANONYMOUS
    ) -> sb.Storyboard:
        """Render one frame of a finished storyboard again, with a new seed (``seed``, else a fresh one) and
        optionally a new prompt; the new attempt is kept whatever it scores, and the files are assembled again."""
        self._refuse_while_closing()
        if seed is not None:
            check_seed(seed, "seed")
        new_prompt = check_prompt(prompt, "prompt") if prompt is not None else None
        job = self._store.get(job_id, caller.owner)

        def reopen(current: Job) -> None:
            frames = current.storyboard.frames
            if not current.storyboard.HasField("plan") or not frames:
                raise FailedPrecondition(f"storyboard {job_id} was never planned; there is no frame to regenerate")
            if not 1 <= frame <= len(frames):
                raise InvalidArgument("frame", f"must be between 1 and {len(frames)}, got {frame}")
            attempt_no = max((a.attempt for a in self._store.attempts(current, frame)), default=0) + 1
            chosen = seed if seed is not None else frame_seed(current.storyboard.spec.base_seed, frame, attempt_no)
            if new_prompt is not None:
                # The frame now shows what the new prompt says: its caption (and a sketch panel) say so too.
                scene = current.storyboard.plan.scenes[frame - 1]
                scene.prompt, scene.prompt_2, scene.description = new_prompt, "", new_prompt
            frames[frame - 1].rendered = False
            current.meta["regenerate"] = {"frame": frame, "seed": chosen, "attempt": attempt_no}

        reopened = self._store.reopen(job, reopen, caller.max_active)
        accepted = self._store.snapshot(reopened)  # queued: the run may have moved it on by the time it returns
        self._pool.submit(self._orchestrator.run, reopened)
        return accepted

    def _refuse_while_closing(self) -> None:
        if self._closing.is_set():
            raise Unavailable("the gateway is shutting down; try again shortly")

    def close(self) -> None:
        """Refuse new work, stop the running storyboards (they stay unfinished and resume on the next start),
        and release the downstream channels and the store."""
        self._closing.set()
        self._store.suspend_all()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._downstream.close()
        self._store.close()


def with_image(logged: LoggedEvent) -> sb.StoryboardEvent:
    """The event to send: a copy with the frame's image bytes read back from the file they were written to."""
    if logged.image_path is None:
        return logged.event
    event = sb.StoryboardEvent()
    event.CopyFrom(logged.event)
    try:
        event.frame_rendered.image.data = logged.image_path.read_bytes()
    except FileNotFoundError:
        log.warning("the image of event %d of %s is gone from its folder", event.sequence, event.storyboard_id)
    return event
