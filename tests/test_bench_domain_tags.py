"""bench/domain_tags.py: settings parse into train-block overrides, and the held-out loss it prints
is the mean of stage 1's per-text loss."""

from __future__ import annotations

import pytest

from tests.bench_module import load_bench


@pytest.fixture(scope="module")
def bench():
    return load_bench("domain_tags")


def test_settings_parse_into_overrides(bench):
    assert bench.parse_setting("lr=0.03,max_examples=96") == {"lr": 0.03, "max_examples": 96}
    assert bench.parse_setting("") == {}
    for bad in ("lr", "=3", "lr="):
        with pytest.raises(SystemExit, match="key=value"):
            bench.parse_setting(bad)


def test_held_out_loss_is_the_mean_over_batches_of_texts(bench, tiny_base):
    from tagllm.objectives import text_losses
    from tagllm.tags import TagTable
    from tagllm.train import _domain_examples

    tags = TagTable(tiny_base.info)
    tags.add_new("SMILES", "domain", 1, 4, tiny_base.embeddings(), run="init")
    texts = ["CCO", "c1ccccc1C(=O)O", "CCN(CC)CC", "O=C=O", "C#N"]
    each = text_losses(tiny_base, tags, _domain_examples(tiny_base, tags, "SMILES", texts))
    assert bench.held_out_loss(tiny_base, tags, "SMILES", texts, batch_size=2) == \
        pytest.approx(float(each.mean()), rel=1e-5)


def test_the_language_bench_shares_the_parser():
    languages = load_bench("language_tags")
    assert languages.parse_setting is load_bench("domain_tags").parse_setting.__globals__[
        "parse_setting"]
    args = languages.stage1_parser("x", ["lr=0.001"], 16).parse_args([])
    assert (args.settings, args.texts, args.threads) == (["lr=0.001"], 16, 1)
