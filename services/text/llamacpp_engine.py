"""GGUF models on CPU through llama.cpp: quantized weights served as they are, with
iteration-level batching across requests in one llama.cpp context.

Decoding one stream on a CPU is bound by memory bandwidth (every weight is read per token), so
quantized kernels are what make it fast: SmolLM2's Q4_1 file is 98 MB against 540 MB of float32.

Batch-tier work (the flex tier: Batch API lines) takes the capacity left: interactive requests
start first, a quarter of the sequence ids is kept for them, and while one runs the batch's
sequences hold their KV cells but sit out the steps (on a CPU a step's time grows with its rows,
so this is what keeps interactive TTFT near idle beside a running batch).

One scheduler thread owns the context. Each step it retires finished, cancelled, ended and
expired sequences (their KV cells freed with `llama_memory_seq_rm`), starts waiting ones while a
sequence id and KV cells are free, and decodes one batch: every running sequence's last
sampled token plus chunks of newcomers' prompts, as llama-server does. Each sequence samples
with its own seeded sampler chain, is detokenized incrementally and checked for stop strings;
a step's chunks reach the event loop in one call. The event loop only queues requests and
relays chunks, and llama.cpp's calls release the GIL, so Python stays off the model's cores.

Uses llama-cpp-python's C API (`llama_cpp.llama_cpp`), pinned in pyproject.toml; the chat
template is the GGUF's own (`tokenizer.chat_template`) or the config's `chat_template` file,
rendered with jinja2 as transformers does. Options: `core.options.LlamaCppTextOptions`.

Why one file of ~410 lines: what a sequence is (text, stops, counters) is the shared sequence
layer (services/text/sequences.py) and the C API is llamacpp_model.py; what stays here is the
one scheduler thread's state (sequence ids, KV-cell reservations, the prompt cache, the batch),
which every step reads and writes together.
"""

from __future__ import annotations

import asyncio
import ctypes
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.config import ModelConfig
from core.options import LlamaCppTextOptions
from core.replica import ModelFacts
from core.types import Priority, TextChunk, TextRequest
from services.text.constraints import Grammars
from services.text.engine import (
    TokenizingTextEngine,
    check_prompt_format,
    checked_prompt,
    configured_template,
    greedy,
    prompt_text,
    template_tools,
)
from services.text.llamacpp_model import LlamaModel, gguf_file
from services.text.sequences import PieceDecoder, Sampling, Sequence, Sink, ended, expired

Delivery = list[tuple[Sink, "TextChunk | BaseException"]]


@dataclass(eq=False)
class _Sequence(Sequence):
    """A sequence as llama.cpp holds it: a sequence id, its KV cells and its sampler chain.
    Everything but `done` and `ending` belongs to the scheduler thread."""

    # The request's first completion; n > 1: the others share its prompt's KV cells (copied
    # with llama_memory_seq_cp once it is prefilled) and sample from its last prompt logits.
    leader: _Sequence | None = None
    siblings: list[_Sequence] = field(default_factory=list)
    seq_id: int = -1
    reserved: int = 0  # KV cells counted for it while it runs
    context: list[int] = field(default_factory=list)  # the tokens its KV cells hold, in order
    sampler: Any = None
    fed: int = 0  # tokens in the KV cache (len(context)), which is also the next position

    @property
    def cells(self) -> int:
        """KV cells the sequence may need, reserved when it starts: its prompt (shared by its
        siblings) and its own answer."""
        return self.max_new_tokens + (len(self.prompt) if self.leader is None else 0)

    @property
    def group(self) -> list[_Sequence]:
        return [self, *self.siblings]

    @property
    def flex(self) -> bool:
        """Batch work (the flex tier, the Batch API's lines): it uses the capacity left."""
        return self.request.priority == Priority.BATCH


