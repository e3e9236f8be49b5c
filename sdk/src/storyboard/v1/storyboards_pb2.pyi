import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from storyboard.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StoryboardState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STORYBOARD_STATE_UNSPECIFIED: _ClassVar[StoryboardState]
    STORYBOARD_STATE_QUEUED: _ClassVar[StoryboardState]
    STORYBOARD_STATE_PLANNING: _ClassVar[StoryboardState]
    STORYBOARD_STATE_RENDERING: _ClassVar[StoryboardState]
    STORYBOARD_STATE_ASSEMBLING: _ClassVar[StoryboardState]
    STORYBOARD_STATE_COMPLETED: _ClassVar[StoryboardState]
    STORYBOARD_STATE_FAILED: _ClassVar[StoryboardState]
    STORYBOARD_STATE_CANCELLED: _ClassVar[StoryboardState]

class ExportFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXPORT_FORMAT_UNSPECIFIED: _ClassVar[ExportFormat]
    EXPORT_FORMAT_MP4: _ClassVar[ExportFormat]
    EXPORT_FORMAT_GIF: _ClassVar[ExportFormat]
    EXPORT_FORMAT_ZIP: _ClassVar[ExportFormat]
    EXPORT_FORMAT_CSV: _ClassVar[ExportFormat]
STORYBOARD_STATE_UNSPECIFIED: StoryboardState
STORYBOARD_STATE_QUEUED: StoryboardState
STORYBOARD_STATE_PLANNING: StoryboardState
STORYBOARD_STATE_RENDERING: StoryboardState
STORYBOARD_STATE_ASSEMBLING: StoryboardState
STORYBOARD_STATE_COMPLETED: StoryboardState
STORYBOARD_STATE_FAILED: StoryboardState
STORYBOARD_STATE_CANCELLED: StoryboardState
EXPORT_FORMAT_UNSPECIFIED: ExportFormat
EXPORT_FORMAT_MP4: ExportFormat
EXPORT_FORMAT_GIF: ExportFormat
EXPORT_FORMAT_ZIP: ExportFormat
EXPORT_FORMAT_CSV: ExportFormat

class StoryboardSpec(_message.Message):
    __slots__ = ("story", "num_frames", "base_seed", "num_inference_steps", "guidance_scale", "width", "height", "characters", "adapters", "temperature", "deterministic", "plan", "aspect", "negative_prompt", "character_references")
    STORY_FIELD_NUMBER: _ClassVar[int]
    NUM_FRAMES_FIELD_NUMBER: _ClassVar[int]
    BASE_SEED_FIELD_NUMBER: _ClassVar[int]
    NUM_INFERENCE_STEPS_FIELD_NUMBER: _ClassVar[int]
    GUIDANCE_SCALE_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    CHARACTERS_FIELD_NUMBER: _ClassVar[int]
    ADAPTERS_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    DETERMINISTIC_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    ASPECT_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_PROMPT_FIELD_NUMBER: _ClassVar[int]
    CHARACTER_REFERENCES_FIELD_NUMBER: _ClassVar[int]
    story: str
    num_frames: int
    base_seed: int
    num_inference_steps: int
    guidance_scale: float
    width: int
    height: int
    characters: _containers.RepeatedScalarFieldContainer[str]
    adapters: _containers.RepeatedCompositeFieldContainer[_common_pb2.AdapterRef]
    temperature: float
    deterministic: bool
    plan: _common_pb2.Plan
    aspect: str
    negative_prompt: str
    character_references: _containers.RepeatedCompositeFieldContainer[_common_pb2.CharacterPictures]
    def __init__(self, story: _Optional[str] = ..., num_frames: _Optional[int] = ..., base_seed: _Optional[int] = ..., num_inference_steps: _Optional[int] = ..., guidance_scale: _Optional[float] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., characters: _Optional[_Iterable[str]] = ..., adapters: _Optional[_Iterable[_Union[_common_pb2.AdapterRef, _Mapping]]] = ..., temperature: _Optional[float] = ..., deterministic: _Optional[bool] = ..., plan: _Optional[_Union[_common_pb2.Plan, _Mapping]] = ..., aspect: _Optional[str] = ..., negative_prompt: _Optional[str] = ..., character_references: _Optional[_Iterable[_Union[_common_pb2.CharacterPictures, _Mapping]]] = ...) -> None: ...

