"""bench/translation.py: settings parse into the two train blocks they override, and the scores it
prints come from an evaluation's metrics as the tables read them."""

from __future__ import annotations

import math

import pytest

from tests.bench_module import load_bench


@pytest.fixture(scope="module")
def bench():
    return load_bench("translation")


def test_settings_split_into_stage1_and_translate(bench):
    assert bench.parse_setting("stage1.lr=0.03,translate.max_examples=576,translate.epochs=1") \
        == {"stage1": {"lr": 0.03}, "translate": {"max_examples": 576, "epochs": 1}}
    assert bench.parse_setting("") == {"stage1": {}, "translate": {}}
    for bad in ("lr=0.03", "stage2.lr=0.1", "translate.=3"):
        with pytest.raises(SystemExit, match=r"stage1\.<key> or translate\.<key>"):
            bench.parse_setting(bad)


def test_scores_average_the_seen_directions(bench):
    metrics = {"chrf": 12.0, "reference_nll": 1.3,
               "directions": {"en-fr": {"chrf": 10.0}, "fr-en": {"chrf": 20.0},
                              "es-pt": {"chrf": 90.0}}}
    assert bench.scores(metrics) == {"reference_nll": 1.3, "chrf": 12.0, "chrf_seen": 15.0}
    assert math.isnan(bench.scores({"chrf": 5.0, "directions": {}})["reference_nll"])
