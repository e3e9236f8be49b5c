from collections.abc import Iterable as _Iterable
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar

from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from google.protobuf.internal import containers as _containers

from storyboard.v1 import common_pb2 as _common_pb2

DESCRIPTOR: _descriptor.FileDescriptor

class FrameSpec(_message.Message):
    __slots__ = (
        "adapters",
        "deterministic",
        "frame",
        "guidance_scale",
        "height",
        "negative_prompt",
        "prompt",
        "prompt_2",
        "scene",
        "seed",
        "steps",
        "width",
    )
    FRAME_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    PROMPT_2_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_PROMPT_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    GUIDANCE_SCALE_FIELD_NUMBER: _ClassVar[int]
    ADAPTERS_FIELD_NUMBER: _ClassVar[int]
    SCENE_FIELD_NUMBER: _ClassVar[int]
    DETERMINISTIC_FIELD_NUMBER: _ClassVar[int]
    frame: int
    prompt: str
    prompt_2: str
    negative_prompt: str
    seed: int
    width: int
    height: int
    steps: int
    guidance_scale: float
    adapters: _containers.RepeatedCompositeFieldContainer[_common_pb2.AdapterRef]
    scene: _common_pb2.Scene
    deterministic: bool
    def __init__(
        self,
        frame: int | None = ...,
        prompt: str | None = ...,
        prompt_2: str | None = ...,
        negative_prompt: str | None = ...,
        seed: int | None = ...,
        width: int | None = ...,
        height: int | None = ...,
        steps: int | None = ...,
        guidance_scale: float | None = ...,
        adapters: _Iterable[_common_pb2.AdapterRef | _Mapping] | None = ...,
        scene: _common_pb2.Scene | _Mapping | None = ...,
        deterministic: bool | None = ...,
    ) -> None: ...

class RenderRequest(_message.Message):
    __slots__ = ("format", "frames", "progress_interval_seconds", "quality")
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_INTERVAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    frames: _containers.RepeatedCompositeFieldContainer[FrameSpec]
    format: _common_pb2.ImageFormat
    quality: int
    progress_interval_seconds: float
    def __init__(
        self,
        frames: _Iterable[FrameSpec | _Mapping] | None = ...,
        format: _common_pb2.ImageFormat | str | None = ...,
        quality: int | None = ...,
        progress_interval_seconds: float | None = ...,
    ) -> None: ...

class FrameProgress(_message.Message):
    __slots__ = ("frame", "step", "total_steps")
    FRAME_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    TOTAL_STEPS_FIELD_NUMBER: _ClassVar[int]
    frame: int
    step: int
    total_steps: int
    def __init__(self, frame: int | None = ..., step: int | None = ..., total_steps: int | None = ...) -> None: ...

class RenderedFrame(_message.Message):
    __slots__ = ("backend", "frame", "image", "seed", "timings")
    FRAME_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    frame: int
    image: _common_pb2.Image
    seed: int
    timings: _common_pb2.FrameTimings
    backend: str
    def __init__(
        self,
        frame: int | None = ...,
        image: _common_pb2.Image | _Mapping | None = ...,
        seed: int | None = ...,
        timings: _common_pb2.FrameTimings | _Mapping | None = ...,
        backend: str | None = ...,
    ) -> None: ...

class RenderEvent(_message.Message):
    __slots__ = ("frame", "progress")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    progress: FrameProgress
    frame: RenderedFrame
    def __init__(
        self, progress: FrameProgress | _Mapping | None = ..., frame: RenderedFrame | _Mapping | None = ...
    ) -> None: ...

class RendererInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RenderLimits(_message.Message):
    __slots__ = (
        "max_frames_per_request",
        "max_guidance_scale",
        "max_prompt_chars",
        "max_size",
        "max_steps",
        "min_size",
    )
    MIN_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_STEPS_FIELD_NUMBER: _ClassVar[int]
    MAX_GUIDANCE_SCALE_FIELD_NUMBER: _ClassVar[int]
    MAX_FRAMES_PER_REQUEST_FIELD_NUMBER: _ClassVar[int]
    MAX_PROMPT_CHARS_FIELD_NUMBER: _ClassVar[int]
    min_size: int
    max_size: int
    max_steps: int
    max_guidance_scale: float
    max_frames_per_request: int
    max_prompt_chars: int
    def __init__(
        self,
        min_size: int | None = ...,
        max_size: int | None = ...,
        max_steps: int | None = ...,
        max_guidance_scale: float | None = ...,
        max_frames_per_request: int | None = ...,
        max_prompt_chars: int | None = ...,
    ) -> None: ...

class RendererInfo(_message.Message):
    __slots__ = (
        "available_adapters",
        "backend",
        "device",
        "dtype",
        "limits",
        "loaded_adapters",
        "max_batch_size",
        "model",
        "queue_depth",
    )
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    LOADED_ADAPTERS_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_ADAPTERS_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    QUEUE_DEPTH_FIELD_NUMBER: _ClassVar[int]
    backend: str
    model: str
    device: str
    dtype: str
    loaded_adapters: _containers.RepeatedScalarFieldContainer[str]
    available_adapters: _containers.RepeatedScalarFieldContainer[str]
    limits: RenderLimits
    max_batch_size: int
    queue_depth: int
    def __init__(
        self,
        backend: str | None = ...,
        model: str | None = ...,
        device: str | None = ...,
        dtype: str | None = ...,
        loaded_adapters: _Iterable[str] | None = ...,
        available_adapters: _Iterable[str] | None = ...,
        limits: RenderLimits | _Mapping | None = ...,
        max_batch_size: int | None = ...,
        queue_depth: int | None = ...,
    ) -> None: ...
