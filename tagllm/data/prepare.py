"""Prepare steps: turn a source into validated Parquet splits plus `rejected.parquet` and `report.json`.

One entry point, `prepare_dataset(kind, out_dir, settings)`, for every dataset kind:

| kind | sources | columns |
|---|---|---|
| qed | rdkit-nci (embedded), smi-file, binding-affinity | id, source_row, smiles, y |
| descriptor | pyhmmer-proteome (embedded), fasta-file, binding-affinity | id, source_row, sequence, y |
| text | django (embedded), opus100 | id, text |
| translation | django (embedded), opus100 + flores101 | src_lang, tgt_lang, src, tgt, setting |
| dc | synthetic (embedded), tdc | drug1, smiles1, drug2, smiles2, y |
| ba | synthetic (embedded), tdc | protein_id, sequence, drug, smiles, y |
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from tagllm.data import tdc
from tagllm.data.labels import attach_labels
from tagllm.data.molecules import canonical_molecules, rdkit_nci_path, read_smi
from tagllm.data.proteins import pyhmmer_proteome_path, read_fasta, valid_proteins
from tagllm.data.splits import random_split, subsample
from tagllm.data.synthetic import ba_pairs, dc_pairs
from tagllm.data.text import LANGUAGES, clean_text, django_parallel, read_flores, read_opus
from tagllm.data.validation import Rejections, read_parquet, refuse_dataset, write_prepared

log = logging.getLogger("tagllm")

KIND_SOURCES = {
    "qed": ("rdkit-nci", "smi-file", "binding-affinity"),
    "descriptor": ("pyhmmer-proteome", "fasta-file", "binding-affinity"),
    "text": ("django", "opus100"),
    "translation": ("django", "opus100"),
    "dc": ("synthetic", "tdc"),
    "ba": ("synthetic", "tdc"),
}
# Longest SMILES or protein in a TDC pair file; longer values are rejected before RDKit parses them,
# which bounds time and memory (the paper preset's max_chars: 100000 for these datasets).
MAX_PAIR_ITEM_CHARS = 100_000
# Translation: trained on these pairs (both directions), evaluated on these directions (paper Table 1).
TRAIN_PAIRS = (("en", "fr"), ("en", "ru"), ("de", "en"), ("en", "it"), ("el", "en"))
EVAL_DIRECTIONS = {
    ("en", "fr"): "seen", ("fr", "en"): "seen", ("en", "ru"): "seen", ("ru", "en"): "seen",
    ("en", "de"): "seen", ("de", "en"): "seen",
    ("it", "fr"): "unseen_pair", ("fr", "it"): "unseen_pair",
    ("es", "pt"): "unseen_languages", ("pt", "es"): "unseen_languages",
}
# Stage-1 text for each language tag in the paper: one side of an OPUS-100 pair.
OPUS_SIDE = {"en": "ca-en", "fr": "en-fr", "ru": "en-ru", "de": "de-en", "it": "en-it",
             "el": "el-en", "es": "en-es", "pt": "en-pt"}


def required_downloads(kind: str, source: str, lang: str = "") -> list[str]:
    """Names of the download sources (`tagllm.data.sources`) a dataset is prepared from."""
    if source == "binding-affinity":
        return ["binding_affinity"]
    if source == "tdc":
        return ["tdc_drugcomb"] if kind == "dc" else ["tdc_bindingdb_patent"]
    if source == "opus100" and kind == "text":
        return [f"opus100_{OPUS_SIDE[lang]}"]
    if source == "opus100":
        return [f"opus100_{'-'.join(sorted(pair))}" for pair in TRAIN_PAIRS] + ["flores101"]
    return []


@dataclass
class Settings:
    """What a prepare step needs; each kind uses a subset (see `prepare_dataset`)."""

    source: str
    path: str = ""  # a file for *-file sources; a downloads folder for real sources
    max_rows: int = 0
    max_chars: int = 512
    test_fraction: float = 0.1
    seed: int = 0
    workers: int = 1
    lang: str = ""
    n_pairs: int = 0
    test_rows: int = 0  # translation: FLORES-101 sentences per direction (0: all 1012)
    molecules: list[str] = field(default_factory=list)  # synthetic pairs: prepared Parquet files
    proteins: list[str] = field(default_factory=list)
    trust_pickle: bool = False  # tdc dc: unpickle a drugcomb.pkl whose SHA-256 is not pinned


def prepare_dataset(kind: str, out_dir: str | Path, settings: Settings) -> dict:
    if kind not in KIND_SOURCES:
        raise ValueError(f"unknown dataset kind {kind!r}; known: {sorted(KIND_SOURCES)}")
    if settings.source not in KIND_SOURCES[kind]:
        raise ValueError(f"dataset kind {kind!r} takes source {KIND_SOURCES[kind]}, "
                         f"not {settings.source!r}")
    builder = {"qed": _labelled_items("qed"), "descriptor": _labelled_items("descriptor"),
               "text": _text, "translation": _translation, "dc": _dc, "ba": _ba}[kind]
    report = builder(Path(out_dir), settings)
    log.info("prepared %s: %s", kind, report)
    return report


# --------------------------------------------------------------------------- molecules, proteins
def _binding_affinity_records(settings: Settings, column: str) -> tuple[str, list]:
    """(source, [(row, value, id)]) for one column of jglaser/binding_affinity's all.parquet."""
    path = Path(settings.path) / "all.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: jglaser/binding_affinity file missing (run the download)")
    values = read_parquet(path, columns=[column])[column]
    return str(path), [(i + 1, str(v), str(i + 1)) for i, v in enumerate(values)]


