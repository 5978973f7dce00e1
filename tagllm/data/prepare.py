"""Prepare steps: turn a source into validated train/test Parquet files plus a rejection report."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tagllm.data.molecules import canonical_molecules, rdkit_nci_path, read_smi
from tagllm.data.splits import random_split, subsample
from tagllm.data.validation import Rejections, write_prepared

SOURCES = ("rdkit-nci", "smi-file")


def prepare_qed(out_dir: str | Path, source: str = "rdkit-nci", path: str | None = None,
                max_rows: int | None = None, max_chars: int = 512, test_fraction: float = 0.1,
                seed: int = 0) -> dict:
    """Molecules -> canonical SMILES + RDKit QED label -> train/test split (paper: 90/10)."""
    if source not in SOURCES:
        raise ValueError(f"QED source must be one of {SOURCES}, not {source!r}")
    smi = rdkit_nci_path() if source == "rdkit-nci" else Path(path or "")
    rejections = Rejections()
    rows = list(read_smi(smi))
    kept = pd.DataFrame(canonical_molecules(iter(rows), str(smi), max_chars, rejections),
                        columns=["id", "source_row", "smiles", "y"])
    sampled = subsample(kept, max_rows, seed)
    train, test = random_split(sampled, test_fraction, seed)
    return write_prepared(out_dir, {"train": train, "test": test}, rejections, rows_in=len(rows),
                          not_sampled=len(kept) - len(sampled),
                          extra={"dataset": "qed", "source": str(smi), "label": "rdkit QED",
                                 "seed": seed, "test_fraction": test_fraction})
