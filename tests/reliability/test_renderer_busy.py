"""A renderer that refuses frames as busy (RESOURCE_EXHAUSTED before a frame starts: its open calls or its queue are
full, and it says "retry later") must not cost an accepted storyboard: the gateway waits and sends the frame again.
An error after the frame started (out of memory mid-render) still fails the storyboard at once, and a cancel during
the wait ends it at once. In this process: the gateway's service and scripted services on loopback.

Found by the load scenario (test_load.py): with two sketch replicas at their default 16 open calls, a burst of
storyboards lost some of them to "the renderer is busy".
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from gateway.downstream import CallLimits, Downstream
from gateway.events import EventLog
from gateway.frames import FramePolicy
from gateway.metrics import Metrics
from gateway.service import StoryboardService
from gateway.store import JobStore
from storyboard.v1 import storyboards_pb2 as sb
from storyboard_common.errors import ResourceExhausted
from storyboard_common.v1 import renderer_pb2
from tests.reliability.conftest import Tally
from tests.support.scripted import ScriptedPlanner, ScriptedRenderer, ScriptedValidator, serve

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(120)]
SCENARIO = "renderer busy (RESOURCE_EXHAUSTED) under a storyboard"
SPEC = sb.StoryboardSpec(story="A fox crosses a frozen river", num_frames=6, num_inference_steps=2, width=256,
                         height=256)  # fmt: skip


class BusyRenderer(ScriptedRenderer):
    """Refuses the first ``busy`` Render calls as a full renderer does; with ``fail_mid_frame``, every call fails
    after its first progress event instead, as an out-of-memory error does."""

    def __init__(self, busy: int = 0, fail_mid_frame: bool = False) -> None:
        super().__init__(delay=0.01)
        self.busy, self.fail_mid_frame, self.refused = busy, fail_mid_frame, 0
        self._count = threading.Lock()

    def Render(self, request: renderer_pb2.RenderRequest, context: grpc.ServicerContext) -> Iterator[Any]:
        with self._count:
            refuse = self.refused < self.busy
            self.refused += refuse
        if refuse:
            raise ResourceExhausted("the renderer is busy: 16 Render calls are open and the limit is 16; retry later")
        for number, event in enumerate(super().Render(request, context)):
            if self.fail_mid_frame and number == 1:
                raise ResourceExhausted("out of device memory rendering 1 frame(s) of 256x256")
            yield event


@pytest.fixture
def stack(tmp_path) -> Iterator[Any]:
    started = []

    def run(renderer: BusyRenderer, cancel_after: float | None = None) -> tuple[sb.Storyboard, Metrics, float]:
        servers = [serve(ScriptedPlanner()), serve(renderer), serve(ScriptedValidator())]
        started.extend(server for server, _ in servers)
        store = JobStore(tmp_path / f"jobs-{len(started)}.sqlite3", tmp_path)
        metrics = Metrics()

        async def storyboard() -> tuple[sb.Storyboard, float]:
            downstream = Downstream(
                *(f"127.0.0.1:{port}" for _, port in servers), CallLimits(frame_timeout=60), metrics
            )
            service = StoryboardService(store, EventLog(store, asyncio.get_running_loop()), downstream, metrics,
                                        FramePolicy(frames_in_flight=6), max_running=1)  # fmt: skip
            started_at = time.monotonic()
            job = await service.create(SPEC)
            if cancel_after is not None:
                await asyncio.sleep(cancel_after)
                await service.cancel(job.id)
            async for _event in service.follow(job.id, 0):
                pass
            seconds = time.monotonic() - started_at
            await service.close()
            await downstream.close()
            return store.get(job.id).snapshot(), seconds

        final, seconds = asyncio.run(storyboard())
        store.close()
        return final, metrics, seconds

    yield run
    for server in started:
        server.stop(0)


def _busy_retries(metrics: Metrics) -> float:
    return metrics.retries.labels("replica_busy")._value.get()


def test_frames_refused_as_busy_are_sent_again_and_the_storyboard_completes(stack, tally: Tally):
    renderer = BusyRenderer(busy=8)
    final, metrics, _ = stack(renderer)
    completed = final.state == sb.STORYBOARD_STATE_COMPLETED
    tally.record(SCENARIO, "completed" if completed else "lost", f"{final.error}")
    assert completed, final.error
    assert renderer.refused == 8 and _busy_retries(metrics) == 8
    assert sorted(frame for frame, _ in renderer.renders) == list(range(1, 7))  # each frame drawn once


def test_an_error_after_the_frame_started_is_not_retried(stack, tally: Tally):
    final, metrics, seconds = stack(BusyRenderer(fail_mid_frame=True))
    failed = final.state == sb.STORYBOARD_STATE_FAILED and "out of device memory" in final.error
    tally.record(SCENARIO, "refused" if failed else "lost", f"{sb.StoryboardState.Name(final.state)} {final.error}")
    assert failed, final
    assert _busy_retries(metrics) == 0 and seconds < 10


def test_a_cancel_ends_the_wait_for_a_busy_renderer(stack, tally: Tally):
    final, _, seconds = stack(BusyRenderer(busy=10_000), cancel_after=1.0)
    cancelled = final.state == sb.STORYBOARD_STATE_CANCELLED
    tally.record(SCENARIO, "refused" if cancelled else "lost", f"{sb.StoryboardState.Name(final.state)}")
    assert cancelled and seconds < 10, (final.state, seconds)
