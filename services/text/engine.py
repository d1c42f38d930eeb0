"""The text engine protocol: a request in, an async stream of per-completion deltas out."""

from __future__ import annotations

import abc
import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

from core.errors import InvalidArgument
from core.options import TextOptions
from core.types import (
    Completion,
    FinishReason,
    OutputFormat,
    StreamUsage,
    TextChunk,
    TextRequest,
    TextResult,
    TokenLogprob,
    ToolCall,
)
from services.engine import Engine
from services.text.constraints import Grammars, Shaper, check_logit_bias, offers_tools
from services.text.hermes import HermesStream, hermes_prompt
from services.text.llama3 import Llama3Stream, llama3_prompt
from services.text.sequences import Sequence, Sink, TextCounters
from services.text.stream import TextStream
from services.text.tools import (
    CallParser,
    ToolFormat,
    ToolStream,
    tool_format,
    tool_messages,
    with_tool_calls,
)

S = TypeVar("S", bound=Sequence)

# Each tool format's answer parser, and the prompt builder of the template syntaxes (the
# messages and `tools=` a template gets; the generic format writes its own system message)
PARSERS: dict[ToolFormat, Callable[[], CallParser]] = {
    ToolFormat.GENERIC: ToolStream,
    ToolFormat.HERMES: HermesStream,
    ToolFormat.LLAMA3: Llama3Stream,
}
Prompt = tuple[list[dict[str, Any]], list[dict[str, Any]] | None]
TEMPLATE_PROMPTS: dict[ToolFormat, Callable[[TextRequest, str], Prompt]] = {
    ToolFormat.HERMES: hermes_prompt,
    ToolFormat.LLAMA3: llama3_prompt,
}


class TextEngine(Engine):
    options: TextOptions
    # the chat template's tool syntax (services/text/tools.py), set by engines that load one
    tool_format: ToolFormat = ToolFormat.GENERIC

    def validate(self, request: TextRequest) -> None:
        """An engine with no sampler of its own (echo) refuses what it cannot honour."""
        refuse_structure(request, self.config.engine)

    @abc.abstractmethod
    def stream(self, request: TextRequest) -> TextStream:
        """Deltas of the request's n completions, interleaved, tagged by index.

        The last chunk of each completion has `finish_reason` and `prompt_tokens` set. Closing
        the stream early (client cancel) aborts the request's sequences in the engine;
        `end(index)` finishes one completion early (`TextStream`).
        """

    async def generate(self, request: TextRequest) -> TextResult:
        """Unary generation: the stream, collected."""
        return await collect(request, self.stream(request))

    def respond(self, request: TextRequest) -> AsyncIterator[TextChunk]:
        """The stream a client gets: with tools offered, the answer in the template's tool
        format (generic JSON, Hermes' blocks or Llama 3's JSON calls) becomes tool-call deltas
        and content, and a completion that repeats a call ends there (services/text/tools.py)."""
        stream = self.stream(request)
        if not offers_tools(request):
            return stream
        return with_tool_calls(request, stream, PARSERS[self.tool_format])


def refuse_echo_logprobs(request: TextRequest, engine: str) -> None:
    if request.echo and request.logprobs is not None:
        raise InvalidArgument(
            f"echo with logprobs (the prompt's logprobs) is not supported by the {engine} "
            f"engine; ask for one of them",
            field="echo",
        )


def refuse_structure(request: TextRequest, engine: str) -> None:
    asked = {
        "response_format": request.output_format != OutputFormat.TEXT,
        "tools": offers_tools(request),
        "logprobs": request.logprobs is not None,
        "logit_bias": bool(request.logit_bias),
        "presence_penalty": bool(request.presence_penalty),
        "frequency_penalty": bool(request.frequency_penalty),
        "repetition_penalty": request.repetition_penalty != 1.0,
    }
    for field, on in asked.items():
        if on:
            raise InvalidArgument(f"{field} is not supported by the {engine} engine", field=field)


async def collect(request: TextRequest, chunks: AsyncIterator[TextChunk]) -> TextResult:
    """A stream's chunks as one result per completion (text, tokens, finish reason, logprobs,
    tool calls)."""
    texts: dict[int, list[str]] = {i: [] for i in range(request.n)}
    tokens = dict.fromkeys(range(request.n), 0)
    reasons: dict[int, FinishReason] = {}
    logprobs: dict[int, list[TokenLogprob]] = {i: [] for i in range(request.n)}
    calls: dict[int, dict[int, list[str]]] = {i: {} for i in range(request.n)}  # id, name, args
    usage = StreamUsage(completions=request.n)
    async for chunk in chunks:
        i = chunk.index
        texts[i].append(chunk.delta)
        tokens[i] += chunk.token_count
        usage.add(chunk)
        logprobs[i].extend(chunk.logprobs or ())
        for d in chunk.tool_calls or ():
            call = calls[i].setdefault(d.index, ["", "", ""])
            call[0] = d.id or call[0]
            call[1] = d.name or call[1]
            call[2] += d.arguments
        if chunk.finish_reason is not None:
            reasons[i] = chunk.finish_reason
    completions = [
        Completion(
            i,
            "".join(texts[i]),
            reasons.get(i, FinishReason.CANCELLED),
            tokens[i],
            logprobs[i] if request.logprobs is not None else None,
            [ToolCall(*calls[i][k]) for k in sorted(calls[i])],
        )
        for i in range(request.n)
    ]
    return TextResult(request.request_id, request.model, completions, usage.prompt_tokens)


