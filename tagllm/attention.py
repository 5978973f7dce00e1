"""Attention for the trainable suffix that follows a cached frozen prefix.

A function-tag step runs a few query positions (the tag, maybe target text) with gradients against the
keys and values of a long cached prefix. PyTorch's fused attention kernels then compute gradients for
every key and value, prefix included, after `repeat_kv` has copied the grouped (GQA) heads, and their
CPU backward is tuned for square shapes: on SmolLM2 it was a third of the whole step in bf16. For that
case this module computes attention directly, with the query heads of each group stacked so the keys
and values are never repeated; every other call (prefix passes, full back-propagation, decoding) goes
to transformers' SDPA unchanged. `use_suffix_attention` registers it on a loaded model.
"""

from __future__ import annotations

import torch
from transformers import AttentionInterface, PreTrainedModel
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

NAME = "tagllm_suffix_sdpa"


def is_short_suffix(query: torch.Tensor, key: torch.Tensor) -> bool:
    """A gradient pass over a few queries after a longer cached prefix."""
    queries, keys = query.shape[2], key.shape[2]
    return torch.is_grad_enabled() and queries < keys and queries <= query.shape[-1]


def grouped_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                      mask: torch.Tensor | None, scale: float) -> torch.Tensor:
    """softmax(q k^T * scale + mask) v with grouped key/value heads, no copies of them.

    query (B, H, Tq, D); key, value (B, Hkv, Tk, D); mask boolean (B or 1, 1, Tq, Tk), True = attend.
    Returns (B, Tq, H, D), the layout transformers' attention functions return.
    """
    batch, heads, queries, dim = query.shape
    kv_heads, keys = key.shape[1], key.shape[2]
    group = heads // kv_heads
    stacked = query.reshape(batch, kv_heads, group * queries, dim)  # heads of a group share k, v
    scores = (stacked @ key.transpose(-1, -2)).float() * scale  # (B, Hkv, group*Tq, Tk)
    if mask is not None:
        scores = scores.view(batch, kv_heads, group, queries, keys)
        scores = scores.masked_fill(~mask.unsqueeze(2), torch.finfo(scores.dtype).min)
        scores = scores.view(batch, kv_heads, group * queries, keys)
    probabilities = scores.softmax(dim=-1).to(value.dtype)
    out = (probabilities @ value).view(batch, heads, queries, dim)
    return out.transpose(1, 2).contiguous()


def suffix_attention_forward(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor,
                             value: torch.Tensor, attention_mask: torch.Tensor | None,
                             dropout: float = 0.0, scaling: float | None = None, **kwargs
                             ) -> tuple[torch.Tensor, None]:
    # Without a mask SDPA would align a causal mask top-left; here it must come from the model.
    usable = (is_short_suffix(query, key) and dropout == 0.0 and kwargs.get("position_bias") is None
              and attention_mask is not None and attention_mask.dtype == torch.bool)
    if not usable:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kwargs)
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    return grouped_attention(query, key, value, attention_mask, scale), None


def register() -> None:
    AttentionInterface.register(NAME, suffix_attention_forward)
    ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, sdpa_mask)


def use_suffix_attention(model: PreTrainedModel) -> None:
    """Switch a model that uses SDPA to the suffix-aware variant (others are left as they are)."""
    if model.config._attn_implementation != "sdpa":
        return
    register()
    model.set_attn_implementation(NAME)
