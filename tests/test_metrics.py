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


def test_translation_scores_by_hand_and_the_spbleu_fallback(monkeypatch, tmp_path):
    from sacrebleu.tokenizers import tokenizer_spm

    from tagllm.metrics import translation_metrics

    monkeypatch.setattr(tokenizer_spm, "SACREBLEU_DIR", str(tmp_path))  # no flores101 model here
    same = translation_metrics(["the cat sat on the mat"], ["the cat sat on the mat"])
    assert same["bleu"] == pytest.approx(100.0) and same["chrf"] == pytest.approx(100.0)
    assert math.isnan(same["spbleu"]) and "not found" in same["spbleu_note"]
    assert "tok:13a" in same["bleu_signature"]
    # Every word matches, no bigram does. sacreBLEU's default "exp" smoothing gives the n-grams
    # without a match 1/(2^k * count): precisions 6/6, 1/(2*5), 1/(4*4), 1/(8*3); no length penalty.
    apart = translation_metrics(["mat the on sat cat the"], ["the cat sat on the mat"])
    by_hand = 100 * (1.0 * (1 / 10) * (1 / 16) * (1 / 24)) ** 0.25
    assert apart["bleu"] == pytest.approx(by_hand) and 0 < apart["chrf"] < 100
    assert same["nonempty"] == 1.0
    assert translation_metrics(["a cat", " \n"], ["a cat", "a dog"])["nonempty"] == 0.5
    with pytest.raises(ValueError, match="hypotheses"):
        translation_metrics(["a"], ["a", "b"])


def test_spbleu_with_a_sentencepiece_model_in_place(monkeypatch, tmp_path):
    import sentencepiece as spm
    from sacrebleu.tokenizers import tokenizer_spm

    from tagllm.metrics import spbleu_model_path, translation_metrics

    monkeypatch.setattr(tokenizer_spm, "SACREBLEU_DIR", str(tmp_path))
    model = spbleu_model_path()
    model.parent.mkdir(parents=True)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(f"the cat {i} sat on the mat number {i}" for i in range(200)))
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(model.with_suffix("")),
                                   vocab_size=40, model_type="unigram")
    assert model.is_file()  # the trainer wrote <prefix>.model, the name sacreBLEU looks for
    scores = translation_metrics(["the cat sat on the mat"], ["the cat sat on the mat"])
    assert scores["spbleu"] == pytest.approx(100.0) and "tok:flores101" in scores["spbleu_signature"]


def test_reference_nll_is_nats_per_reference_character_per_direction(tmp_path):
    import pandas as pd

    from tagllm.scoring import write_translation
    from tagllm.tasks import as_task

    frame = pd.DataFrame({"src_lang": ["en", "en", "fr"], "tgt_lang": ["fr", "fr", "en"],
                          "src": ["a", "b", "c"], "tgt": ["abcd", "ef", "ghij"]})
    metrics = write_translation(frame, ["x", "y", "z"], as_task("translate"), "translate",
                                "tagllm", "m", tmp_path, reference_nll=[2.0, 4.0, 1.0])
    assert metrics["directions"]["en-fr"]["reference_nll"] == pytest.approx(6.0 / 6)
    assert metrics["directions"]["fr-en"]["reference_nll"] == pytest.approx(1.0 / 4)
    assert metrics["reference_nll"] == pytest.approx(7.0 / 10)
    assert pd.read_parquet(tmp_path / "predictions.parquet")["reference_nll"].tolist() == \
        [2.0, 4.0, 1.0]
    # A row without one leaves the direction without one (not a sum that skipped it).
    assert math.isnan(write_translation(frame, ["x", "y", "z"], as_task("translate"), "translate",
                                        "tagllm", "m", tmp_path, reference_nll=[2.0, math.nan, 1.0]
                                        )["directions"]["en-fr"]["reference_nll"])
    # Without a model (copying the source) there is none.
    assert "reference_nll" not in write_translation(frame, ["x", "y", "z"], as_task("translate"),
                                                    "translate", "copy_source", "m", tmp_path)
