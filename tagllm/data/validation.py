"""Row validation bookkeeping: every rejected row is kept with its reason, and counts add up.

A prepare step records each rejected input row (file, row number, reason, the raw value) in a
`Rejections`, then `write_prepared` writes the splits, `rejected.parquet` and `report.json`, whose
counts satisfy rows_in == kept + sum(rejected) + not_sampled.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from tagllm.atomic import write_json, write_parquet

REJECTED_COLUMNS = ["source", "row", "reason", "detail", "value"]


@dataclass
class Rejections:
    """Rows that a prepare step refused, with the reason for each."""

    rows: list[dict] = field(default_factory=list)

    def add(self, source: str, row: int, reason: str, detail: str, value: object) -> None:
        self.rows.append({"source": source, "row": int(row), "reason": reason,
                          "detail": detail, "value": str(value)})

    def counts(self) -> dict[str, int]:
        return dict(sorted(Counter(r["reason"] for r in self.rows).items()))

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=REJECTED_COLUMNS)


def write_prepared(out_dir: str | Path, splits: dict[str, pd.DataFrame], rejections: Rejections,
                   rows_in: int, not_sampled: int, extra: dict | None = None,
                   kept: int | None = None) -> dict:
    """Write `<split>.parquet` for each split, `rejected.parquet` and `report.json`; returns the report.

    `kept` counts input units kept (default: the rows written); it differs where one input makes
    several output rows (a sentence pair makes two translation directions)."""
    out_dir = Path(out_dir)
    kept = sum(len(frame) for frame in splits.values()) if kept is None else kept
    rejected = rejections.counts()
    if rows_in != kept + sum(rejected.values()) + not_sampled:
        raise AssertionError(
            f"row counts do not add up: in={rows_in} kept={kept} rejected={sum(rejected.values())} "
            f"not_sampled={not_sampled}"
        )
    for name, frame in splits.items():
        if frame.empty:
            raise ValueError(f"{out_dir}: split {name!r} is empty; use more rows or a larger fraction")
        write_parquet(out_dir / f"{name}.parquet", frame)
    write_parquet(out_dir / "rejected.parquet", rejections.frame())
    report = {"rows_in": rows_in, "kept": kept, "rejected": rejected, "not_sampled": not_sampled,
              "splits": {name: len(frame) for name, frame in splits.items()}, **(extra or {})}
    write_json(out_dir / "report.json", report)
    return report
