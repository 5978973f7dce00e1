"""Molecules: read SMILES files, validate and canonicalise them with RDKit (labels: `labels.py`)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from rdkit import Chem, RDConfig, RDLogger

from tagllm.data.validation import Rejections, read_lines
from tagllm.errors import UserError

RDLogger.DisableLog("rdApp.*")  # RDKit's parse errors go to rejected.parquet, not stderr

# Longest SMILES handed to RDKit's canonicaliser, whatever --max-chars says: its time grows with
# the square of the length (a 5,000-character macrocycle takes 8 s here) and a 20,000-atom chain
# overflows its stack (segmentation fault). Drug-like molecules are far shorter (the paper: 512).
MAX_SMILES_CHARS = 2000


def rdkit_nci_path() -> Path:
    """RDKit's bundled NCI sample (first 5,000 molecules), the embedded default's molecule source."""
    return Path(RDConfig.RDDataDir) / "NCI" / "first_5K.smi"


def read_smi(path: str | Path, rejections: Rejections | None = None
             ) -> Iterator[tuple[int, str, str]]:
    """Yield (row number, SMILES, identifier) from a .smi file (SMILES, whitespace, optional id).

    Lines are read with a size limit (`validation.read_lines`); unreadable ones (over-long, not
    UTF-8) go to `rejections` (without it: a UserError)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: SMILES file not found")
    for row, line in read_lines(path, str(path), rejections):
        if not line.strip() or line[0].isspace():  # no SMILES before the identifier
            yield row, "", line.strip() or str(row)
            continue
        fields = line.split(None, 1)
        smiles = fields[0]
        identifier = fields[1].strip() if len(fields) > 1 else str(row)
        yield row, smiles, identifier


def canonical_molecules(records: Iterable[tuple[int, str, str]], source: str, max_chars: int,
                        rejections: Rejections) -> list[dict]:
    """Valid, de-duplicated molecules as canonical SMILES; all others go to `rejections`.

    The length is checked on the SMILES as written before RDKit sees it, and again on the
    canonical form."""
    if max_chars > MAX_SMILES_CHARS:
        raise UserError(f"max_chars {max_chars} is above {MAX_SMILES_CHARS}, the longest SMILES "
                         "RDKit canonicalises safely (longer chains take minutes or crash it)")
    kept: list[dict] = []
    seen: dict[str, int] = {}
    for row, smiles, identifier in records:
        if not smiles.strip():
            rejections.add(source, row, "empty", "no SMILES on this row", smiles)
            continue
        canonical, reason, detail = canonical_smiles(smiles, max_chars)
        if reason:
            if reason == "invalid_smiles" and "," in smiles:
                detail += " (a CSV line? a .smi line is SMILES, whitespace, name)"
            rejections.add(source, row, reason, detail, canonical)
            continue
        if canonical in seen:
            rejections.add(source, row, "duplicate", f"same canonical SMILES as row {seen[canonical]}",
                           canonical)
            continue
        seen[canonical] = row
        kept.append({"id": identifier, "source_row": row, "smiles": canonical})
    return kept


def canonical_smiles(smiles: str, max_chars: int) -> tuple[str, str, str]:
    """(canonical SMILES, "", "") for a valid molecule; otherwise (the value to show, reason,
    detail) with reason `too_long` or `invalid_smiles`.

    The length is checked on the SMILES as written before RDKit sees it (which bounds its time
    and memory; keep `max_chars` <= MAX_SMILES_CHARS), and again on the canonical form."""
    if len(smiles) > max_chars:
        return smiles, "too_long", f"{len(smiles):,} > {max_chars} characters (before parsing)"
    molecule = Chem.MolFromSmiles(smiles)
    if molecule is None:
        return smiles, "invalid_smiles", "RDKit cannot parse it"
    canonical = Chem.MolToSmiles(molecule)
    if len(canonical) > max_chars:
        return canonical, "too_long", f"{len(canonical)} > {max_chars} characters"
    return canonical, "", ""
