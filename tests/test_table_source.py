"""The generic table source (issue 14 item 2): a user's CSV, TSV or Parquet with declared columns,
validated row by row (every rejection names the file and row), split at random, by scaffold, by a
split column or against a separate test file."""

import json
import math
import shlex
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tagllm import cli
from tagllm.config_check import config_problems
from tagllm.data.prepare import Settings, prepare_dataset
from tagllm.data.splits import murcko_scaffold, scaffold_split
from tagllm.data.table import validate_rows
from tagllm.data.validation import Rejections
from tagllm.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
BENZENES = ["Cc1ccccc1", "Oc1ccccc1", "Nc1ccccc1", "CCc1ccccc1", "Clc1ccccc1", "Brc1ccccc1"]
CYCLOHEXANES = ["CC1CCCCC1", "OC1CCCCC1", "NC1CCCCC1"]
ACYCLIC = ["CCO", "CCN", "CCCC"]
PYRIDINES = ["Cc1ccncc1", "Oc1ccncc1"]


def prepare_table(tmp_path, path, columns, **settings) -> dict:
    return prepare_dataset("table", tmp_path / "out", Settings("file", path=str(path),
                                                               columns=columns, **settings))


def write_csv(path: Path, rows: list[dict], sep: str = ",") -> Path:
    pd.DataFrame(rows).to_csv(path, index=False, sep=sep)
    return path


def rejected(tmp_path) -> pd.DataFrame:
    return pd.read_parquet(tmp_path / "out" / "rejected.parquet")


def kept(tmp_path, report: dict) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(tmp_path / "out" / f"{name}.parquet")
                      for name in report["splits"]], ignore_index=True)


def assert_adds_up(report: dict) -> None:
    assert report["rows_in"] == report["kept"] + sum(report["rejected"].values()) + \
        report["not_sampled"]
    assert report["kept"] == sum(report["splits"].values())


# ----------------------------------------------------------------------------- validation
def test_every_rejection_names_the_file_row_and_reason(tmp_path):
    path = write_csv(tmp_path / "mixed.csv", [
        {"smiles": "c1ccccc1O", "protein": "mktayiakqr*", "note": "  a   note ", "y": "1.5"},  # 1
        {"smiles": "", "protein": "MKTAYIAKQR", "note": "x", "y": "1"},  # 2 empty
        {"smiles": "C1CC", "protein": "MKTAYIAKQR", "note": "x", "y": "1"},  # 3 invalid
        {"smiles": "C" * 40, "protein": "MKTAYIAKQR", "note": "x", "y": "1"},  # 4 too long
        {"smiles": "CCO", "protein": "MKXB", "note": "x", "y": "1"},  # 5 residues
        {"smiles": "CCO", "protein": "MKTAYIAKQR", "note": "x", "y": "inf"},  # 6 not finite
        {"smiles": "CCO", "protein": "MKTAYIAKQR", "note": "x", "y": "high"},  # 7 not a number
        {"smiles": "CCO", "protein": "MKTAYIAKQR", "note": "n" * 40, "y": "1"},  # 8 text too long
        {"smiles": "CCO", "protein": "M" * 40, "note": "x", "y": "1"},  # 9 protein too long
        {"smiles": "Oc1ccccc1", "protein": "MKTAYIAKQR", "note": "a note", "y": "2"},  # 10 dup
        {"smiles": "OCC", "protein": "MKTAYIAKQR", "note": "x", "y": "3"},  # 11
        {"smiles": "CCO", "protein": "MKTAYIAKQR", "note": "x", "y": " "},  # 12 blank number
    ])
    report = prepare_table(tmp_path, path, {"smiles": "smiles", "protein": "protein",
                                            "note": "text", "y": "number"}, max_chars=30)
    assert_adds_up(report)
    assert report["rows_in"] == 12 and report["kept"] == 2 and report["split"] == "random"
    found = rejected(tmp_path)
    assert set(found["source"]) == {str(path)}
    by_row = dict(zip(found["row"], found["reason"], strict=True))
    assert by_row == {2: "empty", 3: "invalid_smiles", 4: "too_long", 5: "nonstandard_residue",
                      6: "nan_label", 7: "nan_label", 8: "too_long", 9: "too_long",
                      10: "duplicate", 12: "empty"}
    details = dict(zip(found["row"], found["detail"], strict=True))
    assert details[4] == "smiles: 40 > 30 characters (before parsing)"
    assert details[5] == "protein: contains BX"
    assert details[10] == "same smiles, protein, note as row 1"
    rows = kept(tmp_path, report).sort_values("source_row")
    assert list(rows.columns) == ["id", "source_row", "smiles", "protein", "note", "y"]
    first = rows.iloc[0]
    # Canonical SMILES, normalised protein and text, typed number; id is the source row.
    assert (first["id"], first["source_row"], first["smiles"], first["protein"], first["note"],
            first["y"]) == ("1", 1, "Oc1ccccc1", "MKTAYIAKQR", "a note", 1.5)
    assert rows["y"].dtype == float


