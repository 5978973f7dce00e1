"""Stage 1 and stage 2 trainers on the tiny model: parameter counts, frozen weights, chaining, errors."""

import json

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from tagllm.heads import RegressionHead
from tagllm.loop import TrainConfig
from tagllm.model import load_frozen_model
from tagllm.tags import TagFileError
from tagllm.train import train_domain_tag, train_function_tag

FAST = {"epochs": 2, "lr": 1e-2, "batch_size": 4, "grad_accum": 2, "log_every": 1}


@pytest.fixture(scope="module")
def stage1(tiny_model_dir, qed_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("stage1") / "SMILES"
    metrics = train_domain_tag(tiny_model_dir, qed_dir / "train.parquet", "smiles", "SMILES", out,
                               4, TrainConfig(**FAST))
    return out, metrics


def test_stage1_trains_only_the_tag(stage1, tiny_model_dir):
    out, metrics = stage1
    hidden = load_frozen_model(tiny_model_dir)[0].config.hidden_size
    assert metrics["trainable_parameters"] == 4 * hidden  # p x d, nothing else
    assert metrics["steps"] > 0 and len(metrics["loss_curve"]) == metrics["steps"]
    assert set(load_file(str(out / "tags.safetensors"))) == {"SMILES"}
    assert {"tokens_per_s", "peak_rss_mb", "wall_s", "versions"} <= set(metrics)


def test_stage2_chains_keeps_domain_tag_and_base_frozen(stage1, tiny_model_dir, qed_dir, tmp_path):
    stage1_dir, _ = stage1
    model_before = {k: v.clone() for k, v in load_frozen_model(tiny_model_dir)[0].state_dict().items()}
    metrics = train_function_tag(tiny_model_dir, "qed", qed_dir / "train.parquet", [stage1_dir],
                                 tmp_path, 4, TrainConfig(**FAST, standardize_labels=True))
    hidden = next(iter(model_before.values())).shape[-1]
    assert metrics["trainable_parameters"] == 4 * hidden + hidden  # <QED> p x d + head d x 1
    assert metrics["prefix_cache"]["enabled"]
    # The cache is filled once per batch in epoch 1 and reused in epoch 2.
    assert metrics["prefix_cache"]["prefix_forwards"] == metrics["steps"]
    stage1_tag = load_file(str(stage1_dir / "tags.safetensors"))["SMILES"]
    run_tags = load_file(str(tmp_path / "tags.safetensors"))
    assert torch.equal(run_tags["SMILES"], stage1_tag)
    assert not torch.equal(run_tags["QED"], run_tags["QED"][0].expand_as(run_tags["QED"]))
    meta = json.loads((tmp_path / "tags.json").read_text())
    assert [t["name"] for t in meta["tags"]] == ["SMILES", "QED"]
    head = RegressionHead.load(tmp_path, _info(tiny_model_dir))
    assert head.linear.weight.abs().sum() > 0
    # The base model on disk is untouched, and so were the in-memory weights during training.
    model_after = load_frozen_model(tiny_model_dir)[0].state_dict()
    assert all(torch.equal(model_before[k], model_after[k]) for k in model_before)


def test_base_weights_bit_identical_after_steps(tiny_base, qed_dir, stage1):
    from tagllm.heads import RegressionHead
    from tagllm.objectives import PrefixStore, regression_hidden
    from tagllm.tags import TagTable

    before = {k: v.clone() for k, v in tiny_base.model.state_dict().items()}
    tags = TagTable(tiny_base.info)
    tags.load(stage1[0])
    tags.add_new("QED", "function", 2, 4, tiny_base.embeddings(), run="t")
    head = RegressionHead(tiny_base.info.hidden_size)
    encoder = tiny_base.encoder(tags, frozenset({"smiles"}))
    rows = pd.read_parquet(qed_dir / "train.parquet").to_dict("records")[:6]
    examples = [encoder.encode("<SMILES> {smiles} <QED>", r) for r in rows]
    optimizer = torch.optim.AdamW([*tags.trainable_parameters(), *head.parameters()], lr=0.1)
    for store in (None, PrefixStore(10**9)):
        for _ in range(3):
            loss = head(regression_hidden(tiny_base, tags, examples, store)).pow(2).mean()
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    assert all(p.grad is None for p in tiny_base.model.parameters())
    after = tiny_base.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_missing_stage1_tags_error(tiny_model_dir, qed_dir, tmp_path):
    with pytest.raises(TagFileError, match="tag file is missing"):
        train_function_tag(tiny_model_dir, "qed", qed_dir / "train.parquet", [tmp_path / "nope"],
                           tmp_path / "out", 4, TrainConfig(**FAST))


def test_wrong_tag_length_error(stage1, tiny_model_dir, qed_dir, tmp_path):
    with pytest.raises(TagFileError, match="tag length 10"):
        train_function_tag(tiny_model_dir, "qed", qed_dir / "train.parquet", [stage1[0]],
                           tmp_path, 10, TrainConfig(**FAST))


def test_empty_and_nan_datasets_error(stage1, tiny_model_dir, tmp_path):
    empty = tmp_path / "empty.parquet"
    pd.DataFrame({"smiles": pd.Series([], dtype=str), "y": pd.Series([], dtype=float)}).to_parquet(
        empty)
    with pytest.raises(ValueError, match=r"empty\.parquet: dataset is empty"):
        train_domain_tag(tiny_model_dir, empty, "smiles", "SMILES", tmp_path / "a", 4,
                         TrainConfig(**FAST))
    nan = tmp_path / "nan.parquet"
    pd.DataFrame({"smiles": ["CC", "CO"], "y": [0.1, float("nan")]}).to_parquet(nan)
    with pytest.raises(ValueError, match="NaN labels in rows"):
        train_function_tag(tiny_model_dir, "qed", nan, [stage1[0]], tmp_path / "b", 4,
                           TrainConfig(**FAST))


def test_train_config_rejects_bad_values():
    with pytest.raises(ValueError, match="lr must be > 0"):
        TrainConfig(lr=0)
    with pytest.raises(ValueError, match="head_init"):
        TrainConfig(head_init="random")


def _info(model_dir):
    from tagllm.model import model_info

    model, _ = load_frozen_model(model_dir)
    return model_info(model, model_dir)


def test_cosine_schedule_matches_transformers():
    from transformers import get_cosine_schedule_with_warmup

    from tagllm.loop import cosine_with_warmup

    def rates(make):
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        scheduler = make(optimizer, 3, 20)
        values = []
        for _ in range(22):
            values.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
        return values

    ours, theirs = rates(cosine_with_warmup), rates(get_cosine_schedule_with_warmup)
    # Warm-up one step ahead (no step at learning rate 0), then the same cosine decay.
    assert ours[:3] == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert theirs[:3] == pytest.approx([0.0, 1 / 3, 2 / 3])
    assert ours[3:] == pytest.approx(theirs[3:])


def test_every_step_updates_even_a_one_step_run():
    from tagllm.loop import cosine_with_warmup

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    cosine_with_warmup(optimizer, 1, 1)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1.0)


