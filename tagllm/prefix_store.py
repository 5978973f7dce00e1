"""Cached frozen prefixes, kept per example and found by content, so that every pass in a process
that reads the same prefix computes it once.

A prefix's keys and values depend only on its tokens and the frozen tag rows spliced into it (the
weights are frozen and attention is causal), not on what follows it. So they are stored under that
content: an example that comes back, in a later epoch, in another run of a tag-length sweep, or in
the evaluation of another function tag on the same test rows, reuses them whatever batch it comes
in. Entries are kept while they fit in the store's budget; what does not fit is computed, used and
dropped.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

import torch

from tagllm.prompts import NO_SLOT, Encoded


@dataclass
class PrefixCache:
    """Keys/values of a batch of frozen prefixes; `attention_mask` marks the real positions."""

    kv: list[tuple[torch.Tensor, torch.Tensor]]  # per layer, each (B, H_kv, T_prefix, d_head)
    attention_mask: torch.Tensor  # (B, T_prefix)
    lengths: torch.Tensor  # (B,) real tokens per prefix

    def nbytes(self) -> int:
        return sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in self.kv)

    def example(self, index: int) -> PrefixCache:
        """One example's real positions only (a copy), as a batch of one."""
        real = self.attention_mask[index].nonzero().squeeze(-1)  # (L,)
        kv = [(k[index:index + 1].index_select(2, real), v[index:index + 1].index_select(2, real))
              for k, v in self.kv]
        return PrefixCache(kv, torch.ones(1, len(real), dtype=self.attention_mask.dtype,
                                          device=real.device), self.lengths[index:index + 1])


def stack_left_padded(entries: Sequence[PrefixCache]) -> PrefixCache:
    """Single-example caches as one left-padded batch, in the given order."""
    width = max(int(e.lengths[0]) for e in entries)
    first_k = entries[0].kv[0][0]
    mask = torch.zeros(len(entries), width, dtype=entries[0].attention_mask.dtype,
                       device=first_k.device)
    kv = []
    for layer in range(len(entries[0].kv)):
        _, heads, _, dim = entries[0].kv[layer][0].shape
        keys = first_k.new_zeros(len(entries), heads, width, dim)  # (B, H_kv, T, d_head)
        values = first_k.new_zeros(len(entries), heads, width, dim)
        for row, entry in enumerate(entries):
            length = entry.kv[layer][0].shape[2]
            keys[row, :, width - length:] = entry.kv[layer][0][0]
            values[row, :, width - length:] = entry.kv[layer][1][0]
        kv.append((keys, values))
    for row, entry in enumerate(entries):
        mask[row, width - int(entry.lengths[0]):] = 1
    return PrefixCache(kv, mask, mask.sum(dim=1))


def prefix_keys(prefixes: Sequence[Encoded], tag_rows: torch.Tensor) -> list[Hashable]:
    """What each prefix's keys and values depend on: its token ids and the values of the tag rows
    at its tag slots (a digest per row, so two runs that load the same frozen tag share entries)."""
    used = sorted({slot for prefix in prefixes for slot in prefix.slots if slot != NO_SLOT})
    values = tag_rows.detach()[used].float().cpu()  # one copy of the rows in use
    digest = {slot: hashlib.blake2b(row.numpy().tobytes(), digest_size=16).digest()
              for slot, row in zip(used, values, strict=True)}
    return [(tuple(p.ids), tuple(digest.get(slot, slot) for slot in p.slots)) for p in prefixes]


class PrefixStore:
    """Per-example prefix caches by content, kept while they fit in `budget_bytes`.

    An entry is (the batch cache it was computed in, its row): a batch asked for again as it was
    computed (a later epoch of the same run) is that cache itself, with no copy; any other mix of
    stored examples is assembled from their rows."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget = budget_bytes
        self.used = 0
        self.items: dict[Hashable, tuple[PrefixCache, int]] = {}
        self.computed = 0  # prefix passes run
        self.reused = 0  # examples served from the store

    def batch(self, keys: Sequence[Hashable], compute: Callable[[list[int]], PrefixCache]
              ) -> PrefixCache:
        """The cache of a batch whose prefixes have `keys`; `compute(indices)` runs the prefix pass
        for the examples at `indices` (in that order) when they are not stored."""
        to_compute, seen = [], set()
        for index, key in enumerate(keys):
            if key not in self.items and key not in seen:
                seen.add(key)
                to_compute.append(index)
        fresh = None
        if to_compute:
            fresh = compute(to_compute)
            self.computed += 1
            if self.used + fresh.nbytes() <= self.budget:
                self.used += fresh.nbytes()
                for row, index in enumerate(to_compute):
                    self.items[keys[index]] = (fresh, row)
        if fresh is not None and len(to_compute) == len(keys):
            return fresh  # the whole batch, in order
        computed_row = {keys[index]: row for row, index in enumerate(to_compute)}
        self.reused += sum(key not in computed_row for key in keys)
        rows = [self.items.get(key) or (fresh, computed_row[key]) for key in keys]
        first = rows[0][0]
        if (all(cache is first for cache, _ in rows) and first.lengths.shape[0] == len(keys)
                and [row for _, row in rows] == list(range(len(keys)))):
            return first  # exactly a batch computed before
        return stack_left_padded([cache.example(row) for cache, row in rows])
