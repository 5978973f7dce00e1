"""Regression heads: a bias-free linear map d -> k read at the last position of the function tag.

Numbers are never decoded as text. Optionally (not in the paper) the head works in standardised label
units (the label's training mean and standard deviation are stored with it) and has a bias.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from tagllm import __version__
from tagllm.atomic import atomic_path, write_json
from tagllm.tags import BaseModelInfo, TagFileError, refuse_non_finite

HEAD_FILE = "head.safetensors"
HEAD_META = "head.json"
HEAD_INITS = ("mean_embedding", "zeros")


class RegressionHead(nn.Module):
    """y = W h (+ b with `bias`); with standardisation, predictions are (W h + b) * std + mean."""

    def __init__(self, hidden_size: int, outputs: int = 1, label_mean: float = 0.0,
                 label_std: float = 1.0, bias: bool = False) -> None:
        super().__init__()
        if not (math.isfinite(label_mean) and math.isfinite(label_std) and label_std > 0):
            raise ValueError(f"label mean and std must be finite and the std positive, got "
                             f"{label_mean} and {label_std}")
        self.linear = nn.Linear(hidden_size, outputs, bias=bias)
        self.register_buffer("label_mean", torch.tensor(float(label_mean)))
        self.register_buffer("label_std", torch.tensor(float(label_std)))

    def initialise(self, init: str, embeddings: torch.Tensor | None = None) -> None:
        if init not in HEAD_INITS:
            raise ValueError(f"head init must be one of {HEAD_INITS}, not {init!r}")
        with torch.no_grad():
            if self.linear.bias is not None:
                self.linear.bias.zero_()
            if init == "zeros":
                self.linear.weight.zero_()
            else:  # as the authors' code: every output row starts as the mean token embedding
                if embeddings is None:
                    raise ValueError("mean_embedding init needs the token embeddings")
                self.linear.weight.copy_(embeddings.detach().float().mean(dim=0).expand_as(
                    self.linear.weight))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """Raw head output in training units. (B, d) -> (B, k)"""
        return self.linear(hidden.to(self.linear.weight.dtype))

    def to_label_units(self, raw: torch.Tensor) -> torch.Tensor:
        return raw * self.label_std + self.label_mean

    def to_training_units(self, labels: torch.Tensor) -> torch.Tensor:
        return (labels - self.label_mean) / self.label_std

    def save(self, folder: str | Path, base: BaseModelInfo, init: str) -> None:
        folder = Path(folder)
        tensors = {name: value.detach().cpu().contiguous()
                   for name, value in self.linear.named_parameters()}
        refuse_non_finite(folder, {f"head {name}": value for name, value in tensors.items()})
        with atomic_path(folder / HEAD_FILE) as tmp:
            save_file(tensors, str(tmp))
        write_json(folder / HEAD_META, {
            "format": "tagllm.head/1", "tagllm_version": __version__,
            "base_model": base.__dict__, "outputs": self.linear.out_features, "init": init,
            "label_mean": float(self.label_mean), "label_std": float(self.label_std),
            "bias": self.linear.bias is not None,
        })

    @classmethod
    def load(cls, folder: str | Path, base: BaseModelInfo) -> RegressionHead:
        folder = Path(folder)
        meta_path = folder / HEAD_META
        if not meta_path.is_file() or not (folder / HEAD_FILE).is_file():
            raise TagFileError(f"{folder}: regression head files are missing")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise TagFileError(f"{meta_path}: not a readable head file ({error})") from error
        if meta["base_model"]["hidden_size"] != base.hidden_size or \
                meta["base_model"]["model_id"] != base.model_id:
            raise TagFileError(
                f"{meta_path}: head was trained for {meta['base_model']['model_id']} but the base "
                f"model is {base.model_id}"
            )
        head = cls(base.hidden_size, meta["outputs"], meta["label_mean"], meta["label_std"],
                   bias=meta.get("bias", False))
        head.linear.load_state_dict(load_file(str(folder / HEAD_FILE)))
        return head
