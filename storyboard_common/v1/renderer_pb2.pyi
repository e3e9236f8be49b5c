from storyboard.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FrameSpec(_message.Message):
    __slots__ = ("frame", "prompt", "prompt_2", "negative_prompt", "seed", "width", "height", "steps", "guidance_scale", "adapters", "scene", "deterministic", "references")
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
    REFERENCES_FIELD_NUMBER: _ClassVar[int]
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
    references: _containers.RepeatedCompositeFieldContainer[_common_pb2.CharacterPictures]
    def __init__(self, frame: _Optional[int] = ..., prompt: _Optional[str] = ..., prompt_2: _Optional[str] = ..., negative_prompt: _Optional[str] = ..., seed: _Optional[int] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., steps: _Optional[int] = ..., guidance_scale: _Optional[float] = ..., adapters: _Optional[_Iterable[_Union[_common_pb2.AdapterRef, _Mapping]]] = ..., scene: _Optional[_Union[_common_pb2.Scene, _Mapping]] = ..., deterministic: _Optional[bool] = ..., references: _Optional[_Iterable[_Union[_common_pb2.CharacterPictures, _Mapping]]] = ...) -> None: ...

class RenderRequest(_message.Message):
    __slots__ = ("frames", "format", "quality", "progress_interval_seconds")
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_INTERVAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    frames: _containers.RepeatedCompositeFieldContainer[FrameSpec]
    format: _common_pb2.ImageFormat
    quality: int
    progress_interval_seconds: float
    def __init__(self, frames: _Optional[_Iterable[_Union[FrameSpec, _Mapping]]] = ..., format: _Optional[_Union[_common_pb2.ImageFormat, str]] = ..., quality: _Optional[int] = ..., progress_interval_seconds: _Optional[float] = ...) -> None: ...

class FrameProgress(_message.Message):
    __slots__ = ("frame", "step", "total_steps")
    FRAME_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    TOTAL_STEPS_FIELD_NUMBER: _ClassVar[int]
    frame: int
    step: int
    total_steps: int
    def __init__(self, frame: _Optional[int] = ..., step: _Optional[int] = ..., total_steps: _Optional[int] = ...) -> None: ...

class RenderedFrame(_message.Message):
    __slots__ = ("frame", "image", "seed", "timings", "backend")
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
    def __init__(self, frame: _Optional[int] = ..., image: _Optional[_Union[_common_pb2.Image, _Mapping]] = ..., seed: _Optional[int] = ..., timings: _Optional[_Union[_common_pb2.FrameTimings, _Mapping]] = ..., backend: _Optional[str] = ...) -> None: ...

class RenderEvent(_message.Message):
    __slots__ = ("progress", "frame")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    progress: FrameProgress
    frame: RenderedFrame
    def __init__(self, progress: _Optional[_Union[FrameProgress, _Mapping]] = ..., frame: _Optional[_Union[RenderedFrame, _Mapping]] = ...) -> None: ...

class RendererInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RenderLimits(_message.Message):
    __slots__ = ("min_size", "max_size", "max_steps", "max_guidance_scale", "max_frames_per_request", "max_prompt_chars")
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
    def __init__(self, min_size: _Optional[int] = ..., max_size: _Optional[int] = ..., max_steps: _Optional[int] = ..., max_guidance_scale: _Optional[float] = ..., max_frames_per_request: _Optional[int] = ..., max_prompt_chars: _Optional[int] = ...) -> None: ...

class RendererInfo(_message.Message):
    __slots__ = ("backend", "model", "device", "dtype", "loaded_adapters", "available_adapters", "limits", "max_batch_size", "queue_depth", "ip_adapter", "consistency")
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    LOADED_ADAPTERS_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_ADAPTERS_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    QUEUE_DEPTH_FIELD_NUMBER: _ClassVar[int]
    IP_ADAPTER_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_FIELD_NUMBER: _ClassVar[int]
    backend: str
    model: str
    device: str
    dtype: str
    loaded_adapters: _containers.RepeatedScalarFieldContainer[str]
    available_adapters: _containers.RepeatedScalarFieldContainer[str]
    limits: RenderLimits
    max_batch_size: int
    queue_depth: int
    ip_adapter: bool
    consistency: str
    def __init__(self, backend: _Optional[str] = ..., model: _Optional[str] = ..., device: _Optional[str] = ..., dtype: _Optional[str] = ..., loaded_adapters: _Optional[_Iterable[str]] = ..., available_adapters: _Optional[_Iterable[str]] = ..., limits: _Optional[_Union[RenderLimits, _Mapping]] = ..., max_batch_size: _Optional[int] = ..., queue_depth: _Optional[int] = ..., ip_adapter: _Optional[bool] = ..., consistency: _Optional[str] = ...) -> None: ...
