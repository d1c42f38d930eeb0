from aigc.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ListModelsRequest(_message.Message):
    __slots__ = ("modality",)
    MODALITY_FIELD_NUMBER: _ClassVar[int]
    modality: _common_pb2.Modality
    def __init__(self, modality: _Optional[_Union[_common_pb2.Modality, str]] = ...) -> None: ...

class BatchingInfo(_message.Message):
    __slots__ = ("max_batch_size", "batch_wait_timeout_s")
    MAX_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    BATCH_WAIT_TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    max_batch_size: int
    batch_wait_timeout_s: float
    def __init__(self, max_batch_size: _Optional[int] = ..., batch_wait_timeout_s: _Optional[float] = ...) -> None: ...

class ScalingInfo(_message.Message):
    __slots__ = ("min_replicas", "max_replicas", "target_ongoing_requests", "running_replicas", "max_ongoing_requests", "max_queued_requests")
    MIN_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    MAX_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    TARGET_ONGOING_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    RUNNING_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    MAX_ONGOING_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    MAX_QUEUED_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    min_replicas: int
    max_replicas: int
    target_ongoing_requests: float
    running_replicas: int
    max_ongoing_requests: int
    max_queued_requests: int
    def __init__(self, min_replicas: _Optional[int] = ..., max_replicas: _Optional[int] = ..., target_ongoing_requests: _Optional[float] = ..., running_replicas: _Optional[int] = ..., max_ongoing_requests: _Optional[int] = ..., max_queued_requests: _Optional[int] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "modality", "engine", "ready", "default", "batching", "scaling", "source", "license", "parameters", "description", "labels", "voices", "device", "aliases")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MODALITY_FIELD_NUMBER: _ClassVar[int]
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_FIELD_NUMBER: _ClassVar[int]
    BATCHING_FIELD_NUMBER: _ClassVar[int]
    SCALING_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    LICENSE_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    VOICES_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    name: str
    modality: _common_pb2.Modality
    engine: str
    ready: bool
    default: bool
    batching: BatchingInfo
    scaling: ScalingInfo
    source: str
    license: str
    parameters: int
    description: str
    labels: _containers.RepeatedScalarFieldContainer[str]
    voices: _containers.RepeatedScalarFieldContainer[str]
    device: str
    aliases: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., modality: _Optional[_Union[_common_pb2.Modality, str]] = ..., engine: _Optional[str] = ..., ready: _Optional[bool] = ..., default: _Optional[bool] = ..., batching: _Optional[_Union[BatchingInfo, _Mapping]] = ..., scaling: _Optional[_Union[ScalingInfo, _Mapping]] = ..., source: _Optional[str] = ..., license: _Optional[str] = ..., parameters: _Optional[int] = ..., description: _Optional[str] = ..., labels: _Optional[_Iterable[str]] = ..., voices: _Optional[_Iterable[str]] = ..., device: _Optional[str] = ..., aliases: _Optional[_Iterable[str]] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ...) -> None: ...
