"""Metrics of the paper's tasks: MSE, MAE, Pearson r and Spearman rho for regression; spBLEU, BLEU
and chrF (sacreBLEU) for translation."""

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
