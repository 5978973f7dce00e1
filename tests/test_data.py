"""The QED prepare step: canonical SMILES, labels, split, and every rejected row with its reason."""

import json
from pathlib import Path

import pandas as pd
import pytest
from rdkit import Chem
from rdkit.Chem import QED

from tagllm.data.prepare import prepare_qed
from tagllm.data.splits import random_split

DATA = Path(__file__).parent / "data"




def test_report_counts_add_up_and_rejections_are_kept(tmp_path):
    report = prepare_qed(tmp_path, source="smi-file", path=str(DATA / "molecules.smi"),
                         max_chars=40, test_fraction=0.25)
    rejected = pd.read_parquet(tmp_path / "rejected.parquet")
    by_reason = rejected.groupby("reason")["row"].apply(sorted).to_dict()
    assert by_reason["invalid_smiles"] == [41, 42]
    assert by_reason["empty"] == [44]
    assert by_reason["duplicate"] == [43, 45]  # benzene (row 10) and ethanol (row 7) again
    assert report["rows_in"] == 45
    assert report["kept"] + sum(report["rejected"].values()) + report["not_sampled"] == 45
    assert json.loads((tmp_path / "report.json").read_text()) == report
    train = pd.read_parquet(tmp_path / "train.parquet")
    test = pd.read_parquet(tmp_path / "test.parquet")
    assert len(train) + len(test) == report["kept"]
    assert not set(train["smiles"]) & set(test["smiles"])
    row = train.iloc[0]
    assert row["smiles"] == Chem.MolToSmiles(Chem.MolFromSmiles(row["smiles"]))
    assert row["y"] == pytest.approx(QED.qed(Chem.MolFromSmiles(row["smiles"])))


def test_too_long_rejected(tmp_path):
    prepare_qed(tmp_path, source="smi-file", path=str(DATA / "molecules.smi"), max_chars=10)
    rejected = pd.read_parquet(tmp_path / "rejected.parquet")
    assert (rejected["reason"] == "too_long").sum() > 0
    assert pd.read_parquet(tmp_path / "train.parquet")["smiles"].str.len().max() <= 10


def test_subsample_is_counted(tmp_path):
    report = prepare_qed(tmp_path, source="smi-file", path=str(DATA / "molecules.smi"), max_rows=10)
    assert report["kept"] == 10 and report["not_sampled"] > 0


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.smi: SMILES file not found"):
        prepare_qed(tmp_path, source="smi-file", path=str(tmp_path / "nope.smi"))


def test_split_is_deterministic_and_disjoint():
    frame = pd.DataFrame({"x": range(20)})
    a_train, a_test = random_split(frame, 0.2, seed=3)
    _, b_test = random_split(frame, 0.2, seed=3)
    assert a_test.equals(b_test) and len(a_test) == 4
    assert set(a_train["x"]).isdisjoint(a_test["x"])
    with pytest.raises(ValueError, match="test_fraction"):
        random_split(frame, 1.0, seed=0)
