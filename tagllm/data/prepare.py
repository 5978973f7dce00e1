"""Prepare steps: turn a source into validated Parquet splits plus `rejected.parquet` and `report.json`.

One entry point, `prepare_dataset(kind, out_dir, settings)`, for every dataset kind:

| kind | sources | columns |
|---|---|---|
| qed | rdkit-nci (embedded), smi-file, binding-affinity | id, source_row, smiles, y |
| descriptor | pyhmmer-proteome (embedded), fasta-file, binding-affinity | id, source_row, sequence, y |
| text | django (embedded), opus100 | id, text |
| translation | django (embedded), opus100 + flores101 | src_lang, tgt_lang, src, tgt, setting |
| dc | synthetic (embedded), tdc, tdc-group | drug1, smiles1, drug2, smiles2, cell_line, y |
| ba | synthetic (embedded), tdc, tdc-group | protein_id, sequence, drug, smiles, year, y |

Kind `table` (source `file`) is a user's own CSV, TSV or Parquet: columns id, source_row and the
declared ones under their own names (`tagllm.data.table`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from tagllm.data import tdc
from tagllm.data.kinds import OPUS_SIDE, TRAIN_PAIRS
from tagllm.data.labels import attach_labels
from tagllm.data.molecules import canonical_molecules, rdkit_nci_path, read_smi
from tagllm.data.proteins import pyhmmer_proteome_path, read_fasta, valid_proteins
from tagllm.data.sources import TDC_GROUPS, downloads_folder
from tagllm.data.splits import random_split, subsample
from tagllm.data.synthetic import ba_pairs, dc_pairs
from tagllm.data.table import prepare_table
from tagllm.data.text import LANGUAGES, clean_text, django_parallel, read_flores, read_opus
from tagllm.data.validation import Rejections, read_parquet, refuse_dataset, write_prepared

log = logging.getLogger("tagllm")

KIND_SOURCES = {
    "qed": ("rdkit-nci", "smi-file", "binding-affinity"),
    "descriptor": ("pyhmmer-proteome", "fasta-file", "binding-affinity"),
    "text": ("django", "opus100"),
    "translation": ("django", "opus100"),
    "dc": ("synthetic", "tdc", "tdc-group"),
    "ba": ("synthetic", "tdc", "tdc-group"),
    "table": ("file",),
}
# Longest SMILES or protein in a TDC pair file; longer values are rejected before RDKit parses them,
# which bounds time and memory (the paper preset's max_chars: 100000 for these datasets).
MAX_PAIR_ITEM_CHARS = 100_000
# Translation: trained on kinds.TRAIN_PAIRS (both directions), evaluated on these directions (paper
# Table 1).
EVAL_DIRECTIONS = {
    ("en", "fr"): "seen", ("fr", "en"): "seen", ("en", "ru"): "seen", ("ru", "en"): "seen",
    ("en", "de"): "seen", ("de", "en"): "seen",
    ("it", "fr"): "unseen_pair", ("fr", "it"): "unseen_pair",
    ("es", "pt"): "unseen_languages", ("pt", "es"): "unseen_languages",
}


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
    # table (tagllm.data.table): column name -> smiles, protein, text or number; how to split
    columns: dict[str, str] = field(default_factory=dict)
    split: str = "random"  # random, scaffold or column
    split_column: str = ""  # split column: its values are train, valid, test
    scaffold_column: str = ""  # split scaffold: a smiles column (default: the first)
    test: str = ""  # a separate test file with the same columns (then `path` is not split)


def prepare_dataset(kind: str, out_dir: str | Path, settings: Settings) -> dict:
    if kind not in KIND_SOURCES:
        raise ValueError(f"unknown dataset kind {kind!r}; known: {sorted(KIND_SOURCES)}")
    if settings.source not in KIND_SOURCES[kind]:
        raise ValueError(f"dataset kind {kind!r} takes source {KIND_SOURCES[kind]}, "
                         f"not {settings.source!r}")
    builder = {"qed": _labelled_items("qed"), "descriptor": _labelled_items("descriptor"),
               "text": _text, "translation": _translation, "dc": _dc, "ba": _ba,
               "table": _table}[kind]
    report = builder(Path(out_dir), settings)
    log.info("prepared %s: %s", kind, report)
    return report


# --------------------------------------------------------------------------- molecules, proteins
def _binding_affinity_records(settings: Settings, column: str) -> tuple[str, list]:
    """(source, [(row, value, id)]) for one column of jglaser/binding_affinity's all.parquet."""
    path = downloads_folder(settings.path, "binding_affinity") / "all.parquet"
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