def prompt_text(
    request: TextRequest,
    tokenizer: Any,
    prompt_format: str,
    model: str,
    tools: ToolFormat = ToolFormat.GENERIC,
) -> str | None:
    """The request as text through the model's chat template: its messages (tools and tool
    calls in the template's own syntax, `tools`, or the generic format), or (with
    `prompt_format: chat`) its plain prompt as one user message. None: a plain prompt that
    goes to the model as sent."""
    template = getattr(tokenizer, "chat_template", None)
    if (request.messages or prompt_format == "chat") and not template:
        raise InvalidArgument(
            f"model {model!r} has no chat template; send a prompt instead", field="chat"
        )
    native = TEMPLATE_PROMPTS.get(tools)
    if request.messages and native is not None:
        assert template
        messages, offered = native(request, template)
        text: str = tokenizer.apply_chat_template(
            messages, tools=offered, add_generation_prompt=True, tokenize=False
        )
        return text
    if request.messages:
        messages = tool_messages(request)
    elif prompt_format == "chat":
        messages = [{"role": "user", "content": request.prompt or ""}]
    else:
        return None
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return text


def check_prompt_format(tokenizer: Any, prompt_format: str, model: str) -> None:
    """At load: `prompt_format: chat` needs a chat template (a config error, not a client's)."""
    if prompt_format == "chat" and not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"model {model}: option prompt_format chat needs a chat template")


def configured_template(config: Any) -> str | None:
    """The text of the model's `chat_template` file (None: none configured, the model's own
    template serves)."""
    path = config.chat_template
    if path is None:
        return None
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise ValueError(
            f"model {config.name}: chat_template {path}: {exc.strerror or exc}"
        ) from None


def template_tools(tokenizer: Any) -> ToolFormat:
    """The tool format of the template `tokenizer` renders with."""
    return tool_format(getattr(tokenizer, "chat_template", None))


async def drain_queue(
    sink: asyncio.Queue[TextChunk | BaseException],
) -> list[TextChunk | BaseException]:
    """The next item, plus whatever else is already queued (the consumer fell behind)."""
    items = [await sink.get()]
    while not sink.empty():
        items.append(sink.get_nowait())
    return items


def coalesce_deltas(items: list[TextChunk | BaseException]) -> list[TextChunk | BaseException]:
    """Joins queued deltas of the same completion into one chunk: when the client side is
    slower than generation, fewer, larger messages cross Ray and gRPC (vLLM streams the same
    way). Token counts add up, as do the deltas' logprobs and tool call pieces; a finish reason
    stays on the chunk that carries it."""
    out: list[TextChunk | BaseException] = []
    for item in items:
        last = out[-1] if out else None
        if (
            isinstance(item, TextChunk)
            and isinstance(last, TextChunk)
            and last.index == item.index
            and last.finish_reason is None
        ):
            last.delta += item.delta
            last.token_count += item.token_count
            last.finish_reason = item.finish_reason
            last.prompt_tokens = item.prompt_tokens
            if item.logprobs is not None:
                last.logprobs = [*(last.logprobs or ()), *item.logprobs]
            if item.tool_calls:
                last.tool_calls = [*(last.tool_calls or ()), *item.tool_calls]
        else:
            out.append(item)
    return out


