from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ImageFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    IMAGE_FORMAT_UNSPECIFIED: _ClassVar[ImageFormat]
    IMAGE_FORMAT_PNG: _ClassVar[ImageFormat]
    IMAGE_FORMAT_WEBP: _ClassVar[ImageFormat]
    IMAGE_FORMAT_JPEG: _ClassVar[ImageFormat]

class Verdict(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VERDICT_UNSPECIFIED: _ClassVar[Verdict]
    VERDICT_PASS: _ClassVar[Verdict]
    VERDICT_LOW_CONSISTENCY: _ClassVar[Verdict]
    VERDICT_LOW_ALIGNMENT: _ClassVar[Verdict]
    VERDICT_REPETITIVE: _ClassVar[Verdict]
    VERDICT_NOT_VALIDATED: _ClassVar[Verdict]
IMAGE_FORMAT_UNSPECIFIED: ImageFormat
IMAGE_FORMAT_PNG: ImageFormat
IMAGE_FORMAT_WEBP: ImageFormat
IMAGE_FORMAT_JPEG: ImageFormat
VERDICT_UNSPECIFIED: Verdict
VERDICT_PASS: Verdict
VERDICT_LOW_CONSISTENCY: Verdict
VERDICT_LOW_ALIGNMENT: Verdict
VERDICT_REPETITIVE: Verdict
VERDICT_NOT_VALIDATED: Verdict

class Image(_message.Message):
    __slots__ = ("data", "mime_type", "width", "height", "sha256")
    DATA_FIELD_NUMBER: _ClassVar[int]
    MIME_TYPE_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    mime_type: str
    width: int
    height: int
    sha256: bytes
    def __init__(self, data: _Optional[bytes] = ..., mime_type: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., sha256: _Optional[bytes] = ...) -> None: ...

class AdapterRef(_message.Message):
    __slots__ = ("name", "weight")
    NAME_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    name: str
    weight: float
    def __init__(self, name: _Optional[str] = ..., weight: _Optional[float] = ...) -> None: ...

class Scene(_message.Message):
    __slots__ = ("frame", "description", "camera", "mood", "setting", "lighting", "prompt", "prompt_2", "trigger_tokens", "duration_seconds", "prompt_tokens")
    FRAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CAMERA_FIELD_NUMBER: _ClassVar[int]
    MOOD_FIELD_NUMBER: _ClassVar[int]
    SETTING_FIELD_NUMBER: _ClassVar[int]
    LIGHTING_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    PROMPT_2_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_TOKENS_FIELD_NUMBER: _ClassVar[int]
    DURATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    frame: int
    description: str
    camera: str
    mood: str
    setting: str
    lighting: str
    prompt: str
    prompt_2: str
    trigger_tokens: _containers.RepeatedScalarFieldContainer[str]
    duration_seconds: float
    prompt_tokens: int
    def __init__(self, frame: _Optional[int] = ..., description: _Optional[str] = ..., camera: _Optional[str] = ..., mood: _Optional[str] = ..., setting: _Optional[str] = ..., lighting: _Optional[str] = ..., prompt: _Optional[str] = ..., prompt_2: _Optional[str] = ..., trigger_tokens: _Optional[_Iterable[str]] = ..., duration_seconds: _Optional[float] = ..., prompt_tokens: _Optional[int] = ...) -> None: ...

class CharacterRef(_message.Message):
    __slots__ = ("name", "trigger_token", "adapter", "aliases", "reference_images", "adapter_weight", "reference_scale")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ADAPTER_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_IMAGES_FIELD_NUMBER: _ClassVar[int]
    ADAPTER_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_SCALE_FIELD_NUMBER: _ClassVar[int]
    name: str
    trigger_token: str
    adapter: str
    aliases: _containers.RepeatedScalarFieldContainer[str]
    reference_images: int
    adapter_weight: float
    reference_scale: float
    def __init__(self, name: _Optional[str] = ..., trigger_token: _Optional[str] = ..., adapter: _Optional[str] = ..., aliases: _Optional[_Iterable[str]] = ..., reference_images: _Optional[int] = ..., adapter_weight: _Optional[float] = ..., reference_scale: _Optional[float] = ...) -> None: ...

class CharacterPictures(_message.Message):
    __slots__ = ("trigger_token", "pictures", "scale")
    TRIGGER_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PICTURES_FIELD_NUMBER: _ClassVar[int]
    SCALE_FIELD_NUMBER: _ClassVar[int]
    trigger_token: str
    pictures: _containers.RepeatedCompositeFieldContainer[Image]
    scale: float
    def __init__(self, trigger_token: _Optional[str] = ..., pictures: _Optional[_Iterable[_Union[Image, _Mapping]]] = ..., scale: _Optional[float] = ...) -> None: ...

class CharacterConsistency(_message.Message):
    __slots__ = ("trigger_token", "consistency")
    TRIGGER_TOKEN_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_FIELD_NUMBER: _ClassVar[int]
    trigger_token: str
    consistency: float
    def __init__(self, trigger_token: _Optional[str] = ..., consistency: _Optional[float] = ...) -> None: ...

class Plan(_message.Message):
    __slots__ = ("story", "scenes", "negative_prompt", "warnings", "planner", "characters")
    STORY_FIELD_NUMBER: _ClassVar[int]
    SCENES_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_PROMPT_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    PLANNER_FIELD_NUMBER: _ClassVar[int]
    CHARACTERS_FIELD_NUMBER: _ClassVar[int]
    story: str
    scenes: _containers.RepeatedCompositeFieldContainer[Scene]
    negative_prompt: str
    warnings: _containers.RepeatedScalarFieldContainer[str]
    planner: str
    characters: _containers.RepeatedCompositeFieldContainer[CharacterRef]
    def __init__(self, story: _Optional[str] = ..., scenes: _Optional[_Iterable[_Union[Scene, _Mapping]]] = ..., negative_prompt: _Optional[str] = ..., warnings: _Optional[_Iterable[str]] = ..., planner: _Optional[str] = ..., characters: _Optional[_Iterable[_Union[CharacterRef, _Mapping]]] = ...) -> None: ...

class Thresholds(_message.Message):
    __slots__ = ("consistency", "alignment", "repetition", "reference_consistency")
    CONSISTENCY_FIELD_NUMBER: _ClassVar[int]
    ALIGNMENT_FIELD_NUMBER: _ClassVar[int]
    REPETITION_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_CONSISTENCY_FIELD_NUMBER: _ClassVar[int]
    consistency: float
    alignment: float
    repetition: float
    reference_consistency: float
    def __init__(self, consistency: _Optional[float] = ..., alignment: _Optional[float] = ..., repetition: _Optional[float] = ..., reference_consistency: _Optional[float] = ...) -> None: ...

class FrameScore(_message.Message):
    __slots__ = ("index", "consistency", "alignment", "repetition", "most_similar_index", "verdict", "characters")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_FIELD_NUMBER: _ClassVar[int]
    ALIGNMENT_FIELD_NUMBER: _ClassVar[int]
    REPETITION_FIELD_NUMBER: _ClassVar[int]
    MOST_SIMILAR_INDEX_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    CHARACTERS_FIELD_NUMBER: _ClassVar[int]
    index: int
    consistency: float
    alignment: float
    repetition: float
    most_similar_index: int
    verdict: Verdict
    characters: _containers.RepeatedCompositeFieldContainer[CharacterConsistency]
    def __init__(self, index: _Optional[int] = ..., consistency: _Optional[float] = ..., alignment: _Optional[float] = ..., repetition: _Optional[float] = ..., most_similar_index: _Optional[int] = ..., verdict: _Optional[_Union[Verdict, str]] = ..., characters: _Optional[_Iterable[_Union[CharacterConsistency, _Mapping]]] = ...) -> None: ...

class FrameTimings(_message.Message):
    __slots__ = ("queue_seconds", "denoise_seconds", "decode_seconds", "encode_seconds")
    QUEUE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    DENOISE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    DECODE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ENCODE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    queue_seconds: float
    denoise_seconds: float
    decode_seconds: float
    encode_seconds: float
    def __init__(self, queue_seconds: _Optional[float] = ..., denoise_seconds: _Optional[float] = ..., decode_seconds: _Optional[float] = ..., encode_seconds: _Optional[float] = ...) -> None: ...
