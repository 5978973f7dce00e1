"""Attention for gradient passes, where SDPA's fused kernels do work a tag step does not need.

transformers' SDPA path copies grouped (GQA) key/value heads with `repeat_kv` and then runs a fused
kernel whose backward computes gradients for every key and value. Two kinds of gradient pass lose
by that:
- a function-tag step: a few query positions (the tag) attend to a long cached prefix whose keys and
  values need no gradient; the fused CPU backward is tuned for square shapes and was a third of the
  whole step in bf16 on SmolLM2;
- any bf16/fp16 gradient pass on a CPU over short sequences (stage 1, LoRA, prompt tuning): the
  fused CPU backward in bf16 was 30% of a stage-1 step there. (In float32 it is the faster one.)
For those this module computes softmax(q k^T) v directly, with the query heads of each group stacked
so that keys and values are never repeated (PyTorch's math kernel repeats them). Every other call
(passes without gradients, decoding, float32 full sequences, long sequences, full sequences on GPUs)
goes to transformers' SDPA unchanged. `use_direct_attention` switches a loaded model to it; the
half-precision CPU case only where bf16 runs fast on the CPU at hand (`tagllm.precision` decides).
"""

from __future__ import annotations

from functools import partial

import torch
from transformers import AttentionInterface, PreTrainedModel
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

NAME = "tagllm_sdpa"
# The same without the half-precision CPU case, for CPUs where bf16 is emulated (AVX2 only): there
# the direct path's bf16 products are slow and the fused kernel keeps the work small.
NAME_WITHOUT_CPU_HALF = "tagllm_sdpa_no_cpu_half"
# Largest score matrix (batch x heads x queries x keys) taken the direct way on a CPU: its
# probabilities are kept for the backward pass (24 MiB per layer at this size, float32 + bf16).
CPU_SCORES_LIMIT = 2**22


def takes_direct_path(query: torch.Tensor, key: torch.Tensor, cpu_half: bool = True) -> bool:
    """A gradient pass over a few queries after a longer cached prefix, or (with `cpu_half`) a
    small half-precision one on a CPU."""
    if not torch.is_grad_enabled():
        return False
    batch, heads, queries, dim = query.shape
    short_suffix = queries < key.shape[2] and queries <= dim
    small_on_cpu = (cpu_half and query.device.type == "cpu"
                    and query.dtype in (torch.bfloat16, torch.float16)
                    and batch * heads * queries * key.shape[2] <= CPU_SCORES_LIMIT)
    return short_suffix or small_on_cpu


def causal_mask(queries: int, keys: int, device: torch.device) -> torch.Tensor:
    """Query i (the last `queries` of `keys` positions) sees keys up to its own position. (1, 1, Tq, Tk)"""
    return torch.ones(queries, keys, dtype=torch.bool, device=device).tril(keys - queries)[None, None]


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


def direct_attention_forward(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor,
                             value: torch.Tensor, attention_mask: torch.Tensor | None,
                             dropout: float = 0.0, scaling: float | None = None,
                             cpu_half: bool = True, **kwargs) -> tuple[torch.Tensor, None]:
    usable = (takes_direct_path(query, key, cpu_half) and dropout == 0.0
              and kwargs.get("position_bias") is None and kwargs.get("softcap") is None
              and (attention_mask is None or attention_mask.dtype == torch.bool))
    if not usable:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kwargs)
    is_causal = kwargs.get("is_causal")
    is_causal = getattr(module, "is_causal", True) if is_causal is None else is_causal
    if attention_mask is None and is_causal and query.shape[2] > 1:
        # transformers leaves the mask out when SDPA's own causal flag can stand in for it.
        attention_mask = causal_mask(query.shape[2], key.shape[2], query.device)
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    return grouped_attention(query, key, value, attention_mask, scale), None


def register() -> None:
    AttentionInterface.register(NAME, direct_attention_forward)
    AttentionInterface.register(NAME_WITHOUT_CPU_HALF,
                                partial(direct_attention_forward, cpu_half=False))
    for name in (NAME, NAME_WITHOUT_CPU_HALF):
        ALL_MASK_ATTENTION_FUNCTIONS.register(name, sdpa_mask)


def use_direct_attention(model: PreTrainedModel, cpu_half: bool = True) -> None:
    """Switch a model that uses SDPA (or an earlier variant of this one) to this variant; `cpu_half`
    says whether half-precision CPU gradient passes take the direct path. Models on other attention
    implementations are left alone."""
    if model.config._attn_implementation not in ("sdpa", NAME, NAME_WITHOUT_CPU_HALF):
        return
    register()
    model.set_attn_implementation(NAME if cpu_half else NAME_WITHOUT_CPU_HALF)
