"""Python SDK for the aigc.v1 API: `Client` (blocking) and `AsyncClient` (asyncio).

from aigc import Client
with Client("127.0.0.1:50051") as c:
    print(c.generate_text("A computer is").completions[0].text)
    for chunk in c.stream_text("Once upon a time", max_tokens=32):
        print(chunk.delta, end="", flush=True)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from aigc.v1 import (
    audio_pb2,
    audio_pb2_grpc,
    common_pb2,
    image_pb2,
    image_pb2_grpc,
    models_pb2,
    models_pb2_grpc,
    text_pb2,
    text_pb2_grpc,
)
from aigc.wire import PRIORITIES, TIERS

DEFAULT_TARGET = "127.0.0.1:50051"
MAX_MESSAGE_BYTES = 64 * 2**20
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
]


def tier(priority: str | int | None) -> common_pb2.Priority:
    """The admission tier of a request: "interactive" (the default) or "batch" (refused first
    under load, runs on idle capacity), or an `aigc.v1.Priority` value."""
    if priority is None:
        return common_pb2.PRIORITY_UNSPECIFIED
    if isinstance(priority, str):
        if priority not in TIERS:
            raise ValueError(f"priority must be one of {PRIORITIES}, not {priority!r}")
        return cast(common_pb2.Priority, TIERS[priority])
    return cast(common_pb2.Priority, priority)


def text_request(
    prompt: str | None = None,
    *,
    messages: Sequence[tuple[str, str] | dict[str, str]] | None = None,
    model: str = "",
    max_tokens: int | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    top_k: int | None = None,
    stop: Sequence[str] = (),
    n: int | None = None,
    seed: int | None = None,
    priority: str | int | None = None,
) -> text_pb2.GenerateTextRequest:
    req = text_pb2.GenerateTextRequest(model=model, stop=list(stop), priority=tier(priority))
    if messages is not None:
        req.chat.SetInParent()  # selects chat even when the list is empty
        for m in messages:
            role, content = (m["role"], m["content"]) if isinstance(m, dict) else m
            req.chat.messages.add(role=role, content=content)
    elif prompt is not None:
        req.prompt = prompt
    for name, value in (
        ("max_tokens", max_tokens),
        ("temperature", temperature),
        ("top_p", top_p),
        ("top_k", top_k),
        ("n", n),
        ("seed", seed),
    ):
        if value is not None:
            setattr(req, name, value)
    return req


def image_request(
    model: str = "",
    count: int | None = None,
    seed: int | None = None,
    label: str = "",
    raw: bool = False,
    priority: str | int | None = None,
) -> image_pb2.GenerateImageRequest:
    req = image_pb2.GenerateImageRequest(
        model=model,
        label=label,
        priority=tier(priority),
        format=image_pb2.IMAGE_FORMAT_RAW if raw else image_pb2.IMAGE_FORMAT_PNG,
    )
    if count is not None:
        req.count = count
    if seed is not None:
        req.seed = seed
    return req


def speech_request(
    text: str,
    model: str = "",
    voice: str = "",
    speed: float | None = None,
    seed: int | None = None,
    pcm16: bool = False,
    priority: str | int | None = None,
) -> audio_pb2.SynthesizeRequest:
    req = audio_pb2.SynthesizeRequest(
        text=text,
        model=model,
        voice=voice,
        priority=tier(priority),
        format=audio_pb2.AUDIO_FORMAT_PCM16 if pcm16 else audio_pb2.AUDIO_FORMAT_UNSPECIFIED,
    )
    if speed is not None:
        req.speed = speed
    if seed is not None:
        req.seed = seed
    return req


def auth_metadata(api_key: str | None) -> list[tuple[str, str]]:
    """gRPC metadata that carries an API key (empty without one)."""
    return [("authorization", f"Bearer {api_key}")] if api_key else []


class Stubs:
    """One stub per aigc.v1 service (and grpc.health.v1) on a blocking or an asyncio channel."""

    def __init__(self, channel: Any) -> None:
        self.text = text_pb2_grpc.TextGenerationStub(channel)
        self.image = image_pb2_grpc.ImageGenerationStub(channel)
        self.audio = audio_pb2_grpc.AudioSynthesisStub(channel)
        self.models = models_pb2_grpc.ModelsStub(channel)
        self.health = health_pb2_grpc.HealthStub(channel)


class _Calls:
    """The API's methods, written once for both clients.

    Each returns what the stub returns: on `Client` the response (or an iterator of chunks);
    on `AsyncClient` the call object, which is awaited (or iterated with `async for`).
    """

    _grpc: Any = grpc  # grpc or grpc.aio: both make channels with the same arguments

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        api_key: str | None = None,
        timeout: float | None = None,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        self.channel = (
            self._grpc.secure_channel(target, credentials, options=CHANNEL_OPTIONS)
            if credentials
            else self._grpc.insecure_channel(target, options=CHANNEL_OPTIONS)
        )
        self.stubs = Stubs(self.channel)
        self.metadata = auth_metadata(api_key)
        self.timeout = timeout

    def _kw(self, timeout: float | None) -> dict[str, Any]:
        return {"metadata": self.metadata, "timeout": timeout or self.timeout}

    def generate_text(
        self, prompt: str | None = None, *, timeout: float | None = None, **kw: Any
    ) -> Any:
        """`GenerateTextResponse`; keywords as for `text_request`."""
        return self.stubs.text.Generate(text_request(prompt, **kw), **self._kw(timeout))

    def stream_text(
        self, prompt: str | None = None, *, timeout: float | None = None, **kw: Any
    ) -> Any:
        """Chunks (`GenerateTextStreamResponse`); `.cancel()` on the call stops generation."""
        return self.stubs.text.GenerateStream(text_request(prompt, **kw), **self._kw(timeout))

    def generate_images(self, *, timeout: float | None = None, **kw: Any) -> Any:
        """`GenerateImageResponse`; keywords as for `image_request`."""
        return self.stubs.image.Generate(image_request(**kw), **self._kw(timeout))

    def synthesize(self, text: str, *, timeout: float | None = None, **kw: Any) -> Any:
        """`SynthesizeResponse`; keywords as for `speech_request`."""
        return self.stubs.audio.Synthesize(speech_request(text, **kw), **self._kw(timeout))

    def stream_speech(self, text: str, *, timeout: float | None = None, **kw: Any) -> Any:
        """`AudioChunk`s of 16-bit PCM, one per sentence."""
        req = speech_request(text, pcm16=True, **kw)
        return self.stubs.audio.SynthesizeStream(req, **self._kw(timeout))

    def list_models(self, *, timeout: float | None = None) -> Any:
        """`ListModelsResponse`."""
        return self.stubs.models.ListModels(models_pb2.ListModelsRequest(), **self._kw(timeout))

    def health_check(self, service: str = "", *, timeout: float | None = 5.0) -> Any:
        """`HealthCheckResponse` (grpc.health.v1); `health()` gives the status name."""
        req = health_pb2.HealthCheckRequest(service=service)
        return self.stubs.health.Check(req, **self._kw(timeout))


def status_name(resp: health_pb2.HealthCheckResponse) -> str:
    """SERVING, NOT_SERVING, ... for a health response."""
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status))


class Client(_Calls):
    """Blocking client. `timeout` (seconds) is the default deadline of every call."""

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.channel.close()

    def health(self, service: str = "", *, timeout: float | None = 5.0) -> str:
        return status_name(self.health_check(service, timeout=timeout))


class AsyncClient(_Calls):
    """asyncio client with the same methods as `Client` (awaitable / async-iterable)."""

    _grpc = grpc.aio

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.channel.close()

    async def health(self, service: str = "", *, timeout: float | None = 5.0) -> str:
        return status_name(await self.health_check(service, timeout=timeout))
