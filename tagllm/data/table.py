"""A user's own table (CSV, TSV or Parquet) as a prepared dataset: each declared column is validated
by its kind, then the rows are split at random, by scaffold, by a split column, or against a
separate test file.

Config (a dataset under `data:`; on the command line `prepare-dataset --kind table --source file`):
`path`, `columns` ({name: kind}, every column used), `split` (random, scaffold or column),
`split_column`, `scaffold_column`, `test`, `test_fraction`, `max_rows`, `max_chars`, `seed`.

| kind | written as | rejected as |
|---|---|---|
| smiles | canonical SMILES (RDKit) | `too_long` (checked before RDKit parses it), `invalid_smiles` |
| protein | `proteins.normalise_protein` (upper case, no trailing `*`) | `nonstandard_residue`, `too_long` |
| text | whitespace collapsed (`text.clean_text`) | `too_long` |
| number | float | `nan_label` (not a number, or not finite) |

A blank value in a required column is `empty`; a row whose input columns (every column but the
numbers) repeat those of an earlier kept row is a `duplicate` (the first is kept). Rows are
numbered 1, 2, ... from the first data row of their file (the header is not a row). Written
columns: `id` (the row number; `test:<row>` for the test file's rows), `source_row`, then the
declared columns under their own names. SMILES longer than `molecules.MAX_SMILES_CHARS` are
rejected whatever `max_chars` says (RDKit's limit; proteins and text may be longer).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from tagllm.data.molecules import MAX_SMILES_CHARS, canonical_smiles
from tagllm.data.proteins import normalise_protein, protein_problem
from tagllm.data.splits import random_split, scaffold_split, subsample
from tagllm.data.text import clean_text
from tagllm.data.validation import Rejections, read_parquet, refuse_dataset, write_prepared
from tagllm.errors import UserError

COLUMN_KINDS = ("smiles", "protein", "text", "number")
SPLITS = ("random", "scaffold", "column")
SPLIT_VALUES = ("train", "valid", "test")  # values of a split column (any case)
SEPARATORS = {".csv": ",", ".tsv": "\t"}
RESERVED_COLUMNS = ("id", "source_row")  # written by tagllm


def check_column_kinds(columns: Mapping[str, str]) -> dict[str, str]:
    """`columns` ({name: kind}) as a dict, refused with a UserError if empty, if a kind is not one
    of COLUMN_KINDS or if a name is one tagllm writes itself."""
    if not columns:
        raise UserError("a table dataset needs columns: {name: kind}, kind one of "
                        f"{', '.join(COLUMN_KINDS)}")
    for name, kind in columns.items():
        if kind not in COLUMN_KINDS:
            raise UserError(f"columns: {name!r} is declared {kind!r}; a column is one of "
                            f"{', '.join(COLUMN_KINDS)}")
        if name in RESERVED_COLUMNS:
            raise UserError(f"columns: {name!r} is a column tagllm writes itself "
                            f"({', '.join(RESERVED_COLUMNS)}); rename it in the file")
    return dict(columns)


def read_table(path: str | Path, columns: Sequence[str] | None) -> pd.DataFrame:
    """The `columns` (None: every column) of a .csv, .tsv or .parquet file (by suffix). CSV and
    TSV cells are read as text, exactly as written (no NA guessing: `NA` stays `NA`); Parquet as
    stored. A missing column or an unreadable file is a UserError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: table file not found")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        frame = read_parquet(path)
    elif suffix in SEPARATORS:
        try:
            frame = pd.read_csv(path, sep=SEPARATORS[suffix], dtype=str, keep_default_na=False,
                                na_filter=False, encoding="utf-8-sig")
        except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
            first = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise UserError(f"{path}: not a readable {suffix[1:].upper()} file ({first})") from error
    else:
        raise UserError(f"{path}: unknown table format {suffix!r}; use .csv, .tsv or .parquet")
    if columns is None:
        return frame
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise UserError(f"{path}: no column{'s' * (len(missing) > 1)} {', '.join(map(repr, missing))}"
                        f"; it has {', '.join(map(repr, frame.columns))}{_separator_hint(frame, suffix)}")
    return frame[list(columns)]


def _separator_hint(frame: pd.DataFrame, suffix: str) -> str:
    """A hint when a whole header line came out as one column: the file's separator is another."""
    if len(frame.columns) != 1 or suffix not in SEPARATORS:
        return ""
    for other, separator in SEPARATORS.items():
        if other != suffix and separator in str(frame.columns[0]):
            return f" (is it {'tab' if separator == chr(9) else 'comma'}-separated? name it {other})"
    return ""


def validate_rows(frame: pd.DataFrame, column_kinds: Mapping[str, str], source: str,
                  max_chars: int, rejections: Rejections, first_row: int = 1,
                  required: Collection[str] | None = None,
                  keep_duplicates: bool = False) -> pd.DataFrame:
    """The valid, de-duplicated rows of `frame` as columns id, source_row and `column_kinds`'
    columns (numbers as float); every other row goes to `rejections` under `source`.

    Row i of `frame` is row `first_row + i` of `source`. `required`: the columns that must hold a
    value (default: all); a blank cell in another column is kept as None (NaN for numbers), e.g.
    the label column of rows to predict. `keep_duplicates`: a row that repeats an earlier one is
    kept (rows to predict), not rejected (rows to train or test on)."""
    rows = range(first_row, first_row + len(frame))
    return _validate(frame, list(rows), column_kinds, source, max_chars, rejections, required,
                     keep_duplicates)


def _validate(frame: pd.DataFrame, rows: Sequence[int], column_kinds: Mapping[str, str],
              source: str, max_chars: int, rejections: Rejections,
              required: Collection[str] | None, keep_duplicates: bool = False) -> pd.DataFrame:
    """`validate_rows` with the row number of each row of `frame` given."""
    kinds = check_column_kinds(column_kinds)
    required = set(kinds) if required is None else set(required)
    if unknown := sorted(required - set(kinds)):
        raise ValueError(f"required columns {unknown} are not among the columns {list(kinds)}")
    inputs = [name for name, kind in kinds.items() if kind != "number"]
    cells = {name: frame[name].tolist() for name in kinds}
    checked: dict[tuple[str, str], tuple[object, str, str]] = {}  # repeated values checked once
    kept, seen = [], {}
    for position, row in enumerate(rows):
        record, problem = _check_row({name: cells[name][position] for name in kinds}, kinds,
                                     required, max_chars, checked)
        if problem is None:
            key = tuple(record[name] for name in inputs)
            if inputs and key in seen and not keep_duplicates:
                problem = "duplicate", f"same {', '.join(inputs)} as row {seen[key]}", \
                    " | ".join(map(str, key))
            else:
                seen[key] = row
                kept.append({"id": str(row), "source_row": int(row), **record})
        if problem is not None:
            reason, detail, value = problem
            rejections.add(source, row, reason, detail, value)
    result = pd.DataFrame(kept, columns=["id", "source_row", *kinds])
    for name, kind in kinds.items():
        if kind == "number":
            result[name] = result[name].astype(float)
    return result


def _check_row(cells: dict[str, object], kinds: dict[str, str], required: set[str],
               max_chars: int, checked: dict) -> tuple[dict, tuple[str, str, object] | None]:
    """(the row's values as written, None), or (partial values, (reason, detail, value)) for the
    first cell that is refused."""
    record: dict[str, object] = {}
    for name, kind in kinds.items():
        raw = cells[name]
        if _blank(raw):
            if name not in required:
                record[name] = math.nan if kind == "number" else None
                continue
            if kind == "number" and isinstance(raw, float | np.floating):  # NaN from Parquet
                return record, ("nan_label", f"{name}: not a number (NaN)", raw)
            return record, ("empty", f"{name}: blank", raw)
        if not isinstance(raw, str):  # Parquet values; CSV cells are all strings
            value, reason, detail = check_value(kind, raw, max_chars)
        else:
            if (kind, raw) not in checked:
                checked[(kind, raw)] = check_value(kind, raw, max_chars)
            value, reason, detail = checked[(kind, raw)]
        if reason:
            return record, (reason, f"{name}: {detail}", value)
        record[name] = value
    return record, None


def _blank(raw: object) -> bool:
    """None, NA, NaN, or a string of whitespace."""
    if raw is None or raw is pd.NA:
        return True
    if isinstance(raw, float | np.floating):
        return bool(np.isnan(raw))
    return isinstance(raw, str) and not raw.strip()