def test_head_with_bias_round_trips(tmp_path, tiny_base):
    head = RegressionHead(tiny_base.info.hidden_size, 1, 2.0, 3.0, bias=True)
    head.initialise("zeros")
    with torch.no_grad():
        head.linear.bias.fill_(0.5)
    head.save(tmp_path, tiny_base.info, "zeros")
    loaded = RegressionHead.load(tmp_path, tiny_base.info)
    hidden = torch.randn(2, tiny_base.info.hidden_size)
    assert torch.equal(loaded(hidden), head(hidden))
    assert loaded.to_label_units(loaded(hidden)).squeeze(-1).tolist() == [3.5, 3.5]  # (0 + 0.5) * 3 + 2


def test_domain_tags_trained_together_equal_tags_alone(tiny_model_dir, qed_dir, tmp_path):
    from tagllm.train import train_domain_tags

    data = qed_dir / "train.parquet"
    together = train_domain_tags(tiny_model_dir, [("SMILES", data, "smiles", tmp_path / "a"),
                                                  ("Protein", data, "smiles", tmp_path / "b")],
                                 4, TrainConfig(**FAST))
    assert [m["tag"] for m in together] == ["SMILES", "Protein"]
    assert not list(tmp_path.rglob("checkpoint.pt"))
    for name, folder in (("SMILES", "a"), ("Protein", "b")):
        train_domain_tag(tiny_model_dir, data, "smiles", name, tmp_path / f"alone_{folder}", 4,
                         TrainConfig(**FAST))
        got = load_file(str(tmp_path / folder / "tags.safetensors"))[name]
        want = load_file(str(tmp_path / f"alone_{folder}" / "tags.safetensors"))[name]
        assert torch.equal(got, want), name