@dataclass(frozen=True)
class _ItemSource:
    """How one labelled single-item kind (molecules, proteins) is read, validated and labelled."""

    jglaser_column: str  # column of jglaser/binding_affinity
    column: str  # column written
    label: str  # key of tagllm.data.labels.LABELS
    embedded_source: str
    embedded_path: object  # () -> Path
    read: object  # (path, rejections) -> records
    validate: object  # (records, source, max_chars, rejections) -> rows


_ITEM_SOURCES = {
    "qed": _ItemSource("smiles_can", "smiles", "qed", "rdkit-nci", rdkit_nci_path, read_smi,
                       canonical_molecules),
    "descriptor": _ItemSource("seq", "sequence", "blosum1", "pyhmmer-proteome",
                              pyhmmer_proteome_path, read_fasta, valid_proteins),
}


def _labelled_items(kind: str):
    def build(out: Path, s: Settings) -> dict:
        spec = _ITEM_SOURCES[kind]
        rejections = Rejections()
        if s.source == "binding-affinity":
            source, records = _binding_affinity_records(s, spec.jglaser_column)
        else:
            path = spec.embedded_path() if s.source == spec.embedded_source else Path(s.path)
            source, records = str(path), list(spec.read(path, rejections))
        # Rows the reader could not read (over-long, not UTF-8) are already rejected: count them in.
        rows_in = len(records) + len(rejections.rows)
        kept = spec.validate(records, source, s.max_chars, rejections)
        return _label_split_write(out, kept, spec.column, spec.label, s, rejections, rows_in, source)

    return build


def _label_split_write(out: Path, kept: list[dict], column: str, label: str, s: Settings,
                       rejections: Rejections, rows_in: int, source: str) -> dict:
    # Subsample before labelling: labels cost time, and unsampled rows need none.
    frame = pd.DataFrame(kept, columns=["id", "source_row", column])
    sampled = subsample(frame, s.max_rows, s.seed)
    labelled = attach_labels(sampled.to_dict("records"), column, label, s.workers, rejections, source)
    labelled_frame = pd.DataFrame(labelled, columns=["id", "source_row", column, "y"])
    not_sampled = len(frame) - len(sampled)
    extra = {"source": source, "label": label, "seed": s.seed, "test_fraction": s.test_fraction}
    _refuse_unsplittable(out, labelled_frame, rejections, rows_in, not_sampled, extra)
    train, test = random_split(labelled_frame, s.test_fraction, s.seed)
    return write_prepared(out, {"train": train, "test": test}, rejections, rows_in=rows_in,
                          not_sampled=not_sampled, extra=extra)


