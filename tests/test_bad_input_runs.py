"""Bad input to training and evaluation (issue 16): each class fails with one line naming the file,
row or flag and the reason (or is handled), a diverging run saves nothing, a corrupt checkpoint is
set aside, and result files are strict JSON with the user's umask."""

import json
import logging
import math
import os

import numpy as np
import pandas as pd
import pytest
import torch

from tagllm import checkpoint
from tagllm.atomic import write_json, write_text
from tagllm.cli import main
from tagllm.errors import UserError
from tagllm.loop import NonFiniteError, TrainConfig, optimise
from tagllm.report import build_tables
from tagllm.tags import BaseModelInfo, TagTable
from tagllm.train import read_table


def train_args(model, data, out, *extra):
    """A train-function-tag run that takes a second or two on the tiny model; float32 forced, so
    that two runs compare bit for bit (`auto` times the CPU, which a busy machine can tip)."""
    return ["train-function-tag", "--model", str(model), "--task", "qed", "--method",
            "no_domain_tags", "--data", str(data), "--tag-length", "2", "--max-examples", "8",
            "--batch-size", "4", "--grad-accum", "1", "--checkpoint-every", "1",
            "--cpu-bf16-inference", "false", "--out-dir", str(out), *extra]


def one_line_error(capsys, code: int) -> str:
    """The error main printed: exit 2, one line, no traceback."""
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    return lines[0]


def strict_json(path):
    return json.loads(path.read_text(), parse_constant=lambda c: 1 / 0)


@pytest.fixture()
def qed_frame(qed_dir):
    return pd.read_parquet(qed_dir / "train.parquet").head(8)


# --------------------------------------------------------------------------- item 2: not finite
def test_infinite_labels_are_refused_with_file_and_row(tiny_model_dir, qed_frame, tmp_path, capsys):
    data = tmp_path / "inf.parquet"
    qed_frame.assign(y=[*qed_frame.y[:3], math.inf, *qed_frame.y[4:]]).to_parquet(data)
    line = one_line_error(capsys, main(train_args(tiny_model_dir, data, tmp_path / "out")))
    assert f"{data}: column 'y': infinite labels in rows 4 (counting from 1)" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flag, value", [("--lr", "inf"), ("--lr", "nan"), ("--head-lr", "inf"),
                                         ("--loss-scale", "inf"), ("--weight-decay", "-1")])
def test_non_finite_or_negative_hyper_parameters_are_refused(tiny_model_dir, qed_dir, tmp_path,
                                                             capsys, flag, value):
    code = main(train_args(tiny_model_dir, qed_dir / "train.parquet", tmp_path / "out", flag, value))
    name = flag[2:].replace("-", "_")
    assert f"invalid training config: {name} must be" in one_line_error(capsys, code)


