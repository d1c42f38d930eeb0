"""What a text engine's `stream` returns: the request's chunks, and the consumer's one control
besides closing them."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable

from core.types import TextChunk


class TextStream:
    """The chunks of a request's n completions, interleaved and tagged by index, as an async
    iterator. Closing it before they all finished (`aclose`: the client went away) aborts what
    is left in the engine.

    `end(index)` finishes one completion early, as a stop string would, for a consumer that has
    what it wants of it (services/text/tools.py: a repeated tool call): the engine stops
    generating it and soon sends its last chunk (finish_reason stop, the tokens generated since
    its previous chunk and the prompt's tokens; no text but what was already on its way). The
    other completions go on; a completion that already finished is left as it is. Each engine
    keeps the promise its own way: the CPU engines' scheduler finishes the sequence at its next
    step (services/text/sequences.py `ended`), the vLLM adapter aborts that completion's own
    vLLM request."""

    def __init__(self, chunks: AsyncGenerator[TextChunk, None], end: Callable[[int], None]) -> None:
        self._chunks = chunks
        self._end = end

    def __aiter__(self) -> TextStream:
        return self

    async def __anext__(self) -> TextChunk:
        return await anext(self._chunks)

    async def aclose(self) -> None:
        await self._chunks.aclose()

    def end(self, index: int) -> None:
        self._end(index)
