"""The text engine protocol: a request in, an async stream of per-completion deltas out."""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator

from services.engine import Engine
from services.types import Completion, FinishReason, TextChunk, TextRequest, TextResult


class TextEngine(Engine):
    @abc.abstractmethod
    def generate_stream(self, request: TextRequest) -> AsyncIterator[TextChunk]:
        """Yields deltas of the request's n completions, interleaved, tagged by index.

        The last chunk of each completion has `finish_reason` and `prompt_tokens` set. Closing
        the iterator early (client cancel) aborts the request's sequences in the engine.
        """

    async def generate(self, request: TextRequest) -> TextResult:
        """Unary generation: the stream, collected."""
        texts: dict[int, list[str]] = {i: [] for i in range(request.n)}
        tokens = dict.fromkeys(range(request.n), 0)
        reasons: dict[int, FinishReason] = {}
        prompt_tokens = 0
        async for chunk in self.generate_stream(request):
            texts[chunk.index].append(chunk.delta)
            tokens[chunk.index] += chunk.token_count
            if chunk.finish_reason is not None:
                reasons[chunk.index] = chunk.finish_reason
                prompt_tokens = chunk.prompt_tokens
        completions = [
            Completion(i, "".join(texts[i]), reasons.get(i, FinishReason.CANCELLED), tokens[i])
            for i in range(request.n)
        ]
        return TextResult(request.request_id, request.model, completions, prompt_tokens)
