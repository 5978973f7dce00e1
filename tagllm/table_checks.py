"""Checks of a prepared table as training and evaluation read it: in the columns a task reads,
only values a prepare step keeps. A hand-made file with anything else fails with the file, the
row (counting from 1) and the reason: training has nowhere to report skipped rows, and
`prepare-dataset` is the step that filters them (with `rejected.parquet`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from tagllm.errors import UserError
from tagllm.tasks import LANGUAGE_NAMES


def check_columns(frame: pd.DataFrame, columns: Sequence[str], path: Path,
                  kinds: Mapping[str, str] | None = None) -> None:
    """Each column of `columns` holds what its kind (`kinds`: smiles, protein, text or number;
    a task's `column_kinds()`) says: numbers finite, text non-empty, SMILES ASCII that RDKit
    parses, proteins the 20 standard residues in upper case; `src_lang`/`tgt_lang` known
    language codes. Without a kind, the built-in datasets' names say it: `y` is a number,
    `smiles*` a SMILES, `sequence` a protein, anything else text."""
    for column in dict.fromkeys(columns):
        kind = (kinds or {}).get(column) or default_kind(column)
        if kind == "number":
            check_numbers(frame[column], path, "label")
        else:
            check_text(frame[column], path, kind)


def default_kind(column: str) -> str:
    """What a column of a built-in dataset holds, by its name."""
    if column == "y":
        return "number"
    if column.startswith("smiles"):
        return "smiles"
    if column in ("src_lang", "tgt_lang"):  # a task's own row tags are checked by Task.prompt
        return "language"
    return "protein" if column == "sequence" else "text"


MAX_SMILES_CHARS = 10_000  # checked before RDKit parses: bounded time on pathological input


def _rows(index: Sequence[int]) -> str:
    """Rows by number, counting from 1: "rows 2, 5 and 3 more (counting from 1)"."""
    shown = ", ".join(str(i + 1) for i in index[:5])
    more = f" and {len(index) - 5} more" if len(index) > 5 else ""
    return f"rows {shown}{more} (counting from 1)"


def check_numbers(values: pd.Series, path: Path, what: str) -> None:
    """Finite numbers, else a `UserError` naming the file, column and rows."""
    where = f"{path}: column {values.name!r}"
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        raise UserError(f"{where} holds {values.dtype} values, not numbers (first: "
                        f"{values.iloc[0]!r}); {what}s must be numbers")
    numbers = values.astype(float)
    for bad, kind in ((numbers.isna(), "NaN"), (numbers.abs() == float("inf"), "infinite")):
        if bad.any():
            raise UserError(f"{where}: {kind} {what}s in {_rows(values.index[bad])}")


def _text_problem(column: str, kind: str, value: object) -> str:
    """Why `value` cannot be in `column` (of `kind`) of a prepared table ("" if it can)."""
    if not isinstance(value, str):
        missing = value is None or value is pd.NA or (isinstance(value, float) and value != value)
        return "missing value" if missing else f"{type(value).__name__} {value!r}, not text"
    if not value.strip():
        return "empty text"
    if kind == "smiles":
        if not value.isascii():
            return f"non-ASCII character {next(c for c in value if not c.isascii())!r} in a SMILES"
        if len(value) > MAX_SMILES_CHARS:
            return f"SMILES of {len(value)} characters (at most {MAX_SMILES_CHARS})"
        from rdkit import Chem, RDLogger

        RDLogger.DisableLog("rdApp.*")
        if Chem.MolFromSmiles(value) is None:
            return f"RDKit cannot parse the SMILES {value[:60]!r}"
    if kind == "protein":
        from tagllm.data.proteins import STANDARD_RESIDUES

        bad = sorted(set(value) - STANDARD_RESIDUES)
        if bad:
            return (f"protein has {''.join(bad)!r}, not only the 20 standard residues in upper "
                    "case")
    if kind == "language" and value not in LANGUAGE_NAMES:
        return f"unknown language code {value!r} (known: {sorted(LANGUAGE_NAMES)})"
    return ""


def check_text(values: pd.Series, path: Path, kind: str | None = None) -> None:
    """Every value valid text of its kind (smiles, protein, text; default by the column's name:
    `_text_problem`), else a `UserError` naming the file, column, rows and the first reason."""
    if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        raise UserError(f"{path}: column {values.name!r} holds {values.dtype} values, not text "
                        f"(first: {values.iloc[0]!r})")
    column, known = str(values.name), {}
    kind = kind or default_kind(column)
    reasons = []
    for value in values:
        if not isinstance(value, str):
            reasons.append(_text_problem(column, kind, value))
            continue
        if value not in known:  # molecules repeat across pairs: parse each once
            known[value] = _text_problem(column, kind, value)
        reasons.append(known[value])
    bad = [i for i, reason in enumerate(reasons) if reason]
    if bad:
        first = reasons[bad[0]]
        raise UserError(f"{path}: column {values.name!r}, "
                        f"{_rows(values.index[bad])}: {first}")


def read_table(path: str | Path, columns: list[str], max_rows: int = 0, seed: int = 0,
               kinds: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Read a prepared Parquet file, checking it has the columns, at least one row, and in `columns`
    only values a prepare step keeps (`check_columns`; `kinds`: what each column
    holds, a task's `column_kinds()`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: dataset file not found (did the prepare rule run?)")
    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError) as error:  # pyarrow's ArrowInvalid is a ValueError
        raise UserError(f"{path}: not a readable Parquet file ({error})") from error
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; has {list(frame.columns)}")
    if frame.empty:
        raise ValueError(f"{path}: dataset is empty")
    frame = frame.reset_index(drop=True)  # the index: row positions, for the messages
    if max_rows and len(frame) > max_rows:
        frame = frame.sample(n=max_rows, random_state=seed).sort_index()
    check_columns(frame, columns, path, kinds)
    return frame.reset_index(drop=True)
