"""The services the gateway drives, over asyncio gRPC channels: the planner, the renderer replicas (spread over by
``round_robin``) and the validator.

Retries are declared, not hand-rolled. A call that finds its replica gone before any answer is sent again at once,
to another replica, by the channel's own retry policy (``render_unavailable_retries`` times for a render). A render
that no replica takes even so (every one is busy, warming up, restarting or unreachable: RESOURCE_EXHAUSTED or
UNAVAILABLE before the frame began) waits for one, by one tenacity policy: sent again after a jittered, doubling
wait, until the frame's deadline. A render whose replica went away while at work on it (stopped, scaled down,
restarted) is not the frame's fault: it is sent again at once, without counting, up to ``MAX_LOST_AT_WORK`` times
(a frame that takes every replica down with it fails instead of looping).

Frames drawn with adapters go first to the replica their adapter set goes to (the same for every storyboard), when
its next batch has room for them: there they batch with other storyboards' frames of the same set, which it keeps
merged into its weights. A replica that is full or away leaves them to the round-robin spread above.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)

from gateway import decisions
from gateway.metrics import Metrics
from storyboard.v1 import common_pb2
from storyboard.v1 import storyboards_pb2 as sb
from storyboard_common.channels import ChannelSecurity, connect_every_replica, open_aio_channel, replica_addresses
from storyboard_common.errors import ServiceError
from storyboard_common.interceptors import request_metadata
from storyboard_common.progress import ProgressThrottle
from storyboard_common.v1 import (
    planner_pb2,
    planner_pb2_grpc,
    renderer_pb2,
    renderer_pb2_grpc,
    validator_pb2,
    validator_pb2_grpc,
)

log = logging.getLogger(__name__)
WAIT_FIRST, WAIT_MAX, MAX_WAITS = 0.2, 5.0, 60  # for a replica to take a frame: seconds, then times
MAX_LOST_AT_WORK = 5
REPLICAS_TTL = 30.0  # seconds between two resolutions of the renderers' addresses (a DNS name's replicas change)


@dataclass(frozen=True)
class CallLimits:
    """Deadlines of the calls the gateway makes, and how often it sends a render again."""

    plan_timeout: float = 120.0
    frame_timeout: float = 600.0
    validate_timeout: float = 60.0
    info_timeout: float = 5.0  # a renderer's Info: what it is, and how full its queue is
    render_unavailable_retries: int = 3
    progress_interval: float = 0.1  # least seconds between two progress events of a frame (first and last go out)


class NoReplicaTookIt(Exception):
    """No replica began the render (RESOURCE_EXHAUSTED or UNAVAILABLE before it started): send it again after a
    wait."""

    def __init__(self, error: grpc.aio.AioRpcError) -> None:
        super().__init__(error.details())
        self.error = error


class Downstream:
    """Stubs of the services the gateway drives, on channels opened in the running loop."""

    def __init__(
        self,
        planner: str,
        renderers: str,
        validator: str,
        limits: CallLimits,
        metrics: Metrics,
        security: ChannelSecurity | None = None,
    ) -> None:
        self.limits, self._metrics, self._security, self._renderers = limits, metrics, security, renderers
        attempts = limits.render_unavailable_retries + 1
        self._channels = [
            open_aio_channel(planner, retry_services=("storyboard.v1.Planner",), security=security),
            open_aio_channel(renderers, retry_services=("storyboard.v1.Renderer",), attempts=attempts,
                             security=security),
        ]  # fmt: skip
        self.planner = planner_pb2_grpc.PlannerStub(self._channels[0])
        self.renderer = renderer_pb2_grpc.RendererStub(self._channels[1])
        self.validator: validator_pb2_grpc.ValidatorStub | None = None
        if validator:
            self._channels.append(
                open_aio_channel(validator, retry_services=("storyboard.v1.Validator",), security=security)
            )
            self.validator = validator_pb2_grpc.ValidatorStub(self._channels[2])
        self._replica_stubs: dict[str, renderer_pb2_grpc.RendererStub] = {}  # one channel each, opened when needed
        self._replicas: list[str] = []
        self._replicas_resolved = -math.inf

    @property
    def renderer_replicas(self) -> int:
        """How many renderer replicas the gateway spreads frames over."""
        return max(1, len(self._replica_list()))

    async def connect_renderers(self) -> int:
        """Connect to every renderer replica before the first frame, so that frames are spread over all of them from
        the first storyboard on; returns how many replicas accepted a connection."""
        return await connect_every_replica(self._channels[1], self._renderers, self._security)

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()

    # -- calls --------------------------------------------------------------------------------------------------

    async def plan(self, request: planner_pb2.PlanRequest) -> planner_pb2.PlanResponse:
        with self._metrics.timed("plan"):
            return await self.planner.Plan(request, timeout=self.limits.plan_timeout, metadata=request_metadata())

    async def review(self, request: planner_pb2.ReviewRequest) -> planner_pb2.PlanResponse:
        with self._metrics.timed("plan"):
            return await self.planner.Review(request, timeout=self.limits.plan_timeout, metadata=request_metadata())

    async def plan_for(self, spec: sb.StoryboardSpec) -> common_pb2.Plan:
        """The plan of a checked spec: the planner's for its story, or its review of the plan the spec carries (which
        is never planned again); with the spec's negative prompt, when it has one."""
        if spec.HasField("plan"):
            given = common_pb2.Plan()
            given.CopyFrom(spec.plan)
            given.story = given.story or spec.story
            plan = (await self.review(planner_pb2.ReviewRequest(plan=given))).plan
        else:
            options = planner_pb2.PlanOptions(
                temperature=spec.temperature, seed=spec.base_seed, characters=spec.characters
            )
            if spec.HasField("num_frames"):
                options.num_frames = spec.num_frames
            plan = (await self.plan(planner_pb2.PlanRequest(story=spec.story, options=options))).plan
        if spec.negative_prompt:
            plan.negative_prompt = spec.negative_prompt
        return plan

    async def validator_info(self) -> validator_pb2.ValidatorInfo:
        assert self.validator is not None
        return await self.validator.Info(
            validator_pb2.ValidatorInfoRequest(), timeout=self.limits.validate_timeout, metadata=request_metadata()
        )

    async def score(self, request: validator_pb2.ScoreRequest, stage: str) -> validator_pb2.ScoreResponse:
        assert self.validator is not None
        with self._metrics.timed(stage):
            timeout = self.limits.validate_timeout
            return await self.validator.Score(request, timeout=timeout, metadata=request_metadata())

    async def renderer_info(self) -> renderer_pb2.RendererInfo | None:
        """What a renderer replica is and can do; None when none answers."""
        try:
            return await self.renderer.Info(renderer_pb2.RendererInfoRequest(), timeout=self.limits.info_timeout,
                                            metadata=request_metadata())  # fmt: skip
        except grpc.aio.AioRpcError as error:
            log.warning("no renderer says what it is (%s)", error.code().name)
            return None

    async def render(
        self, request: renderer_pb2.RenderRequest, progress: Callable[[renderer_pb2.FrameProgress], None]
    ) -> renderer_pb2.RenderedFrame:
        """The request's one frame from a replica (``render_frames``)."""
        return (await self.render_frames(request, progress))[request.frames[0].frame]

    async def render_frames(
        self, request: renderer_pb2.RenderRequest, progress: Callable[[renderer_pb2.FrameProgress], None]
    ) -> dict[int, renderer_pb2.RenderedFrame]:
        """The request's frames, by number, from one replica: the one their adapter set goes to when it has room
        (``_render_with_their_adapters``), else any, sent again while replicas are busy or go away (see the module's
        text); ``progress`` is told each step the replica reports, thinned to the interval per frame."""
        joined = await self._render_with_their_adapters(request, progress)
        if joined is not None:
            return joined
        busy = AsyncRetrying(
            retry=retry_if_exception(lambda error: isinstance(error, NoReplicaTookIt)),
            wait=wait_random_exponential(multiplier=WAIT_FIRST, max=WAIT_MAX),
            stop=stop_after_delay(self.limits.frame_timeout) | stop_after_attempt(MAX_WAITS),
            before_sleep=self._count_wait,
            reraise=True,
        )
        try:
            async for attempt in busy:
                with attempt:
                    return await self._render_resuming_lost(request, progress)
        except NoReplicaTookIt as busy_to_the_end:
            raise busy_to_the_end.error from None
        raise AssertionError("unreachable: the retrying loop returns or raises")

    async def _render_with_their_adapters(
        self, request: renderer_pb2.RenderRequest, progress: Callable[[renderer_pb2.FrameProgress], None]
    ) -> dict[int, renderer_pb2.RenderedFrame] | None:
        """The frames from the replica their adapter set goes to (``decisions.adapter_replica``), when its next batch
        has room for them: there they join the frames of other storyboards drawn with the same set, which the replica
        keeps merged. None when they have no adapters, there is one replica, or that one has no room or is away: they
        are then spread like any other frames."""
        key = decisions.adapter_set_key(request.frames[0].adapters)
        replicas = self._replica_list()
        if not key or len(replicas) < 2:
            return None
        stub = self._replica_stub(decisions.adapter_replica(key, replicas))
        try:
            info = await stub.Info(renderer_pb2.RendererInfoRequest(), timeout=self.limits.info_timeout,
                                   metadata=request_metadata())  # fmt: skip
            if info.queue_depth + len(request.frames) > max(1, info.max_batch_size):
                return None
            return await self._render_once(request, progress, _RenderCall(), stub)
        except grpc.aio.AioRpcError as error:
            if error.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED):
                raise
            log.info("the replica of adapters %s did not take frames %s (%s); spreading them", key,
                     [spec.frame for spec in request.frames], error.code().name)  # fmt: skip
            return None

    def _replica_list(self) -> list[str]:
        """The renderer replicas' addresses, resolved again at most every REPLICAS_TTL seconds."""
        now = time.monotonic()
        if now - self._replicas_resolved > REPLICAS_TTL:
            self._replicas, self._replicas_resolved = replica_addresses(self._renderers), now
        return self._replicas

    def _replica_stub(self, address: str) -> renderer_pb2_grpc.RendererStub:
        if address not in self._replica_stubs:
            channel = open_aio_channel(address, security=self._security)
            self._channels.append(channel)
            self._replica_stubs[address] = renderer_pb2_grpc.RendererStub(channel)
        return self._replica_stubs[address]

    def _count_wait(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        busy = isinstance(error, NoReplicaTookIt) and error.error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        self._metrics.retries.labels("replica_busy" if busy else "replica_lost").inc()
        log.info("no renderer took the frame (%s); waiting to send it again", error)

    async def _render_resuming_lost(
        self, request: renderer_pb2.RenderRequest, progress: Callable[[renderer_pb2.FrameProgress], None]
    ) -> dict[int, renderer_pb2.RenderedFrame]:
        lost = 0
        while True:
            call = _RenderCall()
            try:
                return await self._render_once(request, progress, call)
            except grpc.aio.AioRpcError as error:
                code = error.code()
                if code == grpc.StatusCode.UNAVAILABLE and call.started and lost < MAX_LOST_AT_WORK:
                    lost += 1
                    log.warning("render of frames %s lost its replica while at work; sending it again",
                                [spec.frame for spec in request.frames])  # fmt: skip
                    self._metrics.retries.labels("replica_lost").inc()
                    continue
                if code in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE) and not call.started:
                    raise NoReplicaTookIt(error) from None
                raise

    async def _render_once(
        self,
        request: renderer_pb2.RenderRequest,
        progress: Callable[[renderer_pb2.FrameProgress], None],
        call: _RenderCall,
        renderer: renderer_pb2_grpc.RendererStub | None = None,
    ) -> dict[int, renderer_pb2.RenderedFrame]:
        """One Render call; ``call.started`` is set once the replica's first message shows it at work."""
        # The replica sends one step per interval at most, as asked. This guard, at half of it so that network jitter
        # never drops one of those, holds a renderer that ignores the request to about the same rate.
        throttles = {spec.frame: ProgressThrottle(self.limits.progress_interval / 2) for spec in request.frames}
        timeout = self.limits.frame_timeout * len(request.frames)  # a batch's frames share the renderer's time
        stream = (renderer or self.renderer).Render(request, timeout=timeout, metadata=request_metadata())
        rendered: dict[int, renderer_pb2.RenderedFrame] = {}
        with self._metrics.timed("render"):
            async for event in stream:
                call.started = True
                if event.HasField("frame"):
                    rendered[event.frame.frame] = event.frame
                    if len(rendered) == len(throttles):
                        return rendered
                elif throttles[event.progress.frame].passes(event.progress.step, event.progress.total_steps):
                    progress(event.progress)
        missing = sorted(set(throttles) - set(rendered))
        raise ServiceError(f"renderer ended the stream without frame {missing[0]}")


@dataclass
class _RenderCall:
    """What one Render call has shown so far."""

    started: bool = False  # the replica sent a message: it was at work on the frame
