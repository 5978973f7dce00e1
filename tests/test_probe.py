"""The closed-form probe: ridge with a leave-one-out penalty, against a brute-force fit."""

import numpy as np
import pytest
import torch

from tagllm.heads import RegressionHead
from tagllm.probe import fit_ridge, head_from_fit


def _ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, float]:
    """Ridge with an unpenalised intercept, by solving the normal equations on centred data."""
    mean_x, mean_y = x.mean(axis=0), y.mean()
    xc = x - mean_x
    weight = np.linalg.solve(xc.T @ xc + alpha * np.eye(x.shape[1]), xc.T @ (y - mean_y))
    return weight, mean_y - mean_x @ weight


def _brute_force(x: np.ndarray, y: np.ndarray, alphas: tuple[float, ...]):
    """Standardise with every row, then for each penalty refit n times leaving one row out."""
    z = (x - x.mean(axis=0)) / x.std(axis=0)
    loo = []
    for alpha in alphas:
        errors = []
        for left_out in range(len(y)):
            keep = np.arange(len(y)) != left_out
            weight, bias = _ridge(z[keep], y[keep], alpha)
            errors.append((z[left_out] @ weight + bias - y[left_out]) ** 2)
        loo.append(np.mean(errors))
    best = int(np.argmin(loo))
    weight, bias = _ridge(z, y, alphas[best])
    scale = x.std(axis=0)
    return alphas[best], loo[best], weight / scale, bias - (weight / scale) @ x.mean(axis=0)


def test_closed_form_equals_brute_force_leave_one_out():
    rng = np.random.default_rng(0)
    # Features of very different scales (as an LLM's hidden states), a noisy linear target.
    x = rng.normal(size=(30, 6)) * np.array([1.0, 100.0, 0.01, 5.0, 1.0, 1.0])
    y = x @ np.array([0.5, 0.01, 20.0, -0.1, 0.0, 0.3]) + rng.normal(scale=0.5, size=30) + 2.0
    alphas = (0.01, 0.1, 1.0, 10.0, 100.0)
    fit = fit_ridge(x, y, alphas)
    alpha, loo, weight, bias = _brute_force(x, y, alphas)
    assert fit.alpha == alpha
    assert fit.loo_mse == pytest.approx(loo, rel=1e-8)
    np.testing.assert_allclose(fit.weight, weight, rtol=1e-8)
    assert fit.bias == pytest.approx(bias, rel=1e-8)
    assert fit.train_mse == pytest.approx(np.mean((x @ weight + bias - y) ** 2), rel=1e-8)
    assert fit.train_mse < fit.loo_mse


def test_penalty_grows_when_features_are_noise():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(40, 20)), rng.normal(size=40)
    signal = rng.normal(size=(40, 20))
    assert fit_ridge(x, y).alpha > fit_ridge(signal, signal[:, 0] * 3 + 0.01 * y).alpha


def test_head_set_from_fit_predicts_as_the_fit():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(25, 8)).astype(np.float32)
    y = x @ rng.normal(size=8) + 1.5
    fit = fit_ridge(torch.from_numpy(x), torch.from_numpy(y))
    head = RegressionHead(8, 1, bias=True)
    head_from_fit(fit, head)
    with torch.no_grad():
        out = head(torch.from_numpy(x)).squeeze(-1).double().numpy()
    np.testing.assert_allclose(out, fit.predict(x), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="needs a bias"):
        head_from_fit(fit, RegressionHead(8, 1, bias=False))
    with pytest.raises(ValueError, match="does not match"):
        head_from_fit(fit, RegressionHead(9, 1, bias=True))


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="at least 3 rows"):
        fit_ridge(np.zeros((2, 3)), np.zeros(2))
    with pytest.raises(ValueError, match="do not match"):
        fit_ridge(np.zeros((5, 3)), np.zeros(4))
    with pytest.raises(ValueError, match="not all finite"):
        fit_ridge(np.ones((5, 3)), np.array([1.0, 2.0, np.nan, 0.0, 1.0]))
