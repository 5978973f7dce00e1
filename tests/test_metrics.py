"""Regression metrics against values computed by hand."""

import math

import pytest

from tagllm.metrics import regression_metrics


def test_against_hand_computed_values():
    metrics = regression_metrics([1.0, 2.0, 3.0], [1.0, 3.0, 2.0])
    assert metrics["mse"] == pytest.approx(2 / 3)
    assert metrics["mae"] == pytest.approx(2 / 3)
    assert metrics["pearson"] == pytest.approx(0.5)
    assert metrics["spearman"] == pytest.approx(0.5)
    assert metrics["n"] == 3


def test_constant_prediction_has_undefined_correlation():
    metrics = regression_metrics([1.0, 2.0], [1.5, 1.5])
    assert metrics["mse"] == pytest.approx(0.25)
    assert math.isnan(metrics["pearson"])


def test_bad_inputs():
    with pytest.raises(ValueError, match="NaN"):
        regression_metrics([1.0, float("nan")], [1.0, 2.0])
    with pytest.raises(ValueError, match="equal length"):
        regression_metrics([1.0], [1.0, 2.0])
