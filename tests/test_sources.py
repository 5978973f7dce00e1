"""Real-source readers on small files in each source's real format, TDC's split logic, downloads."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from paper_fixtures import make_flores_tarball, mirror_path, write_opus

from tagllm.data import sources, tdc
from tagllm.data.download import DownloadError, fetch, mirrored, sha256_of
from tagllm.data.kinds import required_downloads
from tagllm.data.labels import blosum1_of_sequence, compute_labels, qed_of_smiles
from tagllm.data.prepare import Settings, prepare_dataset
from tagllm.data.sources import extract_flores
from tagllm.data.text import read_flores, read_opus


# ----------------------------------------------------------------------------- downloads
def test_fetch_file_url_writes_and_records(tmp_path):
    source = tmp_path / "remote.bin"
    source.write_bytes(b"x" * 100)
    record = fetch(source.as_uri(), tmp_path / "out" / "file.bin", min_bytes=10, retries=1)
    assert (tmp_path / "out" / "file.bin").read_bytes() == b"x" * 100
    assert record["sha256"] == sha256_of(source) and record["bytes"] == 100
    # Present and recorded: verified, not fetched again (the source may be gone by then).
    source.unlink()
    assert fetch(source.as_uri(), tmp_path / "out" / "file.bin", retries=1)["bytes"] == 100


def test_a_mirror_serves_each_url_under_its_host_and_path(tmp_path, monkeypatch):
    assert mirrored("https://huggingface.co/datasets/x/all.parquet", "") == \
        "https://huggingface.co/datasets/x/all.parquet"
    assert mirrored("https://dataverse.harvard.edu/api/access/datafile/4742443",
                    "file:///srv/mirror/") == \
        "file:///srv/mirror/dataverse.harvard.edu/api/access/datafile/4742443"
    mirror = tmp_path / "mirror"
    make_flores_tarball(mirror_path(mirror, sources.FLORES_URL), n=2)
    # The download's own checks apply to what a mirror serves: this tarball is too small.
    with pytest.raises(DownloadError, match="expected at least 1000000"):
        sources.download_source("flores101", tmp_path / "a", retries=1, mirror=mirror.as_uri())
    monkeypatch.setattr(sources, "LARGE_FILE_MIN_BYTES", 100)
    sources.download_source("flores101", tmp_path / "b", retries=1, mirror=mirror.as_uri())
    record = json.loads((tmp_path / "b" / f"{sources.FLORES_TARBALL}.source.json").read_text())
    assert record["url"] == f"{mirror.as_uri()}/dl.fbaipublicfiles.com/flores101/dataset/" \
                            "flores101_dataset.tar.gz"
    assert read_flores(tmp_path / "b" / "devtest", "ru") == ["rus sentence 0", "rus sentence 1"]


def test_fetch_rejects_zero_byte_and_checksum_mismatch(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(DownloadError, match="got 0 bytes"):
        fetch(empty.as_uri(), tmp_path / "a.csv", retries=2, backoff=0)
    assert not (tmp_path / "a.csv").exists()  # nothing half-written
    data = tmp_path / "data.csv"
    data.write_text("a,b\n")
    with pytest.raises(DownloadError, match="SHA-256 mismatch"):
        fetch(data.as_uri(), tmp_path / "b.csv", sha256="0" * 64, retries=1)


def test_fetch_offline_is_a_clear_error(tmp_path):
    with pytest.raises(DownloadError, match=r"offline.*place it at"):
        fetch("http://127.0.0.1:9/file.csv", tmp_path / "c.csv", retries=2, backoff=0,
              timeout=2)


# ----------------------------------------------------------------------------- text sources
def test_read_opus_struct_column(tmp_path):
    write_opus(tmp_path / "p.parquet", "en", "fr", [("Hello", "Bonjour"), ("Yes", "Oui")])
    frame = read_opus(tmp_path / "p.parquet", "fr", "en")
    assert frame.to_dict("records") == [{"src": "Bonjour", "tgt": "Hello"},
                                        {"src": "Oui", "tgt": "Yes"}]
    with pytest.raises(ValueError, match="not in this pair"):
        read_opus(tmp_path / "p.parquet", "de", "en")


def test_flores_tarball_extraction(tmp_path):
    make_flores_tarball(tmp_path / "f.tar.gz")
    extract_flores(tmp_path / "f.tar.gz", tmp_path / "flores101")
    assert read_flores(tmp_path / "flores101" / "devtest", "el") == [
        "ell sentence 0", "ell sentence 1", "ell sentence 2"]


def test_translation_from_opus_and_flores(tmp_path):
    downloads = tmp_path / "downloads"
    for pair in ("en-fr", "en-ru", "de-en", "en-it", "el-en"):
        a, b = pair.split("-")
        write_opus(downloads / f"opus100_{pair}" / "train.parquet", a, b,
                   [(f"{a} {i}", f"{b} {i}") for i in range(4)] + [(" ", f"{b} x")])
    make_flores_tarball(tmp_path / "f.tar.gz", n=5)
    extract_flores(tmp_path / "f.tar.gz", downloads / "flores101")
    report = prepare_dataset("translation", tmp_path / "out",
                             Settings("opus100", path=str(downloads), test_rows=2))
    train = pd.read_parquet(tmp_path / "out" / "train.parquet")
    test = pd.read_parquet(tmp_path / "out" / "test.parquet")
    assert len(train) == 5 * 4 * 2  # both directions of every valid pair
    assert set(zip(train.src_lang, train.tgt_lang, strict=True)) >= {("en", "fr"), ("fr", "en"), ("el", "en")}
    assert report["rejected"] == {"empty": 5}
    assert len(test) == 10 * 2 and set(test.setting) == {"seen", "unseen_pair", "unseen_languages"}
    assert report["kept"] + sum(report["rejected"].values()) + report["not_sampled"] == \
        report["rows_in"]


def test_required_downloads_cover_the_five_sources():
    assert required_downloads("translation", "opus100")[-1] == "flores101"
    assert required_downloads("text", "opus100", "pt") == ["opus100_en-pt"]
    assert required_downloads("qed", "binding-affinity") == ["binding_affinity"]
    assert required_downloads("dc", "tdc") == ["tdc_drugcomb"]
    assert required_downloads("ba", "tdc") == ["tdc_bindingdb_patent"]
    assert required_downloads("qed", "rdkit-nci") == []


# ----------------------------------------------------------------------------- jglaser
def test_binding_affinity_molecules_and_proteins(tmp_path):
    pd.DataFrame({
        "seq": ["MKTAYIAKQR", "MKTAYIAKQR", "MKXA", "A" * 600, "MKVLAAGG"],
        "smiles": ["CCO", "CCO", "C1CC", "c1ccccc1", "CCN"],
        "smiles_can": ["CCO", "OCC", "C1CC", "c1ccccc1", "CCN"],
        "affinity": [1.0, 2.0, 3.0, 4.0, 5.0], "neg_log10_affinity_M": [5.0, 6.0, 7.0, 8.0, 9.0],
    }).to_parquet(tmp_path / "all.parquet")
    qed = prepare_dataset("qed", tmp_path / "qed", Settings("binding-affinity", path=str(tmp_path),
                                                            test_fraction=0.5))
    assert qed["rejected"] == {"duplicate": 1, "invalid_smiles": 1}
    proteins = prepare_dataset("descriptor", tmp_path / "desc",
                               Settings("binding-affinity", path=str(tmp_path), max_chars=512,
                                        test_fraction=0.5))
    assert proteins["rejected"] == {"duplicate": 1, "nonstandard_residue": 1, "too_long": 1}


# ----------------------------------------------------------------------------- TDC
def bindingdb_frame():
    rows = []
    for year in (2012, 2013, 2014, 2019, 2021):
        for i in range(10):
            rows.append({"ID1": f"d{year}{i}", "X1": "CCO", "ID2": f"t{i}", "X2": "MKTAYIAKQR",
                         "Y": float(i), "Year": year})
    return pd.DataFrame(rows)


def test_bindingdb_reader_accepts_raw_and_tab_files(tmp_path):
    bindingdb_frame().to_csv(tmp_path / "raw.csv", index=False)
    bindingdb_frame().to_csv(tmp_path / "raw.tab", index=False, sep="\t")
    for name in ("raw.csv", "raw.tab"):
        frame = tdc.read_bindingdb_patent(tmp_path / name)
        assert list(frame.columns) == ["Drug_ID", "Drug", "Target_ID", "Target", "Y", "Year"]
    pd.DataFrame({"a": [1]}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ValueError, match="missing column"):
        tdc.read_bindingdb_patent(tmp_path / "bad.csv")


def test_year_split_pins_tdc_behaviour():
    frame = bindingdb_frame().rename(columns=tdc.RAW_DTI_COLUMNS)
    train, valid, test, outside = tdc.year_split(frame, seed=1)
    assert set(test["Year"]) == {2019, 2021} and set(outside["Year"]) == {2012}
    assert set(train["Year"]) | set(valid["Year"]) == {2013, 2014}
    # TDC re-seeds per year: the validation mask is the same for each (equal-sized) year.
    np.random.seed(1)
    mask = np.random.rand(10) < 0.8
    assert len(train) == 2 * mask.sum() and len(valid) == 2 * (~mask).sum()
    expected = frame[frame.Year == 2013][mask].reset_index(drop=True)
    assert train[train.Year == 2013].reset_index(drop=True).equals(expected)


def drugcomb_frame():
    rows = []
    for line in ("c1", "c2"):
        for i in range(10):
            rows.append({"Drug1_ID": f"a{i}", "Drug1": "CCO", "Drug2_ID": f"b{i}", "Drug2": "CC",
                         "Cell_Line_ID": line, "CellLine": [0.1], "CSS": float(i),
                         "Synergy_ZIP": 0.0, "Synergy_Bliss": 0.0, "Synergy_Loewe": 0.0,
                         "Synergy_HSA": 0.0})
    rows.append({"Drug1_ID": "x", "Drug1": "CCO", "Drug2_ID": "y", "Drug2": "CC",
                 "Cell_Line_ID": "c1", "CellLine": [0.1], "CSS": 1.0, "Synergy_ZIP": 0.0,
                 "Synergy_Bliss": 0.0, "Synergy_Loewe": 0.0, "Synergy_HSA": 0.0})
    return pd.DataFrame(rows)


def test_combination_split_holds_out_whole_pairs_deterministically(tmp_path):
    drugcomb_frame().to_pickle(tmp_path / "drugcomb.pkl")
    frame = tdc.read_drugcomb(tmp_path / "drugcomb.pkl", "CSS")
    train, valid, test = tdc.combination_split(frame, seed=3)
    pairs = lambda f: set(f.Drug1_ID + "," + f.Drug2_ID)  # noqa: E731
    assert len(pairs(test)) == int(int(len(frame) * 0.2) / 2) == 2
    assert not pairs(train) & pairs(test) and valid.empty
    assert "x,y" in pairs(train)  # only pairs present in every cell line can be held out
    assert len(test) == 4  # both cell lines of each held-out pair
    again = tdc.combination_split(frame, seed=3)[2]
    assert again.equals(test)
    with pytest.raises(ValueError, match="label must be one of"):
        tdc.read_drugcomb(tmp_path / "drugcomb.pkl", "css")


def test_tdc_prepare_steps(tmp_path):
    frame = bindingdb_frame()
    frame.loc[10, "X1"] = "not smiles"  # rows of 2013 (train/valid); rows 0-9 are 2012 (no split)
    frame.loc[11, "X2"] = "MKXB"
    frame.loc[12, "Y"] = float("nan")
    frame.loc[0, "X1"] = "not smiles"  # outside every split: not sampled, so never validated
    frame.to_csv(tmp_path / "bindingdb_patent.csv", index=False)
    report = prepare_dataset("ba", tmp_path / "ba", Settings("tdc", path=str(tmp_path)))
    assert report["rejected"] == {"invalid_smiles": 1, "nan_label": 1, "nonstandard_residue": 1}
    assert report["kept"] + 3 + report["not_sampled"] == report["rows_in"] == 50
    assert report["not_sampled"] == 10
    assert report["rejected_by_split"]["train"] + report["rejected_by_split"]["valid"] == 3
    assert report["test_coverage"] == {"rows": 20, "kept": 20, "rejected": 0, "fraction": 1.0}
    rejected = pd.read_parquet(tmp_path / "ba" / "rejected.parquet")
    assert sorted(rejected["row"]) == [11, 12, 13]  # the CSV's data rows, numbered from 1
    drugcomb_frame().to_pickle(tmp_path / "drugcomb.pkl")
    # A pickle placed by hand is refused unless trusted (tests/test_bad_input_data.py).
    report = prepare_dataset("dc", tmp_path / "dc",
                             Settings("tdc", path=str(tmp_path), trust_pickle=True))
    assert report["splits"]["test"] == 4 and "valid" not in report["splits"]


# ----------------------------------------------------------------------------- labels
def test_labels_by_name_and_in_parallel():
    import peptides

    descriptors = peptides.Peptide("MKTAYIAKQR").descriptors()
    assert blosum1_of_sequence("MKTAYIAKQR") == pytest.approx(descriptors["BLOSUM1"])
    values = ["CCO", "c1ccccc1", "CC(=O)O"] * 4
    assert compute_labels("qed", values, workers=2) == [qed_of_smiles(v) for v in values]
    assert math.isnan(qed_of_smiles("not smiles"))
