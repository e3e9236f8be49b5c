"""The ``sketch`` backend: a storyboard layout panel per frame, drawn on the CPU without any model weights.

It is a preview, not a render: the demo and machines without a GPU use it, and every panel carries a SKETCH stamp.
A panel is a pure function of the frame's scene (or prompt), seed and size, so it is deterministic like a real render.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

from PIL import Image

from services.renderer.backend import (
    BackendDescription,
    BackendTimings,
    FrameResult,
    FrameSpec,
    StepCallback,
    StopCheck,
)
from services.renderer.sketch_panel import draw_panel
from services.renderer.sketch_scene import plan_panel

WARM_UP_FRAME = FrameSpec(
    frame=1, prompt="warm-up, wide shot of the steppe", seed=0, width=256, height=256, steps=1, guidance_scale=0.0
)


def sketch_frame(spec: FrameSpec) -> Image.Image:
    """The panel for one frame."""
    return draw_panel(plan_panel(spec), frame=spec.frame, seed=spec.seed, width=spec.width, height=spec.height)


class SketchBackend:
    """Draws sketch panels. A frame has ``steps`` virtual steps, reported as progress like a real render's, so
    clients see the same event stream from either backend; they cost nothing, and cancellation is checked at each."""

    name = "sketch"
    applies_adapters = False
    applies_references = False
    png_level = 1  # flat line art shrinks many times at zlib's lightest level

    def __init__(self) -> None:
        self.frames_drawn = 0  # for tests and logs: how many panels were actually drawn

    def describe(self) -> BackendDescription:
        return BackendDescription(name=self.name, model="sketch", device="cpu", dtype="none")

    def warm_up(self) -> None:
        sketch_frame(WARM_UP_FRAME)

    def render(
        self, frames: Sequence[FrameSpec], on_step: StepCallback, should_stop: StopCheck
    ) -> Iterator[FrameResult]:
        for index, spec in enumerate(frames):
            for step in range(1, spec.steps + 1):
                if should_stop():
                    return
                on_step(index, step, spec.steps)
            started = time.perf_counter()
            image = sketch_frame(spec)
            self.frames_drawn += 1
            yield FrameResult(index, image, BackendTimings(denoise_seconds=time.perf_counter() - started))

    def close(self) -> None:
        """Nothing to release: a sketch holds no weights."""
