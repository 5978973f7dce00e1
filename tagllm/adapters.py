"""PEFT adapters on the frozen base model, for the baselines: LoRA (rank 8, alpha 16, dropout 0.05)
and prompt tuning (randomly initialised virtual tokens in front of the input), both from `peft`.

The adapter runs through the same batches as Tag-LLM; `inputs` puts prompt tuning's virtual tokens in
front (before any left padding, as PEFT does) and `hidden` returns hidden states of the text positions
only, so heads, target losses and decoding are shared with the tag path.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, PromptTuningConfig, get_peft_model

from tagllm.batching import Batch, collate, splice_tags
from tagllm.forward import decoder, gather_positions, readout_index
from tagllm.methods import LORA_ALPHA, LORA_DROPOUT, LORA_RANK
from tagllm.prompts import Encoded

ADAPTER_DIR = "adapter"


class Adapter:
    """A LoRA or prompt-tuning adapter attached to `model` (which it modifies in place)."""

    def __init__(self, model: torch.nn.Module, peft_model: PeftModel, kind: str) -> None:
        self.model = model
        self.peft = peft_model
        self.kind = kind

    @classmethod
    def create(cls, model: torch.nn.Module, kind: str, virtual_tokens: int = 0) -> Adapter:
        if kind == "lora":
            config = LoraConfig(r=LORA_RANK, lora_alpha=LORA_ALPHA, lora_dropout=LORA_DROPOUT,
                                task_type="CAUSAL_LM")
        elif kind == "prompt_tuning":
            config = PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=virtual_tokens,
                                        prompt_tuning_init="RANDOM")
        else:
            raise ValueError(f"unknown adapter {kind!r} (lora or prompt_tuning)")
        peft_model = get_peft_model(model, config)
        for parameter in peft_model.parameters():
            if parameter.requires_grad:  # train in float32 even on a bf16 base
                parameter.data = parameter.data.float()
        return cls(model, peft_model, kind)

    @classmethod
    def load(cls, model: torch.nn.Module, run_dir: str | Path) -> Adapter:
        folder = Path(run_dir) / ADAPTER_DIR
        if not (folder / "adapter_config.json").is_file():
            raise FileNotFoundError(f"{folder}: adapter files are missing (did training finish?)")
        peft_model = PeftModel.from_pretrained(model, str(folder), is_trainable=False)
        kind = "lora" if peft_model.peft_config["default"].peft_type.value == "LORA" else \
            "prompt_tuning"
        return cls(model, peft_model, kind)

    def named_trainable(self) -> dict[str, torch.Tensor]:
        return {name: p for name, p in self.peft.named_parameters() if p.requires_grad}

    def num_trainable(self) -> int:
        return sum(p.numel() for p in self.named_trainable().values())

    @property
    def virtual_tokens(self) -> int:
        return self.peft.peft_config["default"].num_virtual_tokens if self.kind == "prompt_tuning" \
            else 0

    def inputs(self, tag_rows: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, Batch]:
        """Input embeddings and the batch's mask/positions, with virtual tokens in front."""
        embeds = splice_tags(self.model.get_input_embeddings(), tag_rows, batch.input_ids,
                             batch.slots)
        n = self.virtual_tokens
        if n == 0:
            return embeds, batch
        size = embeds.shape[0]
        prompt = self.peft.get_prompt(batch_size=size).to(embeds.dtype)  # (B, n, d)
        ones = torch.ones(size, n, dtype=batch.attention_mask.dtype, device=embeds.device)
        front = torch.arange(n, device=embeds.device).expand(size, n)
        extended = Batch(
            torch.cat([torch.zeros_like(ones), batch.input_ids], dim=1),
            torch.cat([torch.full_like(ones, -1), batch.slots], dim=1),
            torch.cat([ones, batch.attention_mask], dim=1),
            torch.cat([front, batch.position_ids + n], dim=1),
            batch.offsets + n,
        )
        return torch.cat([prompt, embeds], dim=1), extended

    def hidden(self, tag_rows: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Final hidden states at the batch's own (text) positions. (B, T, d)"""
        embeds, extended = self.inputs(tag_rows, batch)
        out = decoder(self.model)(inputs_embeds=embeds, attention_mask=extended.attention_mask,
                                  position_ids=extended.position_ids, use_cache=False)
        return out.last_hidden_state[:, self.virtual_tokens:]

    def regression_hidden(self, tag_rows: torch.Tensor, examples: list[Encoded], pad_id: int
                          ) -> torch.Tensor:
        """Hidden state at each example's readout position (left padded batch). (B, d)"""
        batch = collate(examples, pad_id, "left").to(self.model.get_input_embeddings().weight.device)
        return gather_positions(self.hidden(tag_rows, batch), readout_index(examples, batch))

    def save(self, run_dir: str | Path) -> None:
        """Write the adapter (PEFT's safetensors + config) atomically as `run_dir/adapter/`."""
        final = Path(run_dir) / ADAPTER_DIR
        staging = final.with_name(f".{ADAPTER_DIR}.{os.getpid()}.tmp")
        shutil.rmtree(staging, ignore_errors=True)
        self.peft.save_pretrained(str(staging))
        if final.exists():
            shutil.rmtree(final)
        staging.rename(final)
