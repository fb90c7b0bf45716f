"""The HF engine's decoding helpers: a KV cache that grows in place, and prompts grouped by shared prefix
(so a batch encodes a shared prefix once)."""

from __future__ import annotations

from typing import Any, Sequence

import torch


def growing_cache(config: Any) -> Any:
    """A DynamicCache whose full-attention layers write into preallocated buffers that grow by
    doubling. transformers' DynamicLayer concatenates its whole KV cache at every decoded token
    (py-spy: 23% of a judge workload's time on 2 CPUs); this writes only the new token."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    class GrowingLayer(DynamicLayer):
        def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any):
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
                self.length, self.kbuf, self.vbuf = 0, None, None
            end = self.length + key_states.shape[-2]
            if self.kbuf is None or end > self.kbuf.shape[-2]:
                capacity = max(end + 64, 2 * (0 if self.kbuf is None else self.kbuf.shape[-2]))
                kbuf = key_states.new_empty((*key_states.shape[:-2], capacity, key_states.shape[-1]))
                vbuf = value_states.new_empty((*value_states.shape[:-2], capacity, value_states.shape[-1]))
                if self.length:
                    kbuf[..., : self.length, :] = self.kbuf[..., : self.length, :]
                    vbuf[..., : self.length, :] = self.vbuf[..., : self.length, :]
                self.kbuf, self.vbuf = kbuf, vbuf
            self.kbuf[..., self.length : end, :] = key_states
            self.vbuf[..., self.length : end, :] = value_states
            self.length = end
            self.keys, self.values = self.kbuf[..., :end, :], self.vbuf[..., :end, :]
            return self.keys, self.values

        def batch_select_indices(self, indices: torch.Tensor) -> None:
            if self.is_initialized and self.length:
                self.kbuf, self.vbuf = self.kbuf[indices, ...], self.vbuf[indices, ...]
                self.keys, self.values = self.kbuf[..., : self.length, :], self.vbuf[..., : self.length, :]

        def batch_repeat_interleave(self, repeats: int) -> None:
            self.batch_select_indices(
                torch.arange(self.kbuf.shape[0], device=self.kbuf.device).repeat_interleave(repeats)
            )

    cache = DynamicCache(config=config)
    if all(type(layer) is DynamicLayer for layer in cache.layers):  # full attention only; others keep the default
        cache.layers = [GrowingLayer() for _ in cache.layers]
    return cache


def shared_prefix_length(seqs: Sequence[Sequence[int]]) -> int:
    """Length of the common prefix of all `seqs`, leaving each at least one token of its own."""
    first, limit = seqs[0], min(len(x) for x in seqs) - 1
    n = 0
    while n < limit and all(x[n] == first[n] for x in seqs):
        n += 1
    return n


def prefix_groups(seqs: Sequence[Sequence[int]], min_shared: int) -> list[list[int]]:
    """Indices of `seqs` grouped so that each group shares a prefix of at least `min_shared` tokens
    (neighbours in sorted order; a prompt with no such neighbour is a group of one)."""
    order = sorted(range(len(seqs)), key=lambda i: seqs[i])
    groups: list[list[int]] = []
    for i in order:
        if groups and shared_prefix_length([seqs[j] for j in groups[-1]] + [seqs[i]]) >= min_shared:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups
