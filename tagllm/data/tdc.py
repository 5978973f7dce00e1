"""TDC benchmark files read directly (no PyTDC, whose pins break a modern environment), with TDC's
split logic reproduced (tdc/utils/split.py, tdc/benchmark_group/base_group.py).

Two ways in, for each of DC and BA:

- **The benchmark groups** (`source: tdc-group`, the paper preset): TDC's own test files, used as
  they are (every row, in file order), and a validation set split from `train_val` as
  `BenchmarkGroup.get_train_valid_split(seed)` splits it.
  - DTI-DG group (`dti_dg_group/bindingdb_patent/{train_val,test}.csv`, metric PCC): validation is
    `create_group_split(train_val, seed, holdout_frac=0.2, group_column="Year")` (`group_split`).
  - DrugCombo group (`drugcombo_group/drugcomb_css/{train_val,test}.pkl`, label `Y`, metric MAE,
    also per tissue `target_class` on the test file): validation is
    `create_combination_split(train_val, seed, frac=[0.875, 0.125, 0.0])` (`combination_split`).
- **The raw datasets** (`source: tdc`): BindingDB_Patent split by year (train/valid 2013-2018, test
  2019-2021, validation as above) and DrugComb (label CSS) by TDC's combination split, 20% test.

Both splits draw with NumPy's legacy global RNG exactly as TDC does: `np.random.seed(seed)` once per
year group, or once before the two `np.random.choice(..., replace=False)` calls of the combination
split, both made even when a part gets no pairs (a size-0 choice still shuffles the whole candidate
list, which moves every later draw). One difference is deliberate: TDC samples from `list(set)`,
whose order depends on the process's string-hash seed (PYTHONHASHSEED), so TDC's own validation
rows change from one Python process to the next; we sort the candidate pairs first, so ours are
reproducible. Given the same candidate order the draws are TDC's (tests/test_tdc_groups.py).
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
DTI_COLUMNS = ("Drug_ID", "Drug", "Target_ID", "Target", "Y")
DRUGCOMB_LABELS = ("CSS", "Synergy_ZIP", "Synergy_Bliss", "Synergy_Loewe", "Synergy_HSA")
# TDC's benchmark-group constants (tdc/benchmark_group/base_group.py get_train_valid_split).
GROUP_HOLDOUT_FRACTION = 0.2  # DTI-DG: per-Year validation share
GROUP_COMBINATION_FRACTIONS = (0.875, 0.125, 0.0)  # DrugCombo: train, valid, test of train_val
# The column of the DrugCombo group's test file that TDC also scores by (MAE per tissue).
TARGET_CLASS = "target_class"


def read_bindingdb_patent(path: str | Path, require_year: bool = True) -> pd.DataFrame:
    """Drug_ID, Drug (SMILES), Target_ID, Target (sequence), Y, Year from TDC's CSV (raw or renamed,
    comma- or tab-separated); the benchmark group's train_val.csv and test.csv have these columns.
    Without `require_year` a file without Year is read too (Year is then left out)."""
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
    required = [*DTI_COLUMNS, "Year"] if require_year or "Year" in frame.columns \
        else list(DTI_COLUMNS)
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; has {list(frame.columns)}")
    return frame[required]


def group_split(frame: pd.DataFrame, seed: int, holdout_fraction: float = GROUP_HOLDOUT_FRACTION,
                column: str = "Year") -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, valid): TDC's `create_group_split`. For each value of `column` in order of first
    appearance, `np.random.seed(seed)` and a row is kept for training when `np.random.rand() <
    1 - holdout_fraction`; the parts are concatenated in that order (index reset)."""
    train_parts, valid_parts = [], []
    for value in frame[column].unique():
        group = frame[frame[column] == value]
        np.random.seed(seed)
        keep = np.random.rand(len(group)) < (1 - holdout_fraction)
        train_parts.append(group[keep])
        valid_parts.append(group[~keep])
    train = pd.concat(train_parts) if train_parts else frame.iloc[:0]
    valid = pd.concat(valid_parts) if valid_parts else frame.iloc[:0]
    return train.reset_index(drop=True), valid.reset_index(drop=True)


