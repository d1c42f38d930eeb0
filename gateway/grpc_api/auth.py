"""API keys and per-key rate limits on gRPC calls: the data plane's `authorize` as an
interceptor. A refused call gets the status the one error table gives (UNAUTHENTICATED, or
RESOURCE_EXHAUSTED with RetryInfo). Health checks stay open."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from grpc_status import rpc_status

from core.errors import AigcError
from gateway.dataplane import DataPlane
from gateway.errors import classify
from gateway.grpc_api.status import rpc_status_of

OPEN_SERVICES = ("/grpc.health.v1.Health/",)


def _deny(exc: AigcError) -> tuple[Any, Any]:
    status = rpc_status.to_status(rpc_status_of(classify(exc)))

    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort_with_status(status)

    async def stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort_with_status(status)
        yield  # pragma: no cover - makes this an async generator

    return unary, stream


class AuthInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, plane: DataPlane) -> None:
        self.plane = plane

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        method = details.method or ""  # type: ignore[attr-defined]
        if handler is None or method.startswith(OPEN_SERVICES):
            return handler
        header = next(
            (v for k, v in details.invocation_metadata or () if k == "authorization"),  # type: ignore[attr-defined]
            None,
        )
        try:
            self.plane.authorize("grpc", header if isinstance(header, str) else None)
        except AigcError as exc:
            return self._replace(handler, _deny(exc))
        return handler

    @staticmethod
    def _replace(handler: grpc.RpcMethodHandler, deny: tuple[Any, Any]) -> grpc.RpcMethodHandler:
        unary, stream = deny
        h: Any = handler
        if h.response_streaming:
            return grpc.unary_stream_rpc_method_handler(
                stream, h.request_deserializer, h.response_serializer
            )
        return grpc.unary_unary_rpc_method_handler(
            unary, h.request_deserializer, h.response_serializer
        )
