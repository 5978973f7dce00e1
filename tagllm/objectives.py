"""Training objectives on tagged prompts: stage-1 next-token loss, regression hidden states and the
generation (target-text) loss, each on the cached frozen prefix where everything before the first
trainable tag is frozen. Logits are computed only at positions that predict a target token."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from tagllm.batching import Batch, collate
from tagllm.forward import (
    PrefixCache,
    SplitBatch,
    encode_prefix,
    forward_suffix,
    full_hidden,
    gather_positions,
    readout_index,
    split_batch,
)
from tagllm.prompts import Encoded


class PrefixStore:
    """Cached prefixes per batch, kept across epochs while they fit in `budget_bytes`."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget = budget_bytes
        self.used = 0
        self.items: dict[int, PrefixCache] = {}
        self.computed = 0

    def get(self, index: int, compute: Callable[[], PrefixCache]) -> PrefixCache:
        if index in self.items:
            return self.items[index]
        cache = compute()
        self.computed += 1
        if self.used + cache.nbytes() <= self.budget:
            self.items[index] = cache
            self.used += cache.nbytes()
        return cache


def _hidden(base, tags, examples: list[Encoded], store: PrefixStore | None, index: int,
            side: str) -> tuple[torch.Tensor, Batch, list[Encoded]]:
    """Final hidden states of the part that needs gradients: the suffix after the cached prefix, or
    the whole (`side`-padded) batch. Returns (hidden, the batch they belong to, its examples)."""
    pad = base.tokenizer.pad_token_id
    rows = tags.flat()
    if store is None:
        batch = collate(examples, pad, side).to(base.device)
        return full_hidden(base.model, rows, batch), batch, list(examples)
    split = split_batch(examples, tags.trainable_rows(), pad)
    prefix = store.get(index, lambda: _encode_prefix(base, rows, split))
    suffix = split.suffix.to(base.device)
    return forward_suffix(base.model, rows, prefix, suffix), suffix, split.suffix_examples


def _encode_prefix(base, rows: torch.Tensor, split: SplitBatch) -> PrefixCache:
    """The prefix pass (no gradients) in the inference precision, its cache in the model's dtype."""
    shared = split.shared.to(base.device) if split.shared is not None else None
    with base.inference_autocast():
        cache = encode_prefix(base.model, rows, split.prefix.to(base.device), shared)
    dtype = base.embeddings().dtype
    cache.kv = [(k.to(dtype), v.to(dtype)) for k, v in cache.kv]
    return cache


def regression_hidden(base, tags, examples: list[Encoded], store: PrefixStore | None,
                      index: int) -> torch.Tensor:
    """Hidden state at each example's readout position (last row of its function tag). (B, d)"""
    hidden, batch, rows = _hidden(base, tags, examples, store, index, "left")
    return gather_positions(hidden, readout_index(rows, batch))


def target_loss(base, hidden: torch.Tensor, batch: Batch, starts: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of every real token at or after `starts` (per example, in `batch` coordinates),
    each predicted from the position before it. Logits only at those positions."""
    positions = torch.arange(batch.input_ids.shape[1], device=hidden.device)
    is_target = (positions.unsqueeze(0) >= starts.unsqueeze(1)) & batch.attention_mask.bool()
    is_target[:, 0] = False  # nothing predicts the first position
    predicts = torch.zeros_like(is_target)
    predicts[:, :-1] = is_target[:, 1:]
    logits = base.model.get_output_embeddings()(hidden[predicts])  # (N, V)
    return F.cross_entropy(logits.float(), batch.input_ids[is_target])


def generation_loss(base, tags, examples: list[Encoded], store: PrefixStore | None,
                    index: int) -> torch.Tensor:
    """Cross-entropy over each example's target text (after its function tag)."""
    hidden, batch, rows = _hidden(base, tags, examples, store, index, "right")
    starts = torch.tensor([e.target_start for e in rows], device=hidden.device) + batch.offsets
    return target_loss(base, hidden, batch, starts)


def lm_loss(base, tags, examples: list[Encoded]) -> torch.Tensor:
    """Stage 1: next-token cross-entropy on the text after each example's (last) tag."""
    batch = collate(examples, base.tokenizer.pad_token_id, "right").to(base.device)
    hidden = full_hidden(base.model, tags.flat(), batch)  # (B, T, d)
    starts = torch.tensor([e.readout + 1 for e in examples], device=base.device)
    return target_loss(base, hidden, batch, starts)
