"""Contract test of the vLLM adapter against a stand-in of vLLM's async API (named as such);
tests/vllm checks the same adapter against the real engine (`make test-vllm`)."""

from __future__ import annotations

import asyncio
import importlib.abc
import importlib.util
import sys
import time
from types import ModuleType
from typing import Any

import pytest

from core.config import ModelConfig
from core.errors import DeadlineExceeded, InvalidArgument, Unavailable
from core.types import ChatMessage, FinishReason, TextRequest
from services.text.vllm_engine import VllmTextEngine
from tests.unit import vllm_stand_in


def _engine() -> VllmTextEngine:
    cfg = ModelConfig(
        name="chat",
        modality="text",
        engine="vllm",
        weights="org/some-model",
        device="cuda",
        options={"engine_args": {"gpu_memory_utilization": 0.5}, "default_max_tokens": 32},
    )
    return VllmTextEngine(cfg, vllm_module=vllm_stand_in)  # type: ignore[arg-type]


def test_request_building_and_streamed_deltas():
    async def main():
        e = _engine()
        await e.start()
        req = TextRequest("r1", "chat", prompt="one two three", n=2, temperature=0.5, top_k=0,
                          seed=2**64 - 1, stop=("x",), max_tokens=10)  # fmt: skip
        chunks = [c async for c in e.stream(req)]
        return e, chunks

    e, chunks = asyncio.run(main())
    assert e.engine.args.model == "org/some-model" and e.engine.args.gpu_memory_utilization == 0.5
    # each completion is its own vLLM request, seeded as vLLM seeds the children of n = 2
    (rid0, params), (rid1, second) = sorted(e.engine.requests, key=lambda r: r[0])
    assert rid0.startswith("r1-") and rid0.endswith("-0") and rid1 == rid0[:-1] + "1"
    assert (params.n, params.temperature, params.top_k, params.max_tokens) == (1, 0.5, -1, 10)
    assert params.output_kind == vllm_stand_in.RequestOutputKind.DELTA
    assert params.stop == ["x"] and 0 <= params.seed and second.seed == params.seed + 1 < 2**63
    for index in (0, 1):
        mine = [c for c in chunks if c.index == index]
        assert "".join(c.delta for c in mine) == "three two one"
        assert sum(c.token_count for c in mine) == 3
        assert mine[-1].finish_reason == FinishReason.STOP and mine[-1].prompt_tokens == 3
    assert e.engine.aborted == []  # finished requests are not aborted


def test_unary_collects_and_length_finish():
    async def main():
        e = _engine()
        await e.start()
        return await e.generate(TextRequest("r", "chat", prompt="a b c d e", max_tokens=2))

    result = asyncio.run(main())
    assert result.completions[0].text == "e d"
    assert result.completions[0].finish_reason == FinishReason.LENGTH


def test_closing_the_stream_aborts_in_vllm():
    async def main():
        e = _engine()
        await e.start()
        e.engine.step_delay_s = 0.01
        stream = e.stream(TextRequest("r9", "chat", prompt="w " * 40, max_tokens=40))
        await stream.__anext__()
        await stream.aclose()
        return e

    e = asyncio.run(main())
    assert len(e.engine.aborted) == 1 and e.engine.aborted[0].startswith("r9-")
    assert e.stats()["cancelled_requests_total"] == 1


def test_errors_map_to_our_table():
    async def main():
        e = _engine()
        await e.start()
        with pytest.raises(InvalidArgument, match="maximum context length"):
            await e.generate(TextRequest("r", "chat", prompt="w " * 60))
        with pytest.raises(DeadlineExceeded):
            await e.generate(TextRequest("r", "chat", prompt="a b", deadline=time.time() - 1))
        chat = await e.generate(
            TextRequest("r", "chat", messages=(ChatMessage("user", "hi there"),), max_tokens=5)
        )
        return chat

    assert asyncio.run(main()).completions[0].text == "there hi"