def test_values_are_read_as_written_and_duplicates_need_every_input_column(tmp_path):
    # "NA" and "001" are text, not a missing value and a number; same SMILES, other text: no dup.
    path = write_csv(tmp_path / "t.tsv", [{"smiles": "CCO", "code": "NA", "y": "1"},
                                          {"smiles": "CCO", "code": "001", "y": "2"},
                                          {"smiles": "CCO", "code": "001", "y": "3"}], sep="\t")
    report = prepare_table(tmp_path, path, {"smiles": "smiles", "code": "text", "y": "number"})
    assert_adds_up(report)
    assert sorted(kept(tmp_path, report)["code"]) == ["001", "NA"]
    assert list(rejected(tmp_path)["row"]) == [3]


def test_parquet_is_read_as_stored(tmp_path):
    path = tmp_path / "t.parquet"
    pd.DataFrame({"smiles": ["CCO", "CCN", None, "CCCC"],
                  "y": [1.0, float("nan"), 2.0, 3]}).to_parquet(path)
    report = prepare_table(tmp_path, path, {"smiles": "smiles", "y": "number"})
    assert_adds_up(report)
    assert dict(zip(rejected(tmp_path)["row"], rejected(tmp_path)["reason"], strict=True)) == \
        {2: "nan_label", 3: "empty"}


def test_validate_rows_keeps_unlabeled_rows_when_the_label_is_optional():
    frame = pd.DataFrame({"smiles": ["CCO", "C1CC", "CCN"], "logS": ["", "1", "nan"]})
    rejections = Rejections()
    rows = validate_rows(frame, {"smiles": "smiles", "logS": "number"}, "new.csv", 512,
                         rejections, first_row=10, required={"smiles"})
    assert list(rows["source_row"]) == [10] and rejections.rows[0]["row"] == 11
    assert rejections.rows[1]["reason"] == "nan_label"  # given but not a number: still refused
    assert math.isnan(rows["logS"].iloc[0])
    everything = validate_rows(frame, {"smiles": "smiles", "logS": "number"}, "new.csv", 512,
                               Rejections())
    assert everything.empty


def test_subsampling_is_counted(tmp_path):
    path = write_csv(tmp_path / "t.csv", [{"smiles": "C" * n, "y": n} for n in range(1, 21)])
    report = prepare_table(tmp_path, path, {"smiles": "smiles", "y": "number"}, max_rows=8)
    assert_adds_up(report)
    assert report["not_sampled"] == 12 and report["kept"] == 8


# ----------------------------------------------------------------------------- bad files, settings
def test_missing_column_names_the_file_and_its_columns(tmp_path):
    path = write_csv(tmp_path / "t.csv", [{"SMILES": "CCO", "y": 1}])
    with pytest.raises(UserError, match=r"t\.csv: no column 'smiles'; it has 'SMILES', 'y'"):
        prepare_table(tmp_path, path, {"smiles": "smiles", "y": "number"})
    tsv = write_csv(tmp_path / "tabs.csv", [{"smiles": "CCO", "y": 1}], sep="\t")
    with pytest.raises(UserError, match=r"tab-separated\? name it \.tsv"):
        prepare_table(tmp_path, tsv, {"smiles": "smiles", "y": "number"})


