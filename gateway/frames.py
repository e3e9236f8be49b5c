"""One storyboard's frames, each made by attempts until one is kept: render an attempt, save it, judge it, try again
while it is too far from frame 1 and retries are left, keep the best.

Every attempt is saved (its file, seed, timings, scores) before the next step, so a resumed run takes the attempts an
earlier one saved as they are instead of rendering them again (a frame is a function of its spec and seed).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from gateway import decisions, documents, outputs
from gateway.document_frames import DocumentFrames
from gateway.downstream import Downstream
from gateway.metrics import Metrics
from gateway.outputs import AttemptInfo
from gateway.references import frame_references
from gateway.store import Job, JobStore
from gateway.validation import Picture, Validation
from storyboard.v1 import common_pb2
from storyboard.v1 import storyboards_pb2 as sb
from storyboard_common import images
from storyboard_common.v1 import renderer_pb2

KEPT_PNG_LEVEL = 6  # frame_NNN.png made from a WebP or JPEG frame: zlib's default, as Pillow saves a PNG
_MIME_BY_EXTENSION = {extension: mime for mime, extension in images.EXTENSIONS.items()}


@dataclass(frozen=True)
class FramePolicy:
    """What the gateway's settings decide about a storyboard's frames."""

    max_retries: int = 2
    frames_in_flight: int = 8


class GroupedRender:
    """The first attempts of a storyboard's frames sent in groups, one request a group, so that they reach one
    replica together: to be batched there (a renderer that batches on a device), or to be drawn alike (one that shares
    attention across a batch). Each frame's task hands in its FrameSpec and waits; the last of its group in sends the
    group's request."""

    def __init__(self, downstream: Downstream, groups: Sequence[Sequence[int]]) -> None:
        self.groups = [tuple(group) for group in groups]
        self._group_of = {frame: index for index, group in enumerate(self.groups) for frame in group}
        self._downstream = downstream
        self._specs: dict[int, renderer_pb2.FrameSpec] = {}
        self._progress: dict[int, Callable[[renderer_pb2.FrameProgress], None]] = {}
        self._results: dict[int, asyncio.Future[renderer_pb2.RenderedFrame]] = {}

    @property
    def frames(self) -> frozenset[int]:
        return frozenset(self._group_of)

    def order(self, frames: Sequence[int]) -> list[int]:
        """``frames`` with each group's together, groups in the order of their first frames: the order in which the
        frames' tasks take their slots, so that a group never waits on a slot its own members hold back."""
        grouped = [frame for group in self.groups for frame in group if frame in frames]
        return grouped + [frame for frame in frames if frame not in self._group_of]

    async def render(
        self, spec: renderer_pb2.FrameSpec, progress: Callable[[renderer_pb2.FrameProgress], None]
    ) -> renderer_pb2.RenderedFrame:
        result = self._results[spec.frame] = asyncio.get_running_loop().create_future()
        self._specs[spec.frame], self._progress[spec.frame] = spec, progress
        group = self.groups[self._group_of[spec.frame]]
        if all(frame in self._specs for frame in group):
            await self._send(group)
        return await result

    async def _send(self, group: Sequence[int]) -> None:
        request = renderer_pb2.RenderRequest(
            frames=[self._specs[frame] for frame in group],
            progress_interval_seconds=self._downstream.limits.progress_interval,
        )
        results = [self._results[frame] for frame in group]
        try:
            rendered = await self._downstream.render_frames(request, lambda step: self._progress[step.frame](step))
        except asyncio.CancelledError:
            for result in results:
                result.cancel()  # the sending task was cancelled: so is every frame of its group
            raise
        except Exception as error:
            for result in results:
                result.set_exception(error)
            return
        for frame, result in zip(group, results, strict=True):
            result.set_result(rendered[frame])


