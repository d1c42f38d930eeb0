"""The Serve handles the gateway calls replicas through."""

from __future__ import annotations

from typing import Any

from core.replica import TextReplica
from gateway.replicas import ReplicaHandle


class CountingHandle:
    """Serve's DeploymentHandle builds a new handle on every attribute access and every
    `options()`; this one counts them, and records what was called."""

    def __init__(self, stream: bool = False, parent: CountingHandle | None = None) -> None:
        self.stream = stream
        self.root: CountingHandle = parent or self
        self.built = 0
        self.calls: list[tuple[str, bool, Any]] = []

    def options(self, stream: bool = False) -> CountingHandle:
        self.root.built += 1
        return CountingHandle(stream, self.root)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        self.root.built += 1
        handle = self

        class Method:
            @staticmethod
            def remote(*args: Any) -> str:
                handle.root.calls.append((name, handle.stream, args))
                return f"{name}:{args[0]}"

        return Method()


def test_each_methods_handle_is_made_once() -> None:
    serve_handle = CountingHandle()
    replica = ReplicaHandle(serve_handle)
    for k in range(5):
        assert replica.unary(TextReplica.generate, k) == f"generate:{k}"  # type: ignore[arg-type, comparison-overlap]
        assert replica.stream(TextReplica.generate_stream, k) == f"generate_stream:{k}"  # type: ignore[arg-type, comparison-overlap]
    # one handle for the unary method; one streaming handle and its method: 3, not 15
    assert serve_handle.built == 3
    assert [(n, s) for n, s, _ in serve_handle.calls[:2]] == [
        ("generate", False),
        ("generate_stream", True),
    ]
    assert len(serve_handle.calls) == 10