@pytest.mark.parametrize(("name", "content", "message"), [
    ("cut.csv", b'smiles,y\nCCO,1\n"CCN,2\n', r"cut\.csv: not a readable CSV file"),
    ("ragged.csv", b"smiles,y\nCCO,1\nCCN,2,3,4\n", r"ragged\.csv: not a readable CSV file"),
    ("latin1.csv", b"smiles,y\nCCO,\xe9\n", r"latin1\.csv: not a readable CSV file"),
    ("empty.tsv", b"", r"empty\.tsv: not a readable TSV file"),
    ("cut.parquet", b"PAR1\x00\x00", r"cut\.parquet: not a readable Parquet file"),
    ("t.xlsx", b"x", r"t\.xlsx: unknown table format '\.xlsx'"),
])
def test_unreadable_file_names_it(tmp_path, name, content, message):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(UserError, match=message):
        prepare_table(tmp_path, tmp_path / name, {"smiles": "smiles", "y": "number"})


def test_header_only_file_writes_the_report(tmp_path):
    (tmp_path / "t.csv").write_text("smiles,y\n")
    with pytest.raises(UserError, match=r"t\.csv: no rows read"):
        prepare_table(tmp_path, tmp_path / "t.csv", {"smiles": "smiles", "y": "number"})
    assert json.loads((tmp_path / "out" / "report.json").read_text())["rows_in"] == 0


@pytest.mark.parametrize(("settings", "message"), [
    ({"columns": {"y": "number"}}, "at least one smiles, protein or text column"),
    ({"columns": {"smiles": "smile"}}, "'smiles' is declared 'smile'"),
    ({"columns": {"id": "text"}}, "'id' is a column tagllm writes itself"),
    ({"split": "column"}, "split column needs split_column"),
    ({"split_column": "fold"}, "read only with split: column"),
    ({"split": "scaffold", "scaffold_column": "name"}, "'name' is not a smiles column"),
    ({"split": "scaffold", "columns": {"name": "text"}}, "split scaffold needs a smiles column"),
    ({"split": "scaffold", "test": "other.csv"}, "with a test file"),
])
def test_settings_that_do_not_fit_are_refused(tmp_path, settings, message):
    path = write_csv(tmp_path / "t.csv", [{"smiles": "CCO", "name": "a", "y": 1}])
    columns = settings.pop("columns", {"smiles": "smiles", "name": "text", "y": "number"})
    with pytest.raises(UserError, match=message):
        prepare_table(tmp_path, path, columns, **settings)


# ----------------------------------------------------------------------------- splits
def test_murcko_scaffolds():
    assert murcko_scaffold("CCc1ccccc1") == "c1ccccc1"
    assert murcko_scaffold("OC1CCCCC1") == "C1CCCCC1"
    assert murcko_scaffold("CCO") == ""


def test_scaffold_split_keeps_each_scaffold_on_one_side_and_is_deterministic():
    smiles = BENZENES + CYCLOHEXANES + ACYCLIC + PYRIDINES
    frame = pd.DataFrame({"smiles": smiles, "y": range(len(smiles))})
    scaffold = {s: murcko_scaffold(s) for s in smiles}
    sides = set()
    for seed in range(6):
        train, test = scaffold_split(frame, "smiles", 0.25, seed)
        assert len(train) + len(test) == len(frame) and len(train) and len(test)
        assert not {scaffold[s] for s in train["smiles"]} & {scaffold[s] for s in test["smiles"]}
        again_train, again_test = scaffold_split(frame, "smiles", 0.25, seed)
        pd.testing.assert_frame_equal(train, again_train)
        pd.testing.assert_frame_equal(test, again_test)
        sides.add(tuple(sorted(test["smiles"])))
    assert len(sides) > 1  # the seed chooses which small groups are held out


def test_scaffold_split_needs_two_scaffolds():
    frame = pd.DataFrame({"smiles": BENZENES})
    with pytest.raises(ValueError, match="share one scaffold \\(c1ccccc1\\)"):
        scaffold_split(frame, "smiles", 0.2, 0)
    # Every group is larger than train's share (1 row): the smallest goes to train.
    train, test = scaffold_split(pd.DataFrame({"smiles": [*BENZENES[:2], "CCO", "CCN", "CCC"]}),
                                 "smiles", 0.9, 0)
    assert list(train["smiles"]) == BENZENES[:2] and len(test) == 3


