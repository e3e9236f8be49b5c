from collections.abc import Iterable as _Iterable
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar

from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper

from storyboard.v1 import common_pb2 as _common_pb2

DESCRIPTOR: _descriptor.FileDescriptor

class ReferencePolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REFERENCE_POLICY_UNSPECIFIED: _ClassVar[ReferencePolicy]
    REFERENCE_POLICY_REFERENCE_IMAGES: _ClassVar[ReferencePolicy]
    REFERENCE_POLICY_FIRST_FRAME: _ClassVar[ReferencePolicy]
    REFERENCE_POLICY_CENTROID: _ClassVar[ReferencePolicy]

REFERENCE_POLICY_UNSPECIFIED: ReferencePolicy
REFERENCE_POLICY_REFERENCE_IMAGES: ReferencePolicy
REFERENCE_POLICY_FIRST_FRAME: ReferencePolicy
REFERENCE_POLICY_CENTROID: ReferencePolicy

class ScoreRequest(_message.Message):
    __slots__ = ("frames", "policy", "prompts", "references", "thresholds", "trigger_tokens")
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    PROMPTS_FIELD_NUMBER: _ClassVar[int]
    REFERENCES_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_TOKENS_FIELD_NUMBER: _ClassVar[int]
    THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    frames: _containers.RepeatedCompositeFieldContainer[_common_pb2.Image]
    prompts: _containers.RepeatedScalarFieldContainer[str]
    references: _containers.RepeatedCompositeFieldContainer[_common_pb2.Image]
    policy: ReferencePolicy
    trigger_tokens: _containers.RepeatedScalarFieldContainer[str]
    thresholds: _common_pb2.Thresholds
    def __init__(
        self,
        frames: _Iterable[_common_pb2.Image | _Mapping] | None = ...,
        prompts: _Iterable[str] | None = ...,
        references: _Iterable[_common_pb2.Image | _Mapping] | None = ...,
        policy: ReferencePolicy | str | None = ...,
        trigger_tokens: _Iterable[str] | None = ...,
        thresholds: _common_pb2.Thresholds | _Mapping | None = ...,
    ) -> None: ...

class ScoreResponse(_message.Message):
    __slots__ = ("model", "policy", "scores", "thresholds")
    SCORES_FIELD_NUMBER: _ClassVar[int]
    THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    scores: _containers.RepeatedCompositeFieldContainer[_common_pb2.FrameScore]
    thresholds: _common_pb2.Thresholds
    policy: ReferencePolicy
    model: str
    def __init__(
        self,
        scores: _Iterable[_common_pb2.FrameScore | _Mapping] | None = ...,
        thresholds: _common_pb2.Thresholds | _Mapping | None = ...,
        policy: ReferencePolicy | str | None = ...,
        model: str | None = ...,
    ) -> None: ...

class ValidatorInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ValidatorInfo(_message.Message):
    __slots__ = ("device", "max_frames", "model", "pretrained", "ready", "reason", "thresholds")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PRETRAINED_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    MAX_FRAMES_FIELD_NUMBER: _ClassVar[int]
    model: str
    pretrained: str
    device: str
    ready: bool
    reason: str
    thresholds: _common_pb2.Thresholds
    max_frames: int
    def __init__(
        self,
        model: str | None = ...,
        pretrained: str | None = ...,
        device: str | None = ...,
        ready: bool | None = ...,
        reason: str | None = ...,
        thresholds: _common_pb2.Thresholds | _Mapping | None = ...,
        max_frames: int | None = ...,
    ) -> None: ...
