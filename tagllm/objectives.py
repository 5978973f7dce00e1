"""Training objectives on tagged prompts: stage-1 next-token loss, regression hidden states and the
generation (target-text) loss, each on the cached frozen prefix where everything before the first
trainable tag is frozen. Logits are computed only at positions that predict a target token."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from tagllm.batching import Batch, collate
from tagllm.forward import (
    cut_before,
    encode_prefix,
    forward_suffix,
    full_hidden,
    gather_positions,
    prefix_batch,
    readout_index,
)
from tagllm.prefix_store import PrefixCache, PrefixStore, prefix_keys
from tagllm.prompts import Encoded

__all__ = ["PrefixStore", "batched_features", "generation_loss", "lm_loss", "readout_features",
           "reference_nll", "regression_hidden", "target_loss", "target_nll"]


def _hidden(base, tags, examples: list[Encoded], store: PrefixStore | None, side: str,
            split_rows: set[int] | None = None) -> tuple[torch.Tensor, Batch, list[Encoded]]:
    """Final hidden states of the part after the cached prefix, which ends before the first of
    `split_rows` (default: the trainable tag rows), or, without a store, of the whole
    (`side`-padded) batch. Returns (hidden, the batch they belong to, its examples)."""
    pad = base.tokenizer.pad_token_id
    rows = tags.flat()
    if store is None:
        batch = collate(examples, pad, side).to(base.device)
        return full_hidden(base.model, rows, batch), batch, list(examples)
    prefixes, suffixes = cut_before(examples, tags.trainable_rows() if split_rows is None
                                    else split_rows)
    prefix = store.batch(prefix_keys(prefixes, rows),
                         lambda indices: _encode_prefix(base, rows, [prefixes[i] for i in indices]))
    suffix = collate(suffixes, pad, "right").to(base.device)
    return forward_suffix(base.model, rows, prefix, suffix), suffix, suffixes


def _encode_prefix(base, rows: torch.Tensor, prefixes: list[Encoded]) -> PrefixCache:
    """The prefix pass (no gradients) in the inference precision, its cache in the model's dtype."""
    shared, batch = prefix_batch(prefixes, base.tokenizer.pad_token_id)
    shared = shared.to(base.device) if shared is not None else None
    with base.inference_autocast():
        cache = encode_prefix(base.model, rows, batch.to(base.device), shared)
    dtype = base.embeddings().dtype
    cache.kv = [(k.to(dtype), v.to(dtype)) for k, v in cache.kv]
    return cache


def regression_hidden(base, tags, examples: list[Encoded], store: PrefixStore | None,
                      split_rows: set[int] | None = None) -> torch.Tensor:
    """Hidden state at each example's readout position (last row of its function tag). (B, d)"""
    hidden, batch, rows = _hidden(base, tags, examples, store, "left", split_rows)
    return gather_positions(hidden, readout_index(rows, batch))


@torch.no_grad()
def batched_features(hidden_of: Callable[[list[Encoded]], torch.Tensor],
                     examples: list[Encoded], batches: list[list[int]], width: int) -> torch.Tensor:
    """`hidden_of(chosen)` (B, d) for every batch of `batches` (lists of indices into `examples`),
    without gradients, in the order of `examples`: the features a linear read-out is fit to.
    (N, d), float32, on the CPU."""
    features = torch.zeros(len(examples), width)
    for indices in batches:
        features[indices] = hidden_of([examples[i] for i in indices]).float().cpu()
    return features


def readout_features(base, tags, examples: list[Encoded], batches: list[list[int]],
                     store: PrefixStore | None) -> torch.Tensor:
    """`regression_hidden` of every example by `batches` (see `batched_features`)."""
    return batched_features(lambda chosen: regression_hidden(base, tags, chosen, store),
                            examples, batches, base.info.hidden_size)


def _target_logits(base, hidden: torch.Tensor, batch: Batch, starts: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(logits (N, V), target ids (N,), is_target (B, T)) for every real token at or after
    `starts` (per example, in `batch` coordinates), each predicted from the position before it.
    Logits only at those positions."""
    positions = torch.arange(batch.input_ids.shape[1], device=hidden.device)
    is_target = (positions.unsqueeze(0) >= starts.unsqueeze(1)) & batch.attention_mask.bool()
    is_target[:, 0] = False  # nothing predicts the first position
    predicts = torch.zeros_like(is_target)
    predicts[:, :-1] = is_target[:, 1:]
    logits = base.model.get_output_embeddings()(hidden[predicts])  # (N, V)
    return logits.float(), batch.input_ids[is_target], is_target


def target_loss(base, hidden: torch.Tensor, batch: Batch, starts: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of every real token at or after `starts` (see `_target_logits`)."""
    logits, targets, _ = _target_logits(base, hidden, batch, starts)
    return F.cross_entropy(logits, targets)


def target_nll(base, hidden: torch.Tensor, batch: Batch, starts: torch.Tensor) -> torch.Tensor:
    """Summed negative log-likelihood of each example's tokens at or after `starts`. (B,)"""
    return _summed_nll(base, hidden, batch, starts)[0]


def _summed_nll(base, hidden: torch.Tensor, batch: Batch, starts: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed NLL, number of tokens scored) of each example's tokens at or after `starts`."""
    logits, targets, is_target = _target_logits(base, hidden, batch, starts)
    token_nll = F.cross_entropy(logits, targets, reduction="none")  # (N,)
    example = torch.arange(len(starts), device=starts.device).unsqueeze(1).expand_as(is_target)
    summed = torch.zeros(len(starts), device=starts.device).index_add_(0, example[is_target],
                                                                       token_nll)
    return summed, is_target.sum(dim=1)


def generation_loss(base, tags, examples: list[Encoded], store: PrefixStore | None
                    ) -> torch.Tensor:
    """Cross-entropy over each example's target text (after its function tag)."""
    hidden, batch, rows = _hidden(base, tags, examples, store, "right")
    starts = torch.tensor([e.target_start for e in rows], device=hidden.device) + batch.offsets
    return target_loss(base, hidden, batch, starts)


@torch.no_grad()
def reference_nll(base, tags, examples: list[Encoded]) -> torch.Tensor:
    """Summed negative log-likelihood of each example's target text (a reference answer, scored
    teacher-forced after its prompt), in nats. (B,)"""
    hidden, batch, rows = _hidden(base, tags, examples, None, "right")
    starts = torch.tensor([e.target_start for e in rows], device=hidden.device) + batch.offsets
    return target_nll(base, hidden, batch, starts)


def lm_loss(base, tags, examples: list[Encoded]) -> torch.Tensor:
    """Stage 1: next-token cross-entropy on the text after each example's (last) tag."""
    return target_loss(base, *_after_tag(base, tags, examples))


@torch.no_grad()
def text_losses(base, tags, examples: list[Encoded]) -> torch.Tensor:
    """Stage 1's loss of each example on its own: the mean next-token cross-entropy of the text
    after its (last) tag, in nats per token (held-out texts score a domain tag). (B,)"""
    summed, scored = _summed_nll(base, *_after_tag(base, tags, examples))
    return summed / scored.clamp_min(1)


def _after_tag(base, tags, examples: list[Encoded]) -> tuple[torch.Tensor, Batch, torch.Tensor]:
    """(hidden states, batch, first scored position) of stage-1 examples, right-padded."""
    batch = collate(examples, base.tokenizer.pad_token_id, "right").to(base.device)
    hidden = full_hidden(base.model, tags.flat(), batch)  # (B, T, d)
    return hidden, batch, torch.tensor([e.readout + 1 for e in examples], device=base.device)
