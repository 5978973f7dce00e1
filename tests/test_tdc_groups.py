"""TDC's benchmark groups (source tdc-group): downloads of the real archive layouts, the test files
used exactly as they are, TDC's validation splits (pinned on fixtures), rows rejected after the
split counted per split, TDC's per-tissue MAE and PCC, and OPUS-100 from one recorded commit.

The pinned split indices below were cross-checked once against PyTDC 1.1.15's own
`create_group_split` and `create_combination_split` (given the same candidate order); they are
literals here so that the tests need no PyTDC."""

import dataclasses
import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from paper_fixtures import dc_group_files, dti_group_files, mirror_path, pickled, write_opus, write_zip
from scipy import stats

from tagllm.data import sources, tdc
from tagllm.data.download import DownloadError
from tagllm.data.kinds import required_downloads
from tagllm.data.prepare import Settings, prepare_dataset
from tagllm.errors import UserError
from tagllm.metrics import mae_by_group, regression_metrics, target_class_metrics

DTI_TRAIN, DTI_TEST = sources.TDC_GROUPS["tdc_dti_dg_group"].members
DC_TRAIN, DC_TEST = sources.TDC_GROUPS["tdc_drugcombo_group"].members


# ----------------------------------------------------------------------------- fixtures
def dti_train_val() -> pd.DataFrame:
    """TDC's DTI-DG columns; years interleaved (TDC groups them in order of first appearance);
    row 5 (file row number, from 1) has an invalid SMILES."""
    years = [2014, 2013, 2014, 2013, 2013, 2015, 2014, 2013, 2015, 2013, 2014, 2013]
    return pd.DataFrame([{"Drug_ID": 100 + i, "Drug": "not smiles" if i == 4 else "CCO",
                          "Target_ID": f"P{i % 3}", "Target": "MKTAYIAKQR", "Y": 5.0 + i / 10,
                          "Year": year} for i, year in enumerate(years)])


def dti_test() -> pd.DataFrame:
    rows = [{"Drug_ID": 900 + i, "Drug": "CCN", "Target_ID": "P9", "Target": "MKVLAAGG",
             "Y": 6.0 + i, "Year": 2019 + i % 3} for i in range(6)]
    rows[3]["Target"] = "MKXB"  # a test row our validation rejects
    return pd.DataFrame(rows)


def dc_train_val() -> pd.DataFrame:
    """TDC's DrugCombo columns (CellLine is TDC's cell-line feature vector): 12 pairs in both
    cell lines, 4 pairs in c1 only (never candidates for validation)."""
    rows = [{"Drug1_ID": f"a{i}", "Drug1": "CCO", "Drug2_ID": f"b{i}", "Drug2": "CC",
             "CellLine": np.array([0.1, 0.2]), "Cell_Line_ID": line, "Y": float(i)}
            for line in ("c1", "c2") for i in range(12)]
    rows += [{"Drug1_ID": f"x{j}", "Drug1": "CCO", "Drug2_ID": f"y{j}", "Drug2": "CC",
              "CellLine": np.array([0.1, 0.2]), "Cell_Line_ID": "c1", "Y": 1.0} for j in range(4)]
    return pd.DataFrame(rows)


def dc_test() -> pd.DataFrame:
    tissues = ["breast", "lung", "breast", "skin", "lung", "breast"]
    rows = [{"Drug1_ID": f"t{i}", "Drug1": "CCO", "Drug2_ID": f"u{i}", "Drug2": "CCN",
             "CellLine": np.array([0.3, 0.4]), "Cell_Line_ID": f"c{i % 2 + 1}",
             "target_class": tissue, "Y": 10.0 * i} for i, tissue in enumerate(tissues)]
    rows[4]["Drug2"] = "C1CC"  # unclosed ring: rejected
    return pd.DataFrame(rows)


def group_files(source: str) -> dict[str, bytes]:
    if source == "tdc_dti_dg_group":
        return dti_group_files(dti_train_val(), dti_test())
    return dc_group_files(dc_train_val(), dc_test())  # with another benchmark's file


@pytest.fixture()
def dataverse(tmp_path, monkeypatch) -> Path:
    """A file:// stand-in for Dataverse serving both benchmark-group archives (real layouts)."""
    remote = tmp_path / "remote"
    for source, group in sources.TDC_GROUPS.items():
        write_zip(remote / str(group.file_id), group_files(source))
        monkeypatch.setitem(sources.TDC_GROUPS, source, dataclasses.replace(group, min_bytes=100))
    monkeypatch.setattr(sources, "DATAVERSE", remote.as_uri())
    return remote


