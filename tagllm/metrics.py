"""Metrics of the paper's tasks: MSE, MAE, Pearson r and Spearman rho for regression."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats


def regression_metrics(truth: Sequence[float], predicted: Sequence[float]) -> dict[str, float]:
    """MSE, MAE, Pearson r and Spearman rho (NaN where a correlation is undefined) and n."""
    y = np.asarray(truth, dtype=np.float64)
    p = np.asarray(predicted, dtype=np.float64)
    if y.shape != p.shape or y.ndim != 1:
        raise ValueError(f"truth and predictions must be 1-D and equal length ({y.shape} vs {p.shape})")
    if len(y) == 0:
        raise ValueError("no examples to score")
    if not (np.isfinite(y).all() and np.isfinite(p).all()):
        raise ValueError("truth or predictions contain NaN or infinity")
    error = p - y
    constant = np.ptp(y) == 0 or np.ptp(p) == 0 or len(y) < 2
    return {
        "mse": float(np.mean(error**2)),
        "mae": float(np.mean(np.abs(error))),
        "pearson": math.nan if constant else float(stats.pearsonr(y, p).statistic),
        "spearman": math.nan if constant else float(stats.spearmanr(y, p).statistic),
        "n": len(y),
    }
