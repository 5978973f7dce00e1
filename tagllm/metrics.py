"""Metrics of the paper's tasks: MSE, MAE, Pearson r and Spearman rho for regression; spBLEU, BLEU
and chrF (sacreBLEU) for translation; and TDC's per-tissue MAE of the DrugCombo group.

Against TDC's evaluator (tdc/evaluator.py): its `mae` is scikit-learn's `mean_absolute_error`, the
mean of |y - p| as here; its `pcc` (the DTI-DG group's metric) is `np.corrcoef(y, p)[1, 0]`, the
same Pearson r that `scipy.stats.pearsonr` gives here (they agree to rounding, ~1e-15;
tests/test_tdc_groups.py); TDC rounds the reported numbers to 3 decimals, we do not."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sacrebleu.metrics import BLEU, CHRF
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


TARGET_CLASS = "target_class"  # the DrugCombo group's test column TDC also scores by (tissue)


def mae_by_group(truth: Sequence[float], predicted: Sequence[float], groups: Sequence[object]
                 ) -> dict[str, float]:
    """MAE within each group, as TDC's benchmark evaluation scores a test file with a
    `target_class` column (DrugCombo: one MAE per tissue, reported as `<benchmark>_<tissue>`):
    {group: mean |p - y| over its rows}, groups in order of first appearance."""
    y = np.asarray(truth, dtype=np.float64)
    p = np.asarray(predicted, dtype=np.float64)
    labels = np.asarray([str(g) for g in groups], dtype=object)
    if not (y.shape == p.shape == labels.shape) or y.ndim != 1:
        raise ValueError(f"truth, predictions and groups must be 1-D and equal length "
                         f"({y.shape}, {p.shape}, {labels.shape})")
    if not (np.isfinite(y).all() and np.isfinite(p).all()):
        raise ValueError("truth or predictions contain NaN or infinity")
    error = np.abs(p - y)
    return {str(group): float(error[labels == group].mean())
            for group in dict.fromkeys(labels.tolist())}


def target_class_metrics(test_path: str | Path, truth: Sequence[float],
                         predicted: Sequence[float]) -> dict:
    """`{"mae_by_target_class": {tissue: MAE}}` when the test split at `test_path` has a
    `target_class` column (the DrugCombo group's test file), else `{}`. `truth` and `predicted`
    are the first len(truth) test rows in file order (all of them, or evaluate's `max_rows`)."""
    import pandas as pd
    import pyarrow.parquet as pq

    if TARGET_CLASS not in pq.read_schema(test_path).names:
        return {}
    groups = pd.read_parquet(test_path, columns=[TARGET_CLASS])[TARGET_CLASS]
    if len(groups) < len(truth):
        raise ValueError(f"{test_path}: {len(groups)} rows, but {len(truth)} predictions")
    return {f"mae_by_{TARGET_CLASS}": mae_by_group(truth, predicted,
                                                   groups.iloc[:len(truth)].tolist())}


def spbleu_model_path() -> Path:
    """Where sacreBLEU looks for the flores101 SentencePiece model ($SACREBLEU/models/...)."""
    from sacrebleu.tokenizers import tokenizer_spm

    url = tokenizer_spm.SPM_MODELS["flores101"]["url"]
    return Path(tokenizer_spm.SACREBLEU_DIR) / "models" / url.rsplit("/", 1)[-1]


def translation_metrics(hypotheses: Sequence[str], references: Sequence[str]) -> dict:
    """sacreBLEU corpus scores: spBLEU (the flores101 SentencePiece tokenizer, as the paper), BLEU
    (13a) and chrF, each with its signature. sacreBLEU would download the flores101 model; offline,
    when it is not already at `spbleu_model_path()`, spBLEU is NaN and `spbleu_note` says why."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    if not references:
        raise ValueError("no sentences to score")
    hypotheses = [str(h) for h in hypotheses]
    refs = [[str(r) for r in references]]
    bleu = BLEU()
    chrf = CHRF()
    result = {
        "bleu": float(bleu.corpus_score(hypotheses, refs).score),
        "bleu_signature": str(bleu.get_signature()),
        "chrf": float(chrf.corpus_score(hypotheses, refs).score),
        "chrf_signature": str(chrf.get_signature()),
        "n": len(hypotheses),
        # The share of rows with any answer at all (an empty one scores 0 but says more).
        "nonempty": sum(bool(h.strip()) for h in hypotheses) / len(hypotheses),
    }
    model = spbleu_model_path()
    if model.is_file():
        spbleu = BLEU(tokenize="flores101")
        result["spbleu"] = float(spbleu.corpus_score(hypotheses, refs).score)
        result["spbleu_signature"] = str(spbleu.get_signature())
        result["spbleu_note"] = ""
    else:
        result["spbleu"] = math.nan
        result["spbleu_signature"] = ""
        result["spbleu_note"] = (f"flores101 SentencePiece model not found at {model}: spBLEU not "
                                 "computed (BLEU 13a and chrF are); place the model there (or set "
                                 "$SACREBLEU) to get spBLEU")
    return result
