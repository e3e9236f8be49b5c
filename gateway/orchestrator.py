"""Runs one storyboard: plan -> render every frame -> validate each as it arrives -> retry weak frames -> check the
kept frames for repetition -> assemble.

Frames are rendered as one small call each, several in flight, spread over the renderer replicas by the channel's
round_robin policy. Each frame is validated as soon as it arrives, against frame 1 (the character reference), so
rendering and validation overlap. Every step is an event in the job's log.

Every attempt is saved (its file, seed, timings, scores) before the next step, so ``run`` also resumes a job that a
crash or a restart interrupted: the plan is not asked for again, kept frames are not touched, and an attempt whose
file exists is not rendered again (a frame is a pure function of its spec and seed).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
from PIL import Image

from gateway import documents, outputs
from gateway.catalog import spec_error
from gateway.jobs import Job, JobStore
from gateway.metrics import Metrics
from gateway.outputs import AttemptInfo
from gateway.spec import frame_adapters, frame_seed
from gateway.validation import (
    FrameScoreAnswer,
    FrameScores,
    Picture,
    ValidationContext,
    ValidatorCalls,
)
from storyboard.v1 import common_pb2
from storyboard.v1 import storyboards_pb2 as sb
from storyboard_common import images
from storyboard_common.channels import ChannelSecurity, connect_every_replica, open_channel
from storyboard_common.errors import Cancelled, ServiceError, status_for
from storyboard_common.images import EXTENSIONS, MIME_TYPES
from storyboard_common.progress import ProgressThrottle
from storyboard_common.v1 import planner_pb2, planner_pb2_grpc, renderer_pb2, renderer_pb2_grpc, validator_pb2_grpc

log = logging.getLogger(__name__)
_MIME_BY_EXTENSION = {extension: mime for mime, extension in EXTENSIONS.items()}
_VALIDATOR_GONE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
# A renderer that refuses a frame as busy (RESOURCE_EXHAUSTED before the frame started) is asked again after a
# jittered, doubling wait, at most this many times and never past the frame's deadline.
BUSY_BACKOFF_FIRST, BUSY_BACKOFF_MAX, MAX_BUSY_WAITS = 0.2, 5.0, 60
# A render lost while its replica was at work is sent again without counting against the retries; a frame that
# takes this many replicas down with it (out of memory, say) fails instead of taking every replica down in turn.
MAX_LOST_AT_WORK = 5
KEPT_PNG_LEVEL = 6  # frame_NNN.png made from a WebP or JPEG frame: zlib's default, as Pillow saves a PNG


@dataclass
class Downstream:
    """Stubs of the services the gateway drives."""

    planner: planner_pb2_grpc.PlannerStub
    renderer: renderer_pb2_grpc.RendererStub
    validator: validator_pb2_grpc.ValidatorStub | None
    channels: list[grpc.Channel]  # planner, renderers, then the validator's if any

    @classmethod
    def connect(
        cls, planner: str, renderers: str, validator: str, security: ChannelSecurity | None = None
    ) -> Downstream:
        planner_channel = open_channel(planner, retry_services=("storyboard.v1.Planner",), security=security)
        renderer_channel = open_channel(renderers, retry_services=("storyboard.v1.Renderer",), security=security)
        channels = [planner_channel, renderer_channel]
        validator_stub = None
        if validator:
            validator_channel = open_channel(validator, retry_services=("storyboard.v1.Validator",), security=security)
            channels.append(validator_channel)
            validator_stub = validator_pb2_grpc.ValidatorStub(validator_channel)
        return cls(
            planner_pb2_grpc.PlannerStub(planner_channel),
            renderer_pb2_grpc.RendererStub(renderer_channel),
            validator_stub,
            channels,
        )

    def connect_renderers(self, addresses: str, security: ChannelSecurity | None = None) -> int:
        """Connect to every renderer replica before the first frame, so that frames are spread over all of them from
        the first storyboard on; returns how many replicas accepted a connection."""
        return connect_every_replica(self.channels[1], addresses, security)

    def close(self) -> None:
        for channel in self.channels:
            channel.close()


@dataclass(frozen=True)
class Policy:
    """What the gateway settings decide about running a storyboard."""

    max_retries: int = 2
    render_unavailable_retries: int = 3
    frames_in_flight: int = 8
    plan_timeout: float = 120.0
    frame_timeout: float = 600.0
    validate_timeout: float = 60.0
    progress_interval: float = 0.1  # least seconds between two progress events of a frame (first and last go out)


class Orchestrator:
    """Carries jobs from queued to a final state. Stateless apart from the store it reports to."""

    def __init__(self, store: JobStore, downstream: Downstream, policy: Policy, metrics: Metrics | None = None) -> None:
        self._store = store
        self._downstream = downstream
        self._policy = policy
        self._metrics = metrics or Metrics()
        self._validator = (
            ValidatorCalls(downstream.validator, policy.validate_timeout, self._metrics)
            if downstream.validator
            else None
        )

    def run(self, job: Job) -> None:
        """Run (or resume) ``job`` to completion, failure or cancellation; never raises. A job stopped because the
        gateway shuts down is left unfinished, to be resumed by the next start."""
        if job.finished:
            return  # cancelled while queued
        try:
            if job.cancel_requested:
                raise Cancelled("storyboard cancelled")
            self._raise_if_cancelled(job)
            _remove_half_written_files(job.output_dir)
            if job.storyboard.HasField("plan"):  # a resume or a regeneration
                plan = job.storyboard.plan
                self._refresh_plan_files(job, plan)
            else:
                plan = self._plan(job)  # writes the plan files
            validation = self._render_all(job, plan)
            self._check_repetition(job, plan, validation)
            files = self._assemble(job, plan, validation)
            self._count_end(job, "completed")
            self._store.update_meta(job, lambda meta: meta.pop("regenerate", None))
            snapshot = self._store.snapshot(job)
            snapshot.state = sb.STORYBOARD_STATE_COMPLETED
            self._store.finish(
                job, sb.STORYBOARD_STATE_COMPLETED, completed=sb.Completed(storyboard=snapshot, files=files)
            )
        except Exception as error:
            self._fail(job, error)

    # -- stages -------------------------------------------------------------------------------------------------

    def _plan(self, job: Job) -> common_pb2.Plan:
        self._set_state(job, sb.STORYBOARD_STATE_PLANNING)
        spec = job.storyboard.spec
        options = planner_pb2.PlanOptions(temperature=spec.temperature, seed=spec.base_seed)
        if spec.HasField("num_frames"):
            options.num_frames = spec.num_frames
        options.characters.extend(spec.characters)
        with self._stage(job, "planning"), self._metrics.timed("plan"):
            try:
                response = self._downstream.planner.Plan(
                    planner_pb2.PlanRequest(story=spec.story, options=options), timeout=self._policy.plan_timeout
                )
            except grpc.RpcError as error:
                raise spec_error(error) from None
        plan = response.plan
        outputs.write_plan_files(job.output_dir, plan)

        def record(storyboard: sb.Storyboard) -> None:
            storyboard.plan.CopyFrom(plan)
            del storyboard.frames[:]
            for scene in plan.scenes:
                storyboard.frames.add(frame=scene.frame, file_name=outputs.frame_file_name(scene.frame))

        self._store.update(job, record, plan_ready=sb.PlanReady(plan=plan))
        return plan

    def _refresh_plan_files(self, job: Job, plan: common_pb2.Plan) -> None:
        """On a resume or regeneration: the prompts may have changed; the breakdown is written if it went missing."""
        if not (job.output_dir / outputs.SCENE_BREAKDOWN).exists():
            outputs.write_plan_files(job.output_dir, plan)
        else:
            outputs.write_json_atomic(job.output_dir / outputs.SDXL_PROMPTS, outputs.sdxl_prompts(plan))

    def _render_all(self, job: Job, plan: common_pb2.Plan) -> ValidationContext:
        """Produce every frame not yet kept, side by side."""
        self._set_state(job, sb.STORYBOARD_STATE_RENDERING)
        validation = self._validation_context(plan)
        frames = job.storyboard.frames
        self._forget_missing_frames(job, plan)
        if frames[0].rendered:
            validation.set_reference(Picture.of(self._frame_path(job, 1).read_bytes(), MIME_TYPES["PNG"]))
        pending = [scene for scene in plan.scenes if not frames[scene.frame - 1].rendered]
        if not pending:
            return validation
        workers = max(1, min(self._policy.frames_in_flight, len(pending)))
        try:
            with (
                self._stage(job, "rendering"),
                ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"job-{job.id[-8:]}") as pool,
            ):
                futures = [pool.submit(self._produce_frame, job, plan, scene, validation) for scene in pending]
                done, _ = wait(futures, return_when=FIRST_EXCEPTION)
                errors = [future.exception() for future in done if future.exception() is not None]
                if errors:
                    # Stop the other frames' renders at once; their threads see the flag and return.
                    self._store.stop_work(job)
                    validation.abort()
                    raise next((e for e in errors if not isinstance(e, Cancelled)), errors[0])  # type: ignore[misc]
        finally:
            validation.close()  # no frame is validated on its own after this
        return validation

    def _forget_missing_frames(self, job: Job, plan: common_pb2.Plan) -> None:
        """A kept frame whose file went missing is produced again (from its saved attempts where they still are)."""
        missing = [
            scene.frame
            for scene in plan.scenes
            if job.storyboard.frames[scene.frame - 1].rendered and not self._frame_path(job, scene.frame).is_file()
        ]
        if not missing:
            return
        log.warning("storyboard %s: frames %s are missing from its folder; producing them again", job.id, missing)

        def forget(storyboard: sb.Storyboard) -> None:
            for number in missing:
                storyboard.frames[number - 1].rendered = False

        self._store.update(job, forget)

    def _produce_frame(
        self,
        job: Job,
        plan: common_pb2.Plan,
        scene: common_pb2.Scene,
        validation: ValidationContext,
    ) -> None:
        saved = {
            attempt.attempt: attempt
            for attempt in self._store.attempts(job, scene.frame)
            if (job.output_dir / attempt.file).is_file()
        }
        regeneration = job.meta.get("regenerate")
        if regeneration and regeneration["frame"] == scene.frame:
            kept = self._regenerated_attempt(job, plan, scene, validation, saved, regeneration)
        else:
            kept = self._best_attempt(job, plan, scene, validation, saved)
        self._raise_if_cancelled(job)
        frame_path = self._frame_path(job, scene.frame)
        _keep_as_png(job.output_dir / kept.file, frame_path)
        self._keep(job, scene.frame, kept)
        self._metrics.frames.labels("kept").inc()
        validation.keep(scene.frame, kept.file)
        if scene.frame == 1 and not validation.has_reference:  # an attempt validated by an earlier run
            validation.set_reference(Picture.of(frame_path.read_bytes(), MIME_TYPES["PNG"]))

    def _best_attempt(
        self,
        job: Job,
        plan: common_pb2.Plan,
        scene: common_pb2.Scene,
        validation: ValidationContext,
        saved: dict[int, AttemptInfo],
    ) -> AttemptInfo:
        """Attempts until one is consistent enough or the retries are spent; the best is kept. Saved attempts
        (from before a restart) are taken as they are instead of being rendered again."""
        best: AttemptInfo | None = None
        for attempt_no in range(1, self._policy.max_retries + 2):
            self._raise_if_cancelled(job)
            attempt = saved.get(attempt_no)
            if attempt is None:
                seed = frame_seed(job.storyboard.spec.base_seed, scene.frame, attempt_no)
                if attempt_no > 1:
                    reason = "consistency below threshold"
                    self._store.append(
                        job, retry=sb.FrameRetry(frame=scene.frame, attempt=attempt_no, seed=seed, reason=reason)
                    )
                    self._metrics.retries.labels("low_consistency").inc()
                attempt = self._render_attempt(job, plan, scene, attempt_no, seed, validation)
            if not attempt.validated:
                self._validate_attempt(job, plan, scene, attempt, validation)
            if best is None or _better(attempt, best):
                best = attempt
            if attempt.verdict != common_pb2.VERDICT_LOW_CONSISTENCY or scene.frame == 1:
                break  # frame 1 is the reference, measured against itself: its first attempt is the one kept
        assert best is not None
        return best

    def _regenerated_attempt(
        self,
        job: Job,
        plan: common_pb2.Plan,
        scene: common_pb2.Scene,
        validation: ValidationContext,
        saved: dict[int, AttemptInfo],
        regeneration: dict[str, int],
    ) -> AttemptInfo:
        """The one attempt a user asked for, with the seed chosen when they asked; kept whatever it scores."""
        attempt_no, seed = regeneration["attempt"], regeneration["seed"]
        attempt = saved.get(attempt_no)
        if attempt is None:
            retry = sb.FrameRetry(frame=scene.frame, attempt=attempt_no, seed=seed, reason="regeneration requested")
            self._store.append(job, retry=retry)
            self._metrics.retries.labels("regenerate").inc()
            attempt = self._render_attempt(job, plan, scene, attempt_no, seed, validation)
        if not attempt.validated:
            self._validate_attempt(job, plan, scene, attempt, validation)
        return attempt

    def _render_attempt(
        self,
        job: Job,
        plan: common_pb2.Plan,
        scene: common_pb2.Scene,
        attempt_no: int,
        seed: int,
        validation: ValidationContext,
    ) -> AttemptInfo:
        started = time.perf_counter()
        with self._metrics.timed("render"):
            rendered = self._render(job, plan, scene, attempt_no, seed)
        render_seconds = time.perf_counter() - started
        extension = EXTENSIONS.get(rendered.image.mime_type, ".png")
        file = f"attempts/frame_{scene.frame:03d}_attempt_{attempt_no}{extension}"
        picture = Picture.of(rendered.image.data, _MIME_BY_EXTENSION[extension])
        if scene.frame == 1:
            # Frame 1's first attempt is kept whatever it scores (_best_attempt), so it is the reference from now:
            # the other frames are scored against it without waiting for its own score, and with it when they
            # arrive together (one call, one batched pass).
            validation.set_reference(picture)
        validation.begin(file, picture, scene.prompt)  # scored while it is written and recorded
        outputs.write_bytes_atomic(job.output_dir / file, rendered.image.data)
        attempt = AttemptInfo(
            frame=scene.frame,
            attempt=attempt_no,
            seed=rendered.seed,
            prompt=scene.prompt,
            file=file,
            backend=rendered.backend,
            timings=rendered.timings,
            render_seconds=render_seconds,
        )

        def record(storyboard: sb.Storyboard) -> None:
            result = storyboard.frames[scene.frame - 1]
            result.seeds_tried.append(attempt.seed)
            result.attempts = len(result.seeds_tried)

        self._store.update(
            job,
            record,
            attempt=attempt,
            image_file=file,
            frame_rendered=sb.FrameRendered(
                frame=scene.frame,
                image=common_pb2.Image(
                    mime_type=rendered.image.mime_type, width=rendered.image.width, height=rendered.image.height
                ),
                attempt=attempt_no,
                seed=rendered.seed,
                timings=rendered.timings,
                backend=rendered.backend,
            ),
        )
        self._metrics.frames.labels("rendered").inc()
        return attempt

    def _validate_attempt(
        self,
        job: Job,
        plan: common_pb2.Plan,
        scene: common_pb2.Scene,
        attempt: AttemptInfo,
        validation: ValidationContext,
    ) -> None:
        path = job.output_dir / attempt.file
        begun = validation.begun(attempt.file)
        if begun is not None:
            picture, pending = begun
        else:  # an attempt saved by an earlier run, or one that arrived before the reference
            picture = Picture.of(path.read_bytes(), _MIME_BY_EXTENSION.get(path.suffix, "image/png"))
            pending = None
            if scene.frame == 1:
                validation.set_reference(picture)  # as _render_attempt does for an attempt that arrives
        validation.validated[attempt.file] = Picture(picture.digest, picture.mime_type, path.read_bytes)
        started = time.perf_counter()
        score, verdict, reason = self._validate(job, plan, scene, picture, validation, pending)
        attempt.validate_seconds = time.perf_counter() - started
        attempt.score, attempt.verdict, attempt.reason, attempt.validated = score, verdict, reason, True
        self._store.save_attempt(
            job,
            attempt,
            frame_validated=sb.FrameValidated(
                frame=scene.frame, attempt=attempt.attempt, score=score, verdict=verdict, reason=reason
            ),
        )

    def _render(
        self,
        job: Job,
        plan: common_pb2.Plan,
        scene: common_pb2.Scene,
        attempt_no: int,
        seed: int,
    ) -> renderer_pb2.RenderedFrame:
        """The frame from a replica."""
        interval = self._policy.progress_interval
        request = renderer_pb2.RenderRequest(
            frames=[self._frame_spec(job, plan, scene, seed)], progress_interval_seconds=interval
        )
        unavailable_left, lost_at_work = self._policy.render_unavailable_retries, 0
        busy_waits, busy_until = 0, time.monotonic() + self._policy.frame_timeout
        while True:
            call = self._downstream.renderer.Render(request, timeout=self._policy.frame_timeout)
            self._store.add_cancel_hook(job, call.cancel)
            started = False
            # The replica sends one step per interval at most, as asked. This guard, at half of it so that network
            # jitter never drops one of those, holds a renderer that ignores the request to about the same rate.
            progress = ProgressThrottle(interval / 2)
            try:
                for event in call:
                    started = True  # the replica is at work on the frame
                    if event.HasField("progress") and progress.passes(event.progress.step, event.progress.total_steps):
                        self._store.append(
                            job,
                            frame_progress=sb.FrameRenderProgress(
                                frame=scene.frame,
                                attempt=attempt_no,
                                step=event.progress.step,
                                total_steps=event.progress.total_steps,
                            ),
                        )
                    elif event.HasField("frame"):
                        return event.frame
                raise ServiceError(f"renderer ended the stream for frame {scene.frame} without a frame")
            except grpc.RpcError as error:
                self._raise_if_cancelled(job)
                code = error.code()
                if code == grpc.StatusCode.UNAVAILABLE and started and lost_at_work < MAX_LOST_AT_WORK:
                    # The replica was at work on the frame when it went away (stopped, scaled down, restarted):
                    # not the frame's fault, so it is sent again without spending the frame's retries. The frame
                    # is a pure function of its spec; round_robin picks a replica that is still there.
                    lost_at_work += 1
                    log.warning("render of frame %d lost its replica while at work; sending it again", scene.frame)
                    self._metrics.retries.labels("replica_lost").inc()
                    continue
                if code == grpc.StatusCode.UNAVAILABLE and unavailable_left > 0:
                    # No replica took the frame up: send it again, a few times, to whichever replica answers.
                    unavailable_left -= 1
                    log.warning("render of frame %d found no replica; sending it again", scene.frame)
                    self._metrics.retries.labels("replica_lost").inc()
                    continue
                busy = code == grpc.StatusCode.RESOURCE_EXHAUSTED and not started
                if busy and busy_waits < MAX_BUSY_WAITS and time.monotonic() < busy_until:
                    # The replica refused the frame before starting it: its open calls or its queue are at their
                    # limit (it says "retry later"). Back off, then send it again, until the frame's deadline.
                    delay = min(BUSY_BACKOFF_MAX, BUSY_BACKOFF_FIRST * 2**busy_waits) * random.uniform(0.75, 1.25)
                    busy_waits += 1
                    log.info("renderer busy for frame %d; sending it again in %.2f s", scene.frame, delay)
                    self._metrics.retries.labels("replica_busy").inc()
                    if job.stopping.wait(delay):
                        raise Cancelled("storyboard cancelled") from None
                    continue
                raise
            finally:
                self._store.remove_cancel_hook(job, call.cancel)

    def _frame_spec(
        self, job: Job, plan: common_pb2.Plan, scene: common_pb2.Scene, seed: int
    ) -> renderer_pb2.FrameSpec:
        spec = job.storyboard.spec
        return renderer_pb2.FrameSpec(
            frame=scene.frame,
            prompt=scene.prompt,
            prompt_2=scene.prompt_2,
            negative_prompt=plan.negative_prompt,
            seed=seed,
            width=spec.width,
            height=spec.height,
            steps=spec.num_inference_steps,
            guidance_scale=spec.guidance_scale,
            adapters=frame_adapters(plan, scene, spec.adapters),
            scene=documents.reader_scene(scene, plan.characters),  # a sketch panel's caption is read by people
            deterministic=spec.deterministic,
        )

    def _validation_context(self, plan: common_pb2.Plan) -> ValidationContext:
        """Whether the validator can score (and, if not, why frames will be marked not validated)."""
        if self._validator is None:
            return ValidationContext("no validator is configured")
        try:
            info = self._validator.info()
        except grpc.RpcError as error:
            return ValidationContext(f"the validator is unreachable ({error.code().name})")
        if not info.ready:
            return ValidationContext(f"the validator is not ready: {info.reason}")
        context = ValidationContext("", info.model, info.max_frames, info.thresholds)
        validator, triggers = self._validator, [c.trigger_token for c in plan.characters]
        context.frame_scores = FrameScores(
            lambda frames, prompts, reference: validator.score(
                context, frames, prompts, reference, triggers, stage="validate"
            ),
            info.max_frames,
        )
        return context

    def _validate(
        self,
        job: Job,
        plan: common_pb2.Plan,
        scene: common_pb2.Scene,
        picture: Picture,
        validation: ValidationContext,
        pending: Future[FrameScoreAnswer] | None,
    ) -> tuple[common_pb2.FrameScore | None, int, str]:
        """The attempt's score, verdict and the reason it was not validated; ``pending`` is its score if queued
        already (``ValidationContext.begin``)."""
        if validation.unready_reason:
            return None, common_pb2.VERDICT_NOT_VALIDATED, validation.unready_reason
        if pending is None:
            reference = picture if scene.frame == 1 else validation.wait_for_reference(job)
            if reference is None:
                raise Cancelled("storyboard cancelled")
            assert validation.frame_scores is not None  # set whenever the validator is ready
            pending = validation.frame_scores.submit(picture, scene.prompt, reference)
        try:
            score, validation.thresholds = pending.result()
        except grpc.RpcError as error:
            if error.code() not in _VALIDATOR_GONE:
                raise
            # Scores are advice, not a condition: a storyboard goes on without them, marked as such.
            return None, common_pb2.VERDICT_NOT_VALIDATED, f"the validator did not answer ({error.code().name})"
        return score, score.verdict, ""

    def _check_repetition(self, job: Job, plan: common_pb2.Plan, validation: ValidationContext) -> None:
        """Score every kept frame together: the final scores (against the final frame 1), and whether any frame is
        nearly the same picture as another. Repetitive frames are reported, not re-rendered."""
        if validation.unready_reason or len(plan.scenes) < 2:
            return
        if validation.max_frames and len(plan.scenes) > validation.max_frames:
            validation.notes.append(f"repetition not checked: the validator takes at most {validation.max_frames}")
            return
        pictures = [
            validation.kept_picture(scene.frame)
            or Picture.of(self._frame_path(job, scene.frame).read_bytes(), MIME_TYPES["PNG"])
            for scene in plan.scenes
        ]
        assert self._validator is not None  # the validator is ready, so it is configured
        with self._stage(job, "repetition_check"):
            try:
                response = self._validator.score(
                    validation,
                    pictures,
                    [s.prompt for s in plan.scenes],
                    pictures[0],
                    [c.trigger_token for c in plan.characters],
                    stage="repetition_check",
                )
            except grpc.RpcError as error:
                if error.code() not in _VALIDATOR_GONE:
                    raise
                validation.notes.append(f"repetition not checked: the validator did not answer ({error.code().name})")
                return
        validation.thresholds = response.thresholds

        def record(storyboard: sb.Storyboard) -> None:
            for scene, score in zip(plan.scenes, response.scores, strict=True):
                result = storyboard.frames[scene.frame - 1]
                result.score.CopyFrom(score)
                result.verdict = score.verdict

        self._store.update(job, record)
        attempts = self._store.attempts(job)
        for scene, score in zip(plan.scenes, response.scores, strict=True):
            if score.verdict != common_pb2.VERDICT_REPETITIVE:
                continue
            similar = score.most_similar_index
            other = plan.scenes[similar].frame if 0 <= similar < len(plan.scenes) else 0
            kept = outputs.kept_attempt(job.storyboard.frames[scene.frame - 1], attempts)
            self._store.append(
                job,
                frame_validated=sb.FrameValidated(
                    frame=scene.frame,
                    attempt=kept.attempt if kept else 0,
                    score=score,
                    verdict=score.verdict,
                    reason=f"nearly the same picture as frame {other} (checked over all kept frames)",
                ),
            )

    def _assemble(
        self,
        job: Job,
        plan: common_pb2.Plan,
        validation: ValidationContext,
    ) -> list[str]:
        self._set_state(job, sb.STORYBOARD_STATE_ASSEMBLING)
        folder = job.output_dir
        with self._stage(job, "assembling"), self._metrics.timed("assemble"):
            snapshot = self._store.snapshot(job)
            attempts = self._store.attempts(job)
            metadata = outputs.write_frames_metadata(folder, plan, snapshot.frames, attempts)
            text = documents.document_text(snapshot, attempts, validation.unready_reason)
            frames = [self._frame_path(job, scene.frame) for scene in plan.scenes]
            grid, pdf = documents.write_documents(folder, plan, frames, text)
        report = outputs.storyboard_report(
            snapshot,
            attempts,
            thresholds=validation.thresholds,
            validator_model=validation.model,
            stage_seconds=job.meta.get("stage_seconds", {}),
            notes=validation.report_notes(),
        )
        return [
            outputs.SCENE_BREAKDOWN,
            outputs.SDXL_PROMPTS,
            *(outputs.frame_file_name(scene.frame) for scene in plan.scenes),
            grid,
            metadata,
            outputs.write_report(folder, report),
            pdf,
        ]

    # -- bookkeeping --------------------------------------------------------------------------------------------

    def _keep(self, job: Job, frame: int, kept: AttemptInfo) -> None:
        def change(storyboard: sb.Storyboard) -> None:
            result = storyboard.frames[frame - 1]
            result.seed = kept.seed
            result.rendered = True
            result.verdict = kept.verdict
            result.ClearField("score")
            if kept.score is not None:
                result.score.CopyFrom(kept.score)

        self._store.update(job, change)

    @staticmethod
    def _frame_path(job: Job, frame: int) -> Path:
        return job.output_dir / outputs.frame_file_name(frame)

    @contextmanager
    def _stage(self, job: Job, name: str) -> Iterator[None]:
        """Add the time the ``with`` body took to the job's saved stage timings (they add up across resumes)."""
        started = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - started

            def add(meta: dict[str, dict[str, float]]) -> None:
                stages = meta.setdefault("stage_seconds", {})
                stages[name] = stages.get(name, 0.0) + elapsed

            self._store.update_meta(job, add)

    def _set_state(self, job: Job, state: int) -> None:
        self._store.update(job, lambda storyboard: setattr(storyboard, "state", state))

    def _raise_if_cancelled(self, job: Job) -> None:
        if job.stopping.is_set():
            raise Cancelled("storyboard cancelled")

    def _count_end(self, job: Job, state: str) -> None:
        """Count a storyboard's end once: a regeneration ends it again, and is counted as a retry instead."""
        if "regenerate" not in job.meta:
            self._metrics.storyboards.labels(state).inc()

    def _fail(self, job: Job, error: Exception) -> None:
        if job.suspended and not job.cancel_requested:
            log.info("storyboard %s suspended by the shutdown; the next start resumes it", job.id)
            return
        if job.cancel_requested:
            self._store.finish(
                job,
                sb.STORYBOARD_STATE_CANCELLED,
                failed=sb.Failed(code="CANCELLED", message="storyboard cancelled; frames already written stay"),
            )
            self._count_end(job, "cancelled")
            return
        status = status_for(error)
        if status is None:
            log.error("storyboard %s failed on a bug", job.id, exc_info=error)
            code, message = "INTERNAL", "internal error in the gateway"
        else:
            code, message = status[0].name, status[1]
            log.info("storyboard %s failed: %s %s", job.id, code, message)
        self._count_end(job, "failed")
        self._store.finish(job, sb.STORYBOARD_STATE_FAILED, error=message, failed=sb.Failed(code=code, message=message))


