"""The per-sequence bookkeeping every CPU text engine shares; each engine keeps its scheduler.

A request with n completions becomes n `Sequence`s. The scheduler feeds each sampled token to
`Sequence.accept`, which detokenizes it (the engine's `TextDecoder`), holds back what could
still start a stop string, decides the finish (end of generation, a stop string, the token
budget) and returns the chunk to send. A sequence its consumer ended (`TextStream.end`) is
finished by the scheduler at its next step (`ended`), with the tokens it generated.
`TextCounters` are the engine's counters, with one meaning on every engine (vLLM's adapter
included): each is written by one thread only, and the figures that describe the scheduler's
state (running, waiting, KV cells) reach `stats()` as a snapshot the scheduler publishes after
its step, never by walking its state from another thread.

Per-request sampling (`Sampling`: temperature, top-p, top-k and the seed, resolved once against
the engine's defaults) lives here too, so what a request asks of the sampler is read in one place.
"""

from __future__ import annotations

import asyncio
import codecs
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from core.errors import DeadlineExceeded
from core.types import FinishReason, TextChunk, TextRequest
from services.engine import past

if TYPE_CHECKING:
    from services.text.constraints import Shaper

Sink = asyncio.Queue[TextChunk | BaseException]


def cut_at_stop(text: str, stops: tuple[str, ...]) -> tuple[str, bool]:
    """The text up to the earliest stop string in it, and whether one was found."""
    cuts = [cut for cut in (text.find(stop) for stop in stops) if cut >= 0]
    return (text[: min(cuts)], True) if cuts else (text, False)


def releasable(text: str, stops: tuple[str, ...], emitted: int) -> int:
    """How much of an unfinished completion's text may go to the client: all but what could
    still turn out to start a stop string, and never half of a UTF-8 character."""
    holdback = max((len(stop) - 1 for stop in stops), default=0)
    end = max(emitted, len(text) - holdback)
    if text.endswith("\ufffd"):  # an incomplete UTF-8 character
        end = min(end, len(text) - 1)
    return end


def next_chunk(
    index: int,
    text: str,
    stops: tuple[str, ...],
    emitted: int,
    finish: FinishReason | None,
    tokens: int,
    prompt_tokens: int,
) -> tuple[TextChunk | None, int]:
    """What a completion whose text is now `text` sends, given `emitted` characters sent: the
    text is cut at the first stop string (which finishes it); an unfinished one holds back what
    could still start a stop string. Returns the chunk (None: nothing to send yet) and the
    characters sent after it. `tokens` are the tokens the chunk reports; a finishing chunk
    carries the prompt's token count."""
    text, stopped = cut_at_stop(text, stops)
    if stopped:
        finish = FinishReason.STOP
    end = len(text) if finish is not None else releasable(text, stops, emitted)
    delta = text[emitted:end]
    if not delta and finish is None:
        return None, emitted
    chunk = TextChunk(index, delta, tokens, finish)
    if finish is not None:
        chunk.prompt_tokens = prompt_tokens
    return chunk, max(emitted, end)


class TextDecoder(Protocol):
    def add(self, token: int | None, final: bool = False) -> str:
        """Adds a token (None: none, only finishing) and returns the whole text so far."""


class PieceDecoder:
    """Text from tokens' byte pieces (llama.cpp's vocabulary): bytes are decoded as UTF-8
    incrementally, so a character split across tokens comes out whole."""

    def __init__(self, piece: Callable[[int], bytes]) -> None:
        self._piece = piece
        self._utf8 = codecs.getincrementaldecoder("utf-8")("replace")
        self.text = ""

    def add(self, token: int | None, final: bool = False) -> str:
        if token is not None:
            self.text += self._utf8.decode(self._piece(token))
        if final:
            self.text += self._utf8.decode(b"", final=True)
        return self.text


@dataclass(frozen=True)
class Sampling:
    """What one completion asks of the sampler, with the engine's defaults filled in."""

    temperature: float
    top_p: float
    top_k: int
    seed: int

    @classmethod
    def of(
        cls, request: TextRequest, index: int, *, temperature: float, top_p: float, top_k: int
    ) -> Sampling:
        """Completion `index` of the request: its seed is the request's plus the index (so n
        completions with one seed differ from each other and repeat across calls)."""
        seed = request.seed if request.seed is not None else random.getrandbits(63)
        return cls(
            temperature=temperature if request.temperature is None else request.temperature,
            top_p=top_p if request.top_p is None else request.top_p,
            top_k=top_k if request.top_k is None else request.top_k,
            seed=(seed + index) % 2**63,
        )


