from aigc.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AudioFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AUDIO_FORMAT_UNSPECIFIED: _ClassVar[AudioFormat]
    AUDIO_FORMAT_WAV: _ClassVar[AudioFormat]
    AUDIO_FORMAT_PCM16: _ClassVar[AudioFormat]
AUDIO_FORMAT_UNSPECIFIED: AudioFormat
AUDIO_FORMAT_WAV: AudioFormat
AUDIO_FORMAT_PCM16: AudioFormat

class SynthesizeRequest(_message.Message):
    __slots__ = ("model", "text", "voice", "speed", "seed", "format", "priority")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    VOICE_FIELD_NUMBER: _ClassVar[int]
    SPEED_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    model: str
    text: str
    voice: str
    speed: float
    seed: int
    format: AudioFormat
    priority: _common_pb2.Priority
    def __init__(self, model: _Optional[str] = ..., text: _Optional[str] = ..., voice: _Optional[str] = ..., speed: _Optional[float] = ..., seed: _Optional[int] = ..., format: _Optional[_Union[AudioFormat, str]] = ..., priority: _Optional[_Union[_common_pb2.Priority, str]] = ...) -> None: ...

class SynthesizeResponse(_message.Message):
    __slots__ = ("id", "model", "audio", "mime_type", "sample_rate", "channels", "duration_seconds", "seed")
    ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    MIME_TYPE_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    DURATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    id: str
    model: str
    audio: bytes
    mime_type: str
    sample_rate: int
    channels: int
    duration_seconds: float
    seed: int
    def __init__(self, id: _Optional[str] = ..., model: _Optional[str] = ..., audio: _Optional[bytes] = ..., mime_type: _Optional[str] = ..., sample_rate: _Optional[int] = ..., channels: _Optional[int] = ..., duration_seconds: _Optional[float] = ..., seed: _Optional[int] = ...) -> None: ...

class AudioChunk(_message.Message):
    __slots__ = ("id", "model", "index", "audio", "sample_rate", "duration_seconds", "last")
    ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    DURATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    id: str
    model: str
    index: int
    audio: bytes
    sample_rate: int
    duration_seconds: float
    last: bool
    def __init__(self, id: _Optional[str] = ..., model: _Optional[str] = ..., index: _Optional[int] = ..., audio: _Optional[bytes] = ..., sample_rate: _Optional[int] = ..., duration_seconds: _Optional[float] = ..., last: _Optional[bool] = ...) -> None: ...
