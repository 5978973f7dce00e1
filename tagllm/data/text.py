"""Natural-language text: OPUS-100 pairs, FLORES-101 devtest, and the embedded Django catalogs.

The embedded default's parallel text comes from Django's gettext catalogs
(`django/conf/locale/<lang>/LC_MESSAGES/django.mo` and the contrib apps' catalogs): each English msgid
and its translations form a parallel sentence across all eight languages.
"""

from __future__ import annotations

import gettext
import importlib.util
from pathlib import Path

import pandas as pd

from tagllm.data.sources import FLORES_CODES
from tagllm.data.validation import read_parquet
from tagllm.errors import UserError

LANGUAGES = ("en", "fr", "ru", "de", "it", "el", "es", "pt")


def django_catalogs(lang: str) -> list[Path]:
    """All of Django's compiled catalogs for one language (core and contrib apps)."""
    spec = importlib.util.find_spec("django")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("package django is not installed (pip install django)")
    root = Path(next(iter(spec.submodule_search_locations)))
    files = sorted(root.glob(f"**/locale/{lang}/LC_MESSAGES/django.mo"))
    if not files:
        raise FileNotFoundError(f"{root}: no Django catalogs for language {lang!r}")
    return files


def django_parallel(languages: tuple[str, ...]) -> tuple[pd.DataFrame, int]:
    """One row per English message with a translation in every language of `languages`, and the
    number of catalog entries skipped as plural forms or context-qualified messages (a format
    feature, not bad data). Messages with placeholders such as `%(name)s` are kept: real UI text."""
    tables: dict[str, dict[str, str]] = {}
    skipped = 0
    for lang in languages:
        if lang == "en":
            continue
        merged: dict[str, str] = {}
        for path in django_catalogs(lang):
            with path.open("rb") as handle:
                catalog = gettext.GNUTranslations(handle)._catalog
            for key, value in catalog.items():
                if not isinstance(key, str) or "\x04" in key:
                    skipped += 1
                    continue
                if key and value and value.strip():
                    merged.setdefault(key, value)
        tables[lang] = merged
    common = sorted(set.intersection(*(set(t) for t in tables.values())))
    rows = [{"en": key, **{lang: tables[lang][key] for lang in tables}} for key in common]
    return pd.DataFrame(rows, columns=list(languages)), skipped


def read_opus(path: str | Path, source_lang: str, target_lang: str) -> pd.DataFrame:
    """OPUS-100 Parquet (one `translation` struct column keyed by language) -> columns src, tgt."""
    frame = read_parquet(path)
    if "translation" not in frame.columns:
        raise ValueError(f"{path}: no 'translation' column (not an OPUS-100 file?)")
    pairs = frame["translation"]
    missing = {source_lang, target_lang} - set(pairs.iloc[0]) if len(pairs) else set()
    if missing:
        raise ValueError(f"{path}: languages {sorted(missing)} not in this pair")
    return pd.DataFrame({"src": [p[source_lang] for p in pairs],
                         "tgt": [p[target_lang] for p in pairs]})


def read_flores(devtest_dir: str | Path, lang: str) -> list[str]:
    """Sentences of one language from FLORES-101 devtest (line i is aligned across languages)."""
    path = Path(devtest_dir) / f"{FLORES_CODES[lang]}.devtest"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: FLORES-101 devtest file missing (run the download rule)")
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as error:
        raise UserError(f"{path}: not UTF-8 text (byte 0x{error.object[error.start]:02x} at offset "
                        f"{error.start}); is it a FLORES-101 devtest file?") from error


def clean_text(value: object) -> str | None:
    """Text with surrounding whitespace removed; None for missing or blank values."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    text = " ".join(str(value).split())
    return text or None
