"""Hugging Face causal LMs with iteration-level (continuous) batching and per-request streaming.

One scheduler task owns the running batch. Every step it first admits waiting sequences (a
batched prefill whose KV cache is merged into the running one, left-padded), else decodes one
token for every running sequence. Finished, cancelled, ended and expired sequences leave the
batch at the next step, so a client that goes away frees its slot at once. All torch work runs
on one worker thread; the event loop only moves tokens to the per-request queues.

Options: `core.options.TransformersTextOptions`.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from core.options import TransformersTextOptions
from core.replica import ModelFacts
from core.types import TextRequest
from services.engine import resolve_dtype
from services.text.constraints import Grammars
from services.text.detokenize import Detokenizer
from services.text.engine import (
    TokenizingTextEngine,
    check_prompt_format,
    checked_prompt,
    configured_template,
    prompt_text,
    template_tools,
)
from services.text.kv_batch import KvBatch
from services.text.sampling import sample
from services.text.sequences import Sampling, Sequence, Sink, ended, expired


@dataclass(eq=False)
class _Sequence(Sequence):
    """A sequence with its own seeded torch generator (the sampler's per-row parameters)."""

    generator: torch.Generator = field(default_factory=torch.Generator)


class TransformersTextEngine(TokenizingTextEngine["_Sequence"]):
    options: TransformersTextOptions

    async def _start(self) -> None:
        self.model = await self.load_torch_model(self._load, "textgen")
        self._waiting: deque[_Sequence] = deque()
        self._batch = KvBatch[_Sequence]()
        self._wake = asyncio.Event()
        self._steps = {"steps_total": 0.0, "prefill_steps_total": 0.0, "batch_occupancy_sum": 0.0}
        self._loop_task = asyncio.get_running_loop().create_task(self._schedule())

    # ---- loading (model thread) ----------------------------------------------------------
    def _load(self, weights: str) -> Any:
        from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

        opts = self.options
        dtype = resolve_dtype(opts.dtype, self.device)
        self.tokenizer = AutoTokenizer.from_pretrained(weights)
        template = configured_template(self.config)
        if template is not None:  # the config's template instead of the tokenizer's own
            self.tokenizer.chat_template = template
        check_prompt_format(self.tokenizer, opts.prompt_format, self.config.name)
        self.tool_format = template_tools(self.tokenizer)
        model = AutoModelForCausalLM.from_pretrained(weights, dtype=dtype)
        model = model.to(self.device).eval()  # type: ignore[arg-type]
        try:
            gen = GenerationConfig.from_pretrained(weights)
        except OSError:
            gen = model.generation_config
        eos = gen.eos_token_id if gen.eos_token_id is not None else self.tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        self.pad_id = self.tokenizer.pad_token_id
        if self.pad_id is None:
            self.pad_id = next(iter(self.eos_ids), 0)
        self.default_temperature = float(gen.temperature or 1.0) if gen.do_sample else 0.0
        self.default_top_p = float(gen.top_p if gen.top_p is not None else 1.0)
        self.default_top_k = int(gen.top_k or 0)
        self.max_context = opts.max_context or int(
            getattr(model.config, "max_position_embeddings", 2048)
        )
        # transformers renamed `past_key_values` to `cache` in 5.2x; accept both.
        params = inspect.signature(model.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        # Merging KV caches needs plain full-attention layers; other caches run in cohorts.
        probe = model(torch.tensor([[self.pad_id]], device=self.device), use_cache=True)
        layers = getattr(self._cache_of(probe), "layers", [])
        self.can_join = bool(layers) and all(
            type(layer).__name__ == "DynamicLayer" for layer in layers
        )
        self.vocab_size = int(probe.logits.shape[-1])
        self.grammars = Grammars(self._grammar_tokenizer(), self.tool_format)
        return model

    def _grammar_tokenizer(self) -> Any:
        """The vocabulary as llguidance's grammars see it; every end-of-sequence id ends a
        constrained answer."""
        from llguidance.hf import from_tokenizer

        return from_tokenizer(
            self.tokenizer,  # type: ignore[arg-type]  # a fast (tokenizers) one, as SmolLM2's n_vocab=self.vocab_size, eos_token=sorted(self.eos_ids) or None
        )

    def _piece(self, token: int) -> bytes:
        return str(self.tokenizer.decode([token])).encode()

    @staticmethod
    def _cache_of(output: Any) -> Any:
        cache = getattr(output, "cache", None)
        return cache if cache is not None else output.past_key_values

    def facts(self) -> ModelFacts:
        return replace(
            super().facts(),
            max_context=self.max_context,
            details={
                "continuous_batching": self.can_join,
                "chat_template": bool(getattr(self.tokenizer, "chat_template", None)),
                "tool_format": self.tool_format.value,
                "prompt_format": self.options.prompt_format,
            },
        )

    async def check_health(self) -> None:
        await super().check_health()
        if self._loop_task.done():
            raise RuntimeError("text scheduler stopped") from self._loop_task.exception()

    async def stop(self) -> None:
        self._loop_task.cancel()
        await super().stop()

    # ---- requests (event loop) -----------------------------------------------------------
    def _prompt_ids(self, request: TextRequest) -> list[int]:
        opts = self.options
        templated = prompt_text(
            request, self.tokenizer, opts.prompt_format, self.config.name, self.tool_format
        )
        if templated is not None:  # the template writes the special tokens it wants
            ids = list(self.tokenizer(templated, add_special_tokens=False).input_ids)
        else:
            ids = list(self.tokenizer(request.prompt or "").input_ids)
            bos = self.tokenizer.bos_token_id
            if opts.add_bos_token and bos is not None and (not ids or ids[0] != bos):
                ids.insert(0, bos)
        return checked_prompt(ids, self.max_context, self.config.name)

    def _sequence(
        self, request: TextRequest, index: int, prompt: list[int], max_new: int, sink: Sink
    ) -> _Sequence:
        sampling = Sampling.of(
            request,
            index,
            temperature=self.default_temperature,
            top_p=self.default_top_p,
            top_k=self.default_top_k,
        )
        return _Sequence(
            request, index, prompt, max_new, sampling, sink, Detokenizer(self.tokenizer),
            generator=torch.Generator().manual_seed(sampling.seed),
            shaper=self._shaper(request, prompt),
        )  # fmt: skip

    def _submit(self, seqs: list[_Sequence]) -> None:
        self._waiting.extend(seqs)
        self._wake.set()

    def _publish(self) -> None:
        """The scheduler's state as stats() reports it: rows held in the batch (a cancelled row
        counts until the step that drops it), sequences waiting for a slot."""
        self._snapshot = {
            **self._steps,
            "running_sequences": float(len(self._batch.seqs)),
            "waiting_sequences": float(sum(not s.done for s in self._waiting)),
        }

    # ---- scheduling (event loop) ---------------------------------------------------------
    async def _schedule(self) -> None:
        wait_s = self.config.batching.batch_wait_timeout_s
        max_batch = self.config.batching.max_batch_size
        while True:
            self._publish()
            if not self._batch.seqs and not self._waiting:
                self._wake.clear()
                await self._wake.wait()
                if wait_s:
                    await asyncio.sleep(wait_s)  # let a burst gather into one prefill
            self._expire()
            while self._waiting and self._waiting[0].done:
                self._waiting.popleft()
            running = [s for s in self._batch.seqs if not s.done]
            newcomers: list[_Sequence] = []
            if self.can_join or not running:
                while self._waiting and len(running) + len(newcomers) < max_batch:
                    s = self._waiting.popleft()
                    if not s.done:
                        newcomers.append(s)
            started = time.perf_counter()
            try:
                if newcomers:
                    for s in newcomers:
                        self.observer.queue_wait(started - s.enqueued)
                    tokens = await self.run_model(self._prefill, newcomers)
                    self._steps["prefill_steps_total"] += 1
                elif running:
                    tokens = await self.run_model(self._decode)
                else:
                    await self.run_model(self._compact)
                    continue
            except Exception as exc:  # a failed step fails its sequences, not the engine
                for s in [*self._batch.seqs, *newcomers]:
                    if not s.done:
                        sink, error = s.fail(exc)
                        sink.put_nowait(error)
                self._batch = KvBatch[_Sequence]()
                continue
            self.observer.batch(len(tokens), time.perf_counter() - started)
            self._steps["steps_total"] += 1
            self._steps["batch_occupancy_sum"] += len(tokens)
            for s, tok in zip(
                self._batch.seqs if not newcomers else newcomers, tokens, strict=True
            ):
                self._accept(s, tok)

    def _expire(self) -> None:
        """Fails the sequences past their deadline; finishes the ones their consumer ended."""
        for sink, error in expired([*self._batch.seqs, *self._waiting]):
            sink.put_nowait(error)
        for sink, chunk in ended(self._batch.seqs):
            sink.put_nowait(chunk)

    def _accept(self, s: _Sequence, token: int) -> None:
        """Adds one sampled token to a sequence and sends the text that is now certain."""
        if s.done:
            return
        self.counters.generated_tokens_total += 1
        chunk = s.accept(token, token in self.eos_ids)
        if chunk is not None:
            s.sink.put_nowait(chunk)

    # ---- model steps (worker thread) -----------------------------------------------------
    @torch.inference_mode()
    def _prefill(self, newcomers: list[_Sequence]) -> list[int]:
        self._compact()
        length = max(len(s.prompt) for s in newcomers)
        ids = torch.full((len(newcomers), length), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(newcomers), length), dtype=torch.long)
        for row, s in enumerate(newcomers):
            ids[row, length - len(s.prompt) :] = torch.tensor(s.prompt)
            mask[row, length - len(s.prompt) :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = self.model(
            input_ids=ids.to(self.device),
            attention_mask=mask.to(self.device),
            position_ids=positions.to(self.device),
            use_cache=True,
        )
        tokens = sample(out.logits[:, -1, :], newcomers)
        self._batch.merge(self._cache_of(out), mask, tokens, newcomers)
        return tokens.tolist()

    @torch.inference_mode()
    def _decode(self) -> list[int]:
        self._compact()
        b = self._batch
        if not b.seqs:
            return []
        mask = torch.cat([b.mask, torch.ones(len(b.seqs), 1, dtype=torch.long)], dim=1)
        positions = mask.sum(-1, keepdim=True) - 1
        out = self.model(
            input_ids=b.next_tokens.unsqueeze(1).to(self.device),
            attention_mask=mask.to(self.device),
            position_ids=positions.to(self.device),
            use_cache=True,
            **{self._cache_kw: b.cache},
        )
        b.cache, b.mask = self._cache_of(out), mask
        b.next_tokens = sample(out.logits[:, -1, :], b.seqs)
        return b.next_tokens.tolist()

    def _compact(self) -> None:
        """Drops finished rows and the padding columns no remaining row needs."""
        b = self._batch
        b.compact([i for i, q in enumerate(b.seqs) if not q.done], self.device, self.can_join)