# --------------------------------------------------------------------------- a user's table
def _table(out: Path, s: Settings) -> dict:
    return prepare_table(out, s.path, s.columns, split=s.split, split_column=s.split_column,
                         scaffold_column=s.scaffold_column, test=s.test,
                         test_fraction=s.test_fraction, max_rows=s.max_rows,
                         max_chars=s.max_chars, seed=s.seed)


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
        # The catalogs are sorted by message, so their first test messages are placeholders and
        # punctuation ("%(delta)s ago", ", ", ":?.!"), which any copy of the source gets right:
        # test on a seeded sample of the test messages instead.
        test_sentences = subsample(test_messages, s.test_rows, s.seed)
        source = "django catalogs"
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


# Prepared columns of the TDC pair kinds (TDC's name -> ours), in this order, then source_row (the
# row's number in the file it came from); a TDC column a file lacks (Year, target_class) is left out.
DC_COLUMNS = {"Drug1_ID": "drug1", "Drug1": "smiles1", "Drug2_ID": "drug2", "Drug2": "smiles2",
              "Cell_Line_ID": "cell_line", "Y": "y", tdc.TARGET_CLASS: tdc.TARGET_CLASS}
BA_COLUMNS = {"Target_ID": "protein_id", "Target": "sequence", "Drug_ID": "drug",
              "Drug": "smiles", "Year": "year", "Y": "y"}
DC_CHECKS = {"Drug1": "smiles", "Drug2": "smiles"}
BA_CHECKS = {"Drug": "smiles", "Target": "protein"}
ROW = "_source_row"  # the file row number carried through a split, written as source_row


def _dc(out: Path, s: Settings) -> dict:
    rejections = Rejections()
    if s.source == "synthetic":
        pairs = dc_pairs(_read_prepared(s.molecules, "molecules"), s.n_pairs, s.seed)
        train, test = random_split(pairs, s.test_fraction, s.seed)
        return _write_pairs(out, {"train": train, "test": test}, rejections, len(pairs), 0,
                            {"source": "synthetic (see tagllm/data/synthetic.py)",
                             "seed": s.seed, "label": "dc_synthetic"})
    if s.source == "tdc-group":
        # TDC's DrugCombo group: its test file as it is; validation split from train_val as TDC's
        # get_train_valid_split does (combination split, 0.875/0.125/0) with the dataset's seed.
        folder = downloads_folder(s.path, "tdc_drugcombo_group")
        train_member, test_member = TDC_GROUPS["tdc_drugcombo_group"].members
        train_val, train_path = tdc.load_drugcomb_group_file(folder, train_member, s.trust_pickle)
        test, test_path = tdc.load_drugcomb_group_file(folder, test_member, s.trust_pickle)
        extra = {"source": f"{train_path} (train, valid); {test_path} (test)",
                 "label": "Y (CSS; TDC DrugCombo group, drugcomb_css)", "seed": s.seed,
                 "split": "TDC DrugCombo group: test = its test file, every row in file order; "
                          "valid = TDC's combination split of train_val (0.875/0.125/0)"}
        rows_in = len(train_val) + len(test)
        if train_val.empty:
            refuse_dataset(out, rejections, rows_in, 0, 0, f"{train_path} holds no rows", extra)
        train, valid, _ = tdc.combination_split(_numbered(train_val), s.seed,
                                                tdc.GROUP_COMBINATION_FRACTIONS)
        parts = {"train": (train, train_path), "valid": (valid, train_path),
                 "test": (_numbered(test), test_path)}
        return _validate_and_write(out, parts, DC_CHECKS, DC_COLUMNS, rejections, rows_in, 0,
                                   extra)
    raw, path = tdc.load_drugcomb(downloads_folder(s.path, "tdc_drugcomb"), "CSS", s.trust_pickle)
    extra = {"source": str(path), "label": "CSS", "seed": s.seed, "split": "combination"}
    _refuse_unsplittable(out, raw, rejections, len(raw), 0, extra)
    # Split the rows as read (as TDC splits its unfiltered table), then validate each split.
    train, valid, test = tdc.combination_split(_numbered(raw), s.seed)
    parts = {"train": (train, path), "valid": (valid, path), "test": (test, path)}
    return _validate_and_write(out, parts, DC_CHECKS, DC_COLUMNS, rejections, len(raw), 0, extra)


