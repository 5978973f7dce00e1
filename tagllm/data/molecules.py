"""Molecules: read SMILES files, validate and canonicalise them with RDKit (labels: `labels.py`)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from rdkit import Chem, RDConfig, RDLogger

from tagllm.data.validation import Rejections

RDLogger.DisableLog("rdApp.*")  # RDKit's parse errors go to rejected.parquet, not stderr


def rdkit_nci_path() -> Path:
    """RDKit's bundled NCI sample (first 5,000 molecules), the embedded default's molecule source."""
    return Path(RDConfig.RDDataDir) / "NCI" / "first_5K.smi"


def read_smi(path: str | Path) -> Iterator[tuple[int, str, str]]:
    """Yield (row number, SMILES, identifier) from a .smi file (SMILES, whitespace, optional id)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: SMILES file not found")
    with path.open(encoding="utf-8") as handle:
        for row, line in enumerate(handle, start=1):
            line = line.rstrip("\r\n")
            if not line.strip() or line[0].isspace():  # no SMILES before the identifier
                yield row, "", line.strip() or str(row)
                continue
            fields = line.split(None, 1)
            smiles = fields[0]
            identifier = fields[1].strip() if len(fields) > 1 else str(row)
            yield row, smiles, identifier


def canonical_molecules(records: Iterable[tuple[int, str, str]], source: str, max_chars: int,
                        rejections: Rejections) -> list[dict]:
    """Valid, de-duplicated molecules as canonical SMILES; all others go to `rejections`."""
    kept: list[dict] = []
    seen: dict[str, int] = {}
    for row, smiles, identifier in records:
        if not smiles.strip():
            rejections.add(source, row, "empty", "no SMILES on this row", smiles)
            continue
        molecule = Chem.MolFromSmiles(smiles)
        if molecule is None:
            rejections.add(source, row, "invalid_smiles", "RDKit cannot parse it", smiles)
            continue
        canonical = Chem.MolToSmiles(molecule)
        if len(canonical) > max_chars:
            rejections.add(source, row, "too_long", f"{len(canonical)} > {max_chars} characters",
                           canonical)
            continue
        if canonical in seen:
            rejections.add(source, row, "duplicate", f"same canonical SMILES as row {seen[canonical]}",
                           canonical)
            continue
        seen[canonical] = row
        kept.append({"id": identifier, "source_row": row, "smiles": canonical})
    return kept