def _refuse_unsplittable(out: Path, frame: pd.DataFrame, rejections: Rejections, rows_in: int,
                         not_sampled: int, extra: dict) -> None:
    """Refuse (with rejected.parquet and report.json written) a dataset too small to split."""
    if len(frame) < 2:
        refuse_dataset(out, rejections, rows_in, len(frame), not_sampled,
                       "only 1 row kept, 2 are needed to split" if len(frame) else "no rows kept",
                       extra)


# --------------------------------------------------------------------------- text
def _django_split(s: Settings) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """Django messages in all eight languages, split by message into train and test; and the number
    of catalog entries skipped (plural forms, message contexts)."""
    messages, skipped = django_parallel(LANGUAGES)
    train, test = random_split(messages, s.test_fraction, s.seed)
    return train, test, skipped


def _text(out: Path, s: Settings) -> dict:
    """Monolingual text for a language tag; the test split measures the tag's held-out LM loss."""
    if s.lang not in LANGUAGES:
        raise ValueError(f"text datasets need lang in {LANGUAGES}, not {s.lang!r}")
    rejections = Rejections()
    if s.source == "django":
        # The translation dataset's message split, so stage-1 text never includes a test message.
        train_messages, test_messages, _ = _django_split(s)
        source = "django catalogs"
        train = _valid_texts(list(train_messages[s.lang]), source, s, rejections, set())
        test = _valid_texts(list(test_messages[s.lang]), source, s, rejections,
                            set(train["text"]), first_row=len(train_messages) + 1)
        rows_in = len(train_messages) + len(test_messages)
        sampled = subsample(train, s.max_rows, s.seed)
        not_sampled = len(train) - len(sampled)
        train = sampled
    else:
        pair = OPUS_SIDE[s.lang]
        path = Path(s.path) / f"opus100_{pair}" / "train.parquet"
        other = next(code for code in pair.split("-") if code != s.lang)
        texts, source = list(read_opus(path, s.lang, other)["src"]), str(path)
        frame = _valid_texts(texts, source, s, rejections, set())
        sampled = subsample(frame, s.max_rows, s.seed)
        rows_in, not_sampled = len(texts), len(frame) - len(sampled)
        _refuse_unsplittable(out, sampled, rejections, rows_in, not_sampled,
                             {"source": source, "lang": s.lang, "seed": s.seed})
        train, test = random_split(sampled, s.test_fraction, s.seed)
    return write_prepared(out, {"train": train, "test": test}, rejections, rows_in=rows_in,
                          not_sampled=not_sampled,
                          extra={"source": source, "lang": s.lang, "seed": s.seed})


def _valid_texts(texts: list[object], source: str, s: Settings, rejections: Rejections,
                 seen: set[str], first_row: int = 1) -> pd.DataFrame:
    """Non-blank, not over-long, de-duplicated texts (whitespace normalised) as columns id, text."""
    kept = []
    seen = set(seen)
    for row, value in enumerate(texts, start=first_row):
        text = clean_text(value)
        if text is None:
            rejections.add(source, row, "empty", "blank text", value)
        elif len(text) > s.max_chars:
            rejections.add(source, row, "too_long", f"{len(text)} > {s.max_chars} characters", text)
        elif text in seen:
            rejections.add(source, row, "duplicate", "same text as an earlier row", text)
        else:
            seen.add(text)
            kept.append({"id": row, "text": text})
    return pd.DataFrame(kept, columns=["id", "text"])


