"""A linear read-out fit to its optimum in closed form: ridge regression on frozen features.

The features are standardised (an LLM's hidden states have a few dimensions hundreds of times
larger than the rest, which a single penalty would otherwise favour), and the penalty is chosen
from a wide grid by exact leave-one-out cross-validation (scikit-learn's `RidgeCV`, which gets
every left-out residual from one eigendecomposition). The fit is folded back into one weight
vector and a bias on the raw features, so that it is a regression head like any other.

It is the linear-probing baseline (the head alone on the frozen model, every training row, nothing
left to tune) and, with `head_init: probe`, the starting point of Tag-LLM's head ("probe then
tune": the head starts where the closed form puts it on the initial features, and the tags and
head then train together).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from tagllm.heads import RegressionHead

# Penalties tried, relative to standardised features: from almost none to almost the mean.
ALPHAS = tuple(float(a) for a in np.logspace(-3, 6, 37))


@dataclass(frozen=True)
class RidgeFit:
    """y ~ features @ weight + bias, in the units of the targets it was fit to."""

    weight: np.ndarray  # (d,)
    bias: float
    alpha: float  # the penalty leave-one-out chose
    train_mse: float  # on the rows it was fit to
    loo_mse: float  # mean squared leave-one-out error at that penalty
    rows: int

    def predict(self, features: np.ndarray) -> np.ndarray:
        return np.asarray(features, dtype=np.float64) @ self.weight + self.bias

    def summary(self) -> dict:
        return {"alpha": self.alpha, "train_mse": self.train_mse, "loo_mse": self.loo_mse,
                "rows": self.rows, "alphas": [ALPHAS[0], ALPHAS[-1], len(ALPHAS)]}


def fit_ridge(features: np.ndarray | torch.Tensor, targets: np.ndarray | torch.Tensor,
              alphas: tuple[float, ...] = ALPHAS) -> RidgeFit:
    """Ridge regression of `targets` (n,) on `features` (n, d), standardised, with an intercept,
    its penalty chosen by leave-one-out error."""
    x = _as_float64(features)
    y = _as_float64(targets).reshape(-1)
    if x.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"features {x.shape} and targets {y.shape} do not match")
    if x.shape[0] < 3:
        raise ValueError(f"a ridge fit with leave-one-out needs at least 3 rows, got {x.shape[0]}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("ridge fit: features or targets are not all finite")
    # Imported here: scikit-learn takes over a second to import, and most jobs never fit a probe.
    from sklearn.linear_model import RidgeCV
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x)
    ridge = RidgeCV(alphas=alphas, store_cv_results=True).fit(scaler.transform(x), y)
    weight = ridge.coef_ / scaler.scale_
    bias = float(ridge.intercept_ - weight @ scaler.mean_)
    loo = ridge.cv_results_.mean(axis=0)  # (n_alphas,)
    train_mse = float(np.mean((x @ weight + bias - y) ** 2))
    return RidgeFit(weight, bias, float(ridge.alpha_), train_mse, float(loo.min()), x.shape[0])


def head_from_fit(fit: RidgeFit, head: RegressionHead) -> None:
    """Put `fit` into `head` (which must have a bias); the fit is in the head's training units."""
    if head.linear.bias is None:
        raise ValueError("a head set from a ridge fit needs a bias")
    if head.linear.out_features != 1 or head.linear.in_features != fit.weight.shape[0]:
        raise ValueError(f"head {tuple(head.linear.weight.shape)} does not match a fit of "
                         f"{fit.weight.shape[0]} features")
    with torch.no_grad():
        head.linear.weight.copy_(torch.from_numpy(fit.weight).reshape(1, -1))
        head.linear.bias.fill_(fit.bias)


def _as_float64(values: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().double().cpu().numpy()
    return np.asarray(values, dtype=np.float64)
