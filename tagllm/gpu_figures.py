"""The figures behind the GPU-hours estimate (`tagllm/gpu_hours.py`), each with its source.

Three kinds, later ones replacing earlier ones: dataset sizes and lengths of the paper's sources
(`FIGURES`: a URL where a source was found, otherwise a labelled ASSUMPTION), the settings of the
config (`preset_figures`: epochs, tag length, test sizes, evaluation batch), and the prepared data
actually present under `results/data/` (`data_figures`: row counts and mean lengths, in characters,
which are tokens on the character path). Light imports: yaml and, for `data_figures`, pyarrow.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml


@dataclass(frozen=True)
class Figure:
    value: float
    source: str  # a URL (found), or "ASSUMPTION: ..." (not found), or the preset key it was read from

    @property
    def assumed(self) -> bool:
        return self.source.startswith("ASSUMPTION")


_OPUS_VIEWER = "https://huggingface.co/datasets/opus100/viewer/en-ro/train"
_OPUS_1M = f"{_OPUS_VIEWER} (subset list: train 1M rows)"
FIGURES: dict[str, Figure] = {
    # ---- OPUS-100 train split, sentence pairs per language pair ----
    # https://huggingface.co/datasets/opus100/viewer/en-ro/train lists ca-en, de-en, el-en, en-es,
    # en-fr and en-it at 1M rows each. en-fr and en-pt are also in the README's dataset_info:
    # https://huggingface.co/datasets/Helsinki-NLP/opus-100/commit/89bec4f5f51a96d85120196b80e868e046b8e1f2
    # (en-fr train num_examples 1000000, num_bytes 201,440,450)
    # https://huggingface.co/datasets/Helsinki-NLP/opus-100/commit/b58ecb305c6caa71b33c30185cf15bbe6c728bc9
    # (en-pt train num_examples 1000000, num_bytes 118,242,849); en-es 1,000,000 (136,643,104 bytes):
    # https://huggingface.co/datasets/Maximofn/opus100/blob/main/README.md
    "opus_ca_en": Figure(1_000_000, _OPUS_1M),
    "opus_de_en": Figure(1_000_000, _OPUS_1M),
    "opus_el_en": Figure(1_000_000, _OPUS_1M),
    "opus_en_es": Figure(1_000_000, f"{_OPUS_1M}; https://huggingface.co/datasets/Maximofn/opus100/blob/main/README.md"),
    "opus_en_fr": Figure(1_000_000, "https://huggingface.co/datasets/Helsinki-NLP/opus-100/commit/"
                                    "89bec4f5f51a96d85120196b80e868e046b8e1f2 (train num_examples 1000000)"),
    "opus_en_it": Figure(1_000_000, _OPUS_1M),
    "opus_en_pt": Figure(1_000_000, "https://huggingface.co/datasets/Helsinki-NLP/opus-100/commit/"
                                    "b58ecb305c6caa71b33c30185cf15bbe6c728bc9 (train num_examples 1000000)"),
    # Not found for en-ru itself; "44 of the 99 pairs have 1M training pairs" and Russian is high-resource:
    # https://www.tensorflow.org/datasets/community_catalog/huggingface/opus100
    "opus_en_ru": Figure(1_000_000, "ASSUMPTION: 1M like the other high-resource pairs (44 of 99 OPUS-100 "
                                    "pairs have 1M; https://www.tensorflow.org/datasets/community_catalog/"
                                    "huggingface/opus100)"),
    # Stage-1 text is de-duplicated (tagllm/data/prepare.py _valid_texts); the share kept is unknown.
    "text_dedup_keep": Figure(1.0, "ASSUMPTION: no duplicate lines removed (an upper bound)"),
    # LLaMA SentencePiece tokens per OPUS sentence. The READMEs above give ~59-100 UTF-8 bytes per side
    # (en-pt 118 MB, en-es 137 MB, en-fr 201 MB per 1M pairs); ~3.5-4 bytes per token for Latin-script
    # text gives ~17-29 tokens, more for Russian and Greek, which LLaMA splits finely.
    "opus_tokens_per_sentence": Figure(30, "ASSUMPTION: from the byte counts above (~100 bytes per side "
                                           "for en-fr) at ~3.5 bytes/token, rounded up for ru/el"),
    # ---- jglaser/binding_affinity (stage-1 <SMILES>/<Protein>, QED, Descriptor) ----
    # "1.9M unique pairs of protein sequences and ligand SMILES":
    # https://huggingface.co/datasets/jglaser/binding_affinity/blob/main/README.md
    "ba_pairs": Figure(1_900_000, "https://huggingface.co/datasets/jglaser/binding_affinity/blob/main/"
                                  "README.md (1.9M unique protein-ligand pairs; context, the unique "
                                  "SMILES and sequences below are what the jobs use)"),
    # Unique counts are not published. BindingDB, the main source, has ~1M small molecules and ~8,800
    # targets for ~2.4M measurements (https://github.com/BiomedSciAI/fuse-drug, BindingDB tutorial).
    "ba_unique_smiles": Figure(850_000, "ASSUMPTION: ~45% of the 1.9M pairs have a new ligand, as in "
                                        "BindingDB (~1M molecules / 2.4M rows, https://github.com/BiomedSciAI/"
                                        "fuse-drug); SMILES > 512 chars and invalid ones are rare"),
    "ba_unique_proteins_le512": Figure(8_000, "ASSUMPTION: ~15k distinct sequences (BindingDB ~8,800 "
                                              "targets + PDB chains), about half <= 512 residues"),
    # Canonical SMILES of drug-like ligands (MW ~450, ~32 heavy atoms, ~1.7 characters per atom).
    "smiles_chars": Figure(55, "ASSUMPTION: mean canonical SMILES length of BindingDB ligands"),
    "protein_chars_le512": Figure(330, "ASSUMPTION: mean length of sequences <= 512 residues"),
    # ---- TDC DrugComb, label CSS ----
    # TDC.DrugComb_CSS: 297,098 rows (Benchmark Data Summary):
    # https://tdcommons.ai/benchmark/drugcombo_group/overview/ (source:
    # https://github.com/mims-harvard/tdc2website-flask/blob/main/templates/benchmark/drugcomb_css.html)
    "dc_rows": Figure(297_098, "https://tdcommons.ai/benchmark/drugcombo_group/overview/ (TDC.DrugComb_CSS "
                               "size 297,098)"),
    # tagllm/data/tdc.py combination_split: 80 % train, 20 % test (by drug pair).
    "dc_test_fraction": Figure(0.2, "tagllm/data/tdc.py combination_split fractions (0.8, 0.0, 0.2)"),
    "dc_smiles_chars": Figure(50, "ASSUMPTION: mean SMILES length of the screened (mostly approved "
                                  "anticancer) drugs"),
    "dc_name_tokens": Figure(6, "ASSUMPTION: LLaMA tokens per drug name ({drug1}, {drug2})"),
    # ---- TDC BindingDB_Patent (DTI-DG group) ----
    # Train/valid = patents of 2013-2018, 20 % of them validation; test = 2019-2021:
    # https://tdcommons.ai/benchmark/dti_dg_group/overview . Row counts were not found (not on that page,
    # not in TDC's leaderboard data or its DTI-DG example code).
    "ba_train_val_rows": Figure(200_000, "ASSUMPTION: rows of 2013-2018 (count not found; "
                                         "https://tdcommons.ai/benchmark/dti_dg_group/overview)"),
    "ba_valid_fraction": Figure(0.2, "https://tdcommons.ai/benchmark/dti_dg_group/overview (20 % of "
                                     "2013-2018 held out for validation)"),
    "ba_test_rows": Figure(50_000, "ASSUMPTION: rows of 2019-2021 (count not found)"),
    "ba_protein_chars": Figure(600, "ASSUMPTION: mean target length (no length cap in the preset)"),
    "ba_smiles_chars": Figure(60, "ASSUMPTION: mean SMILES length of patent compounds"),
    # ---- prompt templates (paper Table 5, tagllm/tasks.py), LLaMA tokens incl. BOS, counted by hand ----
    "template_tokens_descriptor": Figure(24, "ASSUMPTION: hand count of the Descriptor template"),
    "template_tokens_qed": Figure(30, "ASSUMPTION: hand count of the QED template"),
    "template_tokens_dc": Figure(42, "ASSUMPTION: hand count of the DC template (without drug names)"),
    "template_tokens_ba": Figure(32, "ASSUMPTION: hand count of the BA template"),
    "template_tokens_translate": Figure(11, "ASSUMPTION: hand count of the Translate template"),
    "template_tokens_direct_prompt": Figure(25, "ASSUMPTION: plain-words instruction of direct prompting"),
    "stage1_template_tokens": Figure(2, "BOS and the space in `<tag> {text}`"),
    "text_tag_tokens": Figure(5, "ASSUMPTION: a tag's name written as text, e.g. `<SMILES>`"),
    "label_tokens": Figure(6, "ASSUMPTION: a label written as digits (`-12.34`) plus the end"),
    # ---- evaluation ----
    "new_tokens_translate": Figure(40, "ASSUMPTION: mean greedy tokens per translation (cap 48)"),
    # Memory-bound: 13.5 GB of bf16 weights read per step (~7 ms at 2 TB/s) plus framework overhead.
    "decode_step_ms": Figure(25, "ASSUMPTION: one greedy step of a batch of 32, LLaMA-7B bf16, A100"),
    "text_test_fraction": Figure(0.1, "tagllm/data/prepare.py Settings.test_fraction default"),
}

ROOT = Path(__file__).resolve().parents[1]  # the checkout: config.yaml, presets/
# Read from the preset when it has them (see preset_figures); these are the paper's values (A.1).
PRESET_DEFAULTS: dict[str, Figure] = {
    "tag_length": Figure(10, "paper A.1 (p = 10)"),
    "epochs_stage1": Figure(1, "paper: not stated; one pass"),
    "epochs_translate": Figure(1, "paper A.1"),
    "epochs_descriptor": Figure(4, "paper A.1"),
    "epochs_qed": Figure(2, "paper A.1"),
    "epochs_dc": Figure(2, "paper A.1"),
    "epochs_ba": Figure(4, "paper A.1"),
    "qed_test_fraction": Figure(0.1, "paper: 90/10"),
    "descriptor_test_fraction": Figure(0.1, "paper: 90/10"),
    "translation_test_rows": Figure(200, "FLORES-101 devtest sentences per direction"),
    "eval_batch_size": Figure(32, "evaluate.batch_size"),
}
_PRESET_KEYS = {
    "tag_length": ("tag_length",),
    "epochs_stage1": ("stage1", "EN", "train", "epochs"),
    "epochs_translate": ("stage3", "translate", "train", "epochs"),
    "epochs_descriptor": ("stage2", "descriptor", "train", "epochs"),
    "epochs_qed": ("stage2", "qed", "train", "epochs"),
    "epochs_dc": ("stage2", "dc", "train", "epochs"),
    "epochs_ba": ("stage3", "ba", "train", "epochs"),
    "qed_test_fraction": ("data", "qed", "test_fraction"),
    "descriptor_test_fraction": ("data", "descriptor", "test_fraction"),
    "translation_test_rows": ("data", "translation", "test_rows"),
    "eval_batch_size": ("evaluate", "batch_size"),
}


def preset_figures(preset: str | Path | Mapping, name: str = "config") -> dict[str, Figure]:
    """Epochs, tag length, test sizes and eval batch from a preset file (or a merged config mapping,
    called `name` in the sources); the paper's values where a key is missing (or the file cannot be
    read)."""
    figures = dict(PRESET_DEFAULTS)
    if isinstance(preset, Mapping):
        config = preset
    else:
        name = Path(preset).name
        try:
            config = yaml.safe_load(Path(preset).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError):
            return figures
    for figure, keys in _PRESET_KEYS.items():
        value: object = config
        for key in keys:
            value = value.get(key) if isinstance(value, Mapping) else None
        if isinstance(value, int | float) and not isinstance(value, bool):
            figures[figure] = Figure(float(value), f"{name}: {'.'.join(keys)}")
    return figures


def seed_figures(preset: str | Path | Mapping) -> dict[str, Figure]:
    """`seeds_<task>` and `baseline_seeds_<task>`: how many seeds the experiment plan
    (`tagllm.plan`) trains and scores Tag-LLM and the PEFT baselines with on the run of each task,
    from a merged config, or a preset file merged onto config.yaml as Snakemake merges it.
    Nothing where the config cannot be read."""
    from tagllm.plan import build_plan
    from tagllm.preflight import load_config

    if isinstance(preset, Mapping):
        config, name = preset, "config"
    else:
        try:
            config, name = load_config([preset], ROOT), Path(preset).name
        except (OSError, ValueError, yaml.YAMLError):
            return {}
    plan = build_plan(config)
    out: dict[str, Figure] = {}
    for run in plan.runs.values():
        seeds = plan.job_seeds("tagllm", run.name)
        out.setdefault(f"seeds_{run.task.name}",
                       Figure(float(len(seeds)), f"{name}: Tag-LLM on {run.name}, seeds {seeds}"))
        # Every PEFT baseline of a run has the same seeds (baselines.seeds); "lora" stands for them.
        seeds = plan.job_seeds("lora", run.name)
        out.setdefault(f"baseline_seeds_{run.task.name}",
                       Figure(float(len(seeds)),
                              f"{name}: PEFT baselines on {run.name}, seeds {seeds}"))
    return out


# Columns whose mean length (characters = tokens on the character path) replaces an assumed figure;
# DC's two SMILES columns share one figure.
LENGTH_FIGURES = {
    "qed": (("smiles", "smiles_chars"),),
    "descriptor": (("sequence", "protein_chars_le512"),),
    "dc": (("smiles1", "dc_smiles_chars"), ("smiles2", "dc_smiles_chars")),
    "ba": (("sequence", "ba_protein_chars"), ("smiles", "ba_smiles_chars")),
    "translate": (),
}


def task_datasets(config: Mapping) -> dict[str, str]:
    """The dataset each task trains on: that of its first run in stage2/stage3 (null runs are off)."""
    from tagllm.plan import build_plan

    out: dict[str, str] = {}
    for run in build_plan(config).runs.values():
        out.setdefault(run.task.name, run.dataset)
    return out


def data_figures(config: Mapping, directory: str | Path = ".") -> dict[str, Figure]:
    """Figures read from the prepared datasets present under `<directory>/results/data/`:
    `train_rows_<task>`, `test_rows_<task>`, `stage1_rows_<tag>` and the mean lengths of
    `LENGTH_FIGURES`. Datasets not prepared yet give nothing (their figures stay assumed)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    root = Path(directory) / "results" / "data"
    out: dict[str, Figure] = {}
    for task, dataset in task_datasets(config).items():
        train, test = root / dataset / "train.parquet", root / dataset / "test.parquet"
        if not (train.is_file() and test.is_file()):
            continue
        out[f"train_rows_{task}"] = Figure(pq.read_metadata(train).num_rows, f"{train}: rows")
        out[f"test_rows_{task}"] = Figure(pq.read_metadata(test).num_rows, f"{test}: rows")
        lengths: dict[str, list[float]] = {}
        for column, figure in LENGTH_FIGURES.get(task, ()):
            values = pq.read_table(train, columns=[column]).column(column)
            lengths.setdefault(figure, []).append(pc.mean(pc.utf8_length(values)).as_py() or 0.0)
        for figure, means in lengths.items():
            out[figure] = Figure(sum(means) / len(means), f"{train}: mean characters")
    for tag, entry in (config.get("stage1") or {}).items():
        train = root / str((entry or {}).get("dataset", "")) / "train.parquet"
        if entry and train.is_file():
            out[f"stage1_rows_{tag}"] = Figure(pq.read_metadata(train).num_rows, f"{train}: rows")
    return out