def test_scaffold_split_through_prepare(tmp_path):
    smiles = BENZENES + CYCLOHEXANES + ACYCLIC
    path = write_csv(tmp_path / "t.csv", [{"name": f"m{i}", "mol": s, "y": i}
                                          for i, s in enumerate(smiles)])
    report = prepare_table(tmp_path, path, {"name": "text", "mol": "smiles", "y": "number"},
                           split="scaffold", test_fraction=0.25, seed=3)
    assert_adds_up(report)
    assert (report["split"], report["scaffold_column"]) == ("scaffold", "mol")
    train = pd.read_parquet(tmp_path / "out" / "train.parquet")
    test = pd.read_parquet(tmp_path / "out" / "test.parquet")
    assert not {murcko_scaffold(s) for s in train["mol"]} & {murcko_scaffold(s) for s in test["mol"]}
    same = write_csv(tmp_path / "same.csv", [{"mol": s, "y": 1} for s in BENZENES])
    with pytest.raises(UserError, match=r"same\.csv: all 6 molecules share one scaffold"):
        prepare_table(tmp_path, same, {"mol": "smiles", "y": "number"}, split="scaffold")


def test_column_split(tmp_path):
    path = write_csv(tmp_path / "t.csv", [
        {"smiles": "CCO", "y": 1, "fold": "train"}, {"smiles": "CCN", "y": 2, "fold": "Valid"},
        {"smiles": "CCC", "y": 3, "fold": " test "}, {"smiles": "CCCC", "y": 4, "fold": "dev"},
        {"smiles": "CCCN", "y": 5, "fold": ""}, {"smiles": "CCCO", "y": 6, "fold": "train"}])
    report = prepare_table(tmp_path, path, {"smiles": "smiles", "y": "number"}, split="column",
                           split_column="fold")
    assert_adds_up(report)
    assert report["splits"] == {"train": 2, "valid": 1, "test": 1}
    assert (report["split"], report["split_column"]) == ("column", "fold")
    bad = rejected(tmp_path)
    assert list(zip(bad["row"], bad["reason"], strict=True)) == [(4, "bad_split"), (5, "bad_split")]
    assert "'dev' is not train, valid, test" in bad["detail"].iloc[0]
    assert list(pd.read_parquet(tmp_path / "out" / "test.parquet")["smiles"]) == ["CCC"]
    assert "fold" not in pd.read_parquet(tmp_path / "out" / "train.parquet").columns
    no_test = write_csv(tmp_path / "no_test.csv", [{"smiles": "CCO", "y": 1, "fold": "train"},
                                                   {"smiles": "CCN", "y": 1, "fold": "train"}])
    with pytest.raises(UserError, match=r"no_test\.csv: no kept row has fold = test"):
        prepare_table(tmp_path, no_test, {"smiles": "smiles", "y": "number"}, split="column",
                      split_column="fold")


def test_separate_test_file(tmp_path):
    train = write_csv(tmp_path / "train.csv", [{"smiles": s, "y": i} for i, s in
                                               enumerate(["CCO", "OCC", "CCN", "CCCC", "C1CC"])])
    test = write_csv(tmp_path / "test.csv", [{"smiles": "NCC", "y": 9}, {"smiles": "c1ccccc1", "y": 8},
                                             {"smiles": "c1ccccc1", "y": 7}])
    report = prepare_table(tmp_path, train, {"smiles": "smiles", "y": "number"},
                           test=str(test), max_rows=1)
    assert_adds_up(report)
    assert (report["split"], report["test_source"]) == ("test file", str(test))
    assert report["splits"] == {"train": 1, "test": 2} and report["not_sampled"] == 1
    bad = rejected(tmp_path)
    assert list(zip(bad["source"], bad["row"], bad["reason"], strict=True)) == [
        (str(train), 2, "duplicate"), (str(train), 5, "invalid_smiles"),
        (str(test), 3, "duplicate"), (str(train), 3, "duplicate")]
    assert bad["detail"].iloc[3] == f"same smiles as row 1 of the test file {test}"
    held_out = pd.read_parquet(tmp_path / "out" / "test.parquet")
    assert list(held_out["id"]) == ["test:1", "test:2"]