def year_split(frame: pd.DataFrame, seed: int, holdout_fraction: float = GROUP_HOLDOUT_FRACTION
               ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(train, valid, test, outside) for the raw BindingDB_Patent, as TDC's DTI-DG group splits it:
    2013-2018 split by `group_split`, 2019-2021 the test set, other years (or none) outside."""
    years = pd.to_numeric(frame["Year"], errors="coerce")
    train_val = frame[years.isin(TRAIN_YEARS)]
    test = frame[years.isin(TEST_YEARS)].reset_index(drop=True)
    outside = frame[~years.isin(TRAIN_YEARS + TEST_YEARS)].reset_index(drop=True)
    train, valid = group_split(train_val, seed, holdout_fraction)
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


def drugcomb_group_columns(frame: pd.DataFrame, path: str | Path) -> pd.DataFrame:
    """The columns tagllm reads from a DrugCombo-group file (train_val.pkl, test.pkl): ids, SMILES,
    cell line, the label Y and, where the file has it (the test file), target_class; ids, SMILES
    and target_class as text. Rows and their order are the file's."""
    if not isinstance(frame, pd.DataFrame):
        raise UserError(f"{path}: holds a {type(frame).__name__}, not a table; is it TDC's "
                        "DrugCombo group file?")
    required = [*DRUGCOMB_COLUMNS, "Y"]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise UserError(f"{path}: missing column(s) {missing}; has {list(frame.columns)}")
    kept = frame[required + [TARGET_CLASS] * (TARGET_CLASS in frame.columns)].copy()
    for column in (*DRUGCOMB_COLUMNS, TARGET_CLASS):
        if column in kept.columns and kept[column].dtype == object:
            kept[column] = kept[column].astype(str)
    return kept.reset_index(drop=True)


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


def load_drugcomb_group_file(folder: str | Path, member: str, trust_pickle: bool
                             ) -> tuple[pd.DataFrame, Path]:
    """One DrugCombo-group file (`member`, e.g. drugcombo_group/drugcomb_css/test.pkl) from the
    source's downloads folder, and the file read: the Parquet file the download converted it to,
    else the pickle if its SHA-256 is pinned (`sources.SHA256_PINS[member]`) or `trust_pickle`."""
    from tagllm.data.download import check_pickle
    from tagllm.data.sources import SHA256_PINS

    pickle_path = Path(folder) / member
    parquet_path = pickle_path.with_suffix(".parquet")
    if parquet_path.is_file():
        return drugcomb_group_columns(read_parquet(parquet_path), parquet_path), parquet_path
    if not pickle_path.is_file():
        raise FileNotFoundError(f"{parquet_path}: DrugCombo group file not found (run the download "
                                "rule: `python -m tagllm download --source tdc_drugcombo_group`)")
    check_pickle(pickle_path, SHA256_PINS.get(member), trust_pickle,
                 "rerun with --trust-pickle, or convert it to Parquet once with `python -m tagllm "
                 f"download --source tdc_drugcombo_group --out-dir {folder} --trust-pickle`")
    return drugcomb_group_columns(pd.read_pickle(pickle_path), pickle_path), pickle_path


def combination_split(frame: pd.DataFrame, seed: int, fractions=(0.8, 0.0, 0.2)
                      ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(train, valid, test): TDC's `create_combination_split`, with the candidate pairs sorted.

    Sizes as TDC: test_size = int(n * fractions[2]), train_size = int(n * fractions[0]), valid the
    rest; pairs `Drug1_ID,Drug2_ID` (order-sensitive) present in every cell line are the candidates.
    After `np.random.seed(seed)`, int(test_size / cell lines) test pairs are drawn with
    `np.random.choice(candidates, k, replace=False)`, then int(valid_size / cell lines) validation
    pairs from the rest the same way; both calls are made even for k = 0, as TDC makes them. Every
    row of a drawn pair goes to its part; row order is kept within each part."""
    if abs(sum(fractions) - 1) > 1e-9:
        raise ValueError(f"split fractions must sum to 1, got {fractions}")
    test_size = int(len(frame) * fractions[2])
    train_size = int(len(frame) * fractions[0])
    valid_size = len(frame) - train_size - test_size
    np.random.seed(seed)
    pairs = frame["Drug1_ID"].astype(str) + "," + frame["Drug2_ID"].astype(str)
    lines = frame["Cell_Line_ID"].unique()
    if len(lines) == 0:
        raise UserError("a combination split needs at least one row with a cell line")
    shared = set.intersection(*(set(pairs[frame["Cell_Line_ID"] == line]) for line in lines))
    candidates = sorted(shared)
    test_pairs = _choose_pairs(candidates, int(test_size / len(lines)), "test")
    rest = sorted(shared - test_pairs)
    valid_pairs = _choose_pairs(rest, int(valid_size / len(lines)), "validation")
    in_test, in_valid = pairs.isin(test_pairs), pairs.isin(valid_pairs)
    return (frame[~in_test & ~in_valid].reset_index(drop=True),
            frame[in_valid].reset_index(drop=True), frame[in_test].reset_index(drop=True))


def _choose_pairs(candidates: list[str], k: int, part: str) -> set[str]:
    """`np.random.choice(candidates, k, replace=False)` as a set, called for k = 0 too (it then still
    draws a permutation of the candidates, as TDC's call does)."""
    if k > len(candidates):  # TDC's own call fails here too (NumPy: larger sample than population)
        raise UserError(f"the combination split needs {k} {part} drug pairs present in every cell "
                        f"line, but there are only {len(candidates)}")
    return {str(pair) for pair in np.random.choice(np.array(candidates, dtype=object), k,
                                                   replace=False)}
