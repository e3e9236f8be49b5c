"""Scripted gRPC services for tests of the gateway's policy: real servers on port 0 whose behaviour a test sets.

In this process (``serve_renderer(ScriptedRenderer(...))``) or as a process of its own, to be killed:

    python -m tests.support.scripted renderer --port 50999 --delay 0.5 --log renders.jsonl

A scripted renderer draws a plain panel whose colour encodes the frame number (red = 20 x frame), so a scripted
validator can tell which frame it is scoring; each render is logged (start, done, cancelled) with the process id.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc
from PIL import Image

from storyboard.v1 import common_pb2
from storyboard_common.errors import FailedPrecondition
from storyboard_common.frames import rendered_frame_event
from storyboard_common.images import encode
from storyboard_common.server import Registration, ServiceServer, build_server, run_service
from storyboard_common.settings import ServiceSettings
from storyboard_common.v1 import (
    planner_pb2,
    planner_pb2_grpc,
    renderer_pb2,
    renderer_pb2_grpc,
    validator_pb2,
    validator_pb2_grpc,
)


class BlockingRenderer(renderer_pb2_grpc.RendererServicer):
    """Sends one progress event per frame, then holds the stream open until the caller goes away."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.cancelled = threading.Event()

    def Render(self, request: renderer_pb2.RenderRequest, context: grpc.ServicerContext):
        context.add_callback(self.cancelled.set)
        for spec in request.frames:
            yield renderer_pb2.RenderEvent(
                progress=renderer_pb2.FrameProgress(frame=spec.frame, step=1, total_steps=spec.steps)
            )
        self.started.set()
        while context.is_active():
            self.cancelled.wait(0.05)

    def Info(self, request: renderer_pb2.RendererInfoRequest, context: grpc.ServicerContext):
        return renderer_pb2.RendererInfo(backend="blocking-test")