def test_a_diverging_run_saves_nothing(tiny_model_dir, qed_dir, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(train_args(tiny_model_dir, qed_dir / "train.parquet", out, "--lr", "1e30"))
    line = one_line_error(capsys, code)
    assert f"{out}: " in line and "at optimiser step 2" in line and "nothing was saved" in line
    assert not any(out.glob("*.safetensors")) and not (out / "run.json").exists()


def test_the_loss_and_parameters_are_checked_every_step(tmp_path):
    def run(loss_of, lr: float, folder, start: float = 1.0):
        weight = torch.nn.Parameter(torch.full((1,), start, dtype=torch.float64))
        return optimise([{"params": [weight]}], {"w": weight}, 4,
                        lambda _epoch, _batch: (loss_of(weight), 1), lambda _epoch: [0, 1, 2, 3],
                        TrainConfig(lr=lr, grad_accum=1, warmup_ratio=0, checkpoint_every=1),
                        folder, "fp")

    with pytest.raises(NonFiniteError, match=r"nan-run: the training loss is nan at optimiser "
                                             r"step 1 \(epoch 1\)"):
        run(lambda w: w.sum() * math.nan, 1e-3, tmp_path / "nan-run")
    assert not (tmp_path / "nan-run" / checkpoint.CHECKPOINT).exists()
    # A finite loss whose steps (of about lr) overflow the weight: 1.70e308, 1.79e308, then inf
    # (the largest double is 1.797e308).
    with pytest.raises(NonFiniteError, match="w stopped being finite at optimiser step 3"):
        run(lambda w: -w.sum(), 1e307, tmp_path / "huge-lr", start=1.6e308)
    saved = torch.load(tmp_path / "huge-lr" / checkpoint.CHECKPOINT, weights_only=True)
    assert saved["step"] == 2 and torch.isfinite(saved["params"]["w"]).all()


def test_non_finite_tags_are_never_written(tmp_path):
    table = TagTable(BaseModelInfo("m", 4, 10))
    table.add_new("QED", "function", 2, 2, torch.randn(10, 4), run="x")
    with torch.no_grad():
        table.tags["QED"][0, 0] = math.inf
    with pytest.raises(UserError, match=r"NaN or infinite values in tag <QED>; not saved"):
        table.save(tmp_path)
    assert not list(tmp_path.iterdir())


# --------------------------------------------------------------------------- item 4: messages
def test_tag_length_zero_is_refused(tiny_model_dir, qed_dir, tmp_path, capsys):
    args = train_args(tiny_model_dir, qed_dir / "train.parquet", tmp_path / "out")
    args[args.index("--tag-length") + 1] = "0"
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    assert "argument --tag-length: must be >= 1, not 0" in capsys.readouterr().err
    table = TagTable(BaseModelInfo("m", 4, 10))
    with pytest.raises(UserError, match="tag length must be a whole number >= 1"):
        table.add_new("QED", "function", 2, 0, torch.randn(10, 4), run="x")


def test_string_label_column_is_refused(tiny_model_dir, qed_frame, tmp_path, capsys):
    data = tmp_path / "text-labels.parquet"
    qed_frame.assign(y=qed_frame.y.astype(str)).to_parquet(data)
    line = one_line_error(capsys, main(train_args(tiny_model_dir, data, tmp_path / "out")))
    assert f"{data}: column 'y' holds" in line and "not numbers" in line


@pytest.mark.parametrize("model, device, expected", [
    ("missing", "cpu", "missing: model folder not found"),
    ("empty", "cpu", "empty: not a model folder (no config.json)"),
    ("tiny", "gpu", "--device 'gpu': not a device name"),
    ("tiny", "cuda:99", "--device 'cuda:99':"),
])
def test_model_and_device_errors_are_one_line(tiny_model_dir, qed_dir, tmp_path, capsys, model,
                                              device, expected):
    (tmp_path / "empty").mkdir()
    folder = tiny_model_dir if model == "tiny" else tmp_path / model
    code = main(train_args(folder, qed_dir / "train.parquet", tmp_path / "out", "--device", device))
    assert expected in one_line_error(capsys, code)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_one_line(tiny_model_dir, qed_dir, tmp_path, capsys):
    code = main(train_args(tiny_model_dir, qed_dir / "train.parquet", tmp_path / "out",
                           "--device", "cuda"))
    assert "CUDA is not available on this machine" in one_line_error(capsys, code)


def test_out_dir_under_a_file_is_one_line(tiny_model_dir, qed_dir, tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    code = main(train_args(tiny_model_dir, qed_dir / "train.parquet", tmp_path / "afile" / "run"))
    assert f"--out-dir {tmp_path}/afile/run: {tmp_path}/afile is a file, not a folder" in \
        one_line_error(capsys, code)
    with pytest.raises(UserError, match="afile is a file, not a folder"):
        write_json(tmp_path / "afile" / "sub" / "metrics.json", {})


def test_bugs_keep_their_traceback(monkeypatch, capsys):
    """A ValueError from another library is a bug, not bad input: it is not turned into a line."""
    def buggy(_args):
        np.zeros(2).reshape(3)

    monkeypatch.setattr("tagllm.cli.run", buggy)
    with pytest.raises(ValueError, match="cannot reshape"):
        main(["build-tables", "--metrics", "m.json", "--out-dir", "x"])

    def refused(_args):
        raise UserError("some.parquet: row 3: bad")

    monkeypatch.setattr("tagllm.cli.run", refused)
    assert "some.parquet: row 3: bad" in one_line_error(
        capsys, main(["build-tables", "--metrics", "m.json", "--out-dir", "x"]))


def _corrupt(kind: str, path, good_state: dict) -> None:
    if kind == "garbage":
        path.write_bytes(b"not a checkpoint at all")
    elif kind == "truncated":
        torch.save(good_state, path)
        path.write_bytes(path.read_bytes()[:300])
    elif kind == "pickle":  # an object weights_only refuses (torch's text advises unsafe loading)
        torch.save({"step": logging.getLogger("x")}, path)
    else:  # a readable file that is not a checkpoint
        torch.save(torch.zeros(3), path)


@pytest.mark.parametrize("kind", ["garbage", "truncated", "pickle", "tensor"])
def test_a_corrupt_checkpoint_is_set_aside_and_the_run_restarts(tiny_model_dir, qed_dir, tmp_path,
                                                               caplog, kind):
    clean, out = tmp_path / "clean", tmp_path / "out"
    assert main(train_args(tiny_model_dir, qed_dir / "train.parquet", clean)) == 0
    out.mkdir()
    _corrupt(kind, out / checkpoint.CHECKPOINT, {"params": {"w": torch.zeros(1000)}})
    with caplog.at_level(logging.WARNING, logger="tagllm"):
        assert main(train_args(tiny_model_dir, qed_dir / "train.parquet", out)) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(f"moved it to {out}/checkpoint.pt.corrupt and starting from scratch" in w
               for w in warnings), warnings
    assert not any("weights_only" in w for w in warnings)
    assert (out / "checkpoint.pt.corrupt").is_file()
    assert (out / "tags.safetensors").read_bytes() == (clean / "tags.safetensors").read_bytes()


# --------------------------------------------------------------------------- item 6: hand-made data
@pytest.mark.parametrize("column, value, reason", [
    ("smiles", "C1CC(", "RDKit cannot parse the SMILES 'C1CC('"),
    ("smiles", "", "empty text"),
    ("smiles", "   ", "empty text"),
    ("smiles", "CCé", "non-ASCII character 'é' in a SMILES"),
    ("smiles", None, "missing value"),
    ("smiles", "C" * 20_000, "SMILES of 20000 characters (at most 10000)"),
    ("y", None, "NaN labels in rows 3"),
    ("y", -math.inf, "infinite labels in rows 3"),
])
def test_hand_made_rows_fail_with_file_row_and_reason(qed_frame, tmp_path, column, value, reason):
    data = tmp_path / "hand.parquet"
    values = qed_frame[column].astype(object).tolist()
    values[2] = value
    qed_frame.assign(**{column: values}).to_parquet(data)
    with pytest.raises(UserError) as error:
        read_table(data, ["smiles", "y"])
    message = str(error.value)
    assert message.startswith(f"{data}: column '{column}'") and reason in message
    assert "rows 3 " in message and "\n" not in message


@pytest.mark.parametrize("frame, reason", [
    (pd.DataFrame({"smiles": [1, 2], "y": [0.1, 0.2]}), "column 'smiles' holds int64 values, not text"),
    (pd.DataFrame({"smiles": ["CC", "CO"], "y": [True, False]}), "column 'y' holds bool values"),
    (pd.DataFrame({"smiles": pd.Series([], dtype=str), "y": pd.Series([], dtype=float)}),
     "dataset is empty"),
    (pd.DataFrame({"sequence": ["MKV", "mkv"], "y": [0.1, 0.2]}),
     "rows 2 (counting from 1): protein has 'kmv', not only the 20 standard residues"),
    (pd.DataFrame({"src_lang": ["en", "xx"], "src": ["a", "b"]}), "unknown language code 'xx'"),
])
def test_wrong_types_and_values_are_refused(tmp_path, frame, reason):
    data = tmp_path / "hand.parquet"
    frame.to_parquet(data)
    with pytest.raises(ValueError, match=r"hand\.parquet: ") as error:
        read_table(data, list(frame.columns))
    assert reason in str(error.value)


def test_a_file_that_is_not_parquet_is_one_line(tiny_model_dir, tmp_path, capsys):
    data = tmp_path / "train.parquet"
    data.write_text("smiles,y\nCC,0.1\n")
    line = one_line_error(capsys, main(train_args(tiny_model_dir, data, tmp_path / "out")))
    assert f"{data}: not a readable Parquet file" in line


def test_evaluation_validates_its_test_file(qed_dir, qed_frame, tmp_path, capsys):
    test = tmp_path / "test.parquet"
    qed_frame.assign(smiles=["CC", "not a smiles", *qed_frame.smiles[2:]]).to_parquet(test)
    code = main(["evaluate-nearest-neighbour", "--task", "qed", "--train",
                 str(qed_dir / "train.parquet"), "--test", str(test), "--out-dir",
                 str(tmp_path / "eval")])
    assert f"{test}: column 'smiles', rows 2 (counting from 1): RDKit cannot parse" in \
        one_line_error(capsys, code)
    assert not (tmp_path / "eval").exists()


def test_prepared_data_pass_unchanged(qed_dir):
    raw = pd.read_parquet(qed_dir / "train.parquet")
    pd.testing.assert_frame_equal(read_table(qed_dir / "train.parquet", ["smiles", "y"]), raw)


# --------------------------------------------------------------------------- item 9: files
@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_result_files_keep_the_umask(tmp_path, umask):
    from tagllm import atomic

    before = os.umask(umask)
    atomic._file_mode.cache_clear()
    try:
        write_json(tmp_path / "a.json", {"x": 1})
        write_text(tmp_path / "b.md", "x")
        table = TagTable(BaseModelInfo("m", 4, 10))
        table.add_new("QED", "function", 2, 2, torch.randn(10, 4), run="x")
        table.save(tmp_path / "tags")  # safetensors replaces the file it writes
        for path in [tmp_path / "a.json", tmp_path / "b.md", *(tmp_path / "tags").iterdir()]:
            assert path.stat().st_mode & 0o777 == 0o666 & ~umask, path
    finally:
        os.umask(before)
        atomic._file_mode.cache_clear()


def test_json_is_strict_with_null_for_undefined_numbers(tmp_path):
    write_json(tmp_path / "m.json", {"pearson": math.nan, "inf": -math.inf, "np": np.float32("nan"),
                                     "t": torch.tensor(2.5), "path": tmp_path, "n": [1, (2.0,)]})
    assert strict_json(tmp_path / "m.json") == {"pearson": None, "inf": None, "np": None, "t": 2.5,
                                                "path": str(tmp_path), "n": [1, [2.0]]}


def test_every_json_of_a_run_and_its_evaluation_is_strict(tiny_model_dir, qed_dir, tmp_path):
    assert main(train_args(tiny_model_dir, qed_dir / "train.parquet", tmp_path / "run")) == 0
    # The training mean predicts a constant: its correlations are undefined (null).
    assert main(["evaluate-train-mean", "--task", "qed", "--train", str(qed_dir / "train.parquet"),
                 "--test", str(qed_dir / "test.parquet"), "--out-dir", str(tmp_path / "eval")]) == 0
    files = sorted(tmp_path.rglob("*.json"))
    assert len(files) >= 5
    for path in files:
        strict_json(path)
    metrics = strict_json(tmp_path / "eval" / "metrics.json")
    assert metrics["pearson"] is None and metrics["spearman"] is None
    # The tables read null as an undefined number ("-"), as they read NaN before.
    frame = build_tables([tmp_path / "eval" / "metrics.json"], [tmp_path / "run" / "metrics.json"],
                         tmp_path / "tables", "tiny")
    pearson = frame[frame.metric == "pearson"].value
    assert len(pearson) == 1 and math.isnan(pearson.iloc[0])
    assert "| qed | train_mean | pearson | - |" in (tmp_path / "tables" / "summary.md").read_text()