def test_probe_then_tune_starts_at_the_probe_training_loss(stage1, tiny_model_dir, qed_dir, tmp_path):
    stage1_dir, _ = stage1
    rows = len(pd.read_parquet(qed_dir / "train.parquet"))
    # One optimiser step over every row (one example per batch): its loss is the whole set's MSE.
    settings = {**FAST, "epochs": 1, "batch_size": 1, "grad_accum": rows, "loss_scale": 3.0,
                "standardize_labels": True, "checkpoint_every": 0}
    probe = train_function_tag(tiny_model_dir, "qed", qed_dir / "train.parquet", [stage1_dir],
                               tmp_path / "probe", 4, TrainConfig(**settings, head_init="probe"))
    zeros = train_function_tag(tiny_model_dir, "qed", qed_dir / "train.parquet", [stage1_dir],
                               tmp_path / "zeros", 4, TrainConfig(**settings, head_init="zeros"))
    start = probe["probe_init"]
    assert start["rows"] == rows
    assert probe["loss_curve"][0]["loss"] == pytest.approx(start["train_loss"], rel=1e-4)
    assert start["train_loss"] == pytest.approx(start["train_mse"] * 3.0)
    # A zero head starts at the labels' variance (standardised: 1, times loss_scale).
    assert zeros["loss_curve"][0]["loss"] == pytest.approx(3.0 * (rows - 1) / rows, rel=1e-4)
    assert start["train_loss"] < zeros["loss_curve"][0]["loss"]
    head = RegressionHead.load(tmp_path / "probe", _info(tiny_model_dir))
    assert head.linear.bias is not None
    assert json.loads((tmp_path / "probe" / "head.json").read_text())["init"] == "probe"


def test_head_refit_is_the_closed_form_on_the_trained_features(stage1, tiny_model_dir, qed_dir,
                                                                tmp_path):
    from tagllm.evaluate import evaluate_run

    stage1_dir, _ = stage1
    metrics = train_function_tag(tiny_model_dir, "qed", qed_dir / "train.parquet", [stage1_dir],
                                 tmp_path / "run", 4, TrainConfig(**FAST, head_refit=True,
                                                                  checkpoint_every=0),
                                 cpu_bf16_inference="false")
    refit = metrics["head_refit"]
    assert refit["rows"] == len(pd.read_parquet(qed_dir / "train.parquet"))
    # Scored on its own training rows, the saved head has the refit's training error: it was fit
    # to the features of the tags as saved.
    scored = evaluate_run(tiny_model_dir, tmp_path / "run", "qed", qed_dir / "train.parquet",
                          tmp_path / "eval", cpu_bf16_inference="false")
    assert scored["mse"] == pytest.approx(refit["train_mse"], rel=1e-3)
    assert RegressionHead.load(tmp_path / "run", _info(tiny_model_dir)).linear.bias is not None


def test_held_out_text_loss_is_stage1_loss_one_text_at_a_time(tiny_base, stage1):
    """`text_losses` scores each text on its own, padding aside: what `lm_loss` (stage 1's
    objective) gives that text alone (bench/domain_tags.py ranks stage-1 settings by it)."""
    from tagllm.objectives import lm_loss, text_losses
    from tagllm.tags import TagTable
    from tagllm.train import _domain_examples

    stage1_dir, _ = stage1
    tags = TagTable(tiny_base.info)
    tags.load(stage1_dir, names=["SMILES"])
    texts = ["CCO", "c1ccccc1C(=O)O", "CCN(CC)CC"]  # different lengths: padded in one batch
    together = text_losses(tiny_base, tags, _domain_examples(tiny_base, tags, "SMILES", texts))
    with torch.no_grad():
        alone = [float(lm_loss(tiny_base, tags, _domain_examples(tiny_base, tags, "SMILES", [t])))
                 for t in texts]
    assert together.shape == (3,)
    assert together.tolist() == pytest.approx(alone, rel=1e-5)
    assert len(set(alone)) == 3
