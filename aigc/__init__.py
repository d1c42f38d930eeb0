"""aigc-serve: SDK and CLI for the aigc.v1 gRPC API."""

from aigc.client import AsyncClient, Client

__all__ = ["AsyncClient", "Client"]
