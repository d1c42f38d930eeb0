"""A model-free text engine: streams the prompt's words back. Measures serving overhead."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from core.options import EchoTextOptions
from core.types import FinishReason, TextChunk, TextRequest
from services.text.engine import TextEngine
from services.text.stream import TextStream


class EchoTextEngine(TextEngine):
    """Options: `core.options.EchoTextOptions` (`delay_s` between words)."""

    options: EchoTextOptions

    async def _start(self) -> None:
        pass

    def stream(self, request: TextRequest) -> TextStream:
        ends: set[int] = set()
        return TextStream(self._words(request, ends), ends.add)

    async def _words(self, request: TextRequest, ends: set[int]) -> AsyncGenerator[TextChunk, None]:
        source = request.prompt if request.prompt is not None else request.messages[-1].content
        words = source.split() or [""]
        limit = request.max_tokens or self.options.default_max_tokens
        out = words[:limit]
        reason = FinishReason.LENGTH if len(words) > limit else FinishReason.STOP
        # Paced as a model's engine is: word k is due delay_s x k after the start, on the
        # engine's own clock, whether or not the consumer was quick to take word k-1 (a model
        # steps on in its loop; a relay that lags delays a word, not every later one).
        loop = asyncio.get_running_loop()
        start, k = loop.time(), 0
        for index in range(request.n):
            for i, word in enumerate(out):
                if index in ends:  # ended early: its last chunk, no more words
                    yield TextChunk(index, "", 0, FinishReason.STOP, prompt_tokens=len(words))
                    break
                if self.options.delay_s:
                    k += 1
                    await asyncio.sleep(max(0.0, start + k * self.options.delay_s - loop.time()))
                last = i == len(out) - 1
                yield TextChunk(
                    index=index,
                    delta=word if i == 0 else " " + word,
                    token_count=1,
                    finish_reason=reason if last else None,
                    prompt_tokens=len(words) if last else 0,
                )
