"""Per-sequence sampling for the transformers engine: each row of a batch's logits with its own
temperature, top-k, top-p and seeded generator, so a sequence samples the same tokens in any
batch it shares (tested)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch

from services.text.constraints import Shaper
from services.text.engine import greedy
from services.text.sequences import Sampling


class SamplingRow(Protocol):
    """A batch row's sequence: what it asks of the sampler, and its own seeded generator."""

    @property
    def sampling(self) -> Sampling: ...

    @property
    def generator(self) -> torch.Generator: ...

    @property
    def shaper(self) -> Shaper | None: ...


def sample(logits: torch.Tensor, rows: Sequence[SamplingRow]) -> torch.Tensor:
    """One token per row of `logits` (batch x vocab), drawn with that row's parameters
    (temperature below GREEDY_BELOW: greedy; top_k 0: off), after the row's shaper (grammar,
    penalties, bias; it records logprobs and the token chosen)."""
    logits = logits.float().cpu()
    out = torch.empty(len(rows), dtype=torch.long)
    for row, seq in enumerate(rows):
        out[row] = _draw(logits[row], seq)
        if seq.shaper is not None:
            seq.shaper.chose(int(out[row]))
    return out


def _draw(scores: torch.Tensor, seq: SamplingRow) -> torch.Tensor:
    s, generator = seq.sampling, seq.generator
    if seq.shaper is not None:
        seq.shaper.shape(scores)
    if greedy(s.temperature):
        return scores.argmax()
    scores = scores / s.temperature
    if 0 < s.top_k < scores.numel():
        kth = torch.topk(scores, s.top_k).values[-1]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if s.top_p < 1.0:
        sorted_scores, order = torch.sort(scores, descending=True)
        probs = torch.softmax(sorted_scores, -1)
        drop = probs.cumsum(-1) - probs > s.top_p
        sorted_scores[drop] = float("-inf")
        scores = torch.full_like(scores, float("-inf")).scatter(0, order, sorted_scores)
    probs = torch.softmax(scores, -1)
    return torch.multinomial(probs, 1, generator=generator)[0]