class LlamaCppTextEngine(TokenizingTextEngine["_Sequence"]):
    options: LlamaCppTextOptions

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self._incoming: list[_Sequence] = []
        self._waiting: deque[_Sequence] = deque()
        self._running: list[_Sequence] = []
        self._cond = threading.Condition()
        self._stopping = False
        self._failure: BaseException | None = None
        self._reserved = 0
        # the scheduler thread's own counters, published with its snapshot
        self._steps = {
            "steps_total": 0.0,
            "prefill_tokens_total": 0.0,
            "prefix_cache_hit_tokens_total": 0.0,
            "batch_occupancy_sum": 0.0,
        }

    # ---- loading -------------------------------------------------------------------------
    async def _start(self) -> None:
        self.device = "cpu"
        self._loop = asyncio.get_running_loop()
        path = gguf_file(self.require_weights())
        await asyncio.to_thread(self._load, path)
        self._thread = threading.Thread(
            target=self._run, name=f"llamacpp-{self.config.name}", daemon=True
        )
        self._thread.start()

    def _load(self, path: Path) -> None:
        opts = self.options
        llama = self.llama = LlamaModel(path, self.config.name)
        self.parameters, self.description = llama.parameters, llama.description
        trained = llama.trained_context
        self.max_context = opts.context_per_sequence or min(trained, 2048)
        if self.max_context > trained:
            raise ValueError(
                f"model {self.config.name}: context_per_sequence {self.max_context} exceeds "
                f"the {trained} tokens it was trained on"
            )
        self.max_sequences = self.config.batching.max_batch_size
        # sequence ids batch-tier work leaves free, so an interactive request starts at once
        self.flex_reserve = max(1, self.max_sequences // 4) if self.max_sequences > 1 else 0
        if self.max_sequences > opts.batch_tokens:
            raise ValueError(
                f"model {self.config.name}: batch_tokens {opts.batch_tokens} cannot hold a "
                f"step of max_batch_size {self.max_sequences} sequences"
            )
        self.kv_cells = llama.open_context(
            cells=opts.kv_cells or self.max_context * self.max_sequences,
            batch_tokens=opts.batch_tokens,
            sequences=self.max_sequences,
            threads=opts.threads or self.config.resources.torch_threads,
            flash=opts.flash_attention,
        )
        self.max_context = min(self.max_context, self.kv_cells)
        # the scheduler thread's handles
        self._ll, self._ctx, self._memory = llama.ll, llama.ctx, llama.memory
        self._batch, self._vocab = llama.batch, llama.vocab
        # Free sequence ids, least recently used first, each with the tokens its KV cells still
        # hold (the last sequence's prompt and answer: a prompt that starts the same way, the
        # chat template's system prompt or an earlier turn, reuses them instead of prefilling).
        self._idle: dict[int, list[int]] = {i: [] for i in range(self.max_sequences)}
        self.add_bos = llama.add_bos
        template = configured_template(self.config)
        self.tokenizer = llama.chat_template if template is None else llama.template(template)
        check_prompt_format(self.tokenizer, opts.prompt_format, self.config.name)
        self.tool_format = template_tools(self.tokenizer)
        self.vocab_size = llama.n_vocab
        self.grammars = Grammars(llama.grammar_tokenizer(), self.tool_format)

    def facts(self) -> ModelFacts:
        return replace(
            super().facts(),
            max_context=self.max_context,
            details={
                "continuous_batching": True,
                "chat_template": bool(self.tokenizer.chat_template),
                "tool_format": self.tool_format.value,
                "prompt_format": self.options.prompt_format,
                "kv_cells": self.kv_cells,
                "gguf": self.description,
            },
        )

    def _publish(self) -> None:
        """The scheduler's state as stats() reports it (scheduler thread, after each step)."""
        used = float(sum(s.fed for s in self._running))
        cached = float(self.cached_cells())
        self._snapshot = {
            **self._steps,
            "running_sequences": float(len(self._running)),
            "waiting_sequences": float(len(self._waiting) + len(self._incoming)),
            "kv_cells_used": used,
            "kv_cells_cached": cached,
            "kv_cells_total": float(self.kv_cells),
            "kv_cache_usage": (used + cached) / self.kv_cells,
        }

    async def check_health(self) -> None:
        await super().check_health()
        if self._failure is not None or not self._thread.is_alive():
            raise RuntimeError("llama.cpp scheduler stopped") from self._failure

    async def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if getattr(self, "_thread", None) is not None:
            await asyncio.to_thread(self._thread.join, 30)
        if getattr(self, "_ctx", None) and not self._thread.is_alive():
            for s in self._running:
                self._ll.llama_sampler_free(s.sampler)
            self._running.clear()
            self.llama.free()
            self._ctx = None
        await super().stop()

    # ---- text <-> tokens -----------------------------------------------------------------
    def _tokenize(self, text: str, add_special: bool) -> list[int]:
        return self.llama.tokenize(text, add_special)

    def _text_piece(self, token: int) -> bytes:
        return self.llama.piece(token, False)

    def _piece(self, token: int) -> bytes:
        return self.llama.piece(token, True)

    def _prompt_ids(self, request: TextRequest) -> list[int]:
        templated = prompt_text(
            request, self.tokenizer, self.options.prompt_format, self.config.name, self.tool_format
        )
        if templated is not None:  # the template writes the special tokens it wants
            ids = self._tokenize(templated, add_special=False)
        else:
            ids = self._tokenize(request.prompt or "", add_special=self.add_bos)
        return checked_prompt(ids, self.max_context, self.config.name)

    # ---- requests (event loop) -----------------------------------------------------------
    def _sequence(
        self, request: TextRequest, index: int, prompt: list[int], max_new: int, sink: Sink
    ) -> _Sequence:
        sampling = Sampling.of(
            request, index, temperature=self.options.temperature, top_p=1.0, top_k=0
        )
        return _Sequence(
            request, index, prompt, max_new, sampling, sink, PieceDecoder(self._text_piece),
            shaper=self._shaper(request, prompt),
        )  # fmt: skip

    def _submit(self, seqs: list[_Sequence]) -> None:
        if seqs:  # n > 1: the first completion prefills the prompt the others share
            leader = seqs[0]
            leader.siblings = seqs[1:]
            for s in leader.siblings:
                s.leader = leader
        with self._cond:
            self._incoming.extend(seqs)
            self._cond.notify()

    @staticmethod
    def _deliver(items: Delivery) -> None:
        for sink, item in items:
            sink.put_nowait(item)

    # ---- scheduling (scheduler thread) ---------------------------------------------------
    def _run(self) -> None:
        try:
            self._publish()
            while True:
                with self._cond:
                    while not (self._stopping or self._incoming or self._waiting or self._running):
                        self._cond.wait()
                    if self._stopping:
                        return
                    self._waiting.extend(self._incoming)
                    self._incoming.clear()
                out: Delivery = []
                try:
                    self._step(out)
                except Exception as exc:  # a failed step fails its sequences, not the engine
                    out += [s.fail(exc) for s in self._running if not s.done]
                    for s in list(self._running):
                        self._retire(s, clear=True)
                self._publish()  # before the step's chunks reach a consumer
                if out:
                    self._loop.call_soon_threadsafe(self._deliver, out)
        except BaseException as exc:  # the engine is broken: health checks say so
            self._failure = exc
            raise

    def _step(self, out: Delivery) -> None:
        out += expired([*self._running, *self._waiting])
        out += ended(self._running)
        for s in [s for s in self._running if s.done]:
            self._retire(s)
        # interactive requests first (stable: a request's n completions stay together)
        self._waiting = deque(
            sorted((s for s in self._waiting if not s.done), key=lambda s: s.flex)
        )
        self._admit()
        if not self._running:
            return
        outputs = self._fill_batch()
        started = time.perf_counter()
        rc = self._ll.llama_decode(self._ctx, self._batch)
        if rc != 0:
            raise RuntimeError(f"llama_decode failed ({rc})")
        self.observer.batch(len(outputs), time.perf_counter() - started)
        self._steps["steps_total"] += 1
        self._steps["batch_occupancy_sum"] += len(outputs)
        for s, row in outputs:
            if s.fed == len(s.prompt):  # just prefilled: its siblings start from its prompt
                for sibling in s.siblings:
                    if sibling.seq_id >= 0 and not sibling.done:
                        self._ll.llama_memory_seq_cp(self._memory, s.seq_id, sibling.seq_id, -1, -1)
                        sibling.fed, sibling.context = len(s.prompt), list(s.context)
                        self._sample(sibling, row, out)
            self._sample(s, row, out)

    def _sample(self, s: _Sequence, row: int, out: Delivery) -> None:
        if s.shaper is None:
            token = int(self._ll.llama_sampler_sample(s.sampler, self._ctx, row))
        else:  # the sampler chain reads the logits the shaper processed in place
            logits = self._logits(row)
            raw = logits.clone()  # siblings (n > 1) sample from the same row
            s.shaper.shape(logits)
            token = int(self._ll.llama_sampler_sample(s.sampler, self._ctx, row))
            logits.copy_(raw)
            s.shaper.chose(token)
        self._accept(s, token, out)

    def _logits(self, row: int) -> torch.Tensor:
        """Row `row` of the last decode's logits, as a tensor over llama.cpp's own buffer."""
        pointer = self._ll.llama_get_logits_ith(self._ctx, row)
        buffer = ctypes.cast(pointer, ctypes.POINTER(ctypes.c_float * self.vocab_size))
        return torch.from_numpy(np.ctypeslib.as_array(buffer.contents))

    def _admit(self) -> None:
        """Starts waiting requests (all n completions together), in order, while sequence ids
        and their KV cells are free. The first completion takes the idle id whose cached tokens
        share the longest prefix with its prompt; cached cells are evicted, least recently used
        first, when the cells a request reserves would not fit beside them."""
        while self._waiting:
            group = self._waiting[0].group
            if len(group) > len(self._idle):
                return
            if group[0].flex and len(self._idle) - len(group) < self.flex_reserve:
                return  # ids kept free for interactive requests
            leader = group[0]
            reuse, keep = self._best_prefix(leader.prompt)
            ids = [reuse] if reuse is not None else []
            ids += [i for i in self._idle if i != reuse][: len(group) - len(ids)]
            # cached cells of the ids it takes become its own (kept) or are cleared
            cells = sum(s.cells for s in group) - sum(len(self._idle[i]) for i in ids)
            if not self._make_room(cells, ids) and self._running:
                return
            for s, seq_id in zip(group, ids, strict=True):
                self._waiting.popleft()
                cached = self._idle.pop(seq_id)
                kept = keep if seq_id == reuse else 0
                if len(cached) > kept:
                    self._ll.llama_memory_seq_rm(self._memory, seq_id, kept, -1)
                s.seq_id, s.fed, s.context = seq_id, kept, cached[:kept]
                self._steps["prefix_cache_hit_tokens_total"] += kept
                s.sampler = self._sampler(s)
                s.reserved = s.cells
                self._reserved += s.reserved
                self._running.append(s)
                self.observer.queue_wait(time.perf_counter() - s.enqueued)

    def _best_prefix(self, prompt: list[int]) -> tuple[int | None, int]:
        """The idle id whose cached tokens share the longest prefix with `prompt`, and how many
        of them to keep (at least one prompt token is left to compute its logits)."""
        if not self.options.prefix_cache:
            return None, 0
        best, best_len = None, 0
        for seq_id, cached in self._idle.items():
            n = 0
            for a, b in zip(cached, prompt, strict=False):
                if a != b:
                    break
                n += 1
            if n > best_len:
                best, best_len = seq_id, n
        return best, min(best_len, len(prompt) - 1)

    def cached_cells(self) -> int:
        return sum(len(cached) for cached in self._idle.values())

    def _make_room(self, cells: int, keep_ids: list[int]) -> bool:
        """Evicts idle ids' cached tokens (least recently used first, never `keep_ids`) until
        `cells` more fit beside the running sequences' reservations and the cache."""
        for seq_id, cached in self._idle.items():
            if self._reserved + self.cached_cells() + cells <= self.kv_cells:
                return True
            if cached and seq_id not in keep_ids:
                self._ll.llama_memory_seq_rm(self._memory, seq_id, -1, -1)
                self._idle[seq_id] = []
        return self._reserved + self.cached_cells() + cells <= self.kv_cells

    def _retire(self, s: _Sequence, clear: bool = False) -> None:
        """Ends a sequence: its id is idle again, its cells kept as a prompt cache (cleared
        when `clear`, after a failed step, or with prefix_cache off)."""
        self._ll.llama_sampler_free(s.sampler)
        self._running.remove(s)
        if clear or not self.options.prefix_cache:
            self._ll.llama_memory_seq_rm(self._memory, s.seq_id, -1, -1)
            s.context = []
        self._idle[s.seq_id] = s.context  # now the most recently used
        family = (s.leader or s).group
        heir = next((x for x in family if x is not s and x in self._running), None)
        if heir is not None and s.reserved > s.max_new_tokens:  # it held the shared prompt
            heir.reserved += len(s.prompt)  # whose cells live on in the siblings
            s.reserved -= len(s.prompt)
        self._reserved -= s.reserved

    def _sampler(self, s: _Sequence) -> Any:
        ll, p = self._ll, s.sampling
        chain = ll.llama_sampler_chain_init(ll.llama_sampler_chain_default_params())
        temperature = s.sampling.temperature
        if greedy(temperature):
            ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_greedy())
            return chain
        # Temperature first, then top-k and top-p on the scaled distribution (as transformers
        # and vLLM order them), then a draw from the sequence's own seeded generator.
        ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_temp(temperature))
        if p.top_k:
            ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_top_k(p.top_k))
        if p.top_p < 1.0:
            ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_top_p(p.top_p, 1))
        ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_dist(s.sampling.seed % 2**32))
        return chain

    def _fill_batch(self) -> list[tuple[_Sequence, int]]:
        """One decode call's tokens: each running sequence's next token, then prompt chunks.
        Returns the sequences that get logits, with their rows in the batch."""
        b = self._batch
        budget = self.options.batch_tokens
        outputs: list[tuple[_Sequence, int]] = []
        n = 0

        def add(s: _Sequence, token: int, logits: bool) -> None:
            nonlocal n
            b.token[n], b.pos[n], b.n_seq_id[n] = token, s.fed, 1
            b.seq_id[n][0], b.logits[n] = s.seq_id, logits
            s.fed += 1
            s.context.append(token)
            if logits:
                outputs.append((s, n))
            n += 1

        # Batch-tier sequences make way: while an interactive one runs they hold their cells
        # but take no part in the step (a step's time grows with its rows on a CPU).
        interactive = any(not s.flex and not s.done for s in self._running)
        stepping = [s for s in self._running if not (interactive and s.flex)]
        for s in stepping:
            if s.fed >= len(s.prompt) and s.sampled:
                add(s, s.last_token, True)
        for s in stepping:
            if s.fed < len(s.prompt) and s.leader is None and n < budget:
                take = min(len(s.prompt) - s.fed, budget - n)
                self._steps["prefill_tokens_total"] += take
                for token in s.prompt[s.fed : s.fed + take]:
                    add(s, token, s.fed == len(s.prompt) - 1)
        b.n_tokens = n
        return outputs

    def _accept(self, s: _Sequence, token: int, out: Delivery) -> None:
        """Adds one sampled token to a sequence and sends the text that is now certain."""
        if s.done:
            return
        self.counters.generated_tokens_total += 1
        chunk = s.accept(token, bool(self._ll.llama_vocab_is_eog(self._vocab, token)))
        if chunk is not None:
            out.append((s.sink, chunk))