@pytest.fixture()
def downloads(tmp_path, dataverse) -> Path:
    """resources/downloads/ as the download rule lays it out: one folder per source."""
    root = tmp_path / "downloads"
    for source in sources.TDC_GROUPS:
        sources.download_source(source, root / source, retries=1)
    return root


# ----------------------------------------------------------------------------- downloads
def test_required_downloads_name_the_groups():
    assert required_downloads("dc", "tdc-group") == ["tdc_drugcombo_group"]
    assert required_downloads("ba", "tdc-group") == ["tdc_dti_dg_group"]
    assert required_downloads("dc", "tdc") == ["tdc_drugcomb"]  # the raw datasets stay


def test_download_extracts_the_members_with_provenance(tmp_path, downloads):
    folder = downloads / "tdc_drugcombo_group"
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.parquet")) == [
        "drugcombo_group/drugcomb_css/test.parquet", "drugcombo_group/drugcomb_css/train_val.parquet"]
    assert not (folder / "drugcombo_group/drugcomb_hsa").exists()  # only what tagllm reads
    archive = json.loads((folder / "drugcombo_group.zip.source.json").read_text())
    assert archive["url"].endswith("/4426002")
    member = json.loads((folder / f"{DC_TEST}.source.json").read_text())
    assert member["archive_sha256"] == archive["sha256"] and member["member"] == DC_TEST
    assert member["sha256"] == sources.sha256_of(folder / DC_TEST)
    for source in sources.TDC_GROUPS:  # what the preflight check looks for
        assert all((downloads / source / f).is_file() for f in sources.source_files(source))
    converted = pd.read_parquet(folder / "drugcombo_group/drugcomb_css/test.parquet")
    assert list(converted.columns) == [*tdc.DRUGCOMB_COLUMNS, "Y", "target_class"]
    # A second run keeps the extracted files (nothing to unpickle).
    mtime = (folder / DC_TEST).stat().st_mtime_ns
    sources.download_source("tdc_drugcombo_group", folder, retries=1)
    assert (folder / DC_TEST).stat().st_mtime_ns == mtime


def test_archive_entries_cannot_escape_the_folder(tmp_path):
    files = {"../evil.csv": b"x", "/abs/evil.csv": b"x", "dti_dg_group/../../evil2.csv": b"x",
             **group_files("tdc_dti_dg_group")}
    archive = write_zip(tmp_path / "a.zip", files)
    out = tmp_path / "out"
    written = sources.extract_members(archive, out, [DTI_TRAIN, DTI_TEST])
    assert written == [out / DTI_TRAIN, out / DTI_TEST]
    assert not list(tmp_path.rglob("evil*"))
    # An archive whose only copy of a member sits behind `..` lacks that member.
    bad = write_zip(tmp_path / "b.zip", {f"x/../{DTI_TRAIN}": b"x", DTI_TEST: b"y"})
    with pytest.raises(DownloadError, match="not the expected TDC archive"):
        sources.extract_members(bad, tmp_path / "out2", [DTI_TRAIN, DTI_TEST])
    with pytest.raises(DownloadError, match="more than the 10 allowed"):  # a zip bomb stops
        sources.extract_members(archive, tmp_path / "out3", [DTI_TRAIN, DTI_TEST], max_bytes=10)
    (tmp_path / "html.zip").write_text("<html>Service Unavailable</html>")
    with pytest.raises(DownloadError, match="not a readable zip archive"):
        sources.extract_members(tmp_path / "html.zip", tmp_path / "out4", [DTI_TRAIN])


