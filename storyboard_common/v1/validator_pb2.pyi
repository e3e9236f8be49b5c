from storyboard.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

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
    __slots__ = ("frames", "prompts", "references", "policy", "trigger_tokens", "thresholds", "characters")
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    PROMPTS_FIELD_NUMBER: _ClassVar[int]
    REFERENCES_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_TOKENS_FIELD_NUMBER: _ClassVar[int]
    THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    CHARACTERS_FIELD_NUMBER: _ClassVar[int]
    frames: _containers.RepeatedCompositeFieldContainer[_common_pb2.Image]
    prompts: _containers.RepeatedScalarFieldContainer[str]
    references: _containers.RepeatedCompositeFieldContainer[_common_pb2.Image]
    policy: ReferencePolicy
    trigger_tokens: _containers.RepeatedScalarFieldContainer[str]
    thresholds: _common_pb2.Thresholds
    characters: _containers.RepeatedCompositeFieldContainer[CharacterFrames]
    def __init__(self, frames: _Optional[_Iterable[_Union[_common_pb2.Image, _Mapping]]] = ..., prompts: _Optional[_Iterable[str]] = ..., references: _Optional[_Iterable[_Union[_common_pb2.Image, _Mapping]]] = ..., policy: _Optional[_Union[ReferencePolicy, str]] = ..., trigger_tokens: _Optional[_Iterable[str]] = ..., thresholds: _Optional[_Union[_common_pb2.Thresholds, _Mapping]] = ..., characters: _Optional[_Iterable[_Union[CharacterFrames, _Mapping]]] = ...) -> None: ...

class CharacterFrames(_message.Message):
    __slots__ = ("character", "frames")
    CHARACTER_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    character: _common_pb2.CharacterPictures
    frames: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, character: _Optional[_Union[_common_pb2.CharacterPictures, _Mapping]] = ..., frames: _Optional[_Iterable[int]] = ...) -> None: ...

class ScoreResponse(_message.Message):
    __slots__ = ("scores", "thresholds", "policy", "model")
    SCORES_FIELD_NUMBER: _ClassVar[int]
    THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    scores: _containers.RepeatedCompositeFieldContainer[_common_pb2.FrameScore]
    thresholds: _common_pb2.Thresholds
    policy: ReferencePolicy
    model: str
    def __init__(self, scores: _Optional[_Iterable[_Union[_common_pb2.FrameScore, _Mapping]]] = ..., thresholds: _Optional[_Union[_common_pb2.Thresholds, _Mapping]] = ..., policy: _Optional[_Union[ReferencePolicy, str]] = ..., model: _Optional[str] = ...) -> None: ...

class ValidatorInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ValidatorInfo(_message.Message):
    __slots__ = ("model", "pretrained", "device", "ready", "reason", "thresholds", "max_frames")
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
    def __init__(self, model: _Optional[str] = ..., pretrained: _Optional[str] = ..., device: _Optional[str] = ..., ready: _Optional[bool] = ..., reason: _Optional[str] = ..., thresholds: _Optional[_Union[_common_pb2.Thresholds, _Mapping]] = ..., max_frames: _Optional[int] = ...) -> None: ...