def check_value(kind: str, raw: object, max_chars: int) -> tuple[object, str, str]:
    """(the value as written, "", "") for a valid non-blank cell of a column of `kind`; otherwise
    (the value to show, reason, detail)."""
    if kind == "number":
        try:
            number = float(raw.strip() if isinstance(raw, str) else raw)
        except (TypeError, ValueError):
            return raw, "nan_label", "not a number"
        return (number, "", "") if math.isfinite(number) else (raw, "nan_label", "not finite")
    text = str(raw).strip()
    if kind == "smiles":
        return canonical_smiles(text, min(max_chars, MAX_SMILES_CHARS))
    if kind == "protein":
        sequence = normalise_protein(text)
        if not sequence:
            return text, "empty", "no residues"
        problem = protein_problem(sequence, max_chars)
        return (sequence, *problem) if problem else (sequence, "", "")
    text = clean_text(text) or ""
    if len(text) > max_chars:
        return text, "too_long", f"{len(text):,} > {max_chars} characters"
    return text, "", ""


def prepare_table(out_dir: str | Path, path: str | Path, columns: Mapping[str, str], *,
                  split: str = "random", split_column: str = "", scaffold_column: str = "",
                  test: str | Path = "", test_fraction: float = 0.1, max_rows: int = 0,
                  max_chars: int = 512, seed: int = 0) -> dict:
    """Validate the table at `path` and write its splits, `rejected.parquet` and `report.json`
    into `out_dir`; returns the report (which names the split used).

    `split`: random (`test_fraction` held out), scaffold (`splits.scaffold_split` on
    `scaffold_column`, default the first smiles column) or column (`split_column`'s values train,
    valid, test; any other is rejected as `bad_split`). With `test` (a file with the same columns)
    `path` is not split: it is the training set (`max_rows` subsamples it) and `test` the test set,
    kept whole; a training row that repeats a test row's inputs is rejected as `duplicate`, so no
    test input is trained on."""
    kinds = check_column_kinds(columns)
    scaffold_column = _check_split_settings(kinds, path, split, split_column, scaffold_column,
                                            test, test_fraction)
    rejections = Rejections()
    source = str(path)
    extra = {"source": source, "columns": kinds, "split": "test file" if test else split,
             "seed": seed}
    if test:
        return _against_test_file(Path(out_dir), source, str(test), kinds, max_rows, max_chars,
                                  seed, rejections, extra)
    if split == "column":
        return _by_split_column(Path(out_dir), source, kinds, split_column, max_rows, max_chars,
                                seed, rejections, {**extra, "split_column": split_column})
    frame = read_table(path, list(kinds))
    kept = validate_rows(frame, kinds, source, max_chars, rejections)
    sampled = subsample(kept, max_rows, seed)
    not_sampled = len(kept) - len(sampled)
    extra["test_fraction"] = test_fraction
    if split == "scaffold":
        extra["scaffold_column"] = scaffold_column
    if len(sampled) < 2:
        refuse_dataset(out_dir, rejections, len(frame), len(sampled), not_sampled,
                       "only 1 row kept, 2 are needed to split" if len(sampled) else
                       "no rows kept", extra)
    try:
        train, held_out = scaffold_split(sampled, scaffold_column, test_fraction, seed) \
            if split == "scaffold" else random_split(sampled, test_fraction, seed)
    except ValueError as error:  # every molecule has the same scaffold
        refuse_dataset(out_dir, rejections, len(frame), len(sampled), not_sampled, str(error),
                       extra)
    return write_prepared(out_dir, {"train": train, "test": held_out}, rejections,
                          rows_in=len(frame), not_sampled=not_sampled, extra=extra)


def _check_split_settings(kinds: dict[str, str], path: str | Path, split: str, split_column: str,
                          scaffold_column: str, test: str | Path, test_fraction: float) -> str:
    """Refuse settings that do not fit together; returns the scaffold column ("" unless split
    scaffold)."""
    if not str(path):
        raise UserError("a table dataset needs path: (a .csv, .tsv or .parquet file)")
    if not any(kind != "number" for kind in kinds.values()):
        raise UserError("columns: declare at least one smiles, protein or text column (the "
                        "model's input)")
    if split not in SPLITS:
        raise UserError(f"split {split!r}: one of {', '.join(SPLITS)}")
    if not 0.0 < test_fraction < 1.0:
        raise UserError(f"test_fraction must be between 0 and 1 (exclusive), not {test_fraction}")
    if test and split != "random":
        raise UserError(f"split {split}: with a test file ({test}) the table is not split; "
                        "drop split or test")
    if split == "column" and not split_column:
        raise UserError("split column needs split_column: (a column of train, valid, test)")
    if split_column and split != "column":
        raise UserError(f"split_column {split_column!r} is read only with split: column")
    smiles = [name for name, kind in kinds.items() if kind == "smiles"]
    if split != "scaffold":
        if scaffold_column:
            raise UserError(f"scaffold_column {scaffold_column!r} is read only with split: "
                            "scaffold")
        return ""
    if not smiles:
        raise UserError("split scaffold needs a smiles column in columns:")
    if scaffold_column and scaffold_column not in smiles:
        raise UserError(f"scaffold_column {scaffold_column!r} is not a smiles column of "
                        f"columns: (smiles columns: {', '.join(smiles)})")
    return scaffold_column or smiles[0]