class Planted:
    """A pickle that runs code when loaded: it creates the file named by `marker`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_hand_placed_group_archive_is_unpickled_only_if_trusted_or_pinned(tmp_path, dataverse,
                                                                          monkeypatch):
    folder = tmp_path / "tdc_drugcombo_group"
    marker = tmp_path / "code-ran"
    write_zip(folder / "drugcombo_group.zip",
              {DC_TRAIN: pickle.dumps(Planted(marker)), DC_TEST: pickled(dc_test())})
    with pytest.raises(UserError, match=r"drugcombo_group\.zip: refusing to unpickle.*--trust-pickle"):
        sources.download_source("tdc_drugcombo_group", folder)
    assert not marker.exists() and not (folder / DC_TRAIN).exists()
    write_zip(folder / "drugcombo_group.zip", group_files("tdc_drugcombo_group"))
    (folder / "drugcombo_group.zip.source.json").unlink()  # copied from another machine
    sources.download_source("tdc_drugcombo_group", folder, trust_pickle=True)
    assert (folder / "drugcombo_group/drugcomb_css/train_val.parquet").is_file()
    # A pinned checksum is checked on download too.
    monkeypatch.setitem(sources.SHA256_PINS, "tdc_drugcombo_group", "0" * 64)
    with pytest.raises(DownloadError, match="SHA-256 mismatch"):
        sources.download_source("tdc_drugcombo_group", tmp_path / "fresh", retries=1)


def test_prepare_refuses_a_hand_placed_group_pickle(tmp_path, monkeypatch):
    root = tmp_path / "downloads" / "tdc_drugcombo_group"
    for member, frame in ((DC_TRAIN, dc_train_val()), (DC_TEST, dc_test())):
        (root / member).parent.mkdir(parents=True, exist_ok=True)
        frame.to_pickle(root / member)
    settings = {"path": str(tmp_path / "downloads"), "seed": 1}
    with pytest.raises(UserError, match=r"train_val\.pkl: refusing to unpickle"):
        prepare_dataset("dc", tmp_path / "dc", Settings("tdc-group", **settings))
    for member in (DC_TRAIN, DC_TEST):
        monkeypatch.setitem(sources.SHA256_PINS, member, sources.sha256_of(root / member))
    report = prepare_dataset("dc", tmp_path / "dc", Settings("tdc-group", **settings))
    assert report["splits"]["test"] == 5


# ----------------------------------------------------------------------------- TDC's splits
def test_group_split_pins_tdc_create_group_split():
    frame = dti_train_val().assign(row=range(1, 13))
    train, valid = tdc.group_split(frame, seed=4)
    # Per year in order of first appearance (2014, 2013, 2015), np.random.seed(4) each time.
    assert valid["row"].tolist() == [1, 7, 2, 5, 6]
    assert train["row"].tolist() == [3, 11, 4, 8, 10, 12, 9]
    assert tdc.group_split(frame, seed=3)[1]["row"].tolist() == [10, 12]
    assert tdc.group_split(frame, seed=1)[1].empty  # 12 rows can give no validation row at all


def test_combination_split_pins_tdc_including_the_size_zero_draw():
    frame = dc_train_val().assign(row=range(1, 29))
    train, valid, test = tdc.combination_split(frame, 1, tdc.GROUP_COMBINATION_FRACTIONS)
    # 28 rows: train int(28 * 0.875) = 24, valid 4 -> int(4 / 2 lines) = 2 pairs, test 0 pairs.
    assert test.empty
    assert sorted(set(valid["Drug1_ID"] + "," + valid["Drug2_ID"])) == ["a1,b1", "a5,b5"]
    assert valid["row"].tolist() == [2, 6, 14, 18]
    assert len(train) == 24 and not set(train["row"]) & set(valid["row"])
    # TDC draws the (empty) test sample first, which shuffles the 12 candidates: without that
    # call the validation pairs would be others.
    candidates = sorted(f"a{i},b{i}" for i in range(12))
    np.random.seed(1)
    assert sorted(np.random.choice(candidates, 2, replace=False)) == ["a10,b10", "a11,b11"]


def test_validating_before_the_split_would_move_tdc_masks():
    frame = dti_train_val().assign(row=range(1, 13))
    split_first = tdc.group_split(frame, seed=4)[1]["row"].tolist()
    filtered_first = tdc.group_split(frame[frame["Drug"] != "not smiles"], seed=4)[1]
    assert split_first == [1, 7, 2, 5, 6]
    assert [r for r in split_first if r != 5] != filtered_first["row"].tolist()


def test_combination_split_refuses_more_pairs_than_there_are():
    # 16 rows, 2 cell lines sharing no pair: 1 validation pair wanted, none to draw (TDC's own
    # np.random.choice fails here too).
    frame = pd.DataFrame({"Drug1_ID": [f"x{i}" for i in range(8)] + [f"z{i}" for i in range(8)],
                          "Drug2_ID": "y", "Cell_Line_ID": ["c1"] * 8 + ["c2"] * 8})
    with pytest.raises(UserError, match=r"needs 1 validation drug pairs.*only 0"):
        tdc.combination_split(frame, 1, tdc.GROUP_COMBINATION_FRACTIONS)


# ----------------------------------------------------------------------------- prepare
def test_dti_dg_group_test_set_is_the_file(tmp_path, downloads):
    report = prepare_dataset("ba", tmp_path / "ba",
                             Settings("tdc-group", path=str(downloads), seed=4))
    test = pd.read_parquet(tmp_path / "ba" / "test.parquet")
    expected = dti_test().drop(index=3)  # the row with a non-standard residue
    assert test["drug"].tolist() == expected["Drug_ID"].tolist()  # file rows, in file order
    assert test["source_row"].tolist() == [1, 2, 3, 5, 6]
    assert list(test.columns) == ["protein_id", "sequence", "drug", "smiles", "year", "y",
                                  "source_row"]
    valid = pd.read_parquet(tmp_path / "ba" / "valid.parquet")
    assert valid["source_row"].tolist() == [1, 7, 2, 6]  # TDC's [1, 7, 2, 5, 6] less row 5
    assert report["rejected_by_split"] == {"train": 0, "valid": 1, "test": 1}
    assert report["test_coverage"] == {"rows": 6, "kept": 5, "rejected": 1, "fraction": 5 / 6}
    assert report["rows_in"] == 18 == report["kept"] + 2 + report["not_sampled"]
    rejected = pd.read_parquet(tmp_path / "ba" / "rejected.parquet")
    assert sorted(zip(rejected["source"].map(lambda s: Path(s).name), rejected["row"],
                      strict=True)) == [("test.csv", 4), ("train_val.csv", 5)]


def test_drugcombo_group_test_set_keeps_target_class(tmp_path, downloads):
    report = prepare_dataset("dc", tmp_path / "dc",
                             Settings("tdc-group", path=str(downloads), seed=1))
    test = pd.read_parquet(tmp_path / "dc" / "test.parquet")
    assert test["drug1"].tolist() == ["t0", "t1", "t2", "t3", "t5"]  # row 5 rejected
    assert test["target_class"].tolist() == ["breast", "lung", "breast", "skin", "breast"]
    assert list(test.columns) == ["drug1", "smiles1", "drug2", "smiles2", "cell_line", "y",
                                  "target_class", "source_row"]
    valid = pd.read_parquet(tmp_path / "dc" / "valid.parquet")
    assert valid["source_row"].tolist() == [2, 6, 14, 18]
    assert report["splits"] == {"train": 24, "valid": 4, "test": 5}
    assert report["rejected_by_split"] == {"train": 0, "valid": 0, "test": 1}
    assert report["test_coverage"]["kept"] == 5 and report["test_coverage"]["rows"] == 6
    assert json.loads((tmp_path / "dc" / "report.json").read_text()) == report


def test_raw_tdc_source_splits_before_validating(tmp_path):
    frame = dc_train_val().drop(columns="CellLine").rename(columns={"Y": "CSS"})
    frame.loc[1, "Drug1"] = "not smiles"
    frame.to_pickle(tmp_path / "drugcomb.pkl")
    report = prepare_dataset("dc", tmp_path / "dc",
                             Settings("tdc", path=str(tmp_path), trust_pickle=True, seed=1))
    assert sum(report["rejected_by_split"].values()) == 1 == report["rejected"]["invalid_smiles"]
    assert report["kept"] == 27 and report["rows_in"] == 28


# ----------------------------------------------------------------------------- metrics
def test_mae_by_target_class_by_hand(tmp_path):
    truth = [10.0, 20.0, 30.0, 40.0, 50.0]
    predicted = [12.0, 20.0, 27.0, 40.0, 45.0]
    groups = ["breast", "lung", "breast", "skin", "lung"]
    # breast: (|12-10| + |27-30|) / 2 = 2.5; lung: (0 + 5) / 2 = 2.5; skin: 0.
    assert mae_by_group(truth, predicted, groups) == {"breast": 2.5, "lung": 2.5, "skin": 0.0}
    pd.DataFrame({"y": truth, "target_class": groups}).to_parquet(tmp_path / "test.parquet")
    assert target_class_metrics(tmp_path / "test.parquet", truth, predicted) == {
        "mae_by_target_class": {"breast": 2.5, "lung": 2.5, "skin": 0.0}}
    # evaluate's max_rows: the first rows only.
    assert target_class_metrics(tmp_path / "test.parquet", truth[:2], predicted[:2]) == {
        "mae_by_target_class": {"breast": 2.0, "lung": 0.0}}
    pd.DataFrame({"y": truth}).to_parquet(tmp_path / "plain.parquet")
    assert target_class_metrics(tmp_path / "plain.parquet", truth, predicted) == {}
    with pytest.raises(ValueError, match="equal length"):
        mae_by_group(truth, predicted, groups[:2])


def test_pearson_is_tdc_pcc():
    rng = np.random.default_rng(0)
    y, p = rng.normal(size=200), rng.normal(size=200)
    p = 0.5 * y + p
    ours = regression_metrics(y, p)["pearson"]
    assert ours == pytest.approx(np.corrcoef(y, p)[1, 0], abs=1e-12)  # TDC's `pcc`
    assert ours == pytest.approx(float(stats.pearsonr(y, p).statistic), abs=1e-15)
    assert regression_metrics(y, p)["mae"] == pytest.approx(np.mean(np.abs(y - p)))


# ----------------------------------------------------------------------------- OPUS-100
def test_opus_revision_is_a_pinned_commit_unless_overridden(monkeypatch):
    monkeypatch.delenv("TAGLLM_OPUS100_REVISION", raising=False)
    assert sources.COMMIT.fullmatch(sources.opus_revision())
    assert sources.opus_revision() == sources.OPUS_REVISION
    monkeypatch.setenv("TAGLLM_OPUS100_REVISION", "main")
    assert sources.opus_revision() == "main"


def test_opus_shards_come_from_one_recorded_commit(tmp_path, monkeypatch):
    """The hub's API (served by a file:// mirror) resolves the revision and lists the pair's
    shards with their SHA-256; every shard comes from that commit and is checked against it."""
    commit = "1" * 40
    mirror = tmp_path / "mirror"
    api = f"{sources.HF_API}/{sources.OPUS_REPO}"
    shard = write_opus(mirror_path(mirror, f"{sources.HF}/{sources.OPUS_REPO}/resolve/{commit}/"
                                           "en-fr/train-00000-of-00001.parquet"),
                       "en", "fr", [(f"Hello {i}", f"Bonjour {i}") for i in range(200)])
    listed = {"type": "file", "path": "en-fr/train-00000-of-00001.parquet",
              "lfs": {"oid": sources.sha256_of(shard)}}
    other = {"type": "file", "path": "en-fr/test-00000-of-00001.parquet"}  # not a train shard
    for path, answer in (("revision/main", {"sha": commit}),
                         (f"tree/{commit}/en-fr", [listed, other])):
        mirror_path(mirror, f"{api}/{path}").parent.mkdir(parents=True, exist_ok=True)
        mirror_path(mirror, f"{api}/{path}").write_text(json.dumps(answer))
    # A branch is resolved to the commit it names.
    monkeypatch.setenv("TAGLLM_OPUS100_REVISION", "main")
    out = tmp_path / "opus100_en-fr"
    sources.download_source("opus100_en-fr", out, retries=1, mirror=mirror.as_uri())
    record = json.loads((out / "train.parquet.source.json").read_text())
    assert record["revision_requested"] == "main" and record["revision"] == commit
    assert not record["pinned"] and len(record["shards"]) == 1
    assert record["shards"][0]["url"] == \
        f"{mirror.as_uri()}/huggingface.co/datasets/Helsinki-NLP/opus-100/resolve/{commit}/" \
        "en-fr/train-00000-of-00001.parquet"
    assert record["shards"][0]["sha256"] == record["shards"][0]["sha256_listed"]
    assert len(pd.read_parquet(out / "train.parquet")) == 200
    # A pinned commit is used as it is: no revision is resolved.
    mirror_path(mirror, f"{api}/revision/main").unlink()
    monkeypatch.setenv("TAGLLM_OPUS100_REVISION", commit)
    sources.download_source("opus100_en-fr", tmp_path / "pinned", retries=1, mirror=mirror.as_uri())
    assert json.loads((tmp_path / "pinned" / "train.parquet.source.json").read_text())["pinned"]
    # A shard that is not the one the hub lists fails its checksum.
    listed["lfs"]["oid"] = "0" * 64
    mirror_path(mirror, f"{api}/tree/{commit}/en-fr").write_text(json.dumps([listed]))
    with pytest.raises(DownloadError, match="SHA-256 mismatch"):
        sources.download_source("opus100_en-fr", tmp_path / "changed", retries=1,
                                mirror=mirror.as_uri())
    # Offline (no answer from the hub): a clear error.
    monkeypatch.setenv("TAGLLM_OPUS100_REVISION", "main")
    with pytest.raises(DownloadError, match="cannot list Helsinki-NLP/opus-100"):
        sources.download_source("opus100_en-fr", tmp_path / "offline", retries=1,
                                mirror=(tmp_path / "nothing").as_uri())