def _ba(out: Path, s: Settings) -> dict:
    rejections = Rejections()
    if s.source == "synthetic":
        pairs = ba_pairs(_read_prepared(s.molecules, "molecules"),
                         _read_prepared(s.proteins, "proteins"), s.n_pairs, s.seed)
        train, test = random_split(pairs, s.test_fraction, s.seed)
        return _write_pairs(out, {"train": train, "test": test}, rejections, len(pairs), 0,
                            {"source": "synthetic (see tagllm/data/synthetic.py)",
                             "seed": s.seed, "label": "ba_synthetic"})
    if s.source == "tdc-group":
        # TDC's DTI-DG group: its test file as it is; validation split from train_val as TDC's
        # get_train_valid_split does (create_group_split by Year, 20% per year) with the seed.
        folder = downloads_folder(s.path, "tdc_dti_dg_group")
        train_member, test_member = TDC_GROUPS["tdc_dti_dg_group"].members
        train_path, test_path = folder / train_member, folder / test_member
        train_val = tdc.read_bindingdb_patent(train_path)
        test = tdc.read_bindingdb_patent(test_path, require_year=False)
        train, valid = tdc.group_split(_numbered(train_val), s.seed)
        # TDC's group split drops rows without a Year (no group holds them): not sampled.
        no_year = len(train_val) - len(train) - len(valid)
        extra = {"source": f"{train_path} (train, valid); {test_path} (test)",
                 "label": "Y (TDC DTI-DG group, bindingdb_patent)", "seed": s.seed,
                 "split": "TDC DTI-DG group: test = its test file, every row in file order; "
                          "valid = TDC's create_group_split of train_val (Year, 20%)",
                 "train_val_rows_without_year": no_year}
        parts = {"train": (train, train_path), "valid": (valid, train_path),
                 "test": (_numbered(test), test_path)}
        return _validate_and_write(out, parts, BA_CHECKS, BA_COLUMNS, rejections,
                                   len(train_val) + len(test), no_year, extra)
    path = downloads_folder(s.path, "tdc_bindingdb_patent") / "bindingdb_patent.csv"
    raw = tdc.read_bindingdb_patent(path)
    # Split the rows as read (as TDC splits its unfiltered table), then validate each split.
    train, valid, test, outside = tdc.year_split(_numbered(raw), s.seed)
    parts = {"train": (train, path), "valid": (valid, path), "test": (test, path)}
    # Rows outside 2013-2021 belong to no split: counted as not sampled.
    return _validate_and_write(out, parts, BA_CHECKS, BA_COLUMNS, rejections, len(raw),
                               len(outside), {"source": str(path), "label": "Y", "seed": s.seed,
                                              "split": "year (TDC DTI-DG)"})


