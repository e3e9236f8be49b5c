"""The gateway's use cases, shared by the gRPC servicer and the REST bridge: create, get, list, follow, cancel,
plan, regenerate a frame, keep another of its attempts, list the characters, download its files, export it. Neither
face holds logic of its own beyond authenticating the caller and translating requests and errors.

Storyboards belong to the API key that created them: another key's storyboards are NOT_FOUND to a caller. Each key
has a number at work at once; more wait their turn (``waiting.Turns``), up to a bound (RESOURCE_EXHAUSTED beyond it).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import grpc

from gateway import decisions, exports, outputs, references
from gateway.auth import Caller
from gateway.catalog import (
    NameCatalog,
    adapter_catalog,
    character_catalog,
    reference_picture,
    registered_characters,
    spec_error,
    trigger_token_catalog,
)
from gateway.downstream import Downstream
from gateway.events import EventLog
from gateway.files import checked_names, file_chunks, named_file_chunks
from gateway.frames import FramePolicy
from gateway.metrics import Metrics
from gateway.run import StoryboardRun
from gateway.runs import Runs
from gateway.spec import check_prompt, normalized_spec
from gateway.store import Job, JobStore
from gateway.waiting import Turns
from storyboard.v1 import common_pb2
from storyboard.v1 import storyboards_pb2 as sb
from storyboard_common.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from storyboard_common.validation import check_seed

log = logging.getLogger(__name__)
MAX_IDEMPOTENCY_KEY = 128
ANONYMOUS = Caller(owner="", max_active=0)  # for in-process callers (tests, tools): no limit
# How long Cancel waits for a storyboard's work to stop before it answers with the storyboard still stopping: renders
# stop within a step, so this is seldom reached, and a caller is never held long.
CANCEL_WAIT_SECONDS = 5.0
CHARACTERS_TIMEOUT_SECONDS = 5.0


class StoryboardService:
    """Accepts storyboards, runs them (``max_running`` at once), resumes unfinished ones, and answers about them."""

    def __init__(
        self,
        store: JobStore,
        events: EventLog,
        downstream: Downstream,
        metrics: Metrics,
        policy: FramePolicy,
        max_running: int,
        max_active_of: Callable[[str], int] = lambda _owner: 0,
        max_queued: int = 0,
    ) -> None:
        """``max_active_of(owner)``: how many of a key's storyboards are worked on at once (0: no limit of its own);
        ``max_queued``: how many more a key may have waiting, beyond which creating one is RESOURCE_EXHAUSTED."""
        self._store, self._events, self._downstream = store, events, downstream
        self._metrics, self._policy = metrics, policy
        self._runs = Runs()
        self._turns = Turns(max_running, max_active_of, self._tell_place)
        self._max_queued = max_queued
        self._adapters: NameCatalog = adapter_catalog(downstream.renderer)
        self._characters: NameCatalog = character_catalog(downstream.planner)
        self._trigger_tokens: NameCatalog = trigger_token_catalog(downstream.planner)
        # One export made at a time per storyboard, format and options: a second request for it waits, then reads it.
        self._exports_in_making: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    # -- storyboards --------------------------------------------------------------------------------------------

    async def create(self, spec: sb.StoryboardSpec, idempotency_key: str = "", caller: Caller = ANONYMOUS) -> Job:
        """Check the request at the edge, then create and start a job (or return the one this key made)."""
        self._refuse_while_closing()
        if len(idempotency_key) > MAX_IDEMPOTENCY_KEY or not idempotency_key.isprintable():
            raise InvalidArgument("idempotency_key", f"must be printable and at most {MAX_IDEMPOTENCY_KEY} characters")
        normalized = await self._checked(spec)
        stored = references.without_bytes(normalized)
        job, created = self._store.create(stored, idempotency_key, caller.owner, self._unfinished_limit(caller))
        if created:
            await asyncio.to_thread(references.write_uploads, job.output_dir, normalized.character_references)
            self._start(job)
        return job

    async def _checked(self, spec: sb.StoryboardSpec) -> sb.StoryboardSpec:
        normalized = normalized_spec(spec)
        await self._adapters.check([adapter.name for adapter in normalized.adapters], "spec.adapters[{}].name")
        await self._characters.check(list(normalized.characters), "spec.characters[{}]")
        for index, scene in enumerate(normalized.plan.scenes):
            field = f"spec.plan.scenes[{index}].trigger_tokens[{{}}]"
            await self._trigger_tokens.check(list(scene.trigger_tokens), field)
        uploads = references.check_uploads(normalized.character_references)
        for index, upload in enumerate(uploads):
            field = f"spec.character_references[{index}].trigger_token"
            await self._trigger_tokens.check([upload.trigger_token], field)
        del normalized.character_references[:]
        normalized.character_references.extend(uploads)
        return normalized

    def _start(self, job: Job) -> None:
        run = StoryboardRun(job, self._store, self._downstream, self._metrics, self._policy,
                            cancelled_by_user=lambda: self._runs.cancelled_by_user(job.id),
                            available_adapters=self._adapters.available)  # fmt: skip
        self._runs.start(job.id, lambda: run.run(self._turns.turn(job.id, job.owner)))

    def _tell_place(self, job_id: str, place: int) -> None:
        self._store.append(self._store.get(job_id), queued=sb.Queued(position=place))

    def _unfinished_limit(self, caller: Caller) -> int:
        """How many unfinished storyboards the caller may have: those at work and those waiting (0: no limit)."""
        return caller.max_active + self._max_queued if caller.max_active > 0 else 0

    def _placed(self, storyboard: sb.Storyboard) -> sb.Storyboard:
        storyboard.queue_position = self._turns.place(storyboard.id)
        return storyboard

    def resume_unfinished(self) -> int:
        """Start every job a previous run of the gateway left unfinished, oldest first; returns how many."""
        jobs = self._store.unfinished()
        for job in jobs:
            log.info("resuming storyboard %s", job.id)
            self._start(job)
        return len(jobs)

    def get(self, job_id: str, caller: Caller = ANONYMOUS) -> Job:
        """The job as stored, its storyboard with its place in line while it waits."""
        job = self._store.get(job_id, caller.owner)
        self._placed(job.storyboard)
        return job

    def list(self, page_size: int, page_token: str, caller: Caller = ANONYMOUS) -> tuple[list[sb.Storyboard], str]:
        storyboards, token = self._store.list(page_size, page_token, caller.owner)
        return [self._placed(storyboard) for storyboard in storyboards], token

    async def cancel(self, job_id: str, caller: Caller = ANONYMOUS) -> sb.Storyboard:
        """Cancel the storyboard and answer with it as cancelled, or, if its work takes longer to stop, as
        cancelling (``cancel_requested``, its state still the running one)."""
        job = self._store.get(job_id, caller.owner)
        self._store.request_cancel(job)
        if self._runs.cancel(job.id):
            await self._runs.wait(job.id, CANCEL_WAIT_SECONDS)  # the run ends it CANCELLED
        elif not job.finished:  # nothing works on it in this process (yet)
            failed = sb.Failed(code="CANCELLED", message="storyboard cancelled")
            self._store.finish(job, sb.STORYBOARD_STATE_CANCELLED, failed=failed)
        return self._store.get(job.id).snapshot()

    async def follow(self, job_id: str, after: int, caller: Caller = ANONYMOUS) -> AsyncIterator[sb.StoryboardEvent]:
        """The storyboard's events after ``after`` and then live ones, with frame images attached."""
        job = self._store.get(job_id, caller.owner)
        async for event in self._events.follow_with_images(job.id, after):
            yield event

    async def regenerate(
        self, job_id: str, frame: int, seed: int | None, prompt: str | None, caller: Caller = ANONYMOUS
    ) -> sb.Storyboard:
        """Render one frame of a finished storyboard again, with a new seed (``seed``, else a fresh one) and
        optionally a new prompt; the new attempt is kept whatever it scores, and the files are assembled again."""
        self._refuse_while_closing()
        if seed is not None:
            check_seed(seed, "seed")
        new_prompt = check_prompt(prompt, "prompt") if prompt is not None else None
        self._store.get(job_id, caller.owner)  # NOT_FOUND for another's

        def reopen(job: Job) -> None:
            frames = job.storyboard.frames
            if not job.storyboard.HasField("plan") or not frames:
                raise FailedPrecondition(f"storyboard {job_id} was never planned; there is no frame to regenerate")
            if not 1 <= frame <= len(frames):
                raise InvalidArgument("frame", f"must be between 1 and {len(frames)}, got {frame}")
            number = decisions.next_attempt_number(self._store.attempts(job, frame))
            chosen = seed if seed is not None else decisions.frame_seed(job.storyboard.spec.base_seed, frame, number)
            if new_prompt is not None:
                # The frame now shows what the new prompt says: its caption (and a sketch panel) say so too. What the
                # old prompt's caption was is remembered, for an attempt of it kept again (keep_attempt).
                scene = job.storyboard.plan.scenes[frame - 1]
                decisions.remember_description(job.meta, frame, scene.prompt, scene.description)
                scene.prompt, scene.prompt_2, scene.description = new_prompt, "", new_prompt
            frames[frame - 1].rendered = False
            job.meta["regenerate"] = {"frame": frame, "seed": chosen, "attempt": number}

        reopened = self._store.reopen(job_id, reopen, self._unfinished_limit(caller))
        accepted = reopened.snapshot()  # queued: the run may have moved it on by the time this returns
        self._start(reopened)
        return accepted

    async def keep_attempt(self, job_id: str, frame: int, attempt: int, caller: Caller = ANONYMOUS) -> sb.Storyboard:
        """Make another of an ended storyboard's attempts at ``frame`` the kept one; nothing is rendered, the frame
        file and the documents are written again from it (the run takes the saved attempt as a regeneration's)."""
        self._refuse_while_closing()
        self._store.get(job_id, caller.owner)  # NOT_FOUND for another's

        def reopen(job: Job) -> None:
            frames = job.storyboard.frames
            if not 1 <= frame <= len(frames):
                raise InvalidArgument("frame", f"must be between 1 and {len(frames)}, got {frame}")
            attempts = {a.attempt: a for a in self._store.attempts(job, frame) if (job.output_dir / a.file).is_file()}
            if attempt not in attempts:
                held = ", ".join(str(number) for number in sorted(attempts)) or "none"
                raise InvalidArgument("attempt", f"frame {frame} has no attempt {attempt} (it has: {held})")
            chosen = attempts[attempt]
            scene = job.storyboard.plan.scenes[frame - 1]
            if chosen.prompt != scene.prompt:  # an attempt of another prompt: the scene says what it shows again
                decisions.remember_description(job.meta, frame, scene.prompt, scene.description)
                scene.description = decisions.remembered_description(job.meta, frame, chosen.prompt)
                scene.prompt, scene.prompt_2 = chosen.prompt, ""
            frames[frame - 1].rendered = False
            job.meta["regenerate"] = {"frame": frame, "seed": chosen.seed, "attempt": attempt}

        reopened = self._store.reopen(job_id, reopen, self._unfinished_limit(caller))
        accepted = reopened.snapshot()
        self._start(reopened)
        return accepted

    # -- plans, characters and files ----------------------------------------------------------------------------

    async def characters(self) -> list[common_pb2.CharacterRef]:
        """The registered characters, as the planner lists them."""
        return list(await registered_characters(self._downstream.planner, CHARACTERS_TIMEOUT_SECONDS))

    async def plan(self, spec: sb.StoryboardSpec) -> sb.StoryboardsPlanResponse:
        """A plan for ``spec`` without rendering it, with the files a storyboard's folder would hold for it."""
        normalized = await self._checked(spec)
        try:
            plan = await self._downstream.plan_for(normalized)
        except grpc.aio.AioRpcError as error:
            raise spec_error(error) from None
        files = outputs.plan_files(plan)
        chunks = [sb.FileChunk(name=name, data=data, last=True) for name, data in files.items()]
        return sb.StoryboardsPlanResponse(plan=plan, files=chunks)

    async def reference_picture(self, trigger_token: str, number: int) -> common_pb2.Image:
        """One reference picture of a registered character, as the planner's registry holds it."""
        return await reference_picture(self._downstream.planner, trigger_token, number, CHARACTERS_TIMEOUT_SECONDS)

    def attempt_file(self, job_id: str, frame: int, attempt: int, caller: Caller = ANONYMOUS) -> Path:
        """Where one attempt's image is; NOT_FOUND when the frame has no such attempt (yet)."""
        job = self._store.get(job_id, caller.owner)
        for saved in self._store.attempts(job, frame):
            if saved.attempt == attempt and (job.output_dir / saved.file).is_file():
                return job.output_dir / saved.file
        raise NotFound(f"frame {frame} of storyboard {job_id} has no attempt {attempt}")

    async def download(
        self, job_id: str, names: Sequence[str], caller: Caller = ANONYMOUS
    ) -> AsyncIterator[sb.FileChunk]:
        """The files of the storyboard's folder (``names``, or every one), in chunks; the names are checked first."""
        folder = self._store.get(job_id, caller.owner).output_dir
        async for chunk in file_chunks(folder, checked_names(folder, names)):
            yield chunk

    async def export(
        self, job_id: str, kind_name: str, options: exports.ExportOptions, caller: Caller = ANONYMOUS
    ) -> tuple[exports.ExportFormat, Path]:
        """A completed storyboard's export (``mp4``, ``gif``, ``zip`` or ``csv``) and its file, made in a worker thread
        on first request and again once a frame changed (``exports.cached_export``)."""
        kind = exports.export_format(kind_name)
        job = self._store.get(job_id, caller.owner)
        if job.storyboard.state != sb.STORYBOARD_STATE_COMPLETED:
            state = sb.StoryboardState.Name(job.storyboard.state).removeprefix("STORYBOARD_STATE_").lower()
            raise NotFound(f"storyboard {job_id} is {state}: its exports are made once it has completed")
        making = f"{job.output_dir}/{exports.cache_name(kind, options, '')}"
        lock = self._exports_in_making.setdefault(making, asyncio.Lock())
        async with lock:
            path = await asyncio.to_thread(exports.cached_export, job.output_dir, kind, options)
        return kind, path

    async def export_chunks(
        self, job_id: str, kind_name: str, options: exports.ExportOptions, caller: Caller = ANONYMOUS
    ) -> AsyncIterator[sb.FileChunk]:
        """The export's bytes in chunks named by its file name, e.g. ``animatic.mp4``."""
        kind, path = await self.export(job_id, kind_name, options, caller)
        async for chunk in named_file_chunks(path, kind.file_name):
            yield chunk

    # -- life cycle ---------------------------------------------------------------------------------------------

    def _refuse_while_closing(self) -> None:
        if self._runs.closing:
            raise Unavailable("the gateway is shutting down; try again shortly")

    async def close(self) -> None:
        """Refuse new work and stop the running storyboards (they stay unfinished and resume on the next start)."""
        await self._runs.stop_all()
