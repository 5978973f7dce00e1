"""The optimisation loop shared by every trainer: AdamW, cosine schedule with warm-up, gradient
accumulation, periodic log lines, and the run metrics (loss curve, tokens/s, peak memory, versions)."""

from __future__ import annotations

import logging
import math
import platform
import random
import resource
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from tqdm import tqdm
from transformers import get_cosine_schedule_with_warmup

from tagllm import __version__

log = logging.getLogger("tagllm")


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
    head_init: str = _opt("mean_embedding", "regression head init: mean_embedding (paper) or zeros")
    cache_prefix: bool = _opt(True, "run frozen prefixes once and train on their KV cache")
    cache_budget_mb: int = _opt(4096, "keep cached prefixes across epochs up to this many MiB")
    log_every: int = _opt(10, "log a progress line every this many optimiser steps")

    def __post_init__(self) -> None:
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
            (self.head_init in ("mean_embedding", "zeros"), "head_init: mean_embedding or zeros"),
            (self.cache_budget_mb >= 0, "cache_budget_mb must be >= 0"),
            (self.log_every >= 1, "log_every must be >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"invalid training config: {message}")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def versions() -> dict[str, str]:
    import transformers

    return {"tagllm": __version__, "torch": torch.__version__,
            "transformers": transformers.__version__, "python": platform.python_version()}


def optimise(params: Sequence[torch.nn.Parameter] | Sequence[dict], n_batches: int,
             step_loss: Callable[[int, int], tuple[torch.Tensor, int]],
             batch_order: Callable[[int], list[int]], config: TrainConfig) -> dict:
    """Run `config.epochs` passes. `params` are parameters or AdamW parameter groups;
    `step_loss(epoch, batch)` returns (mean loss, tokens processed); `batch_order(epoch)` gives the
    batch indices of an epoch. Returns training metrics."""
    steps_per_epoch = math.ceil(n_batches / config.grad_accum)
    total_steps = steps_per_epoch * config.epochs
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = get_cosine_schedule_with_warmup(
        optimizer, math.ceil(config.warmup_ratio * total_steps), total_steps)
    curve: list[dict] = []
    tokens, started, step = 0, time.perf_counter(), 0
    window_loss, window_batches = 0.0, 0
    bar = tqdm(total=total_steps, desc="train", file=sys.stderr, mininterval=5, disable=None)
    for epoch in range(config.epochs):
        order = batch_order(epoch)
        for position, batch in enumerate(order):
            loss, batch_tokens = step_loss(epoch, batch)
            (loss / config.grad_accum).backward()
            tokens += batch_tokens
            window_loss += float(loss.detach())
            window_batches += 1
            boundary = (position + 1) % config.grad_accum == 0 or position == len(order) - 1
            if not boundary:
                continue
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            bar.update(1)
            curve.append({"step": step, "epoch": epoch, "loss": window_loss / window_batches,
                          "lr": scheduler.get_last_lr()[0]})
            window_loss, window_batches = 0.0, 0
            if step % config.log_every == 0 or step == total_steps:
                elapsed = time.perf_counter() - started
                log.info("step %d/%d epoch %d loss %.5f tokens/s %.1f peak_rss %.0f MiB",
                         step, total_steps, epoch, curve[-1]["loss"], tokens / elapsed,
                         peak_rss_mb())
    bar.close()
    wall = time.perf_counter() - started
    return {"steps": step, "loss_curve": curve, "final_loss": curve[-1]["loss"] if curve else None,
            "tokens": tokens, "tokens_per_s": tokens / wall if wall else 0.0, "wall_s": wall,
            "peak_rss_mb": peak_rss_mb(), "config": asdict(config), "versions": versions()}