def _by_split_column(out: Path, source: str, kinds: dict[str, str], split_column: str,
                     max_rows: int, max_chars: int, seed: int, rejections: Rejections,
                     extra: dict) -> dict:
    """Rows go to the split their `split_column` names (train, valid, test, in any case)."""
    frame = read_table(source, list(dict.fromkeys([*kinds, split_column])))
    labels = ["" if _blank(v) else str(v).strip().lower() for v in frame[split_column]]
    rows = []
    for row, (label, raw) in enumerate(zip(labels, frame[split_column], strict=True), start=1):
        if label in SPLIT_VALUES:
            rows.append(row)
        else:
            rejections.add(source, row, "bad_split", f"{split_column}: {str(raw)!r} is not "
                           f"{', '.join(SPLIT_VALUES)}", raw)
    kept = _validate(frame.iloc[[row - 1 for row in rows]], rows, kinds, source, max_chars,
                     rejections, None)
    sampled = subsample(kept, max_rows, seed)
    not_sampled = len(kept) - len(sampled)
    part = sampled["source_row"].map(lambda row: labels[row - 1])
    splits = {name: sampled[(part == name).to_numpy()].reset_index(drop=True)
              for name in SPLIT_VALUES}
    empty = [name for name in ("train", "test") if splits[name].empty]
    if empty:
        refuse_dataset(out, rejections, len(frame), len(sampled), not_sampled,
                       f"no kept row has {split_column} = {empty[0]}", extra)
    if splits["valid"].empty:
        del splits["valid"]
    return write_prepared(out, splits, rejections, rows_in=len(frame), not_sampled=not_sampled,
                          extra=extra)


def _against_test_file(out: Path, source: str, test_source: str, kinds: dict[str, str],
                       max_rows: int, max_chars: int, seed: int, rejections: Rejections,
                       extra: dict) -> dict:
    """`source` as the training set (subsampled), `test_source` as the test set (whole)."""
    frame, test_frame = read_table(source, list(kinds)), read_table(test_source, list(kinds))
    train = validate_rows(frame, kinds, source, max_chars, rejections)
    test = validate_rows(test_frame, kinds, test_source, max_chars, rejections)
    test["id"] = "test:" + test["source_row"].astype(str)
    train = _drop_test_inputs(train, test, kinds, source, test_source, rejections)
    sampled = subsample(train, max_rows, seed)
    extra = {**extra, "test_source": test_source}
    rows_in, not_sampled = len(frame) + len(test_frame), len(train) - len(sampled)
    if sampled.empty or test.empty:
        refuse_dataset(out, rejections, rows_in, len(sampled) + len(test), not_sampled,
                       f"no {'training' if sampled.empty else 'test'} row kept", extra)
    return write_prepared(out, {"train": sampled, "test": test}, rejections, rows_in=rows_in,
                          not_sampled=not_sampled, extra=extra)


def _drop_test_inputs(train: pd.DataFrame, test: pd.DataFrame, kinds: dict[str, str],
                      source: str, test_source: str, rejections: Rejections) -> pd.DataFrame:
    """`train` without the rows whose inputs (the non-number columns) are those of a test row."""
    inputs = [name for name, kind in kinds.items() if kind != "number"]
    test_rows = {tuple(values): row for row, *values in
                 zip(test["source_row"], *(test[name] for name in inputs), strict=True)}
    keep = []
    for row, *values in zip(train["source_row"], *(train[name] for name in inputs), strict=True):
        key = tuple(values)
        keep.append(key not in test_rows)
        if key in test_rows:
            rejections.add(source, row, "duplicate", f"same {', '.join(inputs)} as row "
                           f"{test_rows[key]} of the test file {test_source}",
                           " | ".join(map(str, key)))
    return train[np.array(keep, dtype=bool)].reset_index(drop=True)
