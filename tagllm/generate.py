"""Batched greedy decoding with the KV cache, for prompts that may hold tags (or prompt-tuning
virtual tokens in front).

The prompts of a batch are left padded, run once, and then every step feeds one new token per
example, attending to the cache; finished examples keep feeding padding until all are done. The paper
decodes greedily (the authors' code samples instead, one example at a time).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import DynamicCache, PreTrainedModel

from tagllm.batching import Batch
from tagllm.forward import decoder


def stop_token_ids(tokenizer, stop_at_newline: bool) -> tuple[set[int], set[int]]:
    """(stops, blanks): EOS, plus every vocabulary entry that contains a line break when
    `stop_at_newline`; and the entries with no visible text (white space, special tokens). A
    model asked for an answer after "Output:" often starts with a line break (and then, after a
    few training steps, its end token): an answer must start with visible text (see
    `greedy_decode`)."""
    stops = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    blanks = set()
    for token_id in tokenizer.get_vocab().values():
        text = tokenizer.decode([token_id])
        if stop_at_newline and "\n" in text:
            stops.add(token_id)
        if text and not text.strip():
            blanks.add(token_id)
    blanks |= set(tokenizer.all_special_ids)  # dropped when the answer is decoded
    return stops, blanks


@torch.no_grad()
def greedy_decode(model: PreTrainedModel, embeds: torch.Tensor, batch: Batch,
                  max_new_tokens: int, stop_ids: set[int], pad_id: int,
                  blank_ids: set[int] = frozenset()) -> list[list[int]]:
    """Greedy continuation of each (left-padded) prompt in `batch`, whose input embeddings are
    `embeds` (B, T, d) (tags already spliced; extra leading positions allowed when `embeds` is longer
    than the batch, e.g. prompt-tuning tokens, which then count in `batch.attention_mask`'s place).
    Returns the new token ids per example, without the stop token. With `blank_ids`, an answer
    starts with visible text: the first token is chosen among those that are neither a stop nor
    blank (so an answer is never empty, as HF's `min_new_tokens` keeps EOS out; white space in
    front of it would be stripped anyway)."""
    body = decoder(model)
    head = model.get_output_embeddings()
    token_embedding = model.get_input_embeddings()
    device = embeds.device
    mask = batch.attention_mask.to(device)
    positions = batch.position_ids.to(device)
    cache = DynamicCache()
    out = body(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, cache=cache,
               use_cache=True)
    cache = out.cache
    last = out.last_hidden_state[:, -1]
    n = embeds.shape[0]
    generated: list[list[int]] = [[] for _ in range(n)]
    done = torch.zeros(n, dtype=torch.bool, device=device)
    stops = torch.tensor(sorted(stop_ids), dtype=torch.long, device=device)
    # Never the first token: a stop (an empty answer) or a blank (the start of one).
    held = torch.tensor(sorted(set(stop_ids) | set(blank_ids)), dtype=torch.long, device=device)
    next_position = positions[:, -1:] + 1
    for step in range(max_new_tokens):
        logits = head(last)
        if step == 0 and len(blank_ids):
            logits[:, held] = -torch.inf
        tokens = logits.argmax(dim=-1)  # (B,)
        finished_now = torch.isin(tokens, stops) if len(stops) else torch.zeros_like(done)
        for row in (~done & ~finished_now).nonzero().flatten().tolist():
            generated[row].append(int(tokens[row]))
        done |= finished_now
        if bool(done.all()):
            break
        tokens = torch.where(done, torch.full_like(tokens, pad_id), tokens)
        mask = torch.cat([mask, (~done).long().unsqueeze(1)], dim=1)
        out = body(inputs_embeds=token_embedding(tokens.unsqueeze(1)), attention_mask=mask,
                   position_ids=next_position, cache=cache, use_cache=True)
        cache = out.cache
        last = out.last_hidden_state[:, -1]
        next_position = next_position + 1
    return generated


def decode_texts(tokenizer, sequences: Sequence[Sequence[int]]) -> list[str]:
    return [tokenizer.decode(list(ids), skip_special_tokens=True).strip() for ids in sequences]
