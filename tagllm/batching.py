"""Batches of encoded prompts: padding (left or right), length grouping, and tag splicing.

`splice_tags` builds `inputs_embeds` by taking the token embedding at text positions and a row of the
tag table at tag positions, with `torch.where` so that gradients reach the tags and only the tags.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from tagllm.prompts import NO_SLOT, Encoded


@dataclass
class Batch:
    """Padded tensors for a list of `Encoded` prompts. All (B, T)."""

    input_ids: torch.Tensor
    slots: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    offsets: torch.Tensor  # (B,) how far each example was shifted right by left padding

    def to(self, device: torch.device | str) -> Batch:
        return Batch(*(t.to(device) for t in (self.input_ids, self.slots, self.attention_mask,
                                              self.position_ids, self.offsets)))


def collate(examples: Sequence[Encoded], pad_id: int, side: str = "left") -> Batch:
    """Pad examples to one length. Position ids count real tokens only, so either side gives the
    same positions for an example as when it is alone."""
    if side not in ("left", "right"):
        raise ValueError(f"padding side must be 'left' or 'right', not {side!r}")
    width = max(len(e) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    slots = torch.full((len(examples), width), NO_SLOT, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    offsets = torch.zeros(len(examples), dtype=torch.long)
    for row, example in enumerate(examples):
        start = width - len(example) if side == "left" else 0
        span = slice(start, start + len(example))
        ids[row, span] = torch.tensor(example.ids)
        slots[row, span] = torch.tensor(example.slots)
        mask[row, span] = 1
        offsets[row] = start
    positions = (mask.cumsum(dim=1) - 1).clamp_min(0)  # (B, T)
    return Batch(ids, slots, mask, positions, offsets)


def splice_tags(token_embedding: torch.nn.Embedding, tag_rows: torch.Tensor,
                input_ids: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
    """`inputs_embeds` with tag rows at tag slots. tag_rows: (R, d); ids, slots: (B, T) -> (B, T, d)."""
    tokens = token_embedding(input_ids)  # (B, T, d)
    if tag_rows.numel() == 0:
        return tokens
    is_tag = slots.ne(NO_SLOT)
    tags = tag_rows.to(tokens.dtype)[slots.clamp_min(0)]  # (B, T, d)
    return torch.where(is_tag.unsqueeze(-1), tags, tokens)


def length_grouped_batches(lengths: Sequence[int], batch_size: int, seed: int | None
                           ) -> list[list[int]]:
    """Indices grouped into batches of similar length (little padding); batch order shuffled by
    `seed` (None keeps the sorted order, for inference)."""
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if seed is not None:
        random.Random(seed).shuffle(batches)
    return batches
