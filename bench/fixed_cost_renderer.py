"""A Renderer whose cost per frame is fixed and known: a real ``storyboard.v1.Renderer`` gRPC server (built with
``storyboard_common.server.build_server``: health, reflection, the shared interceptor) that spends ``--frame-seconds``
per frame, or ``--step-seconds`` per step of the frame as a diffusion model does, split over the frame's steps with a
progress event after each (thinned to the request's ``progress_interval_seconds``, as the renderer service thins them),
and returns a real encoded image.

It models one GPU: frames are drawn one at a time, first come first served, however many calls are open (a GPU
renderer queues frames the same way). The time is spent sleeping, not computing, so that eight replicas on a 2-core
machine really run in parallel, as eight GPUs would: the benchmark then measures what the stack adds around the
frames, not how the replicas fight over two cores.

The image is ``bench.natural_image`` at the requested size, in one of 48 variants (its 8 flips and quarter turns, each
with its colour channels in one of 6 orders), encoded as ``--image-format``. A frame's variant follows from its number
and seed, so the frames of one storyboard (up to 10) are all different pictures, and none is judged a repetition of
another. Every frame also carries its seed in a metadata field that decoders pass over (a PNG ``tEXt`` chunk, a JPEG
comment), so that its bytes are its own, as a real renderer's are: the validator keys its embedding cache by a hash of
the bytes, and frames repeating bytes would be found there instead of being decoded and embedded. With
``--encode-each-frame`` every frame is encoded anew (its time goes into ``timings.encode_seconds``); otherwise each
variant is encoded once per size and reused, so that the per-frame cost is the sleep alone (the replicas share the
benchmark's cores, where a real renderer encodes on its own machine). ``--log FILE`` appends one JSON line per frame
sent (pid, frame, seed, the wall-clock times its drawing started and it was handed to gRPC, encode seconds, bytes).

    .venv/bin/python -m bench.fixed_cost_renderer --port 50999 --frame-seconds 0.5
    .venv/bin/python -m bench.fixed_cost_renderer --port 50999 --step-seconds 0.025   # 20 steps: 0.5 s
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import struct
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.natural_image import natural_image  # noqa: E402
from storyboard.v1 import common_pb2  # noqa: E402
from storyboard_common.errors import InvalidArgument  # noqa: E402
from storyboard_common.frames import rendered_frame_event  # noqa: E402
from storyboard_common.images import MIME_TYPES, PNG_LEVEL, encode  # noqa: E402
from storyboard_common.progress import ProgressThrottle  # noqa: E402
from storyboard_common.server import Registration, build_server, run_service  # noqa: E402
from storyboard_common.settings import ServiceSettings  # noqa: E402
from storyboard_common.v1 import renderer_pb2, renderer_pb2_grpc  # noqa: E402

MAX_SIZE = 2048
_TURNS = (None, *Image.Transpose)  # the identity and the 7 flips and quarter turns
VARIANTS = len(_TURNS) * 6  # times the 6 orders of the colour channels


class FifoSlot:
    """One frame at a time, in the order frames asked (``threading.Lock`` promises no order)."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._next_ticket = 0
        self._serving = 0
        self._abandoned: set[int] = set()

    def acquire(self, still_wanted: Callable[[], bool]) -> bool:
        """True once it is this caller's turn; False if ``still_wanted()`` turns false while it waits."""
        with self._condition:
            ticket = self._next_ticket
            self._next_ticket += 1
            while self._serving != ticket:
                if not still_wanted():
                    self._abandoned.add(ticket)  # skipped when its turn comes, keeping the others' order
                    return False
                self._condition.wait(0.05)
            return True

    def release(self) -> None:
        with self._condition:
            self._serving += 1
            while self._serving in self._abandoned:
                self._abandoned.discard(self._serving)
                self._serving += 1
            self._condition.notify_all()


def with_seed(data: bytes, mime_type: str, seed: int) -> bytes:
    """``data`` with ``seed`` added where decoders pass over it: a ``tEXt`` chunk before a PNG's ``IEND``, a comment
    segment after a JPEG's start marker. The pixels stay the same; the bytes are the frame's own. WebP, whose simple
    form has no room for another chunk, is left as it is."""
    text = b"seed\x00" + str(seed).encode()
    if mime_type == MIME_TYPES["PNG"]:
        chunk = struct.pack(">I", len(text)) + b"tEXt" + text + struct.pack(">I", zlib.crc32(b"tEXt" + text))
        return _inserted(data, len(data) - 12, chunk)  # before IEND: its length, type and CRC, 12 bytes in all
    if mime_type == MIME_TYPES["JPEG"]:
        return _inserted(data, 2, b"\xff\xfe" + struct.pack(">H", len(text) + 2) + text)
    return data