def _numbered(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with its rows' numbers in the file (1, 2, ...) in column ROW, kept through splits."""
    return frame.assign(**{ROW: np.arange(1, len(frame) + 1)})


def _validate_and_write(out: Path, parts: dict[str, tuple[pd.DataFrame, Path]],
                        checks: dict[str, str], columns: dict[str, str], rejections: Rejections,
                        rows_in: int, not_sampled: int, extra: dict) -> dict:
    """Validate each split as it was split (`_valid_pair_rows`), write the valid rows under our
    column names, and report the rows rejected per split and how much of the test split is left
    (`rejected_by_split`, `test_coverage`): a test set that lost rows says how many."""
    splits, by_split, cache = {}, {}, {}
    for name, (frame, source) in parts.items():
        before = len(rejections.rows)
        kept = _valid_pair_rows(frame, checks, str(source), rejections, rows=frame[ROW].tolist(),
                                cache=cache)
        by_split[name] = len(rejections.rows) - before
        named = {k: v for k, v in columns.items() if k in kept.columns}
        splits[name] = kept[[*named, ROW]].rename(columns={**named, ROW: "source_row"})
    test_rows = len(parts["test"][0])
    coverage = {"rows": test_rows, "kept": len(splits["test"]), "rejected": by_split["test"],
                "fraction": len(splits["test"]) / test_rows if test_rows else 0.0}
    if by_split["test"]:
        log.warning("%s: %d of %d test rows rejected; the test set is not the source's whole test "
                    "set (see rejected.parquet)", parts["test"][1], by_split["test"], test_rows)
    return _write_pairs(out, splits, rejections, rows_in, not_sampled,
                        {**extra, "rejected_by_split": by_split, "test_coverage": coverage})


def _valid_pair_rows(frame: pd.DataFrame, checks: dict[str, str], source: str,
                     rejections: Rejections, rows: list[int] | None = None,
                     cache: dict | None = None) -> pd.DataFrame:
    """Rows whose molecules parse, whose proteins use standard residues, and whose label is finite;
    proteins normalised as FASTA input is (`normalise_protein`: upper case, no trailing stop).
    A rejected row is recorded under its number in `source`: `rows[i]` for the i-th row (default
    i + 1, the frame being the file).

    TDC files repeat the same drugs and targets across many rows, so each distinct value is
    checked once (once across calls sharing `cache`); values longer than `MAX_PAIR_ITEM_CHARS` are
    rejected before RDKit sees them."""
    from rdkit import Chem

    from tagllm.data.proteins import STANDARD_RESIDUES, normalise_protein

    frame = frame.copy()
    rows = list(range(1, len(frame) + 1)) if rows is None else list(rows)
    if len(rows) != len(frame):
        raise ValueError(f"{len(rows)} row numbers for {len(frame)} rows")
    cache = {} if cache is None else cache
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

    found = {}
    for column, kind in checks.items():
        for value in frame[column].unique():
            if (kind, value) not in cache:
                cache[(kind, value)] = problem(kind, value)
        found[column] = {value: cache[(kind, value)] for value in frame[column].unique()}
    labels = pd.to_numeric(frame["Y"], errors="coerce")
    keep = np.ones(len(frame), dtype=bool)
    for position, (label, *values) in enumerate(zip(labels, *(frame[c] for c in checks),
                                                    strict=True)):
        if not np.isfinite(label):
            rejections.add(source, rows[position], "nan_label", "label is not a finite number",
                           frame["Y"].iloc[position])
            keep[position] = False
            continue
        for column, value in zip(checks, values, strict=True):
            if found[column][value] is not None:
                reason, detail = found[column][value]
                shown = value if checks[column] == "smiles" else value[:80]
                rejections.add(source, rows[position], reason, f"{column}: {detail}", shown)
                keep[position] = False
                break
    return frame[keep].reset_index(drop=True)
