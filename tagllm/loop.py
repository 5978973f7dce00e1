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
from dataclasses import asdict

import numpy as np
import torch
from tqdm import tqdm
from transformers import get_cosine_schedule_with_warmup

from tagllm import __version__
from tagllm.train_config import TrainConfig

log = logging.getLogger("tagllm")


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