def _inserted(data: bytes, at: int, extra: bytes) -> bytes:
    """``data`` with ``extra`` inserted at ``at``, in one copy: slicing and adding copied a 3 MB frame three times
    (~7 ms on the replica, on the cores the benchmark shares)."""
    view = memoryview(data)
    return b"".join((view[:at], extra, view[at:]))


def frame_variant(spec: renderer_pb2.FrameSpec) -> int:
    """Which of the VARIANTS pictures a frame gets: frames 1-10 of a storyboard get 10 different ones (the frame
    number picks among 10, the seed among 4 sets of them), and another storyboard or attempt likely other ones."""
    return (spec.frame - 1) % 10 + 10 * (spec.seed % 4)


class FixedCostRenderer(renderer_pb2_grpc.RendererServicer):
    """Render: ``frame_seconds`` per frame, or ``step_seconds`` per step if given (one frame at a time), progress as
    the request asks, a real image."""

    def __init__(
        self,
        frame_seconds: float,
        image_format: str = "PNG",
        png_level: int = PNG_LEVEL,
        quality: int = 90,
        encode_each_frame: bool = False,
        log: Path | None = None,
        step_seconds: float | None = None,
    ) -> None:
        self.frame_seconds = frame_seconds
        self.step_seconds = step_seconds
        self.image_format = image_format.upper()
        self.png_level = png_level
        self.quality = quality
        self.encode_each_frame = encode_each_frame
        self.log = log
        self._slot = FifoSlot()
        self._images: dict[tuple[int, int], Image.Image] = {}
        self._encoded: dict[tuple[int, int, int], tuple[bytes, str]] = {}
        self._lock = threading.Lock()

    def _image(self, width: int, height: int) -> Image.Image:
        with self._lock:
            if (width, height) not in self._images:
                self._images[width, height] = natural_image(width, height)
            return self._images[width, height]

    def _variant(self, width: int, height: int, variant: int) -> Image.Image:
        image = self._image(width, height)
        turn = _TURNS[variant % len(_TURNS)]
        turned = image if turn is None else image.transpose(turn)
        if turned.size != (width, height):  # a quarter turn of a non-square frame: keep the frame's shape
            turned = turned.resize((width, height))
        channels = turned.split()
        order = list(itertools.permutations(range(3)))[variant // len(_TURNS) % 6]
        return Image.merge("RGB", [channels[index] for index in order])

    def _encoded_frame(self, spec: renderer_pb2.FrameSpec) -> tuple[bytes, str, float]:
        """The frame's bytes, its media type and the seconds spent encoding it (0 for a variant encoded before)."""
        data, mime, seconds = self._encoded_variant(spec.width, spec.height, frame_variant(spec))
        return with_seed(data, mime, spec.seed), mime, seconds

    def _encoded_variant(self, width: int, height: int, variant: int) -> tuple[bytes, str, float]:
        if self.encode_each_frame:
            image = self._variant(width, height, variant)
            started = time.perf_counter()
            data, mime = encode(image, self.image_format, self.quality, self.png_level)
            return data, mime, time.perf_counter() - started
        with self._lock:
            cached = self._encoded.get((width, height, variant))
        if cached is None:
            image = self._variant(width, height, variant)
            cached = encode(image, self.image_format, self.quality, self.png_level)
            with self._lock:
                self._encoded[width, height, variant] = cached
        return cached[0], cached[1], 0.0

    def warm(self, width: int, height: int) -> None:
        """Build the image of a size ahead of the first request (and encode its variants, unless each frame is
        encoded anew)."""
        self._image(width, height)
        if not self.encode_each_frame:
            for variant in range(VARIANTS):
                self._encoded_variant(width, height, variant)

    def Render(self, request: renderer_pb2.RenderRequest, context: grpc.ServicerContext) -> Iterator[Any]:
        for index, spec in enumerate(request.frames):
            for field in ("width", "height"):
                value = getattr(spec, field)
                if not 8 <= value <= MAX_SIZE or value % 8:
                    raise InvalidArgument(f"frames[{index}].{field}", f"must be a multiple of 8 up to {MAX_SIZE}")
        for spec in request.frames:
            queued = time.perf_counter()
            if not self._slot.acquire(context.is_active):
                return
            try:
                started, started_at = time.perf_counter(), time.time()
                waited = started - queued
                steps = max(1, spec.steps)
                seconds = self.frame_seconds if self.step_seconds is None else self.step_seconds * steps
                throttle = ProgressThrottle(request.progress_interval_seconds)  # as the renderer service thins them
                for step in range(1, steps + 1):
                    # Each step ends on a fixed schedule from the frame's start, as a GPU's steps do: the time a
                    # progress message takes to send, or a late wake-up on a busy CPU, does not stretch the frame.
                    time.sleep(max(0.0, started + step * seconds / steps - time.perf_counter()))
                    if not context.is_active():
                        return
                    if throttle.passes(step, steps):
                        yield renderer_pb2.RenderEvent(
                            progress=renderer_pb2.FrameProgress(frame=spec.frame, step=step, total_steps=steps)
                        )
            finally:
                self._slot.release()
            data, mime, encode_seconds = self._encoded_frame(spec)
            timings = common_pb2.FrameTimings(
                queue_seconds=waited, denoise_seconds=seconds, encode_seconds=encode_seconds
            )
            event = rendered_frame_event(
                frame=spec.frame,
                seed=spec.seed,
                data=data,
                mime_type=mime,
                size=(spec.width, spec.height),
                timings=timings,
                backend="fixed-cost",
            )
            self._record(spec, started_at, encode_seconds, len(data))
            yield event

    def _record(self, spec: renderer_pb2.FrameSpec, started: float, encode_seconds: float, size: int) -> None:
        if self.log is None:
            return
        line = json.dumps({"pid": os.getpid(), "frame": spec.frame, "seed": spec.seed, "started": started,
                           "sent": time.time(), "encode_seconds": encode_seconds, "bytes": size})  # fmt: skip
        with self._lock, self.log.open("a") as handle:
            handle.write(line + "\n")

    def Info(self, request: renderer_pb2.RendererInfoRequest, context: grpc.ServicerContext) -> Any:
        return renderer_pb2.RendererInfo(
            backend="fixed-cost",
            model=f"sleep {self.frame_seconds:g} s per frame"
            if self.step_seconds is None
            else f"sleep {self.step_seconds:g} s per step",
            device="cpu",
            limits=renderer_pb2.RenderLimits(min_size=8, max_size=MAX_SIZE, max_steps=1000, max_frames_per_request=16),
            max_batch_size=1,
        )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.fixed_cost_renderer", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0)
    cost = parser.add_mutually_exclusive_group()
    cost.add_argument("--frame-seconds", type=float, default=0.5, help="time spent on each frame")
    cost.add_argument("--step-seconds", type=float, help="time spent on each step of a frame, instead")
    parser.add_argument("--image-format", default="png", choices=["png", "webp", "jpeg"])
    parser.add_argument("--png-level", type=int, default=PNG_LEVEL, help="PNG level 0-9, as images.encode")
    parser.add_argument("--quality", type=int, default=90, help="quality of WebP and JPEG")
    parser.add_argument("--encode-each-frame", action="store_true", help="encode every frame anew")
    parser.add_argument("--warm-size", type=int, action="append", default=[], help="build this size's image first")
    parser.add_argument("--log", type=Path, default=None, help="append one JSON line per frame sent")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    renderer = FixedCostRenderer(
        args.frame_seconds,
        args.image_format,
        args.png_level,
        args.quality,
        args.encode_each_frame,
        args.log,
        args.step_seconds,
    )
    registration = Registration(
        "storyboard.v1.Renderer", lambda server: renderer_pb2_grpc.add_RendererServicer_to_server(renderer, server)
    )

    def warm_up() -> None:
        for size in args.warm_size:
            renderer.warm(size, size)

    settings = ServiceSettings(port=args.port, grace_seconds=0, log_level="WARNING")
    return run_service(
        "fixed-cost-renderer",
        settings,
        lambda s: build_server("fixed-cost-renderer", s, [registration], warm_up=warm_up),
    )


if __name__ == "__main__":
    sys.exit(main())