class FrameResult(_message.Message):
    __slots__ = ("frame", "seed", "attempts", "seeds_tried", "score", "rendered", "verdict", "file_name")
    FRAME_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    SEEDS_TRIED_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    RENDERED_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    FILE_NAME_FIELD_NUMBER: _ClassVar[int]
    frame: int
    seed: int
    attempts: int
    seeds_tried: _containers.RepeatedScalarFieldContainer[int]
    score: _common_pb2.FrameScore
    rendered: bool
    verdict: _common_pb2.Verdict
    file_name: str
    def __init__(self, frame: _Optional[int] = ..., seed: _Optional[int] = ..., attempts: _Optional[int] = ..., seeds_tried: _Optional[_Iterable[int]] = ..., score: _Optional[_Union[_common_pb2.FrameScore, _Mapping]] = ..., rendered: _Optional[bool] = ..., verdict: _Optional[_Union[_common_pb2.Verdict, str]] = ..., file_name: _Optional[str] = ...) -> None: ...

class Storyboard(_message.Message):
    __slots__ = ("id", "state", "spec", "plan", "frames", "output_dir", "error", "create_time", "update_time", "last_event_sequence", "cancel_requested", "queue_position")
    ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_DIR_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_EVENT_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    CANCEL_REQUESTED_FIELD_NUMBER: _ClassVar[int]
    QUEUE_POSITION_FIELD_NUMBER: _ClassVar[int]
    id: str
    state: StoryboardState
    spec: StoryboardSpec
    plan: _common_pb2.Plan
    frames: _containers.RepeatedCompositeFieldContainer[FrameResult]
    output_dir: str
    error: str
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    last_event_sequence: int
    cancel_requested: bool
    queue_position: int
    def __init__(self, id: _Optional[str] = ..., state: _Optional[_Union[StoryboardState, str]] = ..., spec: _Optional[_Union[StoryboardSpec, _Mapping]] = ..., plan: _Optional[_Union[_common_pb2.Plan, _Mapping]] = ..., frames: _Optional[_Iterable[_Union[FrameResult, _Mapping]]] = ..., output_dir: _Optional[str] = ..., error: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_event_sequence: _Optional[int] = ..., cancel_requested: _Optional[bool] = ..., queue_position: _Optional[int] = ...) -> None: ...

