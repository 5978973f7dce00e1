"""Data parallelism for `torchrun --nproc_per_node N`: one process per GPU, each on its share of the
batches; only the trainable tags and heads are all-reduced (the frozen base has no gradients).
Without torchrun's environment (or with WORLD_SIZE=1 and no RANK) everything runs as one process."""

from __future__ import annotations

import os
from collections.abc import Iterable

import torch
import torch.distributed as dist


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def setup() -> None:
    """Join the process group torchrun describes (NCCL on GPUs, Gloo on CPUs); no-op otherwise."""
    if launched_by_torchrun() and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
        if torch.cuda.is_available():
            torch.cuda.set_device(local_rank())


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def shard(order: list[int]) -> list[int]:
    """This rank's batches: every world_size-th, cut to an equal count on every rank so that the
    gradient all-reduces stay in step."""
    size = world_size()
    usable = len(order) - len(order) % size if len(order) >= size else len(order)
    return order[:usable][rank()::size]


def average_gradients(params: Iterable[torch.nn.Parameter]) -> None:
    if world_size() == 1:
        return
    for param in params:
        if param.grad is not None:
            dist.all_reduce(param.grad, op=dist.ReduceOp.SUM)
            param.grad /= world_size()
