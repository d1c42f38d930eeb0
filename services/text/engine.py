"""The text engine protocol: a request in, an async stream of per-completion deltas out."""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from typing import Any

from services.engine import Engine
from services.errors import InvalidArgument
from services.options import TextOptions
from services.types import Completion, FinishReason, TextChunk, TextRequest, TextResult


class TextEngine(Engine):
    options: TextOptions

    @abc.abstractmethod
    def stream(self, request: TextRequest) -> AsyncIterator[TextChunk]:
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
        async for chunk in self.stream(request):
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


def prompt_text(request: TextRequest, tokenizer: Any, prompt_format: str, model: str) -> str | None:
    """The request as text through the model's chat template: its messages, or (with
    `prompt_format: chat`) its plain prompt as one user message. None: a plain prompt that
    goes to the model as sent."""
    if request.messages:
        messages = [{"role": m.role, "content": m.content} for m in request.messages]
    elif prompt_format == "chat":
        messages = [{"role": "user", "content": request.prompt or ""}]
    else:
        return None
    if not getattr(tokenizer, "chat_template", None):
        raise InvalidArgument(
            f"model {model!r} has no chat template; send a prompt instead", field="chat"
        )
    text: str = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return text


def check_prompt_format(tokenizer: Any, prompt_format: str, model: str) -> None:
    """At load: `prompt_format: chat` needs a chat template (a config error, not a client's)."""
    if prompt_format == "chat" and not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"model {model}: option prompt_format chat needs a chat template")
