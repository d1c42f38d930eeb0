"""The two baselines the gateway is measured against, serving the same echo engines.

- `PlainEchoServer`: a grpc.aio server calling the engines in its own process. No Ray: the
  floor any gRPC front end on this machine can reach.
- `ServeProxyEcho`: a Serve deployment whose method names are the aigc.v1 RPC names, reached
  through Ray Serve's built-in gRPC proxy (the path the gateway does not take: README,
  Architecture).
Both do the same proto <-> domain conversion the gateway does, so the comparison isolates the
transport and routing, not the conversion.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from core.config import AigcConfig, Modality, ModelConfig, load_config
from core.registry import engine_class
from core.types import StreamUsage
from gateway import convert

BENCH_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "bench.yaml"
SERVE_PROXY_SERVICERS = [
    "aigc.v1.text_pb2_grpc.add_TextGenerationServicer_to_server",
    "aigc.v1.audio_pb2_grpc.add_AudioSynthesisServicer_to_server",
]


def _only(results: list[Any]) -> Any:
    """The one item of a one-request batch; an item's exception (the engines' per-item
    contract) is raised, as the Serve replicas raise it."""
    (result,) = results
    if isinstance(result, Exception):
        raise result
    return result


class EchoBackend:
    """The echo engines of the bench config, called directly; the RPC bodies both baselines run."""

    def __init__(self, config: AigcConfig) -> None:
        self.models: dict[Modality, ModelConfig] = {}
        self.engines: dict[Modality, Any] = {}
        for modality in config.modalities():
            model = config.default_model(modality)
            assert model is not None
            self.models[modality] = model
            self.engines[modality] = engine_class(modality.value, model.engine)(model)

    async def start(self) -> None:
        for engine in self.engines.values():
            await engine.start()

    def _text(self, request: Any) -> tuple[Any, Any, ModelConfig]:
        model = self.models[Modality.TEXT]
        domain = convert.text_request(request, model, uuid.uuid4().hex, None)
        return self.engines[Modality.TEXT], domain, model

    async def generate_text(self, request: Any) -> Any:
        engine, domain, _ = self._text(request)
        return convert.text_response(await engine.generate(domain))

    async def stream_text(self, request: Any) -> AsyncIterator[Any]:
        engine, domain, model = self._text(request)
        usage = StreamUsage(completions=domain.n)
        async for chunk in engine.stream(domain):
            message = convert.text_chunk(chunk, domain.request_id, model.name)
            if usage.add(chunk):  # as the gateway does: usage on the stream's last message
                message.usage.CopyFrom(convert.usage(usage.prompt_tokens, usage.completion_tokens))
            yield message

    async def generate_images(self, request: Any) -> Any:
        model = self.models[Modality.IMAGE]
        domain = convert.image_request(request, model, uuid.uuid4().hex, None)
        results = await self.engines[Modality.IMAGE].generate_batch([domain])
        return convert.image_response(_only(results))

    def _audio(self, request: Any, stream: bool) -> Any:
        model = self.models[Modality.AUDIO]
        return convert.audio_request(request, model, uuid.uuid4().hex, None, stream=stream)

    async def synthesize(self, request: Any) -> Any:
        results = await self.engines[Modality.AUDIO].generate_batch([self._audio(request, False)])
        return convert.audio_response(_only(results))

    async def stream_speech(self, request: Any) -> AsyncIterator[Any]:
        domain = self._audio(request, True)
        async for chunk in self.engines[Modality.AUDIO].stream(domain):
            yield convert.audio_chunk(chunk, domain.request_id, domain.model)


class _Text:
    def __init__(self, backend: EchoBackend) -> None:
        self.backend = backend

    async def Generate(self, request: Any, context: Any) -> Any:
        return await self.backend.generate_text(request)

    async def GenerateStream(self, request: Any, context: Any) -> AsyncIterator[Any]:
        async for message in self.backend.stream_text(request):
            yield message


class _Image:
    def __init__(self, backend: EchoBackend) -> None:
        self.backend = backend

    async def Generate(self, request: Any, context: Any) -> Any:
        return await self.backend.generate_images(request)


class _Audio:
    def __init__(self, backend: EchoBackend) -> None:
        self.backend = backend

    async def Synthesize(self, request: Any, context: Any) -> Any:
        return await self.backend.synthesize(request)

    async def SynthesizeStream(self, request: Any, context: Any) -> AsyncIterator[Any]:
        async for message in self.backend.stream_speech(request):
            yield message


async def start_plain_server(port: int = 0, config: AigcConfig | None = None) -> tuple[Any, int]:
    """The plain grpc.aio echo server, started; returns (server, bound port)."""
    import grpc

    from aigc.v1 import audio_pb2_grpc, image_pb2_grpc, text_pb2_grpc

    backend = EchoBackend(config or load_config(BENCH_CONFIG))
    await backend.start()
    server = grpc.aio.server()
    text_pb2_grpc.add_TextGenerationServicer_to_server(_Text(backend), server)  # type: ignore[arg-type]
    image_pb2_grpc.add_ImageGenerationServicer_to_server(_Image(backend), server)  # type: ignore[arg-type]
    audio_pb2_grpc.add_AudioSynthesisServicer_to_server(_Audio(backend), server)  # type: ignore[arg-type]
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    return server, bound


class ServeProxyEcho:
    """Deployment body for Serve's gRPC proxy: methods named as the RPCs (text and audio;
    the proxy routes by method name only, so image's `Generate` would clash with text's)."""

    async def __init__(self) -> None:  # type: ignore[misc]
        self.backend = EchoBackend(load_config(BENCH_CONFIG))
        await self.backend.start()

    async def Generate(self, request: Any) -> Any:
        return await self.backend.generate_text(request)

    async def GenerateStream(self, request: Any) -> AsyncIterator[Any]:
        async for message in self.backend.stream_text(request):
            yield message

    async def Synthesize(self, request: Any) -> Any:
        return await self.backend.synthesize(request)

    async def SynthesizeStream(self, request: Any) -> AsyncIterator[Any]:
        async for message in self.backend.stream_speech(request):
            yield message
