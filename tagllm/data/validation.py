"""Row validation bookkeeping: every rejected row is kept with its reason, and counts add up.

A prepare step records each rejected input row (file, row number, reason, the raw value) in a
`Rejections`, then `write_prepared` writes the splits, `rejected.parquet` and `report.json`, whose
counts satisfy rows_in == kept + sum(rejected) + not_sampled.

A prepared dataset folder appears as a whole or not at all: its files are written into a staging
folder beside it, which then replaces it, so a run killed mid-write leaves the previous dataset
(never one seed's train split beside another seed's test split). When nothing usable is left (every
row rejected, an empty split), the folder holds only `rejected.parquet` and `report.json` (with the
error), and the error names the input file.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import pandas as pd

from tagllm.atomic import make_folder, write_json, write_parquet
from tagllm.errors import UserError

REJECTED_COLUMNS = ["source", "row", "reason", "detail", "value"]
REQUIRED_SPLITS = ("train", "test")
# Longest raw value kept in rejected.parquet: a 2 GB line is summarised, not copied.
MAX_VALUE_CHARS = 1000
# Longest line the text readers hold in memory; longer ones are skipped unread (reason too_long).
MAX_LINE_BYTES = 1 << 16


@dataclass
class Rejections:
    """Rows that a prepare step refused, with the reason for each."""

    rows: list[dict] = field(default_factory=list)

    def add(self, source: str, row: int, reason: str, detail: str, value: object) -> None:
        text = str(value)
        if len(text) > MAX_VALUE_CHARS:
            text = f"{text[:MAX_VALUE_CHARS]}... ({len(text):,} characters)"
        self.rows.append({"source": source, "row": int(row), "reason": reason,
                          "detail": detail, "value": text})

    def counts(self) -> dict[str, int]:
        return dict(sorted(Counter(r["reason"] for r in self.rows).items()))

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=REJECTED_COLUMNS)


def read_lines(path: str | Path, source: str, rejections: Rejections | None,
               max_bytes: int = MAX_LINE_BYTES) -> Iterator[tuple[int, str]]:
    """Yield (row, line without its line ending) for each readable line of a UTF-8 text file.

    Lines are read with a size limit, so a pathological line costs `max_bytes` of memory and no
    parsing: longer lines are skipped (`too_long`), lines that are not UTF-8 (`not_utf8`) or hold
    NUL bytes (`not_text`: a binary or UTF-16 file) are rejected. Without `rejections`, such a line
    is a UserError naming the file and row.
    """
    with open(path, "rb") as handle:
        row = 0
        while chunk := handle.readline(max_bytes + 1):
            row += 1
            if len(chunk) > max_bytes and not chunk.endswith(b"\n"):
                size = len(chunk)
                while (more := handle.readline(1 << 20)) and not more.endswith(b"\n"):
                    size += len(more)
                size += len(more)
                _refuse_line(rejections, source, row, "too_long",
                             f"line of {size:,} bytes > {max_bytes:,}; not read", chunk)
                continue
            raw = chunk.rstrip(b"\r\n")
            if row == 1:
                raw = raw.removeprefix(b"\xef\xbb\xbf")  # UTF-8 byte-order mark
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                _refuse_line(rejections, source, row, "not_utf8",
                             f"byte 0x{raw[error.start]:02x} at column {error.start + 1} is not "
                             "UTF-8 (a binary file?)", raw)
                continue
            if "\x00" in line:
                _refuse_line(rejections, source, row, "not_text",
                             "contains NUL bytes (a binary or UTF-16 file?)", raw)
                continue
            yield row, line


def read_parquet(path: str | Path, columns: list[str] | None = None) -> pd.DataFrame:
    """`pd.read_parquet`, with a file that is not Parquet (empty, truncated, another format) or
    lacks a requested column reported as a UserError naming it."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: Parquet file not found")
    try:
        return pd.read_parquet(path, columns=columns)
    except (ValueError, OSError) as error:  # pyarrow's ArrowInvalid is a ValueError
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UserError(f"{path}: not a readable Parquet file ({first})") from error


def _refuse_line(rejections: Rejections | None, source: str, row: int, reason: str, detail: str,
                 raw: bytes) -> None:
    if rejections is None:
        raise UserError(f"{source}: row {row}: {reason}: {detail}")
    rejections.add(source, row, reason, detail, raw[:200].decode("utf-8", "backslashreplace"))