def _translation(out: Path, s: Settings) -> dict:
    rejections = Rejections()
    skipped = 0
    if s.source == "django":
        train_messages, test_messages, skipped = _django_split(s)
        train_rows, considered, not_sampled = _directions(train_messages, TRAIN_PAIRS, s, rejections,
                                                          "django train")
        test_sentences, source = test_messages, "django catalogs"
    else:
        train_rows, considered, not_sampled = [], 0, 0
        for a, b in TRAIN_PAIRS:
            pair = "-".join(sorted((a, b)))
            path = Path(s.path) / f"opus100_{pair}" / "train.parquet"
            frame = read_opus(path, a, b).rename(columns={"src": a, "tgt": b})
            rows, seen, unsampled = _directions(frame, ((a, b),), s, rejections, str(path))
            train_rows, considered, not_sampled = train_rows + rows, considered + seen, \
                not_sampled + unsampled
        flores = Path(s.path) / "flores101" / "devtest"
        test_sentences = pd.DataFrame({lang: read_flores(flores, lang) for lang in LANGUAGES})
        source = f"{s.path}/opus100_* (train), flores101 devtest (test)"
    test_rows = [
        {"src_lang": a, "tgt_lang": b, "src": m[a], "tgt": m[b], "setting": setting}
        for (a, b), setting in EVAL_DIRECTIONS.items() for m in _rows(test_sentences, s.test_rows)
    ]
    train = pd.DataFrame(train_rows, columns=["src_lang", "tgt_lang", "src", "tgt"])
    test = pd.DataFrame(test_rows, columns=["src_lang", "tgt_lang", "src", "tgt", "setting"])
    # Unit: one (language pair, sentence pair) for training, kept as two directions; one
    # (direction, sentence) for testing.
    extra = {"source": source, "unit": "training: sentence pair per language pair (2 rows each); "
             "test: sentence per direction", "train_rows": len(train), "test_rows": len(test),
             "catalog_entries_skipped_plural_or_context": skipped, "seed": s.seed}
    return write_prepared(out, {"train": train, "test": test}, rejections,
                          rows_in=considered + not_sampled + len(test), not_sampled=not_sampled,
                          extra=extra, kept=len(train) // 2 + len(test))


def _rows(frame: pd.DataFrame, limit: int) -> list[dict]:
    return frame.head(limit).to_dict("records") if limit else frame.to_dict("records")


def _directions(messages: pd.DataFrame, pairs, s: Settings, rejections: Rejections,
                source: str) -> tuple[list[dict], int, int]:
    """Both directions of each pair, for messages whose two sides are valid text; with the number
    of sentence pairs considered and not sampled."""
    rows, considered, not_sampled = [], 0, 0
    for a, b in pairs:
        frame = subsample(messages[[a, b]], s.max_rows, s.seed)
        considered += len(frame)
        not_sampled += len(messages) - len(frame)
        for row, (left, right) in enumerate(zip(frame[a], frame[b], strict=True), start=1):
            left_text, right_text = clean_text(left), clean_text(right)
            if left_text is None or right_text is None:
                rejections.add(source, row, "empty", f"blank {a if left_text is None else b}",
                               f"{left!r} | {right!r}")
                continue
            if max(len(left_text), len(right_text)) > s.max_chars:
                rejections.add(source, row, "too_long", f"> {s.max_chars} characters", left_text)
                continue
            rows.append({"src_lang": a, "tgt_lang": b, "src": left_text, "tgt": right_text})
            rows.append({"src_lang": b, "tgt_lang": a, "src": right_text, "tgt": left_text})
    return rows, considered, not_sampled


def _write_pairs(out: Path, splits: dict[str, pd.DataFrame], rejections: Rejections, rows_in: int,
                 not_sampled: int, extra: dict) -> dict:
    """Write pair datasets; splits that came out empty (e.g. no validation set) are left out."""
    return write_prepared(out, {k: v for k, v in splits.items() if not v.empty}, rejections,
                          rows_in=rows_in, not_sampled=not_sampled, extra=extra)


# --------------------------------------------------------------------------- pairs
def _read_prepared(paths: list[str], what: str) -> pd.DataFrame:
    if not paths:
        raise ValueError(f"synthetic pairs need prepared {what} (settings.{what})")
    return pd.concat([read_parquet(p) for p in paths], ignore_index=True)


def _dc(out: Path, s: Settings) -> dict:
    rejections = Rejections()
    if s.source == "synthetic":
        pairs = dc_pairs(_read_prepared(s.molecules, "molecules"), s.n_pairs, s.seed)
        train, test = random_split(pairs, s.test_fraction, s.seed)
        return _write_pairs(out, {"train": train, "test": test}, rejections, len(pairs), 0,
                            {"source": "synthetic (see tagllm/data/synthetic.py)",
                             "seed": s.seed, "label": "dc_synthetic"})
    raw, path = tdc.load_drugcomb(s.path, "CSS", s.trust_pickle)
    frame = _valid_pair_rows(raw, {"Drug1": "smiles", "Drug2": "smiles"}, str(path), rejections)
    extra = {"source": str(path), "label": "CSS", "seed": s.seed, "split": "combination"}
    _refuse_unsplittable(out, frame, rejections, len(raw), 0, extra)
    train, valid, test = tdc.combination_split(frame, s.seed)
    columns = {"Drug1_ID": "drug1", "Drug1": "smiles1", "Drug2_ID": "drug2", "Drug2": "smiles2",
               "Cell_Line_ID": "cell_line", "Y": "y"}
    splits = {name: part.rename(columns=columns)[list(columns.values())]
              for name, part in (("train", train), ("valid", valid), ("test", test))}
    return _write_pairs(out, splits, rejections, len(raw), 0, extra)


def _ba(out: Path, s: Settings) -> dict:
    rejections = Rejections()
    if s.source == "synthetic":
        pairs = ba_pairs(_read_prepared(s.molecules, "molecules"),
                         _read_prepared(s.proteins, "proteins"), s.n_pairs, s.seed)
        train, test = random_split(pairs, s.test_fraction, s.seed)
        return _write_pairs(out, {"train": train, "test": test}, rejections, len(pairs), 0,
                            {"source": "synthetic (see tagllm/data/synthetic.py)",
                             "seed": s.seed, "label": "ba_synthetic"})
    path = Path(s.path) / "bindingdb_patent.csv"
    raw = tdc.read_bindingdb_patent(path)
    frame = _valid_pair_rows(raw, {"Drug": "smiles", "Target": "protein"}, str(path), rejections)
    train, valid, test, outside = tdc.year_split(frame, s.seed)
    columns = {"Target_ID": "protein_id", "Target": "sequence", "Drug_ID": "drug",
               "Drug": "smiles", "Year": "year", "Y": "y"}
    splits = {name: part.rename(columns=columns)[list(columns.values())]
              for name, part in (("train", train), ("valid", valid), ("test", test))}
    # Rows outside 2013-2021 belong to no split: counted as not sampled.
    return _write_pairs(out, splits, rejections, len(raw), len(outside),
                        {"source": str(path), "label": "Y", "seed": s.seed,
                         "split": "year (TDC DTI-DG)"})


def _valid_pair_rows(frame: pd.DataFrame, checks: dict[str, str], source: str,
                     rejections: Rejections) -> pd.DataFrame:
    """Rows whose molecules parse, whose proteins use standard residues, and whose label is finite;
    proteins normalised as FASTA input is (`normalise_protein`: upper case, no trailing stop).

    TDC files repeat the same drugs and targets across many rows, so each distinct value is
    checked once; values longer than `MAX_PAIR_ITEM_CHARS` are rejected before RDKit sees them."""
    from rdkit import Chem

    from tagllm.data.proteins import STANDARD_RESIDUES, normalise_protein

    frame = frame.copy()
    for column, kind in checks.items():
        frame[column] = frame[column].astype(str)
        if kind == "protein":
            frame[column] = frame[column].map(normalise_protein)

    def problem(kind: str, value: str) -> tuple[str, str] | None:
        if len(value) > MAX_PAIR_ITEM_CHARS:
            return "too_long", f"{len(value):,} > {MAX_PAIR_ITEM_CHARS:,} characters"
        if kind == "smiles":
            return None if Chem.MolFromSmiles(value) is not None else \
                ("invalid_smiles", "RDKit cannot parse it")
        bad = "".join(sorted(set(value) - STANDARD_RESIDUES))
        return ("nonstandard_residue", f"contains {bad}") if bad else None

    found = {column: {value: problem(kind, value) for value in frame[column].unique()}
             for column, kind in checks.items()}
    labels = pd.to_numeric(frame["Y"], errors="coerce")
    keep = np.ones(len(frame), dtype=bool)
    for position, (label, *values) in enumerate(zip(labels, *(frame[c] for c in checks),
                                                    strict=True)):
        if not np.isfinite(label):
            rejections.add(source, position + 1, "nan_label", "label is not a finite number",
                           frame["Y"].iloc[position])
            keep[position] = False
            continue
        for column, value in zip(checks, values, strict=True):
            if found[column][value] is not None:
                reason, detail = found[column][value]
                shown = value if checks[column] == "smiles" else value[:80]
                rejections.add(source, position + 1, reason, f"{column}: {detail}", shown)
                keep[position] = False
                break
    return frame[keep].reset_index(drop=True)
