"""One storyboard carried from queued to a final state: plan -> make every frame (``gateway.frames``), several at
once -> check the kept frames for repetition -> assemble the documents -> completed. Every step is an event in the
storyboard's log.

A run resumes whatever an earlier one left: the plan is not asked for again, kept frames are not made again, saved
attempts are not rendered again. A run cancelled by its user ends CANCELLED; one stopped because the gateway stops
is left unfinished, for the next start to resume.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc

from gateway import decisions, documents, outputs, references
from gateway.catalog import reference_picture, spec_error
from gateway.document_frames import DocumentFrames
from gateway.downstream import Downstream
from gateway.frames import FrameMaker, FramePolicy, GroupedRender
from gateway.metrics import Metrics
from gateway.store import Job, JobStore
from gateway.validation import Picture, Validation
from storyboard.v1 import common_pb2
from storyboard.v1 import storyboards_pb2 as sb
from storyboard_common.errors import Cancelled, status_for
from storyboard_common.images import MIME_TYPES

log = logging.getLogger(__name__)
SHARED_ATTENTION = "shared-attention"  # RendererInfo.consistency of renderers that draw a batch's frames alike
BATCHING_BACKEND = "diffusers"  # the renderer backend whose batches run together on a device


async def _unknown_adapters() -> frozenset[str] | None:
    return None


@dataclass
class StoryboardRun:
    """The work on one storyboard, from the moment a slot is free until it ends (or the gateway stops)."""

    job: Job
    store: JobStore
    downstream: Downstream
    metrics: Metrics
    policy: FramePolicy
    cancelled_by_user: Callable[[], bool]
    available_adapters: Callable[[], Awaitable[frozenset[str] | None]] = _unknown_adapters

    async def run(self, turn: AbstractAsyncContextManager[None]) -> None:
        """Wait for its ``turn``, then work the storyboard to its end; never raises but for its task's cancellation."""
        try:
            async with turn:
                self.job = self.store.get(self.job.id)  # as it is now: it waited for its slot
                if not self.job.finished:
                    await self._work()
        except asyncio.CancelledError:
            self._stopped()
            raise
        except Exception as error:
            self._fail(_first_cause(error))

    async def _work(self) -> None:
        if self.job.cancel_requested:
            raise Cancelled("storyboard cancelled")
        await asyncio.to_thread(remove_half_written_files, self.job.output_dir)
        plan = await self._plan()
        pictures, notes = await self._reference_pictures(plan)
        validation = await Validation.ask(self.downstream, [c.trigger_token for c in plan.characters])
        validation.notes += notes
        validation.characters = {token: [Picture(p.data, p.mime_type) for p in character.pictures]
                                 for token, character in pictures.items()}  # fmt: skip
        document_frames = DocumentFrames()
        maker = FrameMaker(
            self.job, plan, validation, self.store, self.downstream, self.metrics, self.policy, document_frames,
            pictures,
        )  # fmt: skip
        try:
            await self._make_frames(maker)
            await self._check_repetition(plan, validation)
            files = await self._assemble(plan, validation, document_frames)
        finally:
            document_frames.cancel()
        self._complete(files)

    # -- stages -------------------------------------------------------------------------------------------------

    async def _plan(self) -> common_pb2.Plan:
        """The plan: the one an earlier run made, else the planner's."""
        if self.job.storyboard.HasField("plan"):  # a resume or a regeneration
            plan = self.job.storyboard.plan
            await asyncio.to_thread(refresh_plan_files, self.job.output_dir, plan)
            return plan
        self._set_state(sb.STORYBOARD_STATE_PLANNING)
        with self._stage("planning"):
            try:
                plan = await self.downstream.plan_for(self.job.storyboard.spec)
            except grpc.aio.AioRpcError as error:
                raise spec_error(error) from None
            plan = decisions.with_available_adapters(plan, await self.available_adapters())
        await asyncio.to_thread(outputs.write_plan_files, self.job.output_dir, plan)

        def record(storyboard: sb.Storyboard) -> None:
            storyboard.plan.CopyFrom(plan)
            del storyboard.frames[:]
            for scene in plan.scenes:
                storyboard.frames.add(frame=scene.frame, file_name=outputs.frame_file_name(scene.frame))

        self.store.update(self.job, record, plan_ready=sb.PlanReady(plan=plan))
        return plan

    async def _reference_pictures(
        self, plan: common_pb2.Plan
    ) -> tuple[dict[str, common_pb2.CharacterPictures], list[str]]:
        """The reference pictures of the plan's characters (the registry's and those uploaded for the storyboard),
        and notes on those that could not be had."""
        uploads = await asyncio.to_thread(references.read_uploads, self.job.output_dir, self.job.storyboard.spec)
        planner, timeout = self.downstream.planner, self.downstream.limits.plan_timeout

        async def registry_picture(token: str, number: int) -> common_pb2.Image:
            return await reference_picture(planner, token, number, timeout)

        return await references.character_pictures(plan, uploads, registry_picture)

    async def _make_frames(self, maker: FrameMaker) -> None:
        """Every frame not kept yet (or whose file went missing), ``frames_in_flight`` at a time. A frame that fails
        stops the others at once (their renders are cancelled)."""
        self._set_state(sb.STORYBOARD_STATE_RENDERING)
        present = [s.frame for s in maker.plan.scenes if maker.frame_path(s.frame).is_file()]
        todo = decisions.frames_to_make(self.job.storyboard.frames, present)
        if 1 not in todo and self.job.storyboard.frames:  # frame 1 is kept: it is every frame's reference
            data = await asyncio.to_thread(maker.frame_path(1).read_bytes)
            maker.validation.set_reference(Picture(data, MIME_TYPES["PNG"]))
        maker.grouped = await self._grouped_render(todo, maker)
        order, in_flight = todo, self.policy.frames_in_flight
        if maker.grouped is not None:  # a group's frames must all be in flight for its request to go
            order, in_flight = maker.grouped.order(todo), max(in_flight, *map(len, maker.grouped.groups))
        slots = asyncio.Semaphore(in_flight)
        scenes = {scene.frame: scene for scene in maker.plan.scenes}

        async def make(scene: common_pb2.Scene) -> None:
            async with slots:
                await maker.make(scene)

        with self._stage("rendering"):
            async with asyncio.TaskGroup() as frames:
                for frame in order:
                    frames.create_task(make(scenes[frame]))

    async def _grouped_render(self, todo: Sequence[int], maker: FrameMaker) -> GroupedRender | None:
        """The first attempts of the frames still to render, in groups of those a renderer batches together, when
        that pays: a renderer that batches on a device (diffusers) gets them batched where frames outnumber its
        replicas, and one that shares attention across a batch gets them together, to draw them alike. None when it
        does not pay, for a regeneration (one frame) and for frames asked to be rendered alone."""
        rendered = {attempt.frame for attempt in self.store.attempts(self.job)
                    if attempt.attempt == 1 and (self.job.output_dir / attempt.file).is_file()}  # fmt: skip
        first = [frame for frame in todo if frame not in rendered]
        if len(first) < 2 or "regenerate" in self.job.meta or self.job.storyboard.spec.deterministic:
            return None
        info = await self.downstream.renderer_info()
        shared = info is not None and info.consistency == SHARED_ATTENTION
        if info is None or not (shared or info.backend == BATCHING_BACKEND):
            return None
        size = decisions.group_size(len(first), info.max_batch_size, self.downstream.renderer_replicas,
                                    self.policy.frames_in_flight, shared)  # fmt: skip
        keys = {frame: maker.batch_key(frame) for frame in first}
        groups = decisions.first_attempt_groups(first, keys, size)
        return GroupedRender(self.downstream, groups) if any(len(group) > 1 for group in groups) else None

    async def _check_repetition(self, plan: common_pb2.Plan, validation: Validation) -> None:
        """Score every kept frame together: the final scores (against the final frame 1), and whether any frame is
        nearly the same picture as another. Repetitive frames are reported, not rendered again."""
        folder = self.job.output_dir
        with self._stage("repetition_check"):
            pictures = [
                Picture(await asyncio.to_thread((folder / outputs.frame_file_name(s.frame)).read_bytes), "image/png")
                for s in plan.scenes
            ]
            shown = [list(scene.trigger_tokens) for scene in plan.scenes]
            response = await validation.check_all(pictures, [scene.prompt for scene in plan.scenes], shown)
        if response is None:
            return

        def record(storyboard: sb.Storyboard) -> None:
            for scene, score in zip(plan.scenes, response.scores, strict=True):
                storyboard.frames[scene.frame - 1].score.CopyFrom(score)
                storyboard.frames[scene.frame - 1].verdict = score.verdict

        self.store.update(self.job, record)
        attempts = self.store.attempts(self.job)
        for scene, score in zip(plan.scenes, response.scores, strict=True):
            if score.verdict == common_pb2.VERDICT_REPETITIVE:
                similar = score.most_similar_index
                other = plan.scenes[similar].frame if 0 <= similar < len(plan.scenes) else 0
                kept = outputs.kept_attempt(self.job.storyboard.frames[scene.frame - 1], attempts)
                reason = f"nearly the same picture as frame {other} (checked over all kept frames)"
                self.store.append(self.job, frame_validated=sb.FrameValidated(
                    frame=scene.frame, attempt=kept.attempt if kept else 0, score=score, verdict=score.verdict,
                    reason=reason,
                ))  # fmt: skip

    async def _assemble(
        self, plan: common_pb2.Plan, validation: Validation, document_frames: DocumentFrames
    ) -> list[str]:
        """frames.json, the grid, the PDF and report.json, made once every frame is kept."""
        self._set_state(sb.STORYBOARD_STATE_ASSEMBLING)
        folder = self.job.output_dir
        with self._stage("assembling"), self.metrics.timed("assemble"):
            snapshot, attempts = self.job.snapshot(), self.store.attempts(self.job)
            metadata = await asyncio.to_thread(outputs.write_frames_metadata, folder, plan, snapshot.frames, attempts)
            text = documents.document_text(snapshot, attempts, validation.unready_reason)
            frames = [await document_frames.get(folder / outputs.frame_file_name(s.frame)) for s in plan.scenes]
            grid, pdf = await asyncio.to_thread(documents.write_documents, folder, plan, frames, text)
        report = outputs.storyboard_report(
            snapshot, attempts, thresholds=validation.thresholds, validator_model=validation.model,
            stage_seconds=self.job.meta.get("stage_seconds", {}), notes=validation.report_notes(),
        )  # fmt: skip
        report_file = await asyncio.to_thread(outputs.write_report, folder, report)
        frame_files = [outputs.frame_file_name(scene.frame) for scene in plan.scenes]
        return [outputs.SCENE_BREAKDOWN, outputs.SDXL_PROMPTS, *frame_files, grid, metadata, report_file, pdf]

    # -- ends ---------------------------------------------------------------------------------------------------

    def _complete(self, files: list[str]) -> None:
        self._count_end("completed")
        self.store.update_meta(self.job, lambda meta: meta.pop("regenerate", None))
        snapshot = self.job.snapshot()
        snapshot.state = sb.STORYBOARD_STATE_COMPLETED
        completed = sb.Completed(storyboard=snapshot, files=files)
        self.store.finish(self.job, sb.STORYBOARD_STATE_COMPLETED, completed=completed)

    def _stopped(self) -> None:
        """The run's task was cancelled: by its user (it ends CANCELLED), or by the gateway stopping (it stays
        unfinished, to be resumed by the next start)."""
        if not self.cancelled_by_user():
            log.info("storyboard %s suspended by the shutdown; the next start resumes it", self.job.id)
            return
        self._end_cancelled()

    def _end_cancelled(self) -> None:
        if self.store.get(self.job.id).finished:
            return  # it ended before the cancel reached it
        self.job.storyboard.cancel_requested = True
        self._count_end("cancelled")
        failed = sb.Failed(code="CANCELLED", message="storyboard cancelled; frames already written stay")
        self.store.finish(self.job, sb.STORYBOARD_STATE_CANCELLED, failed=failed)

    def _fail(self, error: BaseException) -> None:
        if isinstance(error, Cancelled) or self.cancelled_by_user():
            self._end_cancelled()
            return
        status = status_for(error)
        if status is None:
            log.error("storyboard %s failed on a bug", self.job.id, exc_info=error)
            code, message = "INTERNAL", "internal error in the gateway"
        else:
            code, message = status[0].name, status[1]
            log.info("storyboard %s failed: %s %s", self.job.id, code, message)
        self._count_end("failed")
        failed = sb.Failed(code=code, message=message)
        self.store.finish(self.job, sb.STORYBOARD_STATE_FAILED, error=message, failed=failed)

    def _count_end(self, state: str) -> None:
        """Count a storyboard's end once: a regeneration ends it again, and is counted as a retry instead."""
        if "regenerate" not in self.job.meta:
            self.metrics.storyboards.labels(state).inc()

    # -- bookkeeping --------------------------------------------------------------------------------------------

    def _set_state(self, state: int) -> None:
        self.store.update(self.job, lambda storyboard: setattr(storyboard, "state", state))

    @contextmanager
    def _stage(self, name: str) -> Iterator[None]:
        """Add the time the ``with`` body took to the job's saved stage timings (they add up across resumes)."""
        started = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - started

            def add(meta: dict[str, dict[str, float]]) -> None:
                stages = meta.setdefault("stage_seconds", {})
                stages[name] = stages.get(name, 0.0) + elapsed

            self.store.update_meta(self.job, add)


def _first_cause(error: BaseException) -> BaseException:
    """The error a failed frame raised, out of the group its task group raises."""
    while isinstance(error, BaseExceptionGroup):
        causes = [e for e in error.exceptions if not isinstance(e, asyncio.CancelledError)]
        error = causes[0] if causes else error.exceptions[0]
    return error


def refresh_plan_files(folder: Path, plan: common_pb2.Plan) -> None:
    """On a resume or a regeneration: the prompts may have changed; the breakdown is written if it went missing (it
    keeps the time it was first written)."""
    if not (folder / outputs.SCENE_BREAKDOWN).exists():
        outputs.write_plan_files(folder, plan)
    else:
        outputs.write_json_atomic(folder / outputs.SDXL_PROMPTS, outputs.sdxl_prompts(plan))


def remove_half_written_files(folder: Path) -> None:
    """Delete the hidden temporaries of atomic writes (``.NAME.XXXXXXXX.tmp``) that a killed gateway left in a job's
    folder: nothing will finish them, and only this run writes to the folder now."""
    if folder.is_dir():
        for path in folder.rglob(".*.tmp"):
            path.unlink(missing_ok=True)
