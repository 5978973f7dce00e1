"""Training checkpoints: trainable tensors, optimiser, scheduler, position in the data and RNG state,
written atomically at optimiser-step boundaries so that a job killed at any moment resumes from
the last one and ends with the same tags as an uninterrupted run.

Checkpoints are internal files (`checkpoint.pt` in the run folder, removed when the run finishes);
they are read with `torch.load(weights_only=True)`, which refuses arbitrary pickled objects. One that
cannot be read so (torn, corrupt, or not a checkpoint) is renamed `checkpoint.pt.corrupt` with a
warning, and the run starts from scratch: it is never loaded unsafely, and never blocks the run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import pickle
from pathlib import Path

import torch

from tagllm.atomic import atomic_path

log = logging.getLogger("tagllm")
CHECKPOINT = "checkpoint.pt"
_KEYS = {"fingerprint", "step", "tokens", "curve", "epoch", "position", "params", "optimizer",
         "scheduler", "rng"}


def fingerprint(settings: dict) -> str:
    """A short hash of what must match for a checkpoint to be resumable."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def save(folder: str | Path, state: dict) -> None:
    with atomic_path(Path(folder) / CHECKPOINT) as tmp:
        torch.save(state, tmp)


def load(folder: str | Path, expected_fingerprint: str) -> dict | None:
    """The checkpoint in `folder` if there is one made by the same run settings, else None."""
    path = Path(folder) / CHECKPOINT
    state = _read(path)
    if state is None:
        return None
    if not state.keys() >= _KEYS:
        _set_aside(path, f"missing {sorted(_KEYS - state.keys())}")
        return None
    if state.get("fingerprint") != expected_fingerprint:
        log.warning("%s: made with other settings; starting from scratch", path)
        return None
    log.info("%s: resuming at step %d (epoch %d, batch %d)", path, state["step"], state["epoch"],
             state["position"])
    return state


def read_extra(folder: str | Path) -> dict | None:
    """The `extra` entry of the checkpoint in `folder` (what the run recorded beside its state, such
    as its precision), or None if there is no checkpoint."""
    state = _read(Path(folder) / CHECKPOINT)
    return None if state is None else dict(state.get("extra", {}))


def _read(path: Path) -> dict | None:
    """The checkpoint at `path`, or None if there is none or it cannot be read (then set aside)."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, EOFError, RuntimeError, ValueError, TypeError) as error:
        # Not the error's text: torch's advises `weights_only=False`, i.e. running the pickle.
        reason = f"unreadable ({type(error).__name__})"
    else:
        if isinstance(state, dict):
            return state
        reason = "not a tagllm checkpoint"
    _set_aside(path, reason)
    return None


def _set_aside(path: Path, reason: str) -> None:
    """Rename a bad checkpoint out of the way (kept for a look, never loaded) and say so."""
    aside = path.with_name(f"{path.name}.corrupt")
    with contextlib.suppress(FileNotFoundError):  # another process of the run moved it first
        os.replace(path, aside)
    log.warning("%s: checkpoint is %s; moved it to %s and starting from scratch", path, reason,
                aside)


def remove(folder: str | Path) -> None:
    (Path(folder) / CHECKPOINT).unlink(missing_ok=True)