class RefusingRenderer(renderer_pb2_grpc.RendererServicer):
    """Refuses every frame with FAILED_PRECONDITION and ``reason``, as a renderer that cannot draw it does: the
    storyboard fails."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def Render(self, request: renderer_pb2.RenderRequest, context: grpc.ServicerContext) -> Iterator[Any]:
        raise FailedPrecondition(self.reason)
        yield  # a generator, as a streaming servicer is

    def Info(self, request: renderer_pb2.RendererInfoRequest, context: grpc.ServicerContext):
        return renderer_pb2.RendererInfo(backend="refusing-test")


def read_render_log(log: Path) -> list[dict[str, Any]]:
    """The records of a scripted renderers' log, oldest first. A line another process is appending may be read half
    written; it is left for the next read."""
    if not log.exists():
        return []
    text = log.read_text()
    return [json.loads(line) for line in text[: text.rfind("\n") + 1].splitlines()]


def frame_number_of(data: bytes) -> int:
    """The frame number a scripted renderer painted into an image."""
    with Image.open(io.BytesIO(data)) as image:
        return round(image.convert("RGB").getpixel((0, 0))[0] / 20)


class ScriptedRenderer(renderer_pb2_grpc.RendererServicer):
    """Renders plain panels, taking ``delay`` seconds a frame (spread over its steps, each reported as progress);
    records every finished render in ``renders`` and, with ``log``, as JSON lines shared by several processes.
    Frames numbered ``held_from`` or more wait for ``release`` before their last step, so that a test can stop the
    gateway while they are in flight however slow the machine is."""

    def __init__(
        self,
        delay: float = 0.0,
        log: Path | None = None,
        adapters: Sequence[str] = (),
        held_from: int = 0,
        consistency: str = "off",
        backend: str = "scripted",
        max_batch_size: int = 8,
        queue_depth: int = 0,
    ) -> None:
        self.backend, self.max_batch_size, self.queue_depth = backend, max_batch_size, queue_depth  # what Info says
        self.delay = delay
        self.consistency = consistency  # what Info says: "shared-attention" asks for a storyboard's frames together
        self.requests: list[list[int]] = []  # the frame numbers of each Render call
        self.log = log
        self.adapters = list(adapters)
        self.held_from = held_from
        self.release = threading.Event()
        self.renders: list[tuple[int, int]] = []  # (frame, seed) of each finished render
        self.progress_intervals: list[float] = []  # what each call asked for; every step is reported regardless
        self.references: dict[int, list[tuple[str, int]]] = {}  # frame -> (trigger token, pictures) it was sent
        self.adapters_of: dict[int, list[tuple[str, float]]] = {}  # frame -> (adapter, weight) it was sent
        self.cancelled = threading.Event()
        self._lock = threading.Lock()

    def _record(self, event: str, spec: renderer_pb2.FrameSpec) -> None:
        if self.log is None:
            return
        record = {"pid": os.getpid(), "event": event, "frame": spec.frame, "seed": spec.seed, "time": time.time()}
        line = json.dumps(record)
        with self._lock, self.log.open("a") as handle:  # one short append: whole lines even from several processes
            handle.write(line + "\n")

    def Render(self, request: renderer_pb2.RenderRequest, context: grpc.ServicerContext) -> Iterator[Any]:
        with self._lock:
            self.progress_intervals.append(request.progress_interval_seconds)
            self.requests.append([spec.frame for spec in request.frames])
        for spec in request.frames:
            self._record("start", spec)
            with self._lock:
                self.references[spec.frame] = [(r.trigger_token, len(r.pictures)) for r in spec.references]
                self.adapters_of[spec.frame] = [(a.name, round(a.weight, 3)) for a in spec.adapters]
            steps = max(1, spec.steps)
            for step in range(1, steps + 1):
                time.sleep(self.delay / steps)
                if step == steps and self.held_from and spec.frame >= self.held_from:
                    while not self.release.wait(0.05) and context.is_active():
                        pass
                if not context.is_active():
                    self._record("cancelled", spec)
                    self.cancelled.set()
                    return
                yield renderer_pb2.RenderEvent(
                    progress=renderer_pb2.FrameProgress(frame=spec.frame, step=step, total_steps=steps)
                )
            panel = Image.new("RGB", (spec.width, spec.height), (spec.frame * 20, spec.seed % 256, 90))
            data, mime_type = encode(panel, "PNG")
            with self._lock:
                self.renders.append((spec.frame, spec.seed))
            self._record("done", spec)
            yield rendered_frame_event(
                frame=spec.frame,
                seed=spec.seed,
                data=data,
                mime_type=mime_type,
                size=(spec.width, spec.height),
                timings=common_pb2.FrameTimings(denoise_seconds=self.delay),
                backend="scripted",
            )

    def Info(self, request: renderer_pb2.RendererInfoRequest, context: grpc.ServicerContext):
        return renderer_pb2.RendererInfo(
            backend=self.backend, available_adapters=self.adapters, consistency=self.consistency,
            max_batch_size=self.max_batch_size, queue_depth=self.queue_depth,
        )  # fmt: skip


class ScriptedValidator(validator_pb2_grpc.ValidatorServicer):
    """Scores frames of a ScriptedRenderer: ``consistency[frame]`` lists the consistency of each attempt at that
    frame in order (``default`` after the list runs out), given to each image the first time it is scored; an image
    scored again (in the repetition check over kept frames) gets its earlier score back. Like the real validator, it
    takes an image named by its SHA-256 alone if it has had its bytes, and answers FAILED_PRECONDITION otherwise."""

    THRESHOLDS = common_pb2.Thresholds(consistency=0.7, alignment=0.2, repetition=0.95)

    def __init__(self, consistency: dict[int, list[float]] | None = None, default: float = 0.9) -> None:
        self.consistency = consistency or {}
        self.default = default
        self.calls: list[list[int]] = []  # the frame numbers of each Score call
        # The frame numbers of each call that named every frame by its digest alone, as the repetition check over
        # frames already scored does (a call scoring new frames sends their bytes, however they are batched).
        self.digest_only_calls: list[list[int]] = []
        self._attempts: dict[int, int] = {}
        self._by_image: dict[bytes, float] = {}
        self._held: dict[bytes, bytes] = {}  # every image sent with its bytes, by SHA-256
        self._lock = threading.Lock()

    def _data(self, image: common_pb2.Image, field: str) -> bytes:
        if image.data:
            return image.data
        if image.sha256 not in self._held:
            raise FailedPrecondition(f"{field}: no image with that sha256 is held here")
        return self._held[image.sha256]

    def _verdict(self, consistency: float) -> int:
        passed = consistency >= self.THRESHOLDS.consistency
        return common_pb2.VERDICT_PASS if passed else common_pb2.VERDICT_LOW_CONSISTENCY

    def Score(self, request: validator_pb2.ScoreRequest, context: grpc.ServicerContext):
        scores = []
        with self._lock:
            for image in (*request.frames, *request.references):
                if image.data:
                    self._held[hashlib.sha256(image.data).digest()] = image.data
            for index, reference in enumerate(request.references):
                self._data(reference, f"references[{index}]")
            datas = [self._data(image, f"frames[{index}]") for index, image in enumerate(request.frames)]
            frames = [frame_number_of(data) for data in datas]
            self.calls.append(frames)
            if not any(image.data for image in request.frames):
                self.digest_only_calls.append(frames)
            for index, (frame, data) in enumerate(zip(frames, datas, strict=True)):
                key = hashlib.sha256(data).digest()
                if key not in self._by_image:  # an image's score is decided the first time it is seen
                    attempt = self._attempts[frame] = self._attempts.get(frame, 0) + 1
                    script = self.consistency.get(frame, [])
                    self._by_image[key] = script[attempt - 1] if attempt <= len(script) else self.default
                value = self._by_image[key]
                scores.append(
                    common_pb2.FrameScore(
                        index=index,
                        consistency=value,
                        alignment=0.3,
                        repetition=0.1 if len(frames) > 1 else 0.0,
                        most_similar_index=(index + 1) % len(frames) if len(frames) > 1 else -1,
                        verdict=self._verdict(value),
                    )
                )
        return validator_pb2.ScoreResponse(scores=scores, thresholds=self.THRESHOLDS, model="scripted")

    def Info(self, request: validator_pb2.ValidatorInfoRequest, context: grpc.ServicerContext):
        return validator_pb2.ValidatorInfo(model="scripted", ready=True, thresholds=self.THRESHOLDS, max_frames=16)


class ScriptedPlanner(planner_pb2_grpc.PlannerServicer):
    """Plans any story as ``num_frames`` (default 6) numbered scenes."""

    def Plan(self, request: planner_pb2.PlanRequest, context: grpc.ServicerContext):
        count = request.options.num_frames if request.options.HasField("num_frames") else 6
        scenes = [
            common_pb2.Scene(frame=n, description=f"scene {n}", camera="wide shot", mood="calm", prompt=f"scene {n}")
            for n in range(1, count + 1)
        ]
        return planner_pb2.PlanResponse(plan=common_pb2.Plan(story=request.story, scenes=scenes, planner="scripted"))


_SERVICES = {  # servicer base class: (full service name, how to add it to a server)
    renderer_pb2_grpc.RendererServicer: ("storyboard.v1.Renderer", renderer_pb2_grpc.add_RendererServicer_to_server),
    planner_pb2_grpc.PlannerServicer: ("storyboard.v1.Planner", planner_pb2_grpc.add_PlannerServicer_to_server),
    validator_pb2_grpc.ValidatorServicer: (
        "storyboard.v1.Validator",
        validator_pb2_grpc.add_ValidatorServicer_to_server,
    ),
}


def _registration(servicer: Any) -> Registration:
    for base, (name, add) in _SERVICES.items():
        if isinstance(servicer, base):
            return Registration(name, lambda server, add=add: add(servicer, server))
    raise TypeError(f"not a storyboard.v1 servicer: {servicer!r}")


def serve(servicer: Any, settings: ServiceSettings | None = None) -> tuple[ServiceServer, int]:
    """Start a scripted Renderer, Validator or Planner on a free loopback port; the caller stops it."""
    server, port = build_server("scripted", settings or ServiceSettings(port=0), [_registration(servicer)])
    server.start()
    server.ready.wait(5)
    return server, port


def serve_renderer(servicer: renderer_pb2_grpc.RendererServicer) -> tuple[ServiceServer, int]:
    """Start ``servicer`` as a Renderer on a free port; the caller stops it."""
    return serve(servicer)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.scripted")
    parser.add_argument("service", choices=["renderer"])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds per frame")
    parser.add_argument("--log", type=Path, default=None, help="append one JSON line per render event")
    args = parser.parse_args(argv)
    renderer = ScriptedRenderer(delay=args.delay, log=args.log)
    settings = ServiceSettings(port=args.port, grace_seconds=0)
    return run_service(
        "scripted-renderer",
        settings,
        lambda s: build_server("scripted-renderer", s, [_registration(renderer)]),
    )


if __name__ == "__main__":
    sys.exit(main())
