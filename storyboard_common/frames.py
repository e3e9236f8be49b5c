"""The message that carries a rendered frame from a renderer to the gateway."""

from __future__ import annotations

from storyboard.v1 import common_pb2
from storyboard_common.v1 import renderer_pb2


def rendered_frame_event(
    *,
    frame: int,
    seed: int,
    data: bytes,
    mime_type: str,
    size: tuple[int, int],
    timings: common_pb2.FrameTimings,
    backend: str,
) -> renderer_pb2.RenderEvent:
    """The RenderEvent with frame ``frame``'s encoded image, built in place: a message passed to a constructor is
    copied (serialized and parsed), and the image would be copied twice on its way two levels down."""
    event = renderer_pb2.RenderEvent()
    rendered = event.frame
    rendered.frame, rendered.seed, rendered.backend = frame, seed, backend
    rendered.image.data = data
    rendered.image.mime_type = mime_type
    rendered.image.width, rendered.image.height = size
    rendered.timings.CopyFrom(timings)
    return event