@dataclass
class FrameMaker:
    """Makes the frames of one planned storyboard, any number at once, each as its own task."""

    job: Job
    plan: common_pb2.Plan
    validation: Validation
    store: JobStore
    downstream: Downstream
    metrics: Metrics
    policy: FramePolicy
    document_frames: DocumentFrames
    references: dict[str, common_pb2.CharacterPictures] = field(default_factory=dict)  # by trigger token
    grouped: GroupedRender | None = None  # the first attempts sent in groups, when the renderers batch or share

    async def make(self, scene: common_pb2.Scene) -> None:
        """Produce the frame: its attempts, then the best one kept as frame_NNN.png."""
        saved = {attempt.attempt: attempt for attempt in self.store.attempts(self.job, scene.frame)
                 if (self.job.output_dir / attempt.file).is_file()}  # fmt: skip
        regeneration = self.job.meta.get("regenerate")
        if regeneration and regeneration["frame"] == scene.frame:
            kept = await self._regenerated(scene, saved, regeneration["attempt"], regeneration["seed"])
        else:
            kept = await self._best(scene, saved)
        if scene.frame == decisions.REFERENCE_FRAME:  # known already, unless an earlier run had judged it too
            self.validation.set_reference(await self._picture(kept))
        await asyncio.to_thread(keep_as_png, self.job.output_dir / kept.file, self.frame_path(scene.frame))
        self.document_frames.prepare(self.frame_path(scene.frame))
        self._keep(scene.frame, kept)

    def batch_key(self, frame: int) -> tuple[object, ...]:
        """What a renderer batches frames by, beyond the storyboard's shared size, steps and guidance: the frame's
        adapters and its characters' reference pictures."""
        scene = self.plan.scenes[frame - 1]
        adapters = decisions.frame_adapters(self.plan, scene, self.job.storyboard.spec.adapters)
        pictures = frame_references(scene, self.references)
        return tuple((a.name, a.weight) for a in adapters), tuple(p.trigger_token for p in pictures)

    def frame_path(self, frame: int) -> Path:
        return self.job.output_dir / outputs.frame_file_name(frame)

    async def _best(self, scene: common_pb2.Scene, saved: dict[int, AttemptInfo]) -> AttemptInfo:
        """Attempts until one is consistent enough or the retries are spent; the best is kept."""
        attempts: list[AttemptInfo] = []
        for number in decisions.attempt_numbers(self.policy.max_retries):
            attempt, picture = saved.get(number), None
            if attempt is None:
                seed = decisions.frame_seed(self.job.storyboard.spec.base_seed, scene.frame, number)
                reason = "consistency below threshold" if number > 1 else ""
                attempt, picture = await self._render(scene, number, seed, reason, "low_consistency")
            if not attempt.validated:
                await self._judge(scene, attempt, picture)
            attempts.append(attempt)
            if not decisions.tries_again(scene.frame, attempt.verdict):
                break
        kept = decisions.best_attempt(attempts)
        assert kept is not None  # a frame has at least one attempt
        return kept

    async def _regenerated(
        self, scene: common_pb2.Scene, saved: dict[int, AttemptInfo], number: int, seed: int
    ) -> AttemptInfo:
        """The one attempt a user asked for, with the seed chosen when they asked; kept whatever it scores."""
        attempt, picture = saved.get(number), None
        if attempt is None:
            attempt, picture = await self._render(scene, number, seed, "regeneration requested", "regenerate")
        if not attempt.validated:
            await self._judge(scene, attempt, picture)
        return attempt

    async def _render(
        self, scene: common_pb2.Scene, number: int, seed: int, reason: str, retry_kind: str
    ) -> tuple[AttemptInfo, Picture]:
        """Render one attempt, save its image and record it (its FrameRendered event with it)."""
        if reason:
            self.store.append(
                self.job, retry=sb.FrameRetry(frame=scene.frame, attempt=number, seed=seed, reason=reason)
            )
            self.metrics.retries.labels(retry_kind).inc()
        started = time.perf_counter()
        request, progress = self._request(scene, seed), lambda step: self._progress(step, number)
        if self.grouped is not None and number == 1 and scene.frame in self.grouped.frames:
            rendered = await self.grouped.render(request.frames[0], progress)
        else:
            rendered = await self.downstream.render(request, progress)
        image = rendered.image
        extension = images.EXTENSIONS.get(image.mime_type, ".png")
        file = f"attempts/frame_{scene.frame:03d}_attempt_{number}{extension}"
        picture = Picture(image.data, _MIME_BY_EXTENSION[extension])
        if scene.frame == decisions.REFERENCE_FRAME:
            self.validation.set_reference(picture)  # its first attempt is kept whatever it scores
        await asyncio.to_thread(outputs.write_bytes_atomic, self.job.output_dir / file, image.data)
        attempt = AttemptInfo(
            frame=scene.frame, attempt=number, seed=rendered.seed, prompt=scene.prompt, file=file,
            backend=rendered.backend, timings=rendered.timings, render_seconds=time.perf_counter() - started,
        )  # fmt: skip
        event = sb.FrameRendered(
            frame=scene.frame, attempt=number, seed=rendered.seed, timings=rendered.timings, backend=rendered.backend,
            image=common_pb2.Image(mime_type=image.mime_type, width=image.width, height=image.height),
        )  # fmt: skip

        def record(storyboard: sb.Storyboard) -> None:
            result = storyboard.frames[scene.frame - 1]
            result.seeds_tried.append(attempt.seed)
            result.attempts = len(result.seeds_tried)

        self.store.update(self.job, record, attempt=attempt, image_file=file, frame_rendered=event)
        self.metrics.frames.labels("rendered").inc()
        return attempt, picture

    def _request(self, scene: common_pb2.Scene, seed: int) -> renderer_pb2.RenderRequest:
        spec = self.job.storyboard.spec
        frame = renderer_pb2.FrameSpec(
            frame=scene.frame, prompt=scene.prompt, prompt_2=scene.prompt_2, negative_prompt=self.plan.negative_prompt,
            seed=seed, width=spec.width, height=spec.height, steps=spec.num_inference_steps,
            guidance_scale=spec.guidance_scale, adapters=decisions.frame_adapters(self.plan, scene, spec.adapters),
            scene=documents.reader_scene(scene, self.plan.characters),  # a sketch panel's caption is read by people
            deterministic=spec.deterministic, references=frame_references(scene, self.references),
        )  # fmt: skip
        return renderer_pb2.RenderRequest(
            frames=[frame], progress_interval_seconds=self.downstream.limits.progress_interval
        )

    def _progress(self, step: renderer_pb2.FrameProgress, attempt: int) -> None:
        self.store.append(
            self.job,
            frame_progress=sb.FrameRenderProgress(
                frame=step.frame, attempt=attempt, step=step.step, total_steps=step.total_steps
            ),
        )

    async def _judge(self, scene: common_pb2.Scene, attempt: AttemptInfo, picture: Picture | None) -> None:
        """Score the attempt (one saved by an earlier run is read back from its file) and record its verdict."""
        if picture is None:
            picture = await self._picture(attempt)
            if scene.frame == decisions.REFERENCE_FRAME:
                self.validation.set_reference(picture)
        started = time.perf_counter()
        judgement = await self.validation.judge(picture, scene.prompt, scene.frame, scene.trigger_tokens)
        attempt.validate_seconds = time.perf_counter() - started
        attempt.score, attempt.verdict, attempt.reason = judgement.score, judgement.verdict, judgement.reason
        attempt.validated = True
        event = sb.FrameValidated(
            frame=scene.frame, attempt=attempt.attempt, score=judgement.score, verdict=judgement.verdict,
            reason=judgement.reason,
        )  # fmt: skip
        self.store.save_attempt(self.job, attempt, frame_validated=event)

    async def _picture(self, attempt: AttemptInfo) -> Picture:
        """An attempt's image, read back from its file."""
        path = self.job.output_dir / attempt.file
        return Picture(await asyncio.to_thread(path.read_bytes), _MIME_BY_EXTENSION.get(path.suffix, "image/png"))

    def _keep(self, frame: int, kept: AttemptInfo) -> None:
        def change(storyboard: sb.Storyboard) -> None:
            result = storyboard.frames[frame - 1]
            result.seed, result.rendered, result.verdict = kept.seed, True, kept.verdict
            result.ClearField("score")
            if kept.score is not None:
                result.score.CopyFrom(kept.score)

        self.store.update(self.job, change)
        self.metrics.frames.labels("kept").inc()


def keep_as_png(attempt: Path, frame: Path) -> None:
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
