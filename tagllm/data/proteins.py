"""Proteins: read FASTA with Biopython and validate residues.

The Descriptor label (BLOSUM1) is computed in `labels.py`: the paper's label is "the first descriptor
of the `peptides` package", but in peptides 0.5 the first key of `Peptide.descriptors()` is AF1, so
the label is selected by name (`Peptide.blosum_indices().blosum1`); a test pins this.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Iterator
from pathlib import Path

from Bio import SeqIO

from tagllm.data.validation import Rejections
from tagllm.errors import UserError

STANDARD_RESIDUES = frozenset("ACDEFGHIKLMNPQRSTVWY")
PROTEOME = "938293.PRJEB85.HG003687.faa"


def pyhmmer_proteome_path() -> Path:
    """The proteome bundled with pyhmmer's test data: the embedded default's protein source."""
    spec = importlib.util.find_spec("pyhmmer")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("package pyhmmer is not installed (pip install pyhmmer)")
    path = Path(next(iter(spec.submodule_search_locations))) / "tests/data/seqs" / PROTEOME
    if not path.is_file():
        raise FileNotFoundError(f"{path}: proteome missing from the pyhmmer package")
    return path


def read_fasta(path: str | Path, rejections: Rejections | None = None
               ) -> Iterator[tuple[int, str, str]]:
    """Yield (record number, sequence, identifier) from a FASTA file.

    A FASTA record may span many lines, so unreadable bytes are an error naming the file rather
    than a rejected row (`rejections` is accepted for a reader signature shared with `read_smi`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: FASTA file not found")
    row = 0
    try:
        with path.open(encoding="utf-8") as handle:
            for row, record in enumerate(SeqIO.parse(handle, "fasta"), start=1):
                yield row, str(record.seq), record.id
    except UnicodeDecodeError as error:
        where = f" after record {row}" if row else ""
        raise UserError(f"{path}: not a UTF-8 text file (byte 0x{error.object[error.start]:02x}"
                         f"{where} is not UTF-8); is it FASTA?") from error
    except ValueError as error:  # Biopython's own: text before the first '>' header, ...
        detail = f"after record {row}: {str(error).splitlines()[0]}" if row else \
            "text before the first '>' header line"
        raise UserError(f"{path}: not a FASTA file ({detail})") from error


def normalise_protein(raw: object) -> str:
    """A sequence as validated and stored: surrounding whitespace removed, upper case, and a single
    trailing `*` (a stop codon in translated proteomes) dropped. FASTA and TDC inputs alike."""
    return str(raw).strip().upper().removesuffix("*")


def valid_proteins(records: Iterable[tuple[int, str, str]], source: str, max_chars: int,
                   rejections: Rejections) -> list[dict]:
    """Upper-cased, de-duplicated sequences of the 20 standard residues (labels: `labels.py`).

    Sequences are normalised by `normalise_protein`; any other non-standard character (X, B, Z, U,
    O, *, digits) rejects the sequence.
    """
    kept: list[dict] = []
    seen: dict[str, int] = {}
    for row, raw, identifier in records:
        sequence = normalise_protein(raw)
        if not sequence:
            rejections.add(source, row, "empty", "no residues", raw)
            continue
        problem = protein_problem(sequence, max_chars)
        if problem:
            rejections.add(source, row, *problem, sequence)
            continue
        if sequence in seen:
            rejections.add(source, row, "duplicate", f"same sequence as row {seen[sequence]}", sequence)
            continue
        seen[sequence] = row
        kept.append({"id": identifier, "source_row": row, "sequence": sequence})
    return kept


def protein_problem(sequence: str, max_chars: int) -> tuple[str, str] | None:
    """(reason, detail) for a normalised sequence (`normalise_protein`) that is refused:
    `nonstandard_residue` (anything outside STANDARD_RESIDUES) or `too_long`; None if it is fine."""
    bad = sorted(set(sequence) - STANDARD_RESIDUES)
    if bad:
        return "nonstandard_residue", f"contains {''.join(bad)}"
    if len(sequence) > max_chars:
        return "too_long", f"{len(sequence)} > {max_chars} residues"
    return None