def _remove_half_written_files(folder: Path) -> None:
    """Delete the hidden temporaries of atomic writes (``.NAME.XXXXXXXX.tmp``) that a killed gateway left in a job's
    folder: nothing will finish them, and only this run writes to the folder now."""
    if folder.is_dir():
        for path in folder.rglob(".*.tmp"):
            path.unlink(missing_ok=True)


def _better(candidate: AttemptInfo, best: AttemptInfo) -> bool:
    """Higher consistency wins; an attempt without a score never replaces one with a score."""
    if candidate.score is None:
        return False
    return best.score is None or candidate.score.consistency > best.score.consistency


def _keep_as_png(attempt: Path, frame: Path) -> None:
    """Make ``frame`` (frame_NNN.png) the kept attempt's image as PNG, as the original's were, whatever the renderer
    sent. A PNG attempt becomes the frame file by a hard link (the same bytes, stored once); any other is decoded and
    written as PNG."""
    with attempt.open("rb") as handle:
        is_png = handle.read(8) == b"\x89PNG\r\n\x1a\n"
    if is_png:
        outputs.link_atomic(attempt, frame)
        return
    with Image.open(attempt) as image:
        data, _ = images.encode(image, "PNG", png_level=KEPT_PNG_LEVEL)
    outputs.write_bytes_atomic(frame, data)
