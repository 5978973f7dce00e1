"""The command line: help on every subcommand, and bad input as one clear line with exit code 2."""

import subprocess
import sys

import pandas as pd
import pytest
import torch

from tagllm.cli import build_parser, main

SUBCOMMANDS = ["prepare-model", "download", "prepare-dataset", "train-domain-tag", "train-function-tag",
               "train-baseline", "evaluate", "evaluate-train-mean", "evaluate-nearest-neighbour",
               "build-tables", "plot-figures", "plot-predictions"]


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_help(command):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([command, "--help"])
    assert exit_info.value.code == 0


def test_missing_tag_folder_is_a_clear_error(tiny_model_dir, qed_dir, tmp_path, capsys):
    code = main(["train-function-tag", "--model", str(tiny_model_dir), "--task", "qed",
                 "--data", str(qed_dir / "train.parquet"), "--domain-tags", str(tmp_path / "x"),
                 "--out-dir", str(tmp_path / "out")])
    assert code == 2
    assert "tag file is missing" in capsys.readouterr().err


def test_unknown_task_is_a_clear_error(tiny_model_dir, qed_dir, tmp_path, capsys):
    code = main(["train-function-tag", "--model", str(tiny_model_dir), "--task", "qde",
                 "--data", str(qed_dir / "train.parquet"), "--domain-tags", str(tmp_path),
                 "--out-dir", str(tmp_path / "out")])
    assert code == 2
    assert "unknown task 'qde'" in capsys.readouterr().err


def test_module_entry_point():
    result = subprocess.run([sys.executable, "-m", "tagllm", "--version"], capture_output=True,
                            text=True)
    assert result.returncode == 0 and "tagllm" in result.stdout


def test_model_free_scoring_does_not_import_torch(qed_dir, tmp_path):
    # The workflow runs several of these jobs; torch and transformers would add ~8 s to each.
    probe = ("import runpy, sys; sys.argv = ['tagllm', 'evaluate-train-mean', '--task', 'qed', "
             f"'--train', {str(qed_dir / 'train.parquet')!r}, "
             f"'--test', {str(qed_dir / 'test.parquet')!r}, '--out-dir', {str(tmp_path)!r}]\n"
             "try:\n    runpy.run_module('tagllm', run_name='__main__')\n"
             "except SystemExit as done:\n    assert done.code == 0, done.code\n"
             "print(sorted(m for m in ('torch', 'transformers', 'peft') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
    assert (tmp_path / "metrics.json").is_file()


def test_tag_for_another_model_is_a_clear_error(tiny_model_dir, qed_dir, tmp_path, capsys):
    from tagllm.tags import BaseModelInfo, TagTable

    table = TagTable(BaseModelInfo("some-other-model", 32, 104))
    table.add_new("SMILES", "domain", 1, 4, torch.randn(104, 32), run="elsewhere")
    table.save(tmp_path / "other")
    code = main(["train-function-tag", "--model", str(tiny_model_dir), "--task", "qed",
                 "--data", str(qed_dir / "train.parquet"), "--domain-tags", str(tmp_path / "other"),
                 "--tag-length", "4", "--out-dir", str(tmp_path / "out")])
    assert code == 2
    assert "trained for some-other-model" in capsys.readouterr().err


def test_empty_dataset_is_a_clear_error(tiny_model_dir, tmp_path, capsys):
    empty = tmp_path / "empty.parquet"
    pd.DataFrame({"text": pd.Series([], dtype=str)}).to_parquet(empty)
    code = main(["train-domain-tag", "--model", str(tiny_model_dir), "--data", str(empty),
                 "--column", "text", "--tag", "EN", "--out-dir", str(tmp_path / "out")])
    assert code == 2
    assert "dataset is empty" in capsys.readouterr().err


def test_ablation_without_domain_tags_needs_no_tag_folders(tiny_model_dir, qed_dir, tmp_path):
    code = main(["train-function-tag", "--model", str(tiny_model_dir), "--task", "qed",
                 "--method", "no_domain_tags", "--data", str(qed_dir / "train.parquet"),
                 "--tag-length", "2", "--max-examples", "4", "--batch-size", "4",
                 "--checkpoint-every", "0", "--out-dir", str(tmp_path / "out")])
    assert code == 0
    assert (tmp_path / "out" / "run.json").is_file()


def test_tag_method_without_its_domain_tags_is_a_clear_error(tiny_model_dir, qed_dir, tmp_path,
                                                             capsys):
    code = main(["train-function-tag", "--model", str(tiny_model_dir), "--task", "qed",
                 "--data", str(qed_dir / "train.parquet"), "--out-dir", str(tmp_path / "out")])
    assert code == 2
    assert "domain tag(s) ['SMILES'] not found" in capsys.readouterr().err