def test_a_dead_engine_core_is_unavailable():
    async def main():
        e = _engine()
        await e.start()
        assert e.device == "cpu"  # from vLLM's device config, not assumed
        e.engine.step_delay_s = 0.01
        stream = e.stream(TextRequest("r", "chat", prompt="w " * 40, max_tokens=40))
        await stream.__anext__()
        e.engine.shutdown()  # the core dies mid-stream
        with pytest.raises(Unavailable, match="dead"):
            await stream.__anext__()
        with pytest.raises(Unavailable):  # and later requests, and the health check
            await e.generate(TextRequest("r2", "chat", prompt="a b"))
        with pytest.raises(Unavailable):
            await e.check_health()

    asyncio.run(main())


def test_vllm_metrics_are_bridged_into_stats():
    from prometheus_client import REGISTRY, Gauge

    gauge = Gauge("vllm:num_requests_running", "stand-in metric", ["model_name"])
    try:
        gauge.labels("org/some-model").set(7)
        e = _engine()
        asyncio.run(e.start())
        assert e.stats()["running_sequences"] == 7
    finally:
        REGISTRY.unregister(gauge)


class _VllmFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """First on sys.meta_path: records every import of `vllm` (or a submodule) and serves the
    stand-in as `vllm`, so an import is seen whether or not vLLM is installed (in the main venv
    it is not: there an import would fail, and a guarded one would pass unseen)."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "vllm" and not name.startswith("vllm."):
            return None
        self.asked.append(name)
        return importlib.util.spec_from_loader(name, self) if name == "vllm" else None

    def create_module(self, spec: Any) -> None:
        return None  # the default: a fresh module named vllm

    def exec_module(self, module: ModuleType) -> None:
        public = {k: v for k, v in vars(vllm_stand_in).items() if not k.startswith("__")}
        module.__dict__.update(public)


def test_registry_selects_the_adapter_without_importing_vllm(monkeypatch):
    """Selecting the engine imports the adapter's module afresh but not vLLM; starting an
    engine built without a stand-in imports `vllm` then (the production path)."""
    import services.text as text_package
    from core.registry import engine_class

    monkeypatch.setattr(text_package, "vllm_engine", text_package.vllm_engine)  # restored after
    for name in [n for n in sys.modules if n.split(".")[0] == "vllm"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.delitem(sys.modules, "services.text.vllm_engine")  # imported again, below
    finder = _VllmFinder()
    monkeypatch.setattr(sys, "meta_path", [finder, *sys.meta_path])

    cls = engine_class("text", "vllm")
    assert (cls.__module__, cls.__name__) == ("services.text.vllm_engine", "VllmTextEngine")
    assert cls is not VllmTextEngine  # the module was imported again, with the finder in place
    assert finder.asked == [] and "vllm" not in sys.modules, finder.asked

    engine = cls(_engine().config)  # no stand-in injected: the engine imports vllm itself
    asyncio.run(engine.start())
    assert finder.asked == ["vllm"] and engine.engine.args.model == "org/some-model"


def test_an_ended_completion_is_aborted_in_vllm_and_its_sibling_goes_on():
    """`TextStream.end` (a completion that repeated a tool call, services/text/tools.py): that
    completion's own vLLM request is aborted, its last chunk has the tokens vLLM sent for it
    and the prompt's; the other completion's request runs to its end."""

    async def main():
        e = _engine()
        await e.start()
        stream = e.stream(TextRequest("r5", "chat", prompt="w " * 40, max_tokens=40, n=2))
        chunks = []
        async for chunk in stream:
            if not any(c.index == 0 for c in chunks) and chunk.index == 0:
                stream.end(0)
            chunks.append(chunk)
        return e, chunks

    e, chunks = asyncio.run(main())
    ended = [c for c in chunks if c.index == 0]
    other = [c for c in chunks if c.index == 1]
    assert [c.finish_reason for c in ended[1:]] == [None] * (len(ended) - 2) + [FinishReason.STOP]
    assert ended[-1].prompt_tokens == other[-1].prompt_tokens == 40
    assert sum(c.token_count for c in ended) < 40
    assert other[-1].finish_reason == FinishReason.STOP and len(other[-1].delta) > 0
    assert sum(c.token_count for c in other) == 40
    (aborted,) = e.engine.aborted  # completion 0's request only
    assert aborted.startswith("r5-") and aborted.endswith("-0")
    assert e.stats()["cancelled_requests_total"] == 0
