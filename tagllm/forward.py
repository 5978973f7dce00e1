"""Forward passes with tags: the full path, and the cached frozen prefix path for function tags.

In stages 2-3 everything before the first trainable tag (text and frozen domain tags) is frozen and
attention is causal, so the prefix's keys and values do not depend on what follows. `encode_prefix` runs
the prefix once without gradients and keeps its KV cache; `forward_suffix` runs only the trainable tag
(and any target tokens) with gradients, attending to that cache. The gradients equal those of full
back-propagation (tests check it), at a fraction of the cost.

The prompts of one task start alike (template text and a frozen domain tag, such as "# # Input: The
SMILES of the molecule is <SMILES>"), and those leading positions have the same keys and values in every
example. `prefix_batch` finds that common start; `encode_prefix` runs it once for the whole batch and
only the rest of each prefix per example.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import DynamicCache, PreTrainedModel

from tagllm.batching import Batch, collate, splice_tags
from tagllm.prefix_store import PrefixCache
from tagllm.prompts import Encoded


def decoder(model: PreTrainedModel) -> torch.nn.Module:
    """The transformer without its LM head (hidden states out, no logits)."""
    return model.base_model


def run_decoder(model: PreTrainedModel, tag_rows: torch.Tensor, batch: Batch,
                attention_mask: torch.Tensor | None = None, position_ids: torch.Tensor | None = None,
                cache: DynamicCache | None = None, use_cache: bool = False):
    """The decoder over `batch` with its tag slots filled from `tag_rows`; the mask and positions
    are the batch's unless given (a batch that continues a cache)."""
    embeds = splice_tags(model.get_input_embeddings(), tag_rows, batch.input_ids, batch.slots)
    return decoder(model)(
        inputs_embeds=embeds,
        attention_mask=batch.attention_mask if attention_mask is None else attention_mask,
        position_ids=batch.position_ids if position_ids is None else position_ids,
        cache=cache, use_cache=use_cache)


def full_hidden(model: PreTrainedModel, tag_rows: torch.Tensor, batch: Batch) -> torch.Tensor:
    """Final hidden states of the whole batch. (B, T, d)"""
    return run_decoder(model, tag_rows, batch).last_hidden_state


@torch.no_grad()
def encode_prefix(model: PreTrainedModel, tag_rows: torch.Tensor, batch: Batch,
                  shared: Batch | None = None) -> PrefixCache:
    """Run frozen prefixes once, without gradients, and keep their KV cache. `shared` (one row) is
    a start common to every prefix of `batch`, which then holds only the rest of each: it runs once
    and its keys/values head every row of the cache."""
    rows = tag_rows.detach()
    mask, positions, cache = batch.attention_mask, batch.position_ids, None
    if shared is not None:
        start = run_decoder(model, rows, shared, use_cache=True)
        n, width = batch.input_ids.shape[0], shared.input_ids.shape[1]
        cache = DynamicCache(ddp_cache_data=[(layer[0].expand(n, -1, -1, -1),
                                              layer[1].expand(n, -1, -1, -1))
                                             for layer in start.cache])
        mask = torch.cat([shared.attention_mask.expand(n, -1), mask], dim=1)
        positions = positions + width
    out = run_decoder(model, rows, batch, mask, positions, cache, use_cache=True)
    kv = [(layer[0], layer[1]) for layer in out.cache]
    return PrefixCache(kv, mask, mask.sum(dim=1))


def forward_suffix(model: PreTrainedModel, tag_rows: torch.Tensor, prefix: PrefixCache,
                   suffix: Batch) -> torch.Tensor:
    """Hidden states of the (right-padded) suffix batch, attending to the cached prefix. (B, T_s, d)"""
    # A fresh cache object per call: DynamicCache appends by concatenation, so the stored prefix
    # tensors are never modified and can be reused across epochs.
    cache = DynamicCache(ddp_cache_data=prefix.kv)
    mask = torch.cat([prefix.attention_mask, suffix.attention_mask], dim=1)  # (B, T_p + T_s)
    positions = prefix.lengths.unsqueeze(1) + suffix.position_ids  # (B, T_s)
    return run_decoder(model, tag_rows, suffix, mask, positions, cache, use_cache=True
                       ).last_hidden_state


def split_at(example: Encoded, position: int) -> tuple[Encoded, Encoded]:
    """Cut an encoded prompt into (prefix, suffix) at `position`; readout/target move with it."""
    if not 0 < position <= len(example):
        raise ValueError(f"cannot cache a prefix of length {position} (prompt length {len(example)})")
    prefix = Encoded(example.ids[:position], example.slots[:position], -1, position)
    suffix = Encoded(example.ids[position:], example.slots[position:],
                     example.readout - position, max(example.target_start - position, 0))
    return prefix, suffix


# A common start is run on its own only when it saves at least this many positions: a pass over a
# few positions still reads every weight once, which on a CPU costs about as much as 40 positions'
# compute in float32 (more under autocast, which converts the weights in every pass, and on GPUs).
# A batch of 8 QED prompts saves 7 x 24 = 168: its prefix passes took 22% less time in float32.
MIN_SHARED_SAVING = 128


def common_start(examples: Sequence[Encoded]) -> int:
    """How many leading positions (ids and tag slots) all examples share, leaving each at least one
    position of its own."""
    first = examples[0]
    limit = min(len(e) for e in examples) - 1
    length = 0
    while length < limit and all(e.ids[length] == first.ids[length]
                                 and e.slots[length] == first.slots[length] for e in examples):
        length += 1
    return length


def cut_before(examples: Sequence[Encoded], rows: set[int]) -> tuple[list[Encoded], list[Encoded]]:
    """Each example cut before its first slot in `rows`: (prefixes, suffixes); every prefix must
    be non-empty."""
    cuts = [split_at(example, example.first_slot_of(rows)) for example in examples]
    return [prefix for prefix, _ in cuts], [suffix for _, suffix in cuts]


def prefix_batch(prefixes: Sequence[Encoded], pad_id: int) -> tuple[Batch | None, Batch]:
    """The prefixes left-padded, with their common start taken apart (one row, else None) when
    that saves at least MIN_SHARED_SAVING positions."""
    shared_length = common_start(prefixes)
    if shared_length and (len(prefixes) - 1) * shared_length >= MIN_SHARED_SAVING:
        shared = collate([split_at(prefixes[0], shared_length)[0]], pad_id, "left")
        rest = [split_at(prefix, shared_length)[1] for prefix in prefixes]
        return shared, collate(rest, pad_id, "left")
    return None, collate(prefixes, pad_id, "left")


def readout_index(examples: Sequence[Encoded], batch: Batch) -> torch.Tensor:
    """Index in the padded batch of each example's readout position. (B,)"""
    readout = torch.tensor([e.readout for e in examples], dtype=torch.long)
    if (readout < 0).any():
        raise ValueError("a prompt has no tag to read a regression output from")
    return readout.to(batch.offsets.device) + batch.offsets


def gather_positions(hidden: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """hidden (B, T, d), index (B,) -> (B, d)"""
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), index]
