"""Stand-ins for Ray Serve deployment handles (named as such), for front-end tests without Ray.

Each stand-in runs the project's real echo engines in-process and behaves like a handle where
the front ends care: `.method.remote(x)` returns a response that can be awaited or cancelled,
`.options(stream=True)` gives responses that are async iterators with `.cancel()`. It counts
cancellations, so tests can show a disconnect reached "the replica".
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from core.config import AigcConfig, Modality, ModelConfig, parse_config
from core.registry import engine_class
from core.replica import ModelFacts
from core.types import (
    AudioChunk,
    AudioRequest,
    AudioResult,
    ImageRequest,
    ImageResult,
    TextChunk,
    TextRequest,
    TextResult,
    VideoChunk,
    VideoRequest,
)
from gateway.dataplane import DataPlane
from gateway.metrics import GatewayMetrics
from gateway.openai_api.app import OpenAIApi
from gateway.registry import ModelRegistry
from gateway.server import http_server
from services.text.engine import collect
from tests.conftest import LoopThread


class StandInResponse:
    def __init__(self, coro: Any, owner: StandInHandle) -> None:
        self.task = asyncio.ensure_future(coro)
        self.owner = owner

    def __await__(self) -> Any:
        return self.task.__await__()

    def cancel(self) -> None:
        if not self.task.done():
            self.owner.stats["cancelled"] += 1
        self.task.cancel()


class StandInStream:
    def __init__(self, agen: Any, owner: StandInHandle) -> None:
        self.agen = agen
        self.owner = owner
        self.finished = False

    def __aiter__(self) -> StandInStream:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self.agen.__anext__()
        except StopAsyncIteration:
            self.finished = True
            raise

    def cancel(self) -> None:
        if not self.finished:
            self.owner.stats["cancelled"] += 1
            self.finished = True
            task = asyncio.ensure_future(self.agen.aclose())
            self.owner.closing.add(task)
            task.add_done_callback(self.owner.closing.discard)


class StandInHandle:
    """A stand-in for a DeploymentHandle over an in-process replica-like object. `stats`
    counts calls per method and cancellations of unfinished responses."""

    def __init__(self, replica: Any, stream: bool = False, base: StandInHandle | None = None):
        self.replica = replica
        self.stream = stream
        self.stats: dict[str, int] = base.stats if base else {"cancelled": 0}
        self.closing: set[asyncio.Task[Any]] = base.closing if base else set()

    def options(self, stream: bool = False) -> StandInHandle:
        return StandInHandle(self.replica, stream, self)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        handle = self

        class _Method:
            @staticmethod
            def remote(*args: Any) -> Any:
                handle.stats[name] = handle.stats.get(name, 0) + 1
                result = getattr(handle.replica, name)(*args)
                if handle.stream:
                    return StandInStream(result, handle)
                return StandInResponse(result, handle)

        return _Method


class _EchoReplica:
    """A replica without Ray over a real (echo) engine; one subclass per modality implements
    that modality's protocol (`core.replica`), as the Serve deployments do."""

    def __init__(self, model: ModelConfig) -> None:
        self.engine: Any = engine_class(model.modality.value, model.engine)(model)

    async def start(self) -> None:
        await self.engine.start()

    async def describe(self) -> ModelFacts:
        facts: ModelFacts = self.engine.facts()
        return facts


class EchoTextReplica(_EchoReplica):
    async def generate(self, request: TextRequest) -> TextResult:
        self.engine.validate(request)
        result: TextResult = await collect(request, self.engine.respond(request))
        return result

    async def generate_stream(self, request: TextRequest) -> AsyncIterator[TextChunk]:
        self.engine.validate(request)
        async for chunk in self.engine.respond(request):
            yield chunk


class EchoImageReplica(_EchoReplica):
    async def generate(self, request: ImageRequest) -> ImageResult:
        (result,) = await self.generate_many([request])
        if isinstance(result, Exception):
            raise result
        return result

    async def generate_many(self, requests: list[ImageRequest]) -> list[ImageResult | Exception]:
        out: list[ImageResult | Exception] = []
        for r in requests:
            try:
                self.engine.validate(r)
                out.extend(await self.engine.generate_batch([r]))
            except Exception as exc:
                out.append(exc)
        return out


