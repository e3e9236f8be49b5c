"""The render queue: admits requests within bounds, groups compatible frames into batches, runs them on the backend
from one worker thread, and hands each request its events (progress, finished frames, failure) as they happen.

One worker thread owns the backend, so a GPU backend never sees two pipeline calls at once; RPC threads only wait
on their own ticket's event queue, and encode images in parallel with the next batch. Frames from different requests
with equal ``FrameSpec.batch_key`` may share a batch; a batch is stopped only when every request in it is gone.

A frame asked for as ``deterministic`` is always rendered alone: a batch-mate could move its pixels by rounding.

With ``batch_within_request`` (the renderer's ``--consistency shared-attention``, where the frames of a batch share
their attention and so shape each other) a batch holds frames of one request only: another caller's frames must not
change a storyboard's pictures. A request's frames are queued together, so such a batch does not wait for others.

Dynamic batching (as Triton's ``max_queue_delay``): when the oldest waiting frame's batch is not full, the worker waits
up to ``batch_window`` seconds *counted from when that frame arrived* for compatible frames of other requests, then
renders what it has. An idle renderer so adds at most the window to a lone frame; a busy one adds nothing, because
its oldest frame has already waited longer than the window.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from PIL import Image

from services.renderer.backend import BackendTimings, FrameSpec, RenderBackend
from services.renderer.metrics import RendererMetrics
from storyboard_common.errors import ResourceExhausted, Unavailable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepDone:
    """Frame ``frame`` finished denoising step ``step`` of ``total``."""

    frame: int
    step: int
    total: int


@dataclass(frozen=True)
class FrameDone:
    """A frame is finished; ``queue_seconds`` is how long it waited before its batch started."""

    spec: FrameSpec
    image: Image.Image
    timings: BackendTimings
    queue_seconds: float
    backend: str


@dataclass(frozen=True)
class RenderFailed:
    """The batch holding one of this request's frames failed; ``error`` is raised to the caller."""

    error: Exception


@dataclass(frozen=True)
class AllDone:
    """Every frame of the request has been delivered."""


TicketEvent = StepDone | FrameDone | RenderFailed | AllDone


@dataclass(eq=False)
class RenderTicket:
    """One Render call's place in the scheduler: its events, and whether anyone still wants them."""

    id: int
    frames: int
    events: queue.SimpleQueue[TicketEvent] = field(default_factory=queue.SimpleQueue)
    cancelled: threading.Event = field(default_factory=threading.Event)
    delivered: int = 0

    def next_event(self, timeout: float) -> TicketEvent | None:
        """The next event, or None if none came within ``timeout`` seconds."""
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            return None


@dataclass(eq=False)
class _Job:
    spec: FrameSpec
    ticket: RenderTicket
    enqueued_at: float


