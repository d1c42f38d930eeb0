"""The replica protocols (`core.replica`) are what the Serve deployments and the front-end
tests' stand-in implement, method for method: the same names, parameters and kinds (a
coroutine, or an async generator where the protocol streams)."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from core import replica as protocol
from core.config import Modality
from core.registry import REPLICAS, load_object
from tests.standin import ECHO_REPLICAS

PROTOCOLS: dict[Modality, type] = {
    Modality.TEXT: protocol.TextReplica,
    Modality.IMAGE: protocol.ImageReplica,
    Modality.AUDIO: protocol.AudioReplica,
    Modality.VIDEO: protocol.VideoReplica,
}


def methods(cls: type) -> list[str]:
    own = {
        name
        for klass in cls.__mro__
        if klass not in (object, protocol.Protocol) and klass.__module__ == "core.replica"
        for name, value in vars(klass).items()
        if callable(value) and not name.startswith("_")
    }
    return sorted(own)


def kind(fn: Any) -> str:
    if inspect.isasyncgenfunction(fn):
        return "stream"
    if inspect.iscoroutinefunction(fn):
        return "unary"
    return "stream"  # the protocol declares a stream as a plain def returning AsyncIterator


def shape(cls: type, name: str) -> tuple[list[str], str]:
    fn = getattr(cls, name)
    return list(inspect.signature(fn).parameters), kind(fn)


def deployment_class(modality: Modality) -> type:
    deployment = load_object(REPLICAS[modality.value])
    return deployment.func_or_class  # type: ignore[no-any-return]


def test_every_modality_has_a_protocol() -> None:
    assert set(PROTOCOLS) == set(Modality) == set(ECHO_REPLICAS)
    assert methods(protocol.TextReplica) == ["describe", "generate", "generate_stream"]


@pytest.mark.parametrize("modality", list(Modality), ids=lambda m: m.value)
def test_the_serve_deployment_implements_its_protocol(modality: Modality) -> None:
    proto, impl = PROTOCOLS[modality], deployment_class(modality)
    for name in methods(proto):
        assert hasattr(impl, name), f"{impl.__name__} lacks {name}"
        assert shape(impl, name) == shape(proto, name), name


@pytest.mark.parametrize("modality", list(Modality), ids=lambda m: m.value)
def test_the_stand_in_implements_the_same_protocol(modality: Modality) -> None:
    proto, impl = PROTOCOLS[modality], ECHO_REPLICAS[modality]
    for name in methods(proto):
        assert hasattr(impl, name), f"{impl.__name__} lacks {name}"
        assert shape(impl, name) == shape(proto, name), name
