"""What each dataset kind holds and needs: its prepared columns, each with what it holds (smiles,
protein, text or number, as a `table` dataset declares its own), and the download sources it is
prepared from. Light (no imports): the config check, the task registry and the workflow read it
before any rule runs."""

from __future__ import annotations

from collections.abc import Mapping

# Columns of a prepared dataset by kind (the table in tagllm/data/prepare.py).
KIND_COLUMNS = {
    "qed": {"id": "number", "source_row": "number", "smiles": "smiles", "y": "number"},
    "descriptor": {"id": "number", "source_row": "number", "sequence": "protein", "y": "number"},
    "text": {"id": "number", "text": "text"},
    "translation": {"src_lang": "text", "tgt_lang": "text", "src": "text", "tgt": "text",
                    "setting": "text"},
    "dc": {"drug1": "text", "smiles1": "smiles", "drug2": "text", "smiles2": "smiles",
           "cell_line": "text", "y": "number"},
    "ba": {"protein_id": "text", "sequence": "protein", "drug": "text", "smiles": "smiles",
           "year": "number", "y": "number"},
}


def dataset_columns(entry: Mapping) -> dict[str, str]:
    """Columns of a prepared dataset (a `data:` entry), each with what it holds."""
    if entry["kind"] == "table":
        return {"id": "number", "source_row": "number", **(entry.get("columns") or {})}
    return KIND_COLUMNS[entry["kind"]]


# Translation: trained on these pairs (both directions); tagllm.data.prepare scores the directions.
TRAIN_PAIRS = (("en", "fr"), ("en", "ru"), ("de", "en"), ("en", "it"), ("el", "en"))
# Stage-1 text for each language tag in the paper: one side of an OPUS-100 pair.
OPUS_SIDE = {"en": "ca-en", "fr": "en-fr", "ru": "en-ru", "de": "de-en", "it": "en-it",
             "el": "el-en", "es": "en-es", "pt": "en-pt"}


def required_downloads(kind: str, source: str, lang: str = "") -> list[str]:
    """Names of the download sources (`tagllm.data.sources`) a dataset is prepared from."""
    if source == "binding-affinity":
        return ["binding_affinity"]
    if source == "tdc":
        return ["tdc_drugcomb"] if kind == "dc" else ["tdc_bindingdb_patent"]
    if source == "tdc-group":  # TDC's benchmark groups: their own test sets (tagllm/data/tdc.py)
        return ["tdc_drugcombo_group"] if kind == "dc" else ["tdc_dti_dg_group"]
    if source == "opus100" and kind == "text":
        return [f"opus100_{OPUS_SIDE[lang]}"]
    if source == "opus100":
        return [f"opus100_{'-'.join(sorted(pair))}" for pair in TRAIN_PAIRS] + ["flores101"]
    return []
