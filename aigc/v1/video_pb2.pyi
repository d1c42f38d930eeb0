from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CreateVideoRequest(_message.Message):
    __slots__ = ("model", "prompt", "seconds", "size", "seed", "narration", "voice", "remix_of")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    NARRATION_FIELD_NUMBER: _ClassVar[int]
    VOICE_FIELD_NUMBER: _ClassVar[int]
    REMIX_OF_FIELD_NUMBER: _ClassVar[int]
    model: str
    prompt: str
    seconds: int
    size: str
    seed: int
    narration: str
    voice: str
    remix_of: str
    def __init__(self, model: _Optional[str] = ..., prompt: _Optional[str] = ..., seconds: _Optional[int] = ..., size: _Optional[str] = ..., seed: _Optional[int] = ..., narration: _Optional[str] = ..., voice: _Optional[str] = ..., remix_of: _Optional[str] = ...) -> None: ...

class Video(_message.Message):
    __slots__ = ("id", "model", "status", "progress", "prompt", "seconds", "size", "created_at", "completed_at", "expires_at", "error_code", "error_message", "error_field", "remixed_from")
    ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_FIELD_NUMBER: _ClassVar[int]
    REMIXED_FROM_FIELD_NUMBER: _ClassVar[int]
    id: str
    model: str
    status: str
    progress: int
    prompt: str
    seconds: int
    size: str
    created_at: int
    completed_at: int
    expires_at: int
    error_code: str
    error_message: str
    error_field: str
    remixed_from: str
    def __init__(self, id: _Optional[str] = ..., model: _Optional[str] = ..., status: _Optional[str] = ..., progress: _Optional[int] = ..., prompt: _Optional[str] = ..., seconds: _Optional[int] = ..., size: _Optional[str] = ..., created_at: _Optional[int] = ..., completed_at: _Optional[int] = ..., expires_at: _Optional[int] = ..., error_code: _Optional[str] = ..., error_message: _Optional[str] = ..., error_field: _Optional[str] = ..., remixed_from: _Optional[str] = ...) -> None: ...

class GetVideoRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ListVideosRequest(_message.Message):
    __slots__ = ("limit", "after")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    limit: int
    after: str
    def __init__(self, limit: _Optional[int] = ..., after: _Optional[str] = ...) -> None: ...

class ListVideosResponse(_message.Message):
    __slots__ = ("videos",)
    VIDEOS_FIELD_NUMBER: _ClassVar[int]
    videos: _containers.RepeatedCompositeFieldContainer[Video]
    def __init__(self, videos: _Optional[_Iterable[_Union[Video, _Mapping]]] = ...) -> None: ...

class GetVideoContentRequest(_message.Message):
    __slots__ = ("id", "variant")
    ID_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    id: str
    variant: str
    def __init__(self, id: _Optional[str] = ..., variant: _Optional[str] = ...) -> None: ...

class VideoContent(_message.Message):
    __slots__ = ("data", "mime_type")
    DATA_FIELD_NUMBER: _ClassVar[int]
    MIME_TYPE_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    mime_type: str
    def __init__(self, data: _Optional[bytes] = ..., mime_type: _Optional[str] = ...) -> None: ...