@dataclass(eq=False)
class Sequence:
    """One completion in flight. `done` is set by either side (the consumer on cancel, the
    scheduler on a finish, a failure or a deadline); the rest belongs to the scheduler."""

    request: TextRequest
    index: int
    prompt: list[int]
    max_new_tokens: int
    sampling: Sampling
    sink: Sink
    decoder: TextDecoder
    enqueued: float = field(default_factory=time.perf_counter)
    sampled: int = 0  # tokens sampled, end of generation included
    emitted: int = 0  # characters sent
    unreported: int = 0  # tokens not yet counted in a chunk
    last_token: int = -1  # the last sampled token that is part of the text
    done: bool = False
    ending: bool = False  # set by the consumer (`TextStream.end`): finish it at the next step
    shaper: Shaper | None = None  # grammar, penalties, bias, logprobs (None: none asked)

    def accept(self, token: int, end_of_generation: bool) -> TextChunk | None:
        """Adds one sampled token; returns the chunk that is now certain (None: nothing yet).
        A finishing chunk marks the sequence done."""
        self.sampled += 1
        self.unreported += 1
        finish: FinishReason | None = None
        text_token: int | None = token
        if end_of_generation and not self.request.ignore_eos:
            finish, text_token = FinishReason.STOP, None
        else:
            self.last_token = token
        shaper = self.shaper
        if shaper is not None:
            if shaper.error is not None:
                raise RuntimeError(f"structured output: {shaper.error}")
            if finish is None and shaper.finished:  # the grammar allows nothing more
                finish = FinishReason.STOP
        if finish is None and self.sampled >= self.max_new_tokens:
            finish = FinishReason.LENGTH
        text = self.decoder.add(text_token, final=finish is not None)
        chunk, self.emitted = next_chunk(
            self.index, text, self.request.stop, self.emitted, finish, self.unreported,
            len(self.prompt),
        )  # fmt: skip
        if chunk is None:
            return None
        self.unreported = 0
        if shaper is not None and self.request.logprobs is not None:
            chunk.logprobs = shaper.take_logprobs(drop_last=text_token is None)
        self.done = chunk.finish_reason is not None
        return chunk

    def fail(self, error: BaseException) -> tuple[Sink, BaseException]:
        self.done = True
        return self.sink, error

    def end(self) -> tuple[Sink, TextChunk]:
        """Finishes the sequence where it is, as a stop string would: its last chunk has no
        more text (what was held back for a stop string is dropped), the tokens sampled since
        its previous chunk and the prompt's."""
        self.done = True
        chunk = TextChunk(
            self.index, "", self.unreported, FinishReason.STOP, prompt_tokens=len(self.prompt)
        )
        self.unreported = 0
        if self.shaper is not None and self.request.logprobs is not None:
            chunk.logprobs = self.shaper.take_logprobs()
        return self.sink, chunk


def expired(seqs: Iterable[Sequence], now: float | None = None) -> list[tuple[Sink, BaseException]]:
    """Ends every unfinished sequence whose request's deadline has passed."""
    now = time.time() if now is None else now
    return [
        s.fail(DeadlineExceeded("deadline passed during generation"))
        for s in seqs
        if not s.done and past(s.request.deadline, now)
    ]


def ended(seqs: Iterable[Sequence]) -> list[tuple[Sink, TextChunk]]:
    """Finishes every unfinished sequence whose consumer ended it (`Sequence.ending`); run by
    the scheduler before its step, so a sequence ends between two of its tokens."""
    return [s.end() for s in seqs if s.ending and not s.done]


@dataclass
class TextCounters:
    """Counters with one meaning on every text engine. Requests: a request counts once, whatever
    its n; `cancelled` is a client that went away before its completions finished, `failed` a
    request the engine ended with an error (a failed step, a passed deadline). Tokens:
    `prompt_tokens_total` counts a request's prompt once (as usage reports it), generated tokens
    count every sampled token, end of generation included."""

    prompt_tokens_total: float = 0.0
    generated_tokens_total: float = 0.0
    cancelled_requests_total: float = 0.0
    failed_requests_total: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return dict(vars(self))
