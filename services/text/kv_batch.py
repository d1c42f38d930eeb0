"""The transformers engine's running batch and its KV-cache surgery: newcomers' caches merged
into the running one (left-padded to a common length), finished rows dropped, and padding
columns no remaining row needs trimmed. Needs plain full-attention cache layers
(`DynamicLayer`: `keys` / `values` of shape batch x heads x length x dim)."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import torch

S = TypeVar("S")


def pad_left(t: torch.Tensor, length: int, dim: int) -> torch.Tensor:
    missing = length - t.shape[dim]
    if missing <= 0:
        return t
    shape = list(t.shape)
    shape[dim] = missing
    return torch.cat([t.new_zeros(shape), t], dim=dim)


class KvBatch(Generic[S]):
    """The running batch: one row per sequence, its KV cache, attention mask and the sampled
    tokens not yet fed back."""

    def __init__(self) -> None:
        self.seqs: list[S] = []
        self.clear()

    def clear(self) -> None:
        self.seqs = []
        self.cache: Any = None
        self.mask = torch.zeros(0, 0, dtype=torch.long)
        self.next_tokens = torch.zeros(0, dtype=torch.long)

    def merge(self, cache: Any, mask: torch.Tensor, tokens: torch.Tensor, seqs: list[S]) -> None:
        """Appends a prefill's rows: its cache, mask and first sampled tokens."""
        if not self.seqs:
            self.cache, self.mask, self.next_tokens, self.seqs = cache, mask, tokens, list(seqs)
            return
        length = max(self.mask.shape[1], mask.shape[1])
        for old, new in zip(self.cache.layers, cache.layers, strict=True):
            old.keys = torch.cat([pad_left(old.keys, length, 2), pad_left(new.keys, length, 2)])
            old.values = torch.cat(
                [pad_left(old.values, length, 2), pad_left(new.values, length, 2)]
            )
        self.mask = torch.cat([pad_left(self.mask, length, 1), pad_left(mask, length, 1)])
        self.next_tokens = torch.cat([self.next_tokens, tokens])
        self.seqs.extend(seqs)

    def compact(self, keep: list[int], device: Any, trim: bool) -> None:
        """Keeps the rows `keep` (indices, in order); with `trim`, also drops the leading
        padding columns no kept row needs."""
        if len(keep) == len(self.seqs):
            return
        if not keep:
            self.clear()
            return
        index = torch.tensor(keep, dtype=torch.long)
        self.cache.batch_select_indices(index.to(device))
        self.mask, self.next_tokens = self.mask[index], self.next_tokens[index]
        self.seqs = [self.seqs[i] for i in keep]
        used = (self.mask.sum(0) > 0).nonzero()
        first = int(used[0]) if len(used) else 0
        if first > 0 and trim:
            for layer in self.cache.layers:
                layer.keys = layer.keys[:, :, first:, :]
                layer.values = layer.values[:, :, first:, :]
            self.mask = self.mask[:, first:]
