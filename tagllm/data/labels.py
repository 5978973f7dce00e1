"""Label functions (RDKit QED, peptides BLOSUM1) and their parallel computation over a process pool.

Labels are computed after validation, so a worker only sees valid items; a non-finite label rejects
its row with reason `nan_label`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor

from tagllm.data.validation import Rejections


def qed_of_smiles(smiles: str) -> float:
    from rdkit import Chem
    from rdkit.Chem import QED

    molecule = Chem.MolFromSmiles(smiles)
    if molecule is None:
        return math.nan
    try:
        return float(QED.qed(molecule))
    except (ValueError, RuntimeError):
        return math.nan


def blosum1_of_sequence(sequence: str) -> float:
    import peptides

    try:
        return float(peptides.Peptide(sequence).blosum_indices().blosum1)
    except (ValueError, KeyError, ZeroDivisionError):
        return math.nan


LABELS: dict[str, Callable[[str], float]] = {"qed": qed_of_smiles, "blosum1": blosum1_of_sequence}


def compute_labels(kind: str, values: Sequence[str], workers: int = 1) -> list[float]:
    """`LABELS[kind]` applied to every value; `workers` > 1 uses that many processes (0: all cores)."""
    if kind not in LABELS:
        raise KeyError(f"unknown label {kind!r}; known: {sorted(LABELS)}")
    function = LABELS[kind]
    workers = os.cpu_count() or 1 if workers == 0 else workers
    if workers == 1 or len(values) < 2 * workers:
        return [function(v) for v in values]
    chunk = max(1, len(values) // (workers * 8))
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(function, values, chunksize=chunk))


def attach_labels(rows: list[dict], column: str, kind: str, workers: int, rejections: Rejections,
                  source: str) -> list[dict]:
    """Add label `y` to each row; rows whose label is not finite go to `rejections`."""
    labels = compute_labels(kind, [row[column] for row in rows], workers)
    kept = []
    for row, label in zip(rows, labels, strict=True):
        if math.isfinite(label):
            kept.append({**row, "y": label})
        else:
            rejections.add(source, row["source_row"], "nan_label", f"{kind} is not finite",
                           row[column])
    return kept