class RenderScheduler:
    """A bounded queue of frames in front of one backend, served by one worker thread."""

    def __init__(
        self,
        backend: RenderBackend,
        *,
        max_batch_size: int,
        max_queue: int,
        max_streams: int,
        batch_window: float = 0.0,
        batch_within_request: bool = False,
        metrics: RendererMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._backend = backend
        self.max_batch_size = max_batch_size
        self.max_queue = max_queue
        self.max_streams = max_streams
        self.batch_window = batch_window
        self.batch_within_request = batch_within_request
        self._metrics = metrics if metrics is not None else RendererMetrics()
        self._metrics.watch_queue(lambda: self.queue_depth, lambda: self.open_requests)
        self._clock = clock
        self._lock = threading.Condition()
        self._pending: deque[_Job] = deque()
        self._open: set[RenderTicket] = set()
        self._ids = itertools.count(1)
        self._ready = threading.Event()
        self._closing = False
        self._worker: threading.Thread | None = None
        self.not_ready_reason = "warming up"

    # --- lifecycle --------------------------------------------------------------------------------------------------

    def warm_up(self) -> None:
        """Warm the backend up, then start serving. Raises (and stays not ready) if the backend cannot warm up."""
        try:
            self._backend.warm_up()
        except Exception as error:
            self.not_ready_reason = f"warm-up failed: {error}"
            raise
        with self._lock:
            if self._closing:
                return
            self._worker = threading.Thread(target=self._serve, name="renderer-worker", daemon=True)
            self._worker.start()
        self.not_ready_reason = ""
        self._ready.set()
        self._metrics.ready.set(1)

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def close(self, timeout: float = 30.0) -> None:
        """Stop taking work, cancel every open request, and wait for the running batch to stop."""
        with self._lock:
            self._closing = True
            for ticket in self._open:
                ticket.cancelled.set()
            self._pending.clear()
            self._lock.notify_all()
        if self._worker is not None:
            self._worker.join(timeout)

    # --- requests ---------------------------------------------------------------------------------------------------

    def submit(self, frames: Sequence[FrameSpec]) -> RenderTicket:
        """Queue ``frames`` as one request; Unavailable before warm-up, ResourceExhausted when over the bounds."""
        with self._lock:
            if self._closing:
                raise Unavailable("the renderer is shutting down; retry on another replica")
            if not self._ready.is_set():
                self._metrics.rejected.labels("not_ready").inc()
                raise Unavailable(f"the renderer is not ready ({self.not_ready_reason}); retry shortly")
            if len(self._open) >= self.max_streams:
                self._metrics.rejected.labels("too_many_streams").inc()
                raise ResourceExhausted(
                    f"the renderer is busy: {len(self._open)} Render calls are open and the limit is "
                    f"{self.max_streams}; retry later or on another replica"
                )
            if len(self._pending) + len(frames) > self.max_queue:
                self._metrics.rejected.labels("queue_full").inc()
                raise ResourceExhausted(
                    f"the renderer's queue is full: {len(self._pending)} frames are waiting, the limit is "
                    f"{self.max_queue} and this request has {len(frames)}; retry later or on another replica"
                )
            ticket = RenderTicket(next(self._ids), len(frames))
            now = self._clock()
            self._pending.extend(_Job(spec, ticket, now) for spec in frames)
            self._open.add(ticket)
            self._lock.notify_all()
            return ticket

    def release(self, ticket: RenderTicket) -> None:
        """The caller is gone or done: drop the request's waiting frames and stop its running ones at the next step.
        Safe to call more than once and from any thread (gRPC calls it from its cancellation callback)."""
        ticket.cancelled.set()
        with self._lock:
            if ticket not in self._open:
                return
            self._open.discard(ticket)
            kept = deque(job for job in self._pending if job.ticket is not ticket)
            dropped = len(self._pending) - len(kept)
            self._pending = kept
            self._lock.notify_all()
        if dropped:
            self._metrics.frames.labels("cancelled").inc(dropped)

    @property
    def queue_depth(self) -> int:
        """Frames waiting to start."""
        with self._lock:
            return len(self._pending)

    @property
    def open_requests(self) -> int:
        """Render calls admitted and not yet released."""
        with self._lock:
            return len(self._open)

    # --- the worker -------------------------------------------------------------------------------------------------

    def _next_batch(self) -> list[_Job] | None:
        """The oldest waiting frame and up to ``max_batch_size - 1`` compatible ones after it, once the batch is full
        or the oldest frame's batching window has passed; None when closing."""
        with self._lock:
            while True:
                while not self._pending and not self._closing:
                    self._lock.wait()
                if self._closing:
                    return None
                first = self._pending[0]
                size = 1 if first.spec.deterministic else self.max_batch_size
                batch = [job for job in self._pending if self._batch_mates(first, job)][:size]
                wait = first.enqueued_at + self.batch_window - self._clock()
                if len(batch) >= size or wait <= 0 or self.batch_within_request:
                    break
                # New frames, a release or closing wake this early; the loop then looks again from the start.
                self._lock.wait(wait)
            chosen = {id(job) for job in batch}
            self._pending = deque(job for job in self._pending if id(job) not in chosen)
            return batch

    def _batch_mates(self, first: _Job, job: _Job) -> bool:
        """Whether ``job`` may join the batch of ``first``."""
        if self.batch_within_request and job.ticket is not first.ticket:
            return False
        return job.spec.batch_key == first.spec.batch_key

    def _serve(self) -> None:
        while (batch := self._next_batch()) is not None:
            self._render(batch)

    def _render(self, batch: list[_Job]) -> None:
        started = self._clock()
        tickets = list(dict.fromkeys(job.ticket for job in batch))
        metrics = self._metrics
        metrics.batch_size.observe(len(batch))
        metrics.inflight_frames.set(len(batch))
        for job in batch:
            metrics.queue_seconds.observe(max(0.0, started - job.enqueued_at))
        steps_done = 0

        def on_step(index: int, step: int, total: int) -> None:
            nonlocal steps_done
            steps_done += 1
            job = batch[index]
            if not job.ticket.cancelled.is_set():
                job.ticket.events.put(StepDone(job.spec.frame, step, total))

        def should_stop() -> bool:
            return self._closing or all(ticket.cancelled.is_set() for ticket in tickets)

        finished: set[int] = set()
        denoise_seconds = 0.0
        try:
            for result in self._backend.render([job.spec for job in batch], on_step, should_stop):
                finished.add(result.index)
                job = batch[result.index]
                denoise_seconds = max(denoise_seconds, result.timings.denoise_seconds)
                if result.error is not None or result.image is None:
                    error = result.error or RuntimeError(f"the backend returned no image for frame {result.index}")
                    job.ticket.events.put(RenderFailed(error))
                    metrics.frames.labels("failed").inc()
                    continue
                done = FrameDone(job.spec, result.image, result.timings, started - job.enqueued_at, self._backend.name)
                self._deliver(job.ticket, done)
                metrics.frames.labels("rendered").inc()
        except Exception as error:
            log.warning("a batch of %d frames failed: %s", len(batch), error, exc_info=True)
            for ticket in tickets:
                ticket.events.put(RenderFailed(error))
            metrics.frames.labels("failed").inc(len(batch) - len(finished))
            return
        finally:
            metrics.inflight_frames.set(0)
            metrics.steps.inc(steps_done)
            elapsed = self._clock() - started
            metrics.batch_seconds.observe(elapsed)
            if steps_done and (denoise_seconds or elapsed) > 0:
                metrics.steps_per_second.set(steps_done / (denoise_seconds or elapsed))
        for index, job in enumerate(batch):
            if index in finished:
                continue
            if job.ticket.cancelled.is_set() or self._closing:
                metrics.frames.labels("cancelled").inc()
            else:
                # The backend stopped early although someone still waits: a bug in the backend, said as such.
                job.ticket.events.put(RenderFailed(RuntimeError(f"the backend returned no image for frame {index}")))
                metrics.frames.labels("failed").inc()

    @staticmethod
    def _deliver(ticket: RenderTicket, done: FrameDone) -> None:
        ticket.events.put(done)
        ticket.delivered += 1
        if ticket.delivered == ticket.frames:
            ticket.events.put(AllDone())
