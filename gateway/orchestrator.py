"""Runs one storyboard: plan -> render every frame -> validate each as it arrives -> retry weak frames -> assemble.

Frames are rendered as one small call each, several in flight, spread over the renderer replicas by the channel's
round_robin policy. Each frame is validated as soon as it arrives, against frame 1 (the character reference), so
rendering and validation overlap. Every step is an event in the job's log.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import grpc
from PIL import Image

from gateway.jobs import Job, JobStore
from gateway.spec import frame_seed
from storyboard import outputs
from storyboard.v1 import (
    common_pb2,
    planner_pb2,
    planner_pb2_grpc,
    renderer_pb2,
    renderer_pb2_grpc,
    validator_pb2,
    validator_pb2_grpc,
)
from storyboard.v1 import storyboards_pb2 as sb
from storyboard_common.channels import open_channel
from storyboard_common.errors import Cancelled, ServiceError, status_for
from storyboard_common.images import EXTENSIONS

log = logging.getLogger(__name__)


@dataclass
class Downstream:
    """Stubs of the services the gateway drives."""

    planner: planner_pb2_grpc.PlannerStub
    renderer: renderer_pb2_grpc.RendererStub
    validator: validator_pb2_grpc.ValidatorStub | None
    channels: list[grpc.Channel]

    @classmethod
    def connect(cls, planner: str, renderers: str, validator: str) -> Downstream:
        planner_channel = open_channel(planner, retry_services=("storyboard.v1.Planner",))
        renderer_channel = open_channel(renderers, retry_services=("storyboard.v1.Renderer",))
        channels = [planner_channel, renderer_channel]
        validator_stub = None
        if validator:
            validator_channel = open_channel(validator, retry_services=("storyboard.v1.Validator",))
            channels.append(validator_channel)
            validator_stub = validator_pb2_grpc.ValidatorStub(validator_channel)
        return cls(
            planner_pb2_grpc.PlannerStub(planner_channel),
            renderer_pb2_grpc.RendererStub(renderer_channel),
            validator_stub,
            channels,
        )

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


@dataclass
class Attempt:
    """One rendered attempt at a frame, with its verdict."""

    attempt: int
    seed: int
    image_path: Path
    score: common_pb2.FrameScore | None
    verdict: int


class Orchestrator:
    """Carries jobs from queued to a final state. Stateless apart from the store it reports to."""

    def __init__(self, store: JobStore, downstream: Downstream, policy: Policy) -> None:
        self._store = store
        self._downstream = downstream
        self._policy = policy

    def run(self, job: Job) -> None:
        """Run ``job`` to completion, failure or cancellation; never raises."""
        if job.finished:
            return  # cancelled while queued
        try:
            self._raise_if_cancelled(job)
            plan = self._plan(job)
            self._render_all(job, plan)
            files = self._assemble(job, plan)
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
        response = self._downstream.planner.Plan(
            planner_pb2.PlanRequest(story=spec.story, options=options), timeout=self._policy.plan_timeout
        )
        plan = response.plan
        outputs.write_plan_files(job.output_dir, plan)

        def record(storyboard: sb.Storyboard) -> None:
            storyboard.plan.CopyFrom(plan)
            del storyboard.frames[:]
            for scene in plan.scenes:
                storyboard.frames.add(frame=scene.frame, file_name=outputs.frame_file_name(scene.frame))

        self._store.update(job, record)
        self._store.append(job, plan_ready=sb.PlanReady(plan=plan))
        return plan

    def _render_all(self, job: Job, plan: common_pb2.Plan) -> None:
        self._set_state(job, sb.STORYBOARD_STATE_RENDERING)
        validation = _ValidationContext(self._validator_unready_reason())
        workers = max(1, min(self._policy.frames_in_flight, len(plan.scenes)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"job-{job.id[-8:]}") as pool:
            futures = [pool.submit(self._produce_frame, job, plan, scene, validation) for scene in plan.scenes]
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            errors = [future.exception() for future in done if future.exception() is not None]
            if errors:
                # Stop the other frames' renders at once; their threads see the flag and return.
                self._store.stop_work(job)
                validation.abort()
                raise next((e for e in errors if not isinstance(e, Cancelled)), errors[0])  # type: ignore[misc]

    def _produce_frame(
        self, job: Job, plan: common_pb2.Plan, scene: common_pb2.Scene, validation: _ValidationContext
    ) -> None:
        best: Attempt | None = None
        for attempt_no in range(1, self._policy.max_retries + 2):
            self._raise_if_cancelled(job)
            seed = frame_seed(job.storyboard.spec.base_seed, scene.frame, attempt_no)
            if attempt_no > 1:
                self._store.append(
                    job,
                    retry=sb.FrameRetry(
                        frame=scene.frame, attempt=attempt_no, seed=seed, reason="consistency below threshold"
                    ),
                )
            attempt = self._render_and_validate(job, plan, scene, attempt_no, seed, validation)
            self._record_attempt(job, scene.frame, attempt)
            if best is None or _better(attempt, best):
                best = attempt
            if attempt.verdict != common_pb2.VERDICT_LOW_CONSISTENCY:
                break
        assert best is not None
        final_path = job.output_dir / outputs.frame_file_name(scene.frame)
        outputs.write_bytes_atomic(final_path, best.image_path.read_bytes())
        self._keep(job, scene.frame, best)
        if scene.frame == 1:
            validation.set_reference(final_path.read_bytes())

    def _render_and_validate(
        self,
        job: Job,
        plan: common_pb2.Plan,
        scene: common_pb2.Scene,
        attempt_no: int,
        seed: int,
        validation: _ValidationContext,
    ) -> Attempt:
        rendered = self._render(job, plan, scene, attempt_no, seed)
        extension = EXTENSIONS.get(rendered.image.mime_type, ".png")
        path = job.output_dir / "attempts" / f"frame_{scene.frame:03d}_attempt_{attempt_no}{extension}"
        outputs.write_bytes_atomic(path, rendered.image.data)
        self._store.append(
            job,
            image_path=path,
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
        score, verdict, reason = self._validate(job, plan, scene, rendered.image, validation)
        self._store.append(
            job,
            frame_validated=sb.FrameValidated(
                frame=scene.frame, attempt=attempt_no, score=score, verdict=verdict, reason=reason
            ),
        )
        return Attempt(attempt_no, rendered.seed, path, score, verdict)

    def _render(
        self, job: Job, plan: common_pb2.Plan, scene: common_pb2.Scene, attempt_no: int, seed: int
    ) -> renderer_pb2.RenderedFrame:
        request = renderer_pb2.RenderRequest(frames=[self._frame_spec(job, plan, scene, seed)])
        for tries_left in range(self._policy.render_unavailable_retries, -1, -1):
            call = self._downstream.renderer.Render(request, timeout=self._policy.frame_timeout)
            self._store.add_cancel_hook(job, call.cancel)
            try:
                for event in call:
                    if event.HasField("progress"):
                        progress = event.progress
                        self._store.append(
                            job,
                            frame_progress=sb.FrameRenderProgress(
                                frame=scene.frame,
                                attempt=attempt_no,
                                step=progress.step,
                                total_steps=progress.total_steps,
                            ),
                        )
                    elif event.HasField("frame"):
                        return event.frame
                raise ServiceError(f"renderer ended the stream for frame {scene.frame} without a frame")
            except grpc.RpcError as error:
                self._raise_if_cancelled(job)
                if error.code() != grpc.StatusCode.UNAVAILABLE or tries_left == 0:
                    raise
                # The replica went away mid-stream; the frame is a pure function of its spec, so send it again
                # and let round_robin pick another replica.
                log.warning("render of frame %d lost its replica; sending it again", scene.frame)
            finally:
                self._store.remove_cancel_hook(job, call.cancel)
        raise AssertionError("unreachable")

    def _frame_spec(
        self, job: Job, plan: common_pb2.Plan, scene: common_pb2.Scene, seed: int
    ) -> renderer_pb2.FrameSpec:
        spec = job.storyboard.spec
        adapters = [
            common_pb2.AdapterRef(name=character.adapter, weight=1.0)
            for character in plan.characters
            if character.adapter and character.trigger_token in scene.trigger_tokens
        ]
        adapters.extend(spec.adapters)
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
            adapters=adapters,
            scene=scene,
        )

    def _validator_unready_reason(self) -> str:
        """Empty when the validator can score; otherwise why frames will be marked not validated."""
        if self._downstream.validator is None:
            return "no validator is configured"
        try:
            info = self._downstream.validator.Info(
                validator_pb2.ValidatorInfoRequest(), timeout=self._policy.validate_timeout
            )
        except grpc.RpcError as error:
            return f"the validator is unreachable ({error.code().name})"
        return "" if info.ready else f"the validator is not ready: {info.reason}"

    def _validate(
        self,
        job: Job,
        plan: common_pb2.Plan,
        scene: common_pb2.Scene,
        image: common_pb2.Image,
        validation: _ValidationContext,
    ) -> tuple[common_pb2.FrameScore | None, int, str]:
        if validation.unready_reason:
            return None, common_pb2.VERDICT_NOT_VALIDATED, validation.unready_reason
        reference = image.data if scene.frame == 1 else validation.wait_for_reference(job)
        if reference is None:
            raise Cancelled("storyboard cancelled")
        assert self._downstream.validator is not None
        response = self._downstream.validator.Score(
            validator_pb2.ScoreRequest(
                frames=[image],
                prompts=[scene.prompt],
                references=[common_pb2.Image(data=reference, mime_type="image/png")],
                policy=validator_pb2.REFERENCE_POLICY_REFERENCE_IMAGES,
                trigger_tokens=[c.trigger_token for c in plan.characters],
            ),
            timeout=self._policy.validate_timeout,
        )
        score = response.scores[0]
        return score, score.verdict, ""

    def _assemble(self, job: Job, plan: common_pb2.Plan) -> list[str]:
        self._set_state(job, sb.STORYBOARD_STATE_ASSEMBLING)
        frames = [Image.open(job.output_dir / outputs.frame_file_name(scene.frame)) for scene in plan.scenes]
        grid = outputs.write_grid(job.output_dir, [frame.convert("RGB") for frame in frames], plan.scenes)
        for frame in frames:
            frame.close()
        return [
            outputs.SCENE_BREAKDOWN,
            outputs.SDXL_PROMPTS,
            *(outputs.frame_file_name(scene.frame) for scene in plan.scenes),
            grid,
        ]

    # -- bookkeeping --------------------------------------------------------------------------------------------

    def _record_attempt(self, job: Job, frame: int, attempt: Attempt) -> None:
        def change(storyboard: sb.Storyboard) -> None:
            result = storyboard.frames[frame - 1]
            result.attempts = attempt.attempt
            result.seeds_tried.append(attempt.seed)

        self._store.update(job, change)

    def _keep(self, job: Job, frame: int, best: Attempt) -> None:
        def change(storyboard: sb.Storyboard) -> None:
            result = storyboard.frames[frame - 1]
            result.seed = best.seed
            result.rendered = True
            result.verdict = best.verdict
            if best.score is not None:
                result.score.CopyFrom(best.score)

        self._store.update(job, change)

    def _set_state(self, job: Job, state: int) -> None:
        self._store.update(job, lambda storyboard: setattr(storyboard, "state", state))

    def _raise_if_cancelled(self, job: Job) -> None:
        if job.stopping.is_set():
            raise Cancelled("storyboard cancelled")

    def _fail(self, job: Job, error: Exception) -> None:
        if job.cancel_requested:
            self._store.finish(
                job,
                sb.STORYBOARD_STATE_CANCELLED,
                failed=sb.Failed(code="CANCELLED", message="storyboard cancelled; frames already written stay"),
            )
            return
        status = status_for(error)
        if status is None:
            log.error("storyboard %s failed on a bug", job.id, exc_info=error)
            code, message = "INTERNAL", "internal error in the gateway"
        else:
            code, message = status[0].name, status[1]
            log.info("storyboard %s failed: %s %s", job.id, code, message)
        self._store.finish(job, sb.STORYBOARD_STATE_FAILED, error=message, failed=sb.Failed(code=code, message=message))


def _better(candidate: Attempt, best: Attempt) -> bool:
    """Higher consistency wins; an attempt without a score never replaces one with a score."""
    if candidate.score is None:
        return False
    return best.score is None or candidate.score.consistency > best.score.consistency


class _ValidationContext:
    """What frames of one storyboard share for validation: whether the validator can score, and frame 1."""

    def __init__(self, unready_reason: str) -> None:
        self.unready_reason = unready_reason
        self._reference: bytes | None = None
        self._settled = threading.Event()

    def set_reference(self, image: bytes) -> None:
        self._reference = image
        self._settled.set()

    def abort(self) -> None:
        self._settled.set()

    def wait_for_reference(self, job: Job) -> bytes | None:
        while not self._settled.wait(timeout=0.5):
            if job.stopping.is_set():
                return None
        return self._reference
