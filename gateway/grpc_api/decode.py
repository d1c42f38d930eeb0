"""Requests that do not parse (e.g. invalid UTF-8 in a string field) get INVALID_ARGUMENT.

grpc's default turns a deserializer exception into UNKNOWN with the exception's text; this
interceptor makes parsing total and answers with a clear status instead.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc


class _Undecodable:
    def __init__(self, error: str) -> None:
        self.error = error


def _tolerant(deserializer: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def parse(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception as exc:
            return _Undecodable(str(exc).split(": ", 1)[-1][:200])

    return parse


async def _refuse(context: grpc.aio.ServicerContext, request: _Undecodable, method: str) -> None:
    await context.abort(
        grpc.StatusCode.INVALID_ARGUMENT, f"request to {method} does not parse: {request.error}"
    )


class DecodeInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self) -> None:
        # Wrapped handlers, built once per handler (this runs on every call's hot path).
        self._wrapped: dict[int, tuple[Any, grpc.RpcMethodHandler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler: Any = await continuation(details)
        if handler is None or handler.request_deserializer is None or handler.request_streaming:
            return handler
        cached = self._wrapped.get(id(handler))
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = _wrap(handler, str(details.method))  # type: ignore[attr-defined]
        if len(self._wrapped) < 1024:  # registered handlers: one per method
            self._wrapped[id(handler)] = (handler, wrapped)
        return wrapped


def _wrap(handler: Any, method: str) -> grpc.RpcMethodHandler:
    parse = _tolerant(handler.request_deserializer)
    if not handler.response_streaming:
        unary = handler.unary_unary

        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if isinstance(request, _Undecodable):
                await _refuse(context, request, method)
            return await unary(request, context)

        return grpc.unary_unary_rpc_method_handler(call, parse, handler.response_serializer)
    stream = handler.unary_stream
    if inspect.isasyncgenfunction(stream):

        async def gen(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            if isinstance(request, _Undecodable):
                await _refuse(context, request, method)
            async for item in stream(request, context):
                yield item

        return grpc.unary_stream_rpc_method_handler(gen, parse, handler.response_serializer)

    async def writer(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if isinstance(request, _Undecodable):
            await _refuse(context, request, method)
        return await stream(request, context)

    return grpc.unary_stream_rpc_method_handler(writer, parse, handler.response_serializer)
