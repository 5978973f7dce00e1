"""TDC benchmark files read directly (no PyTDC, whose pins break a modern environment), with TDC's
split logic reproduced.

- BindingDB_Patent (DTI-DG group): train/valid = patents of 2013-2018, test = 2019-2021; the validation
  set is TDC's `create_group_split`: within each year, `np.random.seed(seed)` then a row goes to
  validation when `np.random.rand() >= 1 - 0.2`.
- DrugComb with label CSS (DrugCombo group): TDC's `create_combination_split`: drug pairs
  (`Drug1_ID,Drug2_ID`, order-sensitive) present in every cell line are sampled, with
  `np.random.seed(seed)`, into the test (and validation) set; all rows of a chosen pair go there.
  TDC samples from `list(set)`, whose order depends on PYTHONHASHSEED; we sort the pairs first, so our
  split is reproducible run to run (but not row-identical to TDC's published files).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tagllm.data.validation import read_parquet
from tagllm.errors import UserError

TRAIN_YEARS = tuple(range(2013, 2019))
TEST_YEARS = (2019, 2020, 2021)
RAW_DTI_COLUMNS = {"ID1": "Drug_ID", "X1": "Drug", "ID2": "Target_ID", "X2": "Target"}
DRUGCOMB_LABELS = ("CSS", "Synergy_ZIP", "Synergy_Bliss", "Synergy_Loewe", "Synergy_HSA")


def read_bindingdb_patent(path: str | Path) -> pd.DataFrame:
    """Drug_ID, Drug (SMILES), Target_ID, Target (sequence), Y, Year from TDC's CSV (raw or renamed)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: BindingDB_Patent file not found (run the download rule)")
    try:
        with path.open(encoding="utf-8") as handle:
            header = handle.readline(1 << 16)
        frame = pd.read_csv(path, sep="\t" if "\t" in header else ",", encoding="utf-8")
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UserError(f"{path}: not a readable CSV file ({first}); is it TDC's "
                        "BindingDB_Patent?") from error
    frame = frame.rename(columns=RAW_DTI_COLUMNS)
    required = ["Drug_ID", "Drug", "Target_ID", "Target", "Y", "Year"]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; has {list(frame.columns)}")
    return frame[required]


def year_split(frame: pd.DataFrame, seed: int, holdout_fraction: float = 0.2
               ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(train, valid, test, outside) for BindingDB_Patent, as TDC's DTI-DG group splits it."""
    years = pd.to_numeric(frame["Year"], errors="coerce")
    train_val = frame[years.isin(TRAIN_YEARS)]
    test = frame[years.isin(TEST_YEARS)].reset_index(drop=True)
    outside = frame[~years.isin(TRAIN_YEARS + TEST_YEARS)].reset_index(drop=True)
    train_parts, valid_parts = [], []
    for year in train_val["Year"].unique():  # order of first appearance, as TDC
        group = train_val[train_val["Year"] == year]
        np.random.seed(seed)
        keep = np.random.rand(len(group)) < (1 - holdout_fraction)
        train_parts.append(group[keep])
        valid_parts.append(group[~keep])
    train = pd.concat(train_parts).reset_index(drop=True) if train_parts else train_val.iloc[:0]
    valid = pd.concat(valid_parts).reset_index(drop=True) if valid_parts else train_val.iloc[:0]
    return train, valid, test, outside


DRUGCOMB_COLUMNS = ("Drug1_ID", "Drug1", "Drug2_ID", "Drug2", "Cell_Line_ID")


def drugcomb_columns(frame: pd.DataFrame, path: str | Path) -> pd.DataFrame:
    """The DrugComb columns tagllm reads (ids, SMILES, cell line, labels), ids and SMILES as text
    so that they store as Parquet whatever types the pickle held."""
    missing = [c for c in DRUGCOMB_COLUMNS if c not in frame.columns]
    if missing:
        raise UserError(f"{path}: missing column(s) {missing}; has {list(frame.columns)}")
    kept = frame[[c for c in (*DRUGCOMB_COLUMNS, *DRUGCOMB_LABELS) if c in frame.columns]].copy()
    for column in DRUGCOMB_COLUMNS:
        if kept[column].dtype == object:
            kept[column] = kept[column].astype(str)
    return kept


def read_drugcomb(path: str | Path, label: str = "CSS") -> pd.DataFrame:
    """Drug1_ID, Drug1, Drug2_ID, Drug2, Cell_Line_ID, Y (= `label`) from TDC's DrugComb file:
    `drugcomb.parquet` (written by the download) or the raw pickle.

    Unpickling runs code from the file and this function does not check it: prepare steps call
    `load_drugcomb`, which does."""
    path = Path(path)
    if label not in DRUGCOMB_LABELS:
        raise ValueError(f"DrugComb label must be one of {DRUGCOMB_LABELS}, not {label!r}")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: DrugComb file not found (run the download rule)")
    frame = pd.read_pickle(path) if path.suffix == ".pkl" else read_parquet(path)
    required = ["Drug1_ID", "Drug1", "Drug2_ID", "Drug2", "Cell_Line_ID", label]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; has {list(frame.columns)}")
    return frame[required].rename(columns={label: "Y"})


def load_drugcomb(folder: str | Path, label: str, trust_pickle: bool) -> tuple[pd.DataFrame, Path]:
    """DrugComb from a downloads folder, and the file read: `drugcomb.parquet` if the download
    wrote it, else `drugcomb.pkl` if its SHA-256 is pinned (or `trust_pickle`)."""
    from tagllm.data.download import check_pickle
    from tagllm.data.sources import SHA256_PINS

    folder = Path(folder)
    if (folder / "drugcomb.parquet").is_file():
        path = folder / "drugcomb.parquet"
    else:
        path = folder / "drugcomb.pkl"
        if path.is_file():
            check_pickle(path, SHA256_PINS["tdc_drugcomb"], trust_pickle,
                         "rerun with --trust-pickle, or convert it to Parquet once with `python -m "
                         f"tagllm download --source tdc_drugcomb --out-dir {folder} --trust-pickle`")
    return read_drugcomb(path, label), path


def combination_split(frame: pd.DataFrame, seed: int, fractions=(0.8, 0.0, 0.2)
                      ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(train, valid, test): TDC's combination split, with the candidate pairs sorted first."""
    if abs(sum(fractions) - 1) > 1e-9:
        raise ValueError(f"split fractions must sum to 1, got {fractions}")
    test_size = int(len(frame) * fractions[2])
    train_size = int(len(frame) * fractions[0])
    valid_size = len(frame) - train_size - test_size
    np.random.seed(seed)
    pairs = frame["Drug1_ID"].astype(str) + "," + frame["Drug2_ID"].astype(str)
    lines = frame["Cell_Line_ID"].unique()
    shared = set.intersection(*(set(pairs[frame["Cell_Line_ID"] == line]) for line in lines))
    candidates = sorted(shared)
    n_test = min(int(test_size / len(lines)), len(candidates))
    test_pairs = set(np.random.choice(candidates, n_test, replace=False)) if n_test else set()
    rest = sorted(shared - test_pairs)
    n_valid = min(int(valid_size / len(lines)), len(rest))
    valid_pairs = set(np.random.choice(rest, n_valid, replace=False)) if n_valid else set()
    in_test, in_valid = pairs.isin(test_pairs), pairs.isin(valid_pairs)
    return (frame[~in_test & ~in_valid].reset_index(drop=True),
            frame[in_valid].reset_index(drop=True), frame[in_test].reset_index(drop=True))
