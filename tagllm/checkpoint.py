"""Training checkpoints: trainable tensors, optimiser, scheduler, position in the data and RNG state,
written atomically at optimiser-step boundaries so that a job killed at any moment resumes from
the last one and ends with the same tags as an uninterrupted run.

Checkpoints are internal files (`checkpoint.pt` in the run folder, removed when the run finishes);
they are read with `torch.load(weights_only=True)`, which refuses arbitrary pickled objects.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import torch

from tagllm.atomic import atomic_path

log = logging.getLogger("tagllm")
CHECKPOINT = "checkpoint.pt"


def fingerprint(settings: dict) -> str:
    """A short hash of what must match for a checkpoint to be resumable."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def save(folder: str | Path, state: dict) -> None:
    with atomic_path(Path(folder) / CHECKPOINT) as tmp:
        torch.save(state, tmp)


def load(folder: str | Path, expected_fingerprint: str) -> dict | None:
    """The checkpoint in `folder` if there is one made by the same run settings, else None."""
    path = Path(folder) / CHECKPOINT
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("fingerprint") != expected_fingerprint:
        log.warning("%s: made with other settings; starting from scratch", path)
        return None
    log.info("%s: resuming at step %d (epoch %d, batch %d)", path, state["step"], state["epoch"],
             state["position"])
    return state


def read_extra(folder: str | Path) -> dict | None:
    """The `extra` entry of the checkpoint in `folder` (what the run recorded beside its state, such
    as its precision), or None if there is no checkpoint."""
    path = Path(folder) / CHECKPOINT
    if not path.is_file():
        return None
    return dict(torch.load(path, map_location="cpu", weights_only=True).get("extra", {}))


def remove(folder: str | Path) -> None:
    (Path(folder) / CHECKPOINT).unlink(missing_ok=True)
