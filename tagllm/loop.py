"""The optimisation loop shared by every trainer: AdamW, cosine schedule with warm-up, gradient
accumulation, checkpoints and resume, data parallelism, and the run metrics (loss curve, tokens/s,
peak memory, versions)."""

from __future__ import annotations

import logging
import math
import platform
import random
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from tagllm import __version__, checkpoint, distributed
from tagllm.errors import UserError
from tagllm.train_config import TrainConfig

log = logging.getLogger("tagllm")
__all__ = ["NonFiniteError", "TrainConfig", "optimise", "peak_rss_mb", "seed_everything",
           "versions"]


class NonFiniteError(UserError):
    """The loss or a trained tensor stopped being a finite number: the run is not saved."""


def cosine_with_warmup(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int
                       ) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up, then cosine decay to zero: `transformers`' `get_cosine_schedule_with_warmup`
    (written here because importing `transformers.optimization` pulls in its trainer utilities and
    `peft`, about 4 s in every job) but for one thing: its first step has learning rate 0, and a
    short run whose warm-up is one step (ceil(0.03 x 30) = 1) never moved in that step. Here
    warm-up step s (from 0) has (s + 1) / warmup_steps of the peak, so every step updates."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


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


def optimise(groups: list[dict], named: dict[str, torch.Tensor], n_batches: int,
             step_loss: Callable[[int, int], tuple[torch.Tensor, int]],
             batch_order: Callable[[int], list[int]], config: TrainConfig,
             checkpoint_dir: str | Path | None = None, fingerprint: str = "",
             keep_final: bool = False, extra_state: dict | None = None) -> dict:
    """Run `config.epochs` passes and return training metrics.

    `groups` are AdamW parameter groups; `named` the same trainable tensors by name (what a
    checkpoint saves). `step_loss(epoch, batch)` returns (mean loss, tokens processed);
    `batch_order(epoch)` the batch indices of an epoch, which must not depend on anything but the
    epoch (so a resumed run sees the same batches). `keep_final` also checkpoints the finished
    state, so that a rerun of a job that trains several runs skips the finished ones (it resumes
    with no step left); `extra_state` is saved with every checkpoint (`checkpoint.read_extra`)."""
    params = [p for group in groups for p in group["params"]]
    per_rank = len(distributed.shard(list(range(n_batches))))
    steps_per_epoch = math.ceil(per_rank / config.grad_accum)
    total_steps = steps_per_epoch * config.epochs
    optimizer = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = cosine_with_warmup(
        optimizer, math.ceil(config.warmup_ratio * total_steps), total_steps)
    curve: list[dict] = []
    step = tokens = start_epoch = start_position = 0
    saving = checkpoint_dir is not None and config.checkpoint_every > 0
    resumable = checkpoint_dir is not None and (saving or keep_final)
    state = checkpoint.load(checkpoint_dir, fingerprint) if resumable else None
    if state:
        with torch.no_grad():
            for name, value in named.items():
                value.copy_(state["params"][name])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        step, tokens, curve = state["step"], state["tokens"], list(state["curve"])
        start_epoch, start_position = state["epoch"], state["position"]
    resumed_from, tokens_before = step, tokens
    where = f"{checkpoint_dir}: " if checkpoint_dir is not None else ""

    def diverged(what: str, epoch: int) -> NonFiniteError:
        return NonFiniteError(
            f"{where}{what} at optimiser step {step + 1} (epoch {epoch + 1}); training stopped and "
            "nothing was saved from this run (try a lower --lr, or check the labels)")

    def save(epoch: int, position: int) -> None:
        checkpoint.save(checkpoint_dir, {
            "fingerprint": fingerprint, "step": step, "tokens": tokens, "curve": curve,
            "epoch": epoch, "position": position,
            "params": {k: v.detach().cpu().clone() for k, v in named.items()},
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "rng": torch.get_rng_state(), "extra": dict(extra_state or {})})

    started = time.perf_counter()
    window_loss, window_batches = 0.0, 0
    bar = tqdm(total=total_steps, initial=step, desc="train", file=sys.stderr, mininterval=5,
               disable=None if distributed.is_main() else True)
    for epoch in range(start_epoch, config.epochs):
        order = distributed.shard(batch_order(epoch))
        first = start_position if epoch == start_epoch else 0
        for position in range(first, len(order)):
            loss, batch_tokens = step_loss(epoch, order[position])
            value = float(loss.detach())
            if not math.isfinite(value):  # before backward: no NaN reaches the gradients
                raise diverged(f"the training loss is {value}", epoch)
            (loss / config.grad_accum).backward()
            tokens += batch_tokens * distributed.world_size()
            window_loss += value
            window_batches += 1
            if (position + 1) % config.grad_accum and position != len(order) - 1:
                continue
            distributed.average_gradients(params)
            optimizer.step()
            bad = [name for name, tensor in named.items() if not torch.isfinite(tensor).all()]
            if bad:  # a finite loss can still take a step to infinity (a huge learning rate)
                raise diverged(f"{', '.join(bad)} stopped being finite", epoch)
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
                         step, total_steps, epoch, curve[-1]["loss"], tokens / max(elapsed, 1e-9),
                         peak_rss_mb())
            if saving and step % config.checkpoint_every == 0 and distributed.is_main():
                at_end = position == len(order) - 1
                save(epoch + 1 if at_end else epoch, 0 if at_end else position + 1)
    if keep_final and checkpoint_dir is not None and distributed.is_main() and step > resumed_from:
        save(config.epochs, 0)
    bar.close()
    wall = time.perf_counter() - started
    return {"steps": step, "loss_curve": curve, "final_loss": curve[-1]["loss"] if curve else None,
            "tokens": tokens, "tokens_per_s": (tokens - tokens_before) / wall if wall else 0.0,
            "wall_s": wall,
            "resumed_from_step": resumed_from, "world_size": distributed.world_size(),
            "peak_rss_mb": peak_rss_mb(), "config": asdict(config), "versions": versions()}
