"""The Renderer gRPC servicer: validates requests, queues them, streams their events, encodes finished frames."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import grpc

from services.renderer.adapters import AdapterCatalog
from services.renderer.backend import RenderBackend
from services.renderer.requests import RenderJob, parse_render_request
from services.renderer.scheduler import AllDone, FrameDone, RenderFailed, RenderScheduler, RenderTicket, StepDone
from services.renderer.settings import RenderLimits
from storyboard.v1 import common_pb2
from storyboard_common import images
from storyboard_common.errors import Unavailable
from storyboard_common.frames import rendered_frame_event
from storyboard_common.progress import ProgressThrottle
from storyboard_common.v1 import renderer_pb2, renderer_pb2_grpc

log = logging.getLogger(__name__)

# How often a waiting stream checks that its client is still there (the cancellation callback usually comes first).
POLL_SECONDS = 0.25


class RendererServicer(renderer_pb2_grpc.RendererServicer):
    """Render and Info over one backend and its scheduler."""

    def __init__(
        self,
        backend: RenderBackend,
        scheduler: RenderScheduler,
        adapters: AdapterCatalog,
        limits: RenderLimits,
        *,
        default_format: str,
        default_quality: int,
        png_level: int,
    ) -> None:
        self._backend = backend
        self._scheduler = scheduler
        self._adapters = adapters
        self._limits = limits
        self._default_format = default_format
        self._default_quality = default_quality
        self._png_level = png_level

    def Render(
        self, request: renderer_pb2.RenderRequest, context: grpc.ServicerContext
    ) -> Iterator[renderer_pb2.RenderEvent]:
        job = parse_render_request(
            request,
            self._limits,
            self._adapters,
            backend_applies_adapters=self._backend.applies_adapters,
            backend_applies_references=self._backend.applies_references,
            default_format=self._default_format,
            default_quality=self._default_quality,
        )
        ticket = self._scheduler.submit(job.frames)
        # Runs when the call ends for any reason, including a client that cancels or a deadline that passes while
        # this thread waits: the request's frames leave the queue and its running batch stops at the next step.
        context.add_callback(lambda: self._scheduler.release(ticket))
        log.info("render %d: %d frames, %s", ticket.id, len(job.frames), job.image_format)
        try:
            yield from self._events(ticket, job, context)
        finally:
            self._scheduler.release(ticket)

    def _events(
        self, ticket: RenderTicket, job: RenderJob, context: grpc.ServicerContext
    ) -> Iterator[renderer_pb2.RenderEvent]:
        throttles: dict[int, ProgressThrottle] = {}  # by frame number
        while True:
            event = ticket.next_event(POLL_SECONDS)
            if event is None:
                if not context.is_active():
                    return  # the client is gone; release() in the caller frees the request
                if ticket.cancelled.is_set():
                    raise Unavailable("the renderer is shutting down; retry on another replica")
                continue
            if isinstance(event, StepDone):
                throttle = throttles.setdefault(event.frame, ProgressThrottle(job.progress_interval))
                if throttle.passes(event.step, event.total):
                    progress = renderer_pb2.FrameProgress(frame=event.frame, step=event.step, total_steps=event.total)
                    yield renderer_pb2.RenderEvent(progress=progress)
            elif isinstance(event, FrameDone):
                yield self._rendered_frame(event, job)
            elif isinstance(event, RenderFailed):
                raise event.error
            elif isinstance(event, AllDone):
                return

    def _rendered_frame(self, done: FrameDone, job: RenderJob) -> renderer_pb2.RenderEvent:
        started = time.perf_counter()
        data, mime_type = images.encode(done.image, job.image_format, job.quality, self._png_level)
        encode_seconds = time.perf_counter() - started
        return rendered_frame_event(
            frame=done.spec.frame,
            seed=done.spec.seed,
            data=data,
            mime_type=mime_type,
            size=done.image.size,
            timings=common_pb2.FrameTimings(
                queue_seconds=done.queue_seconds,
                denoise_seconds=done.timings.denoise_seconds,
                decode_seconds=done.timings.decode_seconds,
                encode_seconds=encode_seconds,
            ),
            backend=done.backend,
        )

    def Info(
        self, request: renderer_pb2.RendererInfoRequest, context: grpc.ServicerContext
    ) -> renderer_pb2.RendererInfo:
        described = self._backend.describe()
        limits = self._limits
        return renderer_pb2.RendererInfo(
            backend=described.name,
            model=described.model,
            device=described.device,
            dtype=described.dtype,
            loaded_adapters=list(described.loaded_adapters),
            available_adapters=self._adapters.names(),
            limits=renderer_pb2.RenderLimits(
                min_size=limits.min_size,
                max_size=limits.max_size,
                max_steps=limits.max_steps,
                max_guidance_scale=limits.max_guidance_scale,
                max_frames_per_request=limits.max_frames_per_request,
                max_prompt_chars=limits.max_prompt_chars,
            ),
            max_batch_size=self._scheduler.max_batch_size,
            queue_depth=self._scheduler.queue_depth,
            ip_adapter=described.ip_adapter,
            consistency=described.consistency,
        )