# ----------------------------------------------------------------------------- CLI and workflow
def test_cli_prepares_a_table(tmp_path, capsys):
    path = write_csv(tmp_path / "sol.csv", [{"smiles": s, "logS": i / 2}
                                            for i, s in enumerate(BENZENES + ACYCLIC)])
    out = tmp_path / "sol"
    assert cli.main(["prepare-dataset", "--kind", "table", "--source", "file", "--path", str(path),
                     "--columns", "smiles=smiles", "logS=number", "--split", "scaffold",
                     "--test-fraction", "0.3", "--out-dir", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["split"] == "scaffold" and report["kept"] == 9
    assert list(pd.read_parquet(out / "train.parquet").columns) == ["id", "source_row", "smiles",
                                                                    "logS"]
    rc = cli.main(["prepare-dataset", "--kind", "table", "--source", "file", "--path", str(path),
                   "--columns", "smi=smiles", "--out-dir", str(tmp_path / "x")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and "sol.csv: no column 'smi'; it has 'smiles', 'logS'" in lines[-1]
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["prepare-dataset", "--kind", "table", "--source", "file",
                                       "--out-dir", "x", "--columns", "smiles=molecule"])


def test_dataset_cli_flags_for_a_table_entry():
    entry = {"kind": "table", "source": "file", "path": "my data/sol.csv",
             "columns": {"smiles": "smiles", "log S": "number"}, "split": "column",
             "split_column": "fold", "test": "", "max_rows": 0}
    flags = cli.dataset_cli_flags(entry, {"file": entry["path"]}, "resources/downloads")
    assert flags == ("--kind table --source file --path 'my data/sol.csv' "
                     "--columns smiles=smiles 'log S=number' --split column --split-column fold "
                     "--max-rows 0")
    args = cli.build_parser().parse_args(["prepare-dataset", "--out-dir", "x", *shlex.split(flags)])
    assert dict(args.columns) == {"smiles": "smiles", "log S": "number"}
    assert (args.split, args.split_column, args.test) == ("column", "fold", "")


def test_config_accepts_a_table_dataset():
    schema = ROOT / "workflow/schemas/config.schema.yaml"
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["data"]["solubility"] = {
        "kind": "table", "source": "file", "path": "my_data/solubility.csv",
        "columns": {"smiles": "smiles", "logS": "number"}, "split": "scaffold",
        "scaffold_column": "smiles", "test_fraction": 0.15, "max_rows": 0, "max_chars": 512,
        "seed": 0}
    config["data"]["solubility_own_test"] = {
        "kind": "table", "source": "file", "path": "my_data/train.tsv", "test": "my_data/test.tsv",
        "columns": {"smiles": "smiles", "target": "protein", "note": "text", "y": "number"}}
    config["data"]["solubility_folds"] = {
        "kind": "table", "source": "file", "path": "my_data/folds.parquet",
        "columns": {"smiles": "smiles", "y": "number"}, "split": "column", "split_column": "fold"}
    assert config_problems(config, schema) == []
    config["data"]["solubility"]["columns"]["logS"] = "float"
    config["data"]["solubility"]["split"] = "column"
    assert set(config_problems(config, schema)) == {
        "config data.solubility: missing key 'split_column' (with split column)",
        "config data.solubility.columns.logS: 'float' is not one of smiles, protein, text, number"}


def test_schema_and_cli_choices_match_the_table_module():
    from tagllm.data.table import COLUMN_KINDS, SPLITS

    dataset = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())[
        "$defs"]["dataset"]["properties"]
    assert tuple(dataset["columns"]["additionalProperties"]["enum"]) == COLUMN_KINDS
    assert tuple(dataset["split"]["enum"]) == SPLITS
    parser = cli.build_parser()
    prepare = parser._subparsers._group_actions[0].choices["prepare-dataset"]
    split = next(a for a in prepare._actions if a.dest == "split")
    assert tuple(split.choices) == SPLITS
