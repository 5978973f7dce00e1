"""Training hyper-parameters as a validated dataclass (no torch import, so the CLI starts fast)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

HEAD_INITS = ("mean_embedding", "zeros", "probe")


def _opt(default: object, help_text: str) -> object:
    return field(default=default, metadata={"help": help_text})


@dataclass
class TrainConfig:
    """Hyper-parameters of one training run (paper A.1 defaults: AdamW 1e-4, wd 0, cosine, 3% warm-up,
    batch 4 x accumulation 8)."""

    epochs: int = _opt(1, "passes over the training data")
    lr: float = _opt(1e-4, "AdamW learning rate (paper: 1e-4)")
    head_lr: float = _opt(0.0, "learning rate of the regression head (0: same as lr)")
    weight_decay: float = _opt(0.0, "AdamW weight decay (paper: 0)")
    warmup_ratio: float = _opt(0.03, "fraction of steps for linear warm-up before the cosine decay")
    batch_size: int = _opt(4, "examples per forward pass (paper: 4)")
    grad_accum: int = _opt(8, "batches per optimiser step (paper: 8)")
    max_examples: int = _opt(0, "use at most this many training examples (0: all)")
    seed: int = _opt(0, "seed for sampling, batch order and initialisation")
    loss_scale: float = _opt(100.0, "factor on the regression MSE (the authors' code uses 100)")
    standardize_labels: bool = _opt(False, "train the head on z-scored labels (not in the paper)")
    head_init: str = _opt("mean_embedding", "regression head init: mean_embedding (paper), zeros, or "
                          "probe (closed-form ridge on the initial features, with a bias; then "
                          "tags and head train together)")
    head_bias: bool = _opt(False, "give the regression head a bias (not in the paper: bias-free)")
    head_refit: bool = _opt(False, "after training, refit the head in closed form (ridge, "
                                   "leave-one-out penalty, with a bias) on the trained tags' "
                                   "features (not in the paper)")
    cache_prefix: bool = _opt(True, "run frozen prefixes once and train on their KV cache")
    cache_budget_mb: int = _opt(4096, "keep cached prefixes across epochs up to this many MiB")
    log_every: int = _opt(10, "log a progress line every this many optimiser steps")
    checkpoint_every: int = _opt(50, "checkpoint every this many optimiser steps (0: never)")
    enrich: bool = _opt(False, "stage 2: also update the domain tags, keeping their stage-1 LM loss")
    enrich_lm_weight: float = _opt(1.0, "weight of the stage-1 LM loss when enriching")

    def __post_init__(self) -> None:
        # NaN fails every comparison, but infinity passes `> 0`: check that floats are finite.
        infinite = [name for name in ("lr", "head_lr", "weight_decay", "warmup_ratio", "loss_scale",
                                      "enrich_lm_weight") if not math.isfinite(getattr(self, name))]
        if infinite:
            raise ValueError(f"invalid training config: {', '.join(infinite)} must be a finite "
                             "number")
        checks = [
            (self.epochs >= 1, "epochs must be >= 1"),
            (self.lr > 0, "lr must be > 0"),
            (self.head_lr >= 0, "head_lr must be >= 0 (0 = same as lr)"),
            (self.weight_decay >= 0, "weight_decay must be >= 0"),
            (0 <= self.warmup_ratio < 1, "warmup_ratio must be in [0, 1)"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.grad_accum >= 1, "grad_accum must be >= 1"),
            (self.max_examples >= 0, "max_examples must be >= 0 (0 = all)"),
            (self.loss_scale > 0, "loss_scale must be > 0"),
            (self.head_init in HEAD_INITS, f"head_init must be one of {HEAD_INITS}"),
            (self.cache_budget_mb >= 0, "cache_budget_mb must be >= 0"),
            (self.log_every >= 1, "log_every must be >= 1"),
            (self.checkpoint_every >= 0, "checkpoint_every must be >= 0 (0 = never)"),
            (self.enrich_lm_weight >= 0, "enrich_lm_weight must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"invalid training config: {message}")