class GenerateRequest(_message.Message):
    __slots__ = ("spec", "idempotency_key")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    spec: StoryboardSpec
    idempotency_key: str
    def __init__(self, spec: _Optional[_Union[StoryboardSpec, _Mapping]] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class CreateRequest(_message.Message):
    __slots__ = ("spec", "idempotency_key")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    spec: StoryboardSpec
    idempotency_key: str
    def __init__(self, spec: _Optional[_Union[StoryboardSpec, _Mapping]] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ListRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListResponse(_message.Message):
    __slots__ = ("storyboards", "next_page_token")
    STORYBOARDS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    storyboards: _containers.RepeatedCompositeFieldContainer[Storyboard]
    next_page_token: str
    def __init__(self, storyboards: _Optional[_Iterable[_Union[Storyboard, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("id", "after_sequence")
    ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    id: str
    after_sequence: int
    def __init__(self, id: _Optional[str] = ..., after_sequence: _Optional[int] = ...) -> None: ...

class CancelRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class RegenerateFrameRequest(_message.Message):
    __slots__ = ("id", "frame", "seed", "prompt")
    ID_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    id: str
    frame: int
    seed: int
    prompt: str
    def __init__(self, id: _Optional[str] = ..., frame: _Optional[int] = ..., seed: _Optional[int] = ..., prompt: _Optional[str] = ...) -> None: ...

class StoryboardsPlanRequest(_message.Message):
    __slots__ = ("spec",)
    SPEC_FIELD_NUMBER: _ClassVar[int]
    spec: StoryboardSpec
    def __init__(self, spec: _Optional[_Union[StoryboardSpec, _Mapping]] = ...) -> None: ...

class StoryboardsPlanResponse(_message.Message):
    __slots__ = ("plan", "files")
    PLAN_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    plan: _common_pb2.Plan
    files: _containers.RepeatedCompositeFieldContainer[FileChunk]
    def __init__(self, plan: _Optional[_Union[_common_pb2.Plan, _Mapping]] = ..., files: _Optional[_Iterable[_Union[FileChunk, _Mapping]]] = ...) -> None: ...

class DownloadFilesRequest(_message.Message):
    __slots__ = ("id", "names")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAMES_FIELD_NUMBER: _ClassVar[int]
    id: str
    names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[str] = ..., names: _Optional[_Iterable[str]] = ...) -> None: ...

class FileChunk(_message.Message):
    __slots__ = ("name", "data", "last")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    name: str
    data: bytes
    last: bool
    def __init__(self, name: _Optional[str] = ..., data: _Optional[bytes] = ..., last: _Optional[bool] = ...) -> None: ...

class Accepted(_message.Message):
    __slots__ = ("storyboard",)
    STORYBOARD_FIELD_NUMBER: _ClassVar[int]
    storyboard: Storyboard
    def __init__(self, storyboard: _Optional[_Union[Storyboard, _Mapping]] = ...) -> None: ...

class PlanReady(_message.Message):
    __slots__ = ("plan",)
    PLAN_FIELD_NUMBER: _ClassVar[int]
    plan: _common_pb2.Plan
    def __init__(self, plan: _Optional[_Union[_common_pb2.Plan, _Mapping]] = ...) -> None: ...

class FrameRenderProgress(_message.Message):
    __slots__ = ("frame", "attempt", "step", "total_steps")
    FRAME_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    TOTAL_STEPS_FIELD_NUMBER: _ClassVar[int]
    frame: int
    attempt: int
    step: int
    total_steps: int
    def __init__(self, frame: _Optional[int] = ..., attempt: _Optional[int] = ..., step: _Optional[int] = ..., total_steps: _Optional[int] = ...) -> None: ...

class FrameRendered(_message.Message):
    __slots__ = ("frame", "attempt", "seed", "image", "timings", "backend")
    FRAME_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    frame: int
    attempt: int
    seed: int
    image: _common_pb2.Image
    timings: _common_pb2.FrameTimings
    backend: str
    def __init__(self, frame: _Optional[int] = ..., attempt: _Optional[int] = ..., seed: _Optional[int] = ..., image: _Optional[_Union[_common_pb2.Image, _Mapping]] = ..., timings: _Optional[_Union[_common_pb2.FrameTimings, _Mapping]] = ..., backend: _Optional[str] = ...) -> None: ...

class FrameValidated(_message.Message):
    __slots__ = ("frame", "attempt", "score", "verdict", "reason")
    FRAME_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    frame: int
    attempt: int
    score: _common_pb2.FrameScore
    verdict: _common_pb2.Verdict
    reason: str
    def __init__(self, frame: _Optional[int] = ..., attempt: _Optional[int] = ..., score: _Optional[_Union[_common_pb2.FrameScore, _Mapping]] = ..., verdict: _Optional[_Union[_common_pb2.Verdict, str]] = ..., reason: _Optional[str] = ...) -> None: ...

class FrameRetry(_message.Message):
    __slots__ = ("frame", "attempt", "seed", "reason")
    FRAME_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    frame: int
    attempt: int
    seed: int
    reason: str
    def __init__(self, frame: _Optional[int] = ..., attempt: _Optional[int] = ..., seed: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class Completed(_message.Message):
    __slots__ = ("storyboard", "files")
    STORYBOARD_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    storyboard: Storyboard
    files: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, storyboard: _Optional[_Union[Storyboard, _Mapping]] = ..., files: _Optional[_Iterable[str]] = ...) -> None: ...

class Failed(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class StoryboardEvent(_message.Message):
    __slots__ = ("storyboard_id", "sequence", "time", "accepted", "plan_ready", "frame_progress", "frame_rendered", "frame_validated", "retry", "completed", "failed", "queued")
    STORYBOARD_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    PLAN_READY_FIELD_NUMBER: _ClassVar[int]
    FRAME_PROGRESS_FIELD_NUMBER: _ClassVar[int]
    FRAME_RENDERED_FIELD_NUMBER: _ClassVar[int]
    FRAME_VALIDATED_FIELD_NUMBER: _ClassVar[int]
    RETRY_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    storyboard_id: str
    sequence: int
    time: _timestamp_pb2.Timestamp
    accepted: Accepted
    plan_ready: PlanReady
    frame_progress: FrameRenderProgress
    frame_rendered: FrameRendered
    frame_validated: FrameValidated
    retry: FrameRetry
    completed: Completed
    failed: Failed
    queued: Queued
    def __init__(self, storyboard_id: _Optional[str] = ..., sequence: _Optional[int] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., accepted: _Optional[_Union[Accepted, _Mapping]] = ..., plan_ready: _Optional[_Union[PlanReady, _Mapping]] = ..., frame_progress: _Optional[_Union[FrameRenderProgress, _Mapping]] = ..., frame_rendered: _Optional[_Union[FrameRendered, _Mapping]] = ..., frame_validated: _Optional[_Union[FrameValidated, _Mapping]] = ..., retry: _Optional[_Union[FrameRetry, _Mapping]] = ..., completed: _Optional[_Union[Completed, _Mapping]] = ..., failed: _Optional[_Union[Failed, _Mapping]] = ..., queued: _Optional[_Union[Queued, _Mapping]] = ...) -> None: ...

class Queued(_message.Message):
    __slots__ = ("position",)
    POSITION_FIELD_NUMBER: _ClassVar[int]
    position: int
    def __init__(self, position: _Optional[int] = ...) -> None: ...

class KeepAttemptRequest(_message.Message):
    __slots__ = ("id", "frame", "attempt")
    ID_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    id: str
    frame: int
    attempt: int
    def __init__(self, id: _Optional[str] = ..., frame: _Optional[int] = ..., attempt: _Optional[int] = ...) -> None: ...

class StoryboardsListCharactersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StoryboardsListCharactersResponse(_message.Message):
    __slots__ = ("characters",)
    CHARACTERS_FIELD_NUMBER: _ClassVar[int]
    characters: _containers.RepeatedCompositeFieldContainer[_common_pb2.CharacterRef]
    def __init__(self, characters: _Optional[_Iterable[_Union[_common_pb2.CharacterRef, _Mapping]]] = ...) -> None: ...

class ExportOptions(_message.Message):
    __slots__ = ("captions", "crossfade", "attempts")
    CAPTIONS_FIELD_NUMBER: _ClassVar[int]
    CROSSFADE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    captions: bool
    crossfade: bool
    attempts: bool
    def __init__(self, captions: _Optional[bool] = ..., crossfade: _Optional[bool] = ..., attempts: _Optional[bool] = ...) -> None: ...

class ExportRequest(_message.Message):
    __slots__ = ("id", "format", "options")
    ID_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    id: str
    format: ExportFormat
    options: ExportOptions
    def __init__(self, id: _Optional[str] = ..., format: _Optional[_Union[ExportFormat, str]] = ..., options: _Optional[_Union[ExportOptions, _Mapping]] = ...) -> None: ...