class TokenizingTextEngine(TextEngine, Generic[S]):
    """A text engine that tokenizes prompts itself and schedules its own sequences (llamacpp,
    transformers). `validate` renders the chat template, tokenizes and checks the prompt;
    `stream` takes those tokens (`prompt_of`) instead of doing it all again: the replica calls
    the two back to back, with no await between, so the one held prompt is always this
    request's. `stream` is written once here: the request becomes n `Sequence`s handed to the
    engine's scheduler (`_submit`), and their chunks are relayed back; each engine supplies its
    sequences (`_sequence`), its scheduler and the snapshot of that scheduler's state."""

    _held: tuple[TextRequest, list[int]] | None = None
    max_context: int
    vocab_size: int  # rows of the model's logits
    grammars: Grammars  # this model's compiled constraints
    counters: TextCounters
    # What the scheduler last published about its own state (running, waiting, KV cells):
    # replaced whole, never walked from another thread.
    _snapshot: dict[str, float]

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.counters = TextCounters()
        self._snapshot = {"running_sequences": 0.0, "waiting_sequences": 0.0}

    @abc.abstractmethod
    def _prompt_ids(self, request: TextRequest) -> list[int]:
        """The request's prompt tokens; raises InvalidArgument when empty or too long."""

    @abc.abstractmethod
    def _sequence(
        self, request: TextRequest, index: int, prompt: list[int], max_new: int, sink: Sink
    ) -> S:
        """Completion `index` of the request, as this engine's scheduler keeps it."""

    @abc.abstractmethod
    def _submit(self, seqs: list[S]) -> None:
        """Hands sequences to the scheduler (none: only wakes it, to free what was aborted)."""

    @abc.abstractmethod
    def _piece(self, token: int) -> bytes:
        """A token's bytes, as logprobs show it."""

    def validate(self, request: TextRequest) -> None:
        check_logit_bias(request, self.vocab_size)
        refuse_echo_logprobs(request, self.config.engine)
        self.grammars.check(request)  # compiled once per schema, a 400 if it cannot be
        self._held = (request, self._prompt_ids(request))

    def _shaper(self, request: TextRequest, prompt: list[int]) -> Shaper | None:
        """The sequence's logit processing, if the request asks for any."""
        matcher = self.grammars.matcher(request)
        if not Shaper.needed(request, matcher):
            return None
        return Shaper(request, prompt, matcher, self._piece)

    def prompt_of(self, request: TextRequest) -> list[int]:
        """The tokens `validate` checked for this request, else (a direct caller) new ones."""
        held, self._held = self._held, None
        if held is not None and held[0] is request:
            return held[1]
        return self._prompt_ids(request)

    def stats(self) -> dict[str, float]:
        return {**self.counters.as_dict(), **self._snapshot}

    def stream(self, request: TextRequest) -> TextStream:
        seqs: list[S] = []  # the request's sequences, once the stream has started
        ends: set[int] = set()

        def end(index: int) -> None:  # the scheduler finishes it at its next step
            ends.add(index)
            if seqs:
                seqs[index].ending = True
            self._submit([])

        return TextStream(self._relay(request, seqs, ends), end)

    async def _relay(
        self, request: TextRequest, seqs: list[S], ends: set[int]
    ) -> AsyncGenerator[TextChunk, None]:
        prompt = self.prompt_of(request)
        max_new = answer_budget(
            request, self.options.default_max_tokens, self.max_context - len(prompt)
        )
        relay = Relay(request.n)
        seqs += [self._sequence(request, i, prompt, max_new, relay.sink) for i in range(request.n)]
        for index in ends:  # ended before it started
            seqs[index].ending = True
        self.counters.prompt_tokens_total += len(prompt)
        self._submit(seqs)
        try:
            async for chunk in relay.chunks():
                yield chunk
        finally:
            if not relay.complete:
                for s in seqs:
                    s.done = True  # the scheduler frees their slots at its next step
                if relay.failed:
                    self.counters.failed_requests_total += 1
                else:  # the client went away
                    self.counters.cancelled_requests_total += 1
                self._submit([])


class Relay:
    """Carries one request's chunks from the engine's scheduler to the consumer (`stream`).

    The scheduler puts chunks (or an exception) in `sink`; `chunks()` yields them, coalesced,
    until each of the n completions has finished. After the consumer stops, `complete` says
    whether it saw every completion finish (else the client went away or the engine failed,
    and `failed` says which)."""

    def __init__(self, n: int) -> None:
        self.sink: asyncio.Queue[TextChunk | BaseException] = asyncio.Queue()
        self.n = n
        self.finished = 0
        self.failed = False

    @property
    def complete(self) -> bool:
        return self.finished >= self.n

    async def chunks(self) -> AsyncIterator[TextChunk]:
        while self.finished < self.n:
            for item in coalesce_deltas(await drain_queue(self.sink)):
                if isinstance(item, BaseException):
                    self.failed = True
                    raise item
                if item.finish_reason is not None:
                    self.finished += 1
                yield item


# Below this a temperature samples greedily (as vLLM's _SAMPLING_EPS): dividing logits by a
# denormal such as 4.2e-45 (which Hypothesis sent) overflows them to inf and the draw to NaN.
GREEDY_BELOW = 1e-5


def greedy(temperature: float) -> bool:
    return temperature < GREEDY_BELOW


def checked_prompt(ids: list[int], max_context: int, model: str) -> list[int]:
    """A prompt's tokens, refused when empty or when they leave no room to generate."""
    if not ids:
        raise InvalidArgument("prompt encodes to no tokens", field="prompt")
    if len(ids) >= max_context:
        raise InvalidArgument(
            f"prompt is {len(ids)} tokens; model {model!r} holds {max_context} tokens "
            f"(prompt and answer) per sequence",
            field="prompt",
        )
    return ids


def answer_budget(request: TextRequest, default_max_tokens: int, room: int) -> int:
    """Tokens a completion may generate: what the request asked for (else the engine's
    default), at most what the context leaves after the prompt."""
    return min(request.max_tokens or default_max_tokens, room)