class EchoAudioReplica(_EchoReplica):
    async def synthesize(self, request: AudioRequest) -> AudioResult:
        self.engine.validate(request)
        result = (await self.engine.generate_batch([request]))[0]
        if isinstance(result, Exception):
            raise result
        return result  # type: ignore[no-any-return]

    async def synthesize_stream(self, request: AudioRequest) -> AsyncIterator[AudioChunk]:
        self.engine.validate(request)
        async for chunk in self.engine.stream(request):
            yield chunk


class EchoVideoReplica(_EchoReplica):
    async def generate_stream(self, request: VideoRequest) -> AsyncIterator[VideoChunk]:
        self.engine.validate(request)
        async for chunk in self.engine.generate_stream(request):
            yield chunk


ECHO_REPLICAS: dict[Modality, type[_EchoReplica]] = {
    Modality.TEXT: EchoTextReplica,
    Modality.IMAGE: EchoImageReplica,
    Modality.AUDIO: EchoAudioReplica,
    Modality.VIDEO: EchoVideoReplica,
}


def echo_config(**gateway: Any) -> AigcConfig:
    """Echo models of every modality (text with a small delay per token, so a stream is still
    running when a test cancels it after its first chunk)."""
    return parse_config(
        {
            "gateway": gateway,
            "models": [
                {"name": "echo-text", "modality": "text", "engine": "echo",
                 "aliases": ["text-davinci-002"], "options": {"delay_s": 0.01}},
                {"name": "echo-image", "modality": "image", "engine": "echo",
                 "options": {"size": 8, "labels": ["sneaker", "ankle boot"]}},
                {"name": "echo-audio", "modality": "audio", "engine": "echo"},
            ],
        },
        source="standin",
    )  # fmt: skip


async def standin_plane(config: AigcConfig) -> tuple[DataPlane, dict[str, StandInHandle]]:
    """A data plane whose model registry hands out stand-in handles over started echo replicas."""
    handles: dict[str, StandInHandle] = {}
    for m in config.models:
        replica = ECHO_REPLICAS[m.modality](m)
        await replica.start()
        handles[m.name] = StandInHandle(replica)
    registry = ModelRegistry(config, handle_factory=lambda m: handles[m.name])
    for m in config.models:
        st = registry.state[m.name]
        st.ready, st.running_replicas = True, 1
        st.facts = await handles[m.name].replica.describe()
    return DataPlane(config, registry, GatewayMetrics()), handles


def modality_names() -> list[str]:
    return [m.value for m in Modality]


async def settle(handles: dict[str, StandInHandle]) -> None:
    """Waits for the stand-ins' pending stream closes."""
    for h in handles.values():
        with contextlib.suppress(Exception):
            await asyncio.gather(*list(h.closing))


async def counted_cancel(engine: Any, before: float, steps: int = 1000) -> bool:
    """Polls (bounded, 10 ms apart) until the stand-in engine has counted one more cancelled
    request than `before`: the server noticed the client going away."""
    for _ in range(steps):
        if engine.stats["cancelled"] > before:
            return True
        await asyncio.sleep(0.01)
    return False


class HttpFront:
    """The OpenAI HTTP front end on uvicorn over a stand-in data plane (echo models), on its
    own loop thread."""

    def __init__(self, **gateway: Any) -> None:
        self.loop = LoopThread()
        self.config = echo_config(**gateway)
        self.plane, self.handles = self.loop.run(standin_plane(self.config))
        api = OpenAIApi(self.config, self.plane, lambda: True)
        self.server = http_server(api.app(), "127.0.0.1", 0, None)
        self.loop.run(self._start())
        self.base = f"http://127.0.0.1:{self.port}"

    async def _start(self) -> None:
        self.task = asyncio.ensure_future(self.server.serve())
        while not self.server.started:
            if self.task.done():
                self.task.result()
            await asyncio.sleep(0.01)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]

    def client(self, **kw: Any) -> Any:
        import openai

        return openai.OpenAI(
            base_url=self.base + "/v1", api_key=kw.pop("api_key", "none"), max_retries=0, **kw
        )

    def close(self) -> None:
        self.server.should_exit = True

        async def stopped() -> None:
            await self.task

        self.loop.run(stopped(), timeout=30)
        self.loop.close()

    def metric(self, name: str, **labels: str) -> float:
        return self.plane.metrics.registry.get_sample_value(name, labels) or 0.0