def write_prepared(out_dir: str | Path, splits: dict[str, pd.DataFrame], rejections: Rejections,
                   rows_in: int, not_sampled: int, extra: dict | None = None,
                   kept: int | None = None) -> dict:
    """Write `<split>.parquet` for each split, `rejected.parquet` and `report.json`; returns the report.

    The folder is replaced as a whole (see the module docstring). `kept` counts input units kept
    (default: the rows written); it differs where one input makes several output rows (a sentence
    pair makes two translation directions). Missing or empty train/test splits are refused with
    `refuse_dataset`."""
    kept = sum(len(frame) for frame in splits.values()) if kept is None else kept
    rejected = rejections.counts()
    if rows_in != kept + sum(rejected.values()) + not_sampled:
        raise AssertionError(
            f"row counts do not add up: in={rows_in} kept={kept} rejected={sum(rejected.values())} "
            f"not_sampled={not_sampled}"
        )
    empty = [name for name in REQUIRED_SPLITS if name not in splits] + \
        [name for name, frame in splits.items() if frame.empty]
    if empty:
        problem = "no rows kept" if kept == 0 else \
            f"split {empty[0]!r} is empty; use more rows or a larger fraction"
        refuse_dataset(out_dir, rejections, rows_in, kept, not_sampled, problem, extra)
    report = {"rows_in": rows_in, "kept": kept, "rejected": rejected, "not_sampled": not_sampled,
              "splits": {name: len(frame) for name, frame in splits.items()}, **(extra or {})}
    with staged_folder(out_dir) as staging:
        for name, frame in splits.items():
            write_parquet(staging / f"{name}.parquet", frame)
        write_parquet(staging / "rejected.parquet", rejections.frame())
        write_json(staging / "report.json", report)
    return report


def refuse_dataset(out_dir: str | Path, rejections: Rejections, rows_in: int, kept: int,
                   not_sampled: int, problem: str, extra: dict | None = None) -> NoReturn:
    """Replace `out_dir` by `rejected.parquet` and `report.json` (with the error), then raise a
    UserError that names the input (`extra["source"]`), the problem and the reasons rows were
    rejected, so that a log without the folder still says what was wrong."""
    source = str((extra or {}).get("source", out_dir))
    counts = rejections.counts()
    if rows_in == 0:
        problem, summary = "no rows read", "an empty file?"
    else:
        summary = f"{kept} of {rows_in} rows kept"
        if counts:
            reasons = ", ".join(f"{reason}: {n}" for reason, n in counts.items())
            first = rejections.rows[0]
            summary += (f", {sum(counts.values())} rejected ({reasons}; first: row {first['row']}, "
                        f"{first['reason']}: {first['detail']})")
    message = f"{source}: {problem}: {summary}; rejected.parquet and report.json are in {out_dir}"
    report = {"rows_in": rows_in, "kept": kept, "rejected": counts, "not_sampled": not_sampled,
              "splits": {}, **(extra or {}), "error": message}
    with staged_folder(out_dir) as staging:
        write_parquet(staging / "rejected.parquet", rejections.frame())
        write_json(staging / "report.json", report)
    raise UserError(message)


# Files a prepared dataset folder may hold, so that replacing one never deletes a user's other files.
_DATASET_FILES = ("*.parquet", "report.json", ".*.tmp")


@contextmanager
def staged_folder(out_dir: str | Path) -> Iterator[Path]:
    """Yield an empty folder beside `out_dir`; if the block succeeds it replaces `out_dir` as a
    whole, if it fails it is removed and `out_dir` is left as it was.

    The swap is two renames (`out_dir` aside, staging in): a kill between them leaves no `out_dir`
    and the old dataset in `.<name>.old-*`, never a mixed one; the next run removes such leftovers.
    Refuses an `out_dir` that holds anything but a prepared dataset's files."""
    out = Path(os.path.abspath(out_dir))
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder; choose another --out-dir")
    if out.is_dir():
        foreign = sorted(p.name for p in out.iterdir()
                         if p.is_dir() or not any(p.match(pattern) for pattern in _DATASET_FILES))
        if foreign:
            raise UserError(f"{out}: holds {foreign[:5]}, which are not part of a prepared dataset; "
                             "the folder is replaced as a whole, so choose an empty or new one")
    make_folder(out.parent)
    for pattern in (f".{out.name}.staging-*", f".{out.name}.old-*"):
        for stale in out.parent.glob(pattern):
            shutil.rmtree(stale, ignore_errors=True)  # left by a killed run
    tag = uuid.uuid4().hex[:8]
    staging, old = out.with_name(f".{out.name}.staging-{tag}"), out.with_name(f".{out.name}.old-{tag}")
    os.mkdir(staging)  # mode 0777 less the umask, like any folder the user makes
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if out.exists():
        os.rename(out, old)
    os.rename(staging, out)
    shutil.rmtree(old, ignore_errors=True)
