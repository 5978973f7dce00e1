"""Deterministic random splits."""

from __future__ import annotations

import numpy as np
import pandas as pd


def random_split(frame: pd.DataFrame, test_fraction: float, seed: int
                 ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Shuffle with `seed` and cut off `test_fraction` (at least one row each side)."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if len(frame) < 2:
        raise ValueError(f"need at least 2 rows to split, got {len(frame)}")
    order = np.random.default_rng(seed).permutation(len(frame))
    n_test = min(max(1, round(len(frame) * test_fraction)), len(frame) - 1)
    test = frame.iloc[np.sort(order[:n_test])].reset_index(drop=True)
    train = frame.iloc[np.sort(order[n_test:])].reset_index(drop=True)
    return train, test


def subsample(frame: pd.DataFrame, max_rows: int | None, seed: int) -> pd.DataFrame:
    """At most `max_rows` rows, drawn with `seed` and kept in their original order."""
    if max_rows is None or max_rows <= 0 or len(frame) <= max_rows:
        return frame.reset_index(drop=True)
    keep = np.sort(np.random.default_rng(seed).choice(len(frame), size=max_rows, replace=False))
    return frame.iloc[keep].reset_index(drop=True)
