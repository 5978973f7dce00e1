"""Bad input to `prepare-dataset` and `download` (issue 16): pathological lines, torn datasets,
inputs where every row is rejected, binary files, lower-case TDC proteins, planted pickles.

Each case ends in a result or in one line naming the file, row and reason, never a traceback."""

import hashlib
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tagllm import cli
from tagllm.data import prepare, sources, validation
from tagllm.data.download import DownloadError
from tagllm.data.prepare import Settings, prepare_dataset
from tagllm.errors import UserError

DATA = Path(__file__).parent / "data"
DATASET_FILES = ["rejected.parquet", "report.json", "test.parquet", "train.parquet"]


def prepare_smi(out, path, **settings):
    return prepare_dataset("qed", out, Settings("smi-file", path=str(path), **settings))


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


# ----------------------------------------------------------------------------- item 1: long lines
@pytest.mark.parametrize("length", [20_000, 2_000_000])
def test_long_smiles_line_is_rejected_before_parsing(tmp_path, length):
    """The issue's repro as a user runs it: RDKit crashed on 20,000 characters and took > 25 min
    on 2,000,000. A timeout turns a hang into a failure; a crash would give a negative rc."""
    smi = tmp_path / "big.smi"
    smi.write_text("C" * length + "\nCCO\nCCN\nCCC\n")
    done = subprocess.run([sys.executable, "-m", "tagllm", "prepare-dataset", "--kind", "qed",
                           "--source", "smi-file", "--path", str(smi), "--out-dir",
                           str(tmp_path / "x")], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    rejected = pd.read_parquet(tmp_path / "x" / "rejected.parquet")
    assert rejected[["row", "reason"]].values.tolist() == [[1, "too_long"]]
    detail = rejected["detail"].iloc[0]
    assert "before parsing" in detail if length < validation.MAX_LINE_BYTES else "not read" in detail
    assert len(rejected["value"].iloc[0]) < 1100  # summarised, not copied
    report = json.loads((tmp_path / "x" / "report.json").read_text())
    assert report["kept"] == 3 and report["rows_in"] == 4


def test_max_chars_above_what_rdkit_handles_is_refused(tmp_path):
    with pytest.raises(UserError, match="max_chars 20000 is above 2000"):
        prepare_smi(tmp_path / "x", DATA / "molecules.smi", max_chars=20_000)


def test_long_line_without_newline_at_end_of_file(tmp_path):
    smi = tmp_path / "tail.smi"
    smi.write_text("CCO\nCCN\nCCC\n" + "C" * (validation.MAX_LINE_BYTES + 5))
    report = prepare_smi(tmp_path / "x", smi, test_fraction=0.5)
    assert report["rejected"] == {"too_long": 1} and report["kept"] == 3


# ----------------------------------------------------------------------------- item 3: torn sets
def test_interrupted_prepare_leaves_the_old_dataset_whole(tmp_path, monkeypatch):
    out = tmp_path / "qed"
    prepare_smi(out, DATA / "molecules.smi", seed=0, test_fraction=0.25)
    before = folder_bytes(out)
    real_write = validation.write_parquet

    def fail_after_train(path, frame):
        real_write(path, frame)
        if Path(path).name == "train.parquet":
            raise OSError("disk full (simulated)")

    monkeypatch.setattr(validation, "write_parquet", fail_after_train)
    with pytest.raises(OSError, match="simulated"):
        prepare_smi(out, DATA / "molecules.smi", seed=1, test_fraction=0.25)
    assert folder_bytes(out) == before  # seed 0 throughout, nothing of seed 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["qed"]  # staging removed

    monkeypatch.setattr(validation, "write_parquet", real_write)
    report = prepare_smi(out, DATA / "molecules.smi", seed=1, test_fraction=0.25)
    train, test = (pd.read_parquet(out / f"{name}.parquet") for name in ("train", "test"))
    assert json.loads((out / "report.json").read_text())["seed"] == report["seed"] == 1
    assert report["splits"] == {"train": len(train), "test": len(test)}
    assert not set(train["smiles"]) & set(test["smiles"])


def test_kill_during_the_swap_leaves_no_mixed_folder(tmp_path, monkeypatch):
    """A kill between the swap's two renames: no dataset folder at all (never a mixed one), and
    the next run removes the leftovers and writes a whole dataset."""
    out = tmp_path / "qed"
    prepare_smi(out, DATA / "molecules.smi", seed=0, test_fraction=0.25)
    real_rename = os.rename
    calls = []

    def killed_on_second_rename(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise SystemExit("killed (simulated)")
        real_rename(src, dst)

    monkeypatch.setattr(validation.os, "rename", killed_on_second_rename)
    with pytest.raises(SystemExit):
        prepare_smi(out, DATA / "molecules.smi", seed=1, test_fraction=0.25)
    monkeypatch.setattr(validation.os, "rename", real_rename)
    assert not out.exists()
    assert sorted(p.name.split("-")[0] for p in tmp_path.iterdir()) == [".qed.old", ".qed.staging"]
    prepare_smi(out, DATA / "molecules.smi", seed=1, test_fraction=0.25)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["qed"]
    assert sorted(p.name for p in out.iterdir()) == DATASET_FILES  # the rule's four outputs


def test_out_dir_with_other_files_is_not_replaced(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match=r"notes\.txt.*not part of a prepared dataset"):
        prepare_smi(tmp_path, DATA / "molecules.smi")
    assert (tmp_path / "notes.txt").read_text() == "mine"
    (tmp_path / "file").write_text("")
    with pytest.raises(UserError, match="is a file"):
        prepare_smi(tmp_path / "file" / "qed", DATA / "molecules.smi")


# ----------------------------------------------------------------------------- item 5: reasons
@pytest.mark.parametrize(("name", "content", "reason"), [
    ("empty.smi", b"", None),
    ("table.smi", b"smiles,y\nCCO,1.0\nCCN,2.0\n", "invalid_smiles"),
    ("binary.smi", bytes(range(256)) * 20, "not_utf8"),
    ("utf16.smi", "CCO\nCCN\n".encode("utf-16-le"), "not_text"),
])
def test_every_row_rejected_still_writes_reasons(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content)
    out = tmp_path / "out"
    with pytest.raises(UserError, match=rf"{name}: no rows (kept|read)") as error:
        prepare_smi(out, path)
    assert "\n" not in str(error.value) and str(out) in str(error.value)
    assert sorted(p.name for p in out.iterdir()) == ["rejected.parquet", "report.json"]
    report = json.loads((out / "report.json").read_text())
    assert report["error"] == str(error.value) and report["splits"] == {}
    rejected = pd.read_parquet(out / "rejected.parquet")
    assert (reason in set(rejected["reason"])) if reason else rejected.empty
    if reason == "invalid_smiles":
        assert "a CSV line?" in str(error.value)


def test_one_kept_row_is_refused_with_reasons(tmp_path):
    path = tmp_path / "one.smi"
    path.write_text("CCO\nnot-a-smiles\n")
    with pytest.raises(UserError, match=r"one\.smi: only 1 row kept.*invalid_smiles: 1"):
        prepare_smi(tmp_path / "out", path)
    assert (tmp_path / "out" / "rejected.parquet").is_file()


@pytest.mark.parametrize(("content", "message"), [
    (bytes(range(128, 256)) * 10, r"bin\.fa: not a UTF-8 text file"),
    (b"smiles,y\nCCO,1.0\n", r"bin\.fa: not a FASTA file \(text before the first '>'"),
])
def test_unreadable_fasta_names_the_file(tmp_path, content, message):
    (tmp_path / "bin.fa").write_bytes(content)
    with pytest.raises(UserError, match=message):
        prepare_dataset("descriptor", tmp_path / "out",
                        Settings("fasta-file", path=str(tmp_path / "bin.fa")))


def test_binary_tdc_csv_names_the_file(tmp_path):
    (tmp_path / "bindingdb_patent.csv").write_bytes(bytes(range(128, 256)) * 10)
    with pytest.raises(UserError, match=r"bindingdb_patent\.csv: not a readable CSV file"):
        prepare_dataset("ba", tmp_path / "out", Settings("tdc", path=str(tmp_path)))


def test_cli_prints_one_line_naming_the_file(tmp_path, capsys):
    (tmp_path / "empty.smi").write_bytes(b"")
    rc = cli.main(["prepare-dataset", "--kind", "qed", "--source", "smi-file", "--path",
                   str(tmp_path / "empty.smi"), "--out-dir", str(tmp_path / "out")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and "empty.smi: no rows read" in lines[0]


# ----------------------------------------------------------------------------- item 6: TDC case
def bindingdb_rows(targets: list[str], smiles: str = "CCO") -> pd.DataFrame:
    return pd.DataFrame([{"ID1": f"d{i}", "X1": smiles, "ID2": f"t{i}", "X2": target,
                          "Y": float(i), "Year": year}
                         for i, target in enumerate(targets) for year in (2013, 2019)])


def test_tdc_proteins_are_upper_cased_like_fasta(tmp_path):
    bindingdb_rows(["mktayiakqr", "MkvLAAgg*", "mkxb"] * 4).to_csv(
        tmp_path / "bindingdb_patent.csv", index=False)
    report = prepare_dataset("ba", tmp_path / "ba", Settings("tdc", path=str(tmp_path)))
    kept = pd.concat(pd.read_parquet(tmp_path / "ba" / f"{s}.parquet") for s in report["splits"])
    assert set(kept["sequence"]) == {"MKTAYIAKQR", "MKVLAAGG"}
    rejected = pd.read_parquet(tmp_path / "ba" / "rejected.parquet")
    assert set(rejected["reason"]) == {"nonstandard_residue"} and set(rejected["value"]) == {"MKXB"}


def test_tdc_overlong_value_rejected_before_parsing(tmp_path, monkeypatch):
    monkeypatch.setattr(prepare, "MAX_PAIR_ITEM_CHARS", 50)
    frame = bindingdb_rows(["MKTAYIAKQR"] * 6)
    frame.loc[0, "X1"] = "C" * 60
    frame.to_csv(tmp_path / "bindingdb_patent.csv", index=False)
    report = prepare_dataset("ba", tmp_path / "ba", Settings("tdc", path=str(tmp_path)))
    assert report["rejected"] == {"too_long": 1}


def test_tdc_file_with_every_row_rejected_names_it(tmp_path):
    bindingdb_rows(["MKXB"] * 3).to_csv(tmp_path / "bindingdb_patent.csv", index=False)
    with pytest.raises(UserError, match=r"bindingdb_patent\.csv: no rows kept.*nonstandard_residue"):
        prepare_dataset("ba", tmp_path / "ba", Settings("tdc", path=str(tmp_path)))
    assert (tmp_path / "ba" / "rejected.parquet").is_file()


# ----------------------------------------------------------------------------- item 8: pickles
def drugcomb_frame() -> pd.DataFrame:
    return pd.DataFrame([{"Drug1_ID": f"a{i}", "Drug1": "CCO", "Drug2_ID": f"b{i}", "Drug2": "CC",
                          "Cell_Line_ID": line, "CSS": float(i), "Synergy_ZIP": 0.0}
                         for line in ("c1", "c2") for i in range(10)])


class Planted:
    """A pickle that runs code when loaded: it creates the file named by `marker`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_hand_placed_pickle_is_refused_unless_trusted_or_pinned(tmp_path, monkeypatch):
    drugcomb_frame().to_pickle(tmp_path / "drugcomb.pkl")
    settings = {"path": str(tmp_path)}
    with pytest.raises(UserError, match=r"drugcomb\.pkl: refusing to unpickle.*--trust-pickle"):
        prepare_dataset("dc", tmp_path / "dc", Settings("tdc", **settings))
    report = prepare_dataset("dc", tmp_path / "dc", Settings("tdc", trust_pickle=True, **settings))
    assert report["splits"]["test"] == 4
    digest = hashlib.sha256((tmp_path / "drugcomb.pkl").read_bytes()).hexdigest()
    monkeypatch.setitem(sources.SHA256_PINS, "tdc_drugcomb", digest)
    assert prepare_dataset("dc", tmp_path / "dc", Settings("tdc", **settings)) == report


def test_planted_pickle_runs_no_code(tmp_path, monkeypatch):
    marker = tmp_path / "code-ran"
    (tmp_path / "drugcomb.pkl").write_bytes(pickle.dumps(Planted(marker)))
    monkeypatch.setitem(sources.SHA256_PINS, "tdc_drugcomb", "0" * 64)
    with pytest.raises(UserError, match=f"not the pinned {'0' * 64}"):
        prepare_dataset("dc", tmp_path / "dc", Settings("tdc", path=str(tmp_path)))
    assert not marker.exists()


@pytest.fixture()
def dataverse(tmp_path, monkeypatch) -> Path:
    """A file:// stand-in for Dataverse serving a small DrugComb pickle."""
    remote = tmp_path / "remote"
    remote.mkdir()
    drugcomb_frame().to_pickle(remote / str(sources.TDC_FILES["tdc_drugcomb"][0]))
    monkeypatch.setattr(sources, "DATAVERSE", remote.as_uri())
    monkeypatch.setitem(sources.TDC_FILES, "tdc_drugcomb", (*sources.TDC_FILES["tdc_drugcomb"][:2], 100))
    return remote


def test_download_converts_the_pickle_it_fetched(tmp_path, dataverse):
    downloads = tmp_path / "downloads"
    files = sources.download_source("tdc_drugcomb", downloads)
    assert [f.name for f in files] == ["drugcomb.pkl", "drugcomb.parquet"] and files[1].is_file()
    (downloads / "drugcomb.pkl").unlink()  # prepare reads the Parquet file: nothing to unpickle
    report = prepare_dataset("dc", tmp_path / "dc", Settings("tdc", path=str(downloads)))
    assert report["source"].endswith("drugcomb.parquet") and report["splits"]["test"] == 4


def test_download_refuses_a_hand_placed_pickle(tmp_path, dataverse, monkeypatch):
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    marker = tmp_path / "code-ran"
    (downloads / "drugcomb.pkl").write_bytes(pickle.dumps(Planted(marker)) + b" " * 100)
    with pytest.raises(UserError, match=r"refusing to unpickle.*--trust-pickle"):
        sources.download_source("tdc_drugcomb", downloads)
    assert not marker.exists() and not (downloads / "drugcomb.parquet").exists()
    drugcomb_frame().to_pickle(downloads / "drugcomb.pkl")  # copied from another machine
    (downloads / "drugcomb.pkl.source.json").unlink()
    sources.download_source("tdc_drugcomb", downloads, trust_pickle=True)
    assert (downloads / "drugcomb.parquet").is_file()
    # A pinned checksum is checked on download too.
    monkeypatch.setitem(sources.SHA256_PINS, "tdc_drugcomb", "0" * 64)
    with pytest.raises(DownloadError, match="SHA-256 mismatch"):
        sources.download_source("tdc_drugcomb", tmp_path / "fresh", retries=1)


def test_trust_pickle_flag_reaches_both_subcommands():
    parser = cli.build_parser()
    args = parser.parse_args(["download", "--source", "tdc_drugcomb", "--out-dir", "d",
                              "--trust-pickle"])
    assert args.trust_pickle
    args = parser.parse_args(["prepare-dataset", "--kind", "dc", "--source", "tdc", "--out-dir", "o"])
    assert args.trust_pickle is False


def test_unreadable_parquet_and_flores_name_the_file(tmp_path):
    (tmp_path / "all.parquet").write_bytes(b"")
    with pytest.raises(UserError, match=r"all\.parquet: not a readable Parquet file"):
        prepare_dataset("qed", tmp_path / "out", Settings("binding-affinity", path=str(tmp_path)))
    from tagllm.data.text import read_flores

    (tmp_path / "fra.devtest").write_bytes(bytes(range(128, 256)))
    with pytest.raises(UserError, match=r"fra\.devtest: not UTF-8 text"):
        read_flores(tmp_path, "fr")
