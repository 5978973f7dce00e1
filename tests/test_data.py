"""Prepare steps on embedded and local data: labels, splits, and every rejected row with its reason."""

import json
from pathlib import Path

import pandas as pd
import pytest
from rdkit import Chem
from rdkit.Chem import QED

from tagllm.data.prepare import Settings, prepare_dataset
from tagllm.data.splits import random_split

DATA = Path(__file__).parent / "data"


def prepare_qed(out, **settings):
    return prepare_dataset("qed", out, Settings("smi-file", **settings))




def test_report_counts_add_up_and_rejections_are_kept(tmp_path):
    report = prepare_qed(tmp_path, path=str(DATA / "molecules.smi"), max_chars=40,
                         test_fraction=0.25)
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
    prepare_qed(tmp_path, path=str(DATA / "molecules.smi"), max_chars=10)
    rejected = pd.read_parquet(tmp_path / "rejected.parquet")
    assert (rejected["reason"] == "too_long").sum() > 0
    assert pd.read_parquet(tmp_path / "train.parquet")["smiles"].str.len().max() <= 10


def test_subsample_is_counted(tmp_path):
    report = prepare_qed(tmp_path, path=str(DATA / "molecules.smi"), max_rows=10)
    assert report["kept"] == 10 and report["not_sampled"] > 0


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.smi: SMILES file not found"):
        prepare_qed(tmp_path, path=str(tmp_path / "nope.smi"))


def test_split_is_deterministic_and_disjoint():
    frame = pd.DataFrame({"x": range(20)})
    a_train, a_test = random_split(frame, 0.2, seed=3)
    _, b_test = random_split(frame, 0.2, seed=3)
    assert a_test.equals(b_test) and len(a_test) == 4
    assert set(a_train["x"]).isdisjoint(a_test["x"])
    with pytest.raises(ValueError, match="test_fraction"):
        random_split(frame, 1.0, seed=0)


def test_embedded_descriptor_set_rejects_nonstandard_residues(tmp_path):
    report = prepare_dataset("descriptor", tmp_path, Settings("pyhmmer-proteome", max_rows=20,
                                                              test_fraction=0.25))
    assert report["rows_in"] == 2100 and report["kept"] == 20
    assert report["rejected"]["nonstandard_residue"] > 0
    assert report["kept"] + sum(report["rejected"].values()) + report["not_sampled"] == 2100
    rejected = pd.read_parquet(tmp_path / "rejected.parquet")
    assert rejected.loc[rejected.reason == "nonstandard_residue", "detail"].str.contains("X").any()
    train = pd.read_parquet(tmp_path / "train.parquet")
    assert not train["sequence"].str.contains("[^ACDEFGHIKLMNPQRSTVWY]").any()


def test_fasta_file_source(tmp_path):
    fasta = tmp_path / "p.fasta"
    fasta.write_text(">a\nMKTAYIAKQR*\n>b\nmkvlaagg\n>c\n\n>d\nMKTAYIAKQR\n>e\nMKBZ\n")
    report = prepare_dataset("descriptor", tmp_path / "out",
                             Settings("fasta-file", path=str(fasta), test_fraction=0.5))
    assert report["rejected"] == {"duplicate": 1, "empty": 1, "nonstandard_residue": 1}
    kept = pd.concat([pd.read_parquet(tmp_path / "out" / f"{s}.parquet") for s in ("train", "test")])
    assert sorted(kept["sequence"]) == ["MKTAYIAKQR", "MKVLAAGG"]  # stop removed, upper-cased


def test_django_translation_and_text_are_disjoint_by_message(tmp_path):
    settings = dict(test_fraction=0.2, seed=0)
    prepare_dataset("translation", tmp_path / "tr", Settings("django", test_rows=5, **settings))
    prepare_dataset("text", tmp_path / "fr", Settings("django", lang="fr", **settings))
    train = pd.read_parquet(tmp_path / "tr" / "train.parquet")
    test = pd.read_parquet(tmp_path / "tr" / "test.parquet")
    text = pd.read_parquet(tmp_path / "fr" / "train.parquet")
    assert set(zip(test.src_lang, test.tgt_lang, strict=True)) >= {("it", "fr"), ("es", "pt"), ("pt", "es")}
    trained = set(zip(train.src_lang, train.tgt_lang, strict=True))
    assert not {"es", "pt"} & set(train.src_lang)  # unseen languages: never trained
    assert ("it", "fr") not in trained and ("en", "it") in trained  # IT-FR: an unseen pair
    test_french = set(test.loc[test.tgt_lang == "fr", "tgt"])
    assert test_french and not test_french & set(text["text"])


def test_django_test_rows_are_a_seeded_sample_not_the_catalogs_first_messages(tmp_path):
    def sources(name: str, **settings) -> list[str]:
        prepare_dataset("translation", tmp_path / name,
                        Settings("django", test_fraction=0.2, **settings))
        test = pd.read_parquet(tmp_path / name / "test.parquet")
        return test.loc[(test.src_lang == "en") & (test.tgt_lang == "fr"), "src"].tolist()

    every = sources("all", seed=0)
    sample = sources("a", seed=0, test_rows=12)
    assert len(sample) == 12 and set(sample) <= set(every)
    # The catalogs are sorted by message: their head is placeholders and punctuation.
    assert sample != every[:12]
    assert sources("b", seed=0, test_rows=12) == sample


def test_synthetic_pairs_are_deterministic_and_named(tmp_path):
    qed_report = prepare_qed(tmp_path / "qed", path=str(DATA / "molecules.smi"), test_fraction=0.25)
    assert qed_report["kept"] > 10
    molecules = [str(tmp_path / "qed" / "train.parquet")]
    runs = [prepare_dataset("dc", tmp_path / f"dc{i}", Settings("synthetic", n_pairs=30,
                                                                  molecules=molecules))
            for i in range(2)]
    first, second = (pd.read_parquet(tmp_path / f"dc{i}" / "train.parquet") for i in range(2))
    assert first.equals(second) and runs[0]["label"] == "dc_synthetic"
    assert not (first.smiles1 == first.smiles2).any()
    with pytest.raises(ValueError, match="takes source"):
        prepare_dataset("dc", tmp_path / "x", Settings("rdkit-nci"))
