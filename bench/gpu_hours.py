"""Expected GPU hours of the paper preset (presets/paper.yaml: LLaMA-7B, the paper's datasets), per stage
and task, for the README and docs/cluster.md.

Every figure printed is an ESTIMATE: dataset sizes (sourced where a source was found, otherwise a labelled
assumption, see FIGURES), typical tokens per row, and a throughput that is either modelled (peak TFLOP/s x
MFU) or measured by bench/gpu_check.py on the LLaMA-7B shape (--measured-json). Nothing is downloaded and
no model is loaded; it runs in well under a second.

    python bench/gpu_hours.py                                 # A100 bf16, MFU 0.4 (modelled)
    python bench/gpu_hours.py --measured-json gpu_check.json  # tokens/s measured by bench/gpu_check.py
    python bench/gpu_hours.py --set ba_train_val_rows=120000 --json hours.json --detail

Cost model (N = 6.7e9 parameters, FLOPs per token): a gradient-free forward costs 2N; back-propagating
through the frozen model to the inputs (activation gradients only, no weight gradients) another 2N. So
stage 1, prompt tuning and LoRA cost 4N on every token (LoRA adds its own small weight gradients). A
function-tag step runs the prefix before the function tag without gradients (2N per prefix token; on 7B
the prefix cache does not fit in memory across epochs, so every epoch pays it) and the function tag (and,
for Translate, the target text) with gradients (4N per such token, as bench/gpu_check.py counts it).
Evaluation is a 2N forward per test token; greedy decoding is memory-bound and modelled as a fixed latency
per decoding step of a batch. Attention-score FLOPs and padding are left out (short sequences; batches
are length-grouped, tagllm/batching.py).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
N_PARAMS = 6.7e9  # LLaMA-7B
# LoRA as tagllm/adapters.py builds it: PEFT's default targets for LLaMA (q_proj, v_proj), rank 8,
# in 32 layers of width 4096: 32 x 2 x (4096 x 8 + 8 x 4096) trainable weights, 6 FLOPs each per token.
LORA_PARAMS = 32 * 2 * 2 * 4096 * 8
LANGUAGES = ("en", "fr", "ru", "de", "it", "el", "es", "pt")
# Stage-1 text: one side of these OPUS-100 pairs (paper section 3; tagllm/data/prepare.py OPUS_SIDE).
STAGE1_PAIRS = {"en": "ca_en", "fr": "en_fr", "ru": "en_ru", "de": "de_en", "it": "en_it",
                "el": "el_en", "es": "en_es", "pt": "en_pt"}
# <Translate> trains on these pairs, both directions (tagllm/data/prepare.py TRAIN_PAIRS).
TRANSLATE_PAIRS = ("en_fr", "en_ru", "de_en", "en_it", "el_en")
REGRESSION_TASKS = ("descriptor", "qed", "dc", "ba")
# Names in backticks: a bare `<QED>` is an HTML tag to a Markdown renderer, which drops it.
FUNCTION_TAGS = {"descriptor": "`<Descriptor>`", "qed": "`<QED>`", "dc": "`<DC>`", "ba": "`<BA>`",
                 "translate": "`<Translate>`"}


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


def preset_figures(path: Path) -> dict[str, Figure]:
    """Epochs, tag length, test sizes and eval batch from the preset; the paper's values where a key is
    missing (or the file cannot be read)."""
    figures = dict(PRESET_DEFAULTS)
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return figures
    for name, keys in _PRESET_KEYS.items():
        value: object = config
        for key in keys:
            value = value.get(key) if isinstance(value, Mapping) else None
        if isinstance(value, int | float) and not isinstance(value, bool):
            figures[name] = Figure(float(value), f"{path.name}: {'.'.join(keys)}")
    return figures


@dataclass(frozen=True)
class Job:
    """One training or evaluation run: `rows` examples per epoch, each sending `fwd` tokens through the
    model and back-propagating `bwd` of them; plus memory-bound decoding steps."""

    stage: str
    group: str  # how the summary table names it
    task: str
    rows: int
    epochs: int
    fwd: float  # tokens per row through the forward pass
    bwd: float  # tokens per row back-propagated (activation gradients)
    cost: str  # the cost model, in words
    extra_flops_per_token: float = 0.0  # LoRA's weight gradients
    decode_steps: int = 0

    @property
    def tokens(self) -> float:
        return self.rows * self.epochs * self.fwd

    @property
    def bwd_tokens(self) -> float:
        return self.rows * self.epochs * self.bwd

    @property
    def flops(self) -> float:
        return 2 * N_PARAMS * (self.tokens + self.bwd_tokens) + self.extra_flops_per_token * self.tokens


@dataclass(frozen=True)
class Throughput:
    """Seconds per forward token and per back-propagated token, and per decoding step."""

    measured: bool
    fwd_s: float
    bwd_s: float
    decode_step_s: float
    description: str
    details: dict = field(default_factory=dict)

    def seconds(self, job: Job) -> float:
        compute = job.tokens * self.fwd_s + job.bwd_tokens * self.bwd_s
        if not self.measured:  # the MFU model also charges LoRA's extra FLOPs
            compute += job.extra_flops_per_token * job.tokens * self.fwd_s / (2 * N_PARAMS)
        return compute + job.decode_steps * self.decode_step_s


def modelled_throughput(peak_tflops: float, mfu: float, decode_step_ms: float) -> Throughput:
    if peak_tflops <= 0 or not 0 < mfu <= 1:
        raise ValueError("--peak-tflops must be > 0 and --mfu in (0, 1]")
    flops_per_s = peak_tflops * 1e12 * mfu
    per_token = 2 * N_PARAMS / flops_per_s  # a forward and a backward token cost 2N each
    return Throughput(False, per_token, per_token, decode_step_ms / 1000,
                      f"{peak_tflops:g} TFLOP/s peak x MFU {mfu:g} = "
                      f"{flops_per_s / 1e12:.1f} TFLOP/s sustained; decoding {decode_step_ms:g} ms per step",
                      {"peak_tflops": peak_tflops, "mfu": mfu})


def measured_throughput(path: Path, decode_step_ms: float) -> Throughput:
    """Per-token forward and backward times from bench/gpu_check.py's JSON.

    Its stage-1 step runs forward and backward over every token (t1 seconds per token = f + b); its
    function-tag step runs the forward over all `tokens + 2p` positions and the backward over the p
    function-tag rows, and reports forward tokens/s (t2 = f + q b, q = p / (tokens + 2p)). Its JSON
    does not record p; gpu_check's default (10) is assumed unless a `tag_length` key is there.
    """
    data = json.loads(path.read_text(encoding="utf-8"))
    try:
        t1 = 1 / float(data["stage1"]["tokens_per_s"])
        t2 = 1 / float(data["function_tag"]["tokens_per_s"])
        tokens = int(data.get("tokens", 1024))
        tag_length = int(data.get("tag_length", 10))
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as error:
        raise ValueError(f"{path}: not bench/gpu_check.py output ({error!r})") from None
    q = tag_length / (tokens + 2 * tag_length)
    bwd = max((t1 - t2) / (1 - q), 0.0)
    fwd = t1 - bwd if bwd > 0 else t2
    shape = data.get("shape", "?")
    description = (f"bench/gpu_check.py ({shape}, {data.get('device', '?')}, batch "
                   f"{data.get('batch', '?')} x {tokens} tokens): stage-1 step "
                   f"{1 / t1:,.0f} tokens/s, function-tag step {1 / t2:,.0f} tokens/s -> forward "
                   f"{fwd * 1e6:.1f} us/token, backward {bwd * 1e6:.1f} us/token; decoding "
                   f"{decode_step_ms:g} ms per step (not measured)")
    if shape != "llama-7b":
        description += f"; WARNING: shape {shape!r} is not LLaMA-7B"
    return Throughput(True, fwd, bwd, decode_step_ms / 1000, description,
                      {"stage1_tokens_per_s": 1 / t1, "function_tag_tokens_per_s": 1 / t2,
                       "source": str(path)})


# ------------------------------------------------------------------------------------------ the jobs
@dataclass(frozen=True)
class Prompt:
    prefix: float  # tokens before the function tag (template, data, domain tags)
    function: float  # function-tag rows
    target: float = 0.0  # tokens trained after it (translation, digits)

    @property
    def total(self) -> float:
        return self.prefix + self.function + self.target


def build_jobs(f: Mapping[str, float]) -> list[Job]:
    """Every training and evaluation run of the paper preset, its baselines and its ablations."""
    p = int(f["tag_length"])
    batch = int(f["eval_batch_size"])
    jobs: list[Job] = []

    def steps(rows: int, new_tokens: float) -> int:
        return math.ceil(rows / batch) * math.ceil(new_tokens)

    # -- dataset sizes
    def split(total: float, test_fraction: float) -> tuple[int, int]:
        test = round(total * test_fraction)
        return round(total) - test, test

    qed_train, qed_test = split(f["ba_unique_smiles"], f["qed_test_fraction"])
    desc_train, desc_test = split(f["ba_unique_proteins_le512"], f["descriptor_test_fraction"])
    dc_train, dc_test = split(f["dc_rows"], f["dc_test_fraction"])
    ba_train = round(f["ba_train_val_rows"] * (1 - f["ba_valid_fraction"]))
    ba_test = round(f["ba_test_rows"])
    translate_train = 2 * sum(round(f[f"opus_{pair}"]) for pair in TRANSLATE_PAIRS)
    translate_test = 10 * round(f["translation_test_rows"])  # 10 directions (paper Table 1)
    sentence = f["opus_tokens_per_sentence"]
    train_rows = {"descriptor": desc_train, "qed": qed_train, "dc": dc_train, "ba": ba_train}
    test_rows = {"descriptor": desc_test, "qed": qed_test, "dc": dc_test, "ba": ba_test}
    epochs = {task: int(f[f"epochs_{task}"]) for task in (*REGRESSION_TASKS, "translate")}

    # -- prompts: (template + data, domain-tag occurrences)
    data_tokens = {
        "descriptor": f["template_tokens_descriptor"] + f["protein_chars_le512"],
        "qed": f["template_tokens_qed"] + f["smiles_chars"],
        "dc": f["template_tokens_dc"] + 2 * (f["dc_smiles_chars"] + f["dc_name_tokens"]),
        "ba": f["template_tokens_ba"] + f["ba_protein_chars"] + f["ba_smiles_chars"],
        "translate": f["template_tokens_translate"] + sentence,
    }
    domain_occurrences = {"descriptor": 1, "qed": 1, "dc": 2, "ba": 2, "translate": 2}

    def prompt(task: str, domain: str = "tags", function_tag: bool = True, digits: bool = False,
               function_length: int = p) -> Prompt:
        per_tag = {"tags": p, "text": f["text_tag_tokens"], "none": 0}[domain]
        target = sentence + 1 if task == "translate" else (f["label_tokens"] if digits else 0)
        return Prompt(data_tokens[task] + domain_occurrences[task] * per_tag,
                      function_length if function_tag else 0, target)

    def function_tag_job(stage: str, group: str, task: str, pr: Prompt, rows: int, n_epochs: int
                         ) -> Job:
        trained = pr.function + pr.target
        what = "tag+target" if pr.target else "tag"
        return Job(stage, group, task, rows, n_epochs, pr.total, trained,
                   f"2N prefix + 4N {what}")

    def eval_job(group: str, task: str, pr: Prompt, digits: bool = False) -> Job:
        rows = translate_test if task == "translate" else test_rows[task]
        if task == "translate":  # prefill the prompt, then decode the translation
            fwd, decode = pr.prefix + pr.function, steps(rows, f["new_tokens_translate"])
        else:
            fwd, decode = pr.prefix + pr.function, steps(rows, f["label_tokens"]) if digits else 0
        return Job("eval", group, task, rows, 1, fwd, 0, "2N" + (" + decode" if decode else ""),
                   decode_steps=decode)

    # -- stage 1: domain tags, <tag> text, LM loss on the text (full back-propagation)
    head = f["stage1_template_tokens"] + p
    for lang in LANGUAGES:
        rows = round(f[f"opus_{STAGE1_PAIRS[lang]}"] * f["text_dedup_keep"] * (1 - f["text_test_fraction"]))
        jobs.append(Job("1", "language tags (8)", lang.upper(), rows, int(f["epochs_stage1"]),
                        head + sentence, head + sentence, "4N all"))
    jobs.append(Job("1", "`<SMILES>`", "SMILES", qed_train, int(f["epochs_stage1"]),
                    head + f["smiles_chars"], head + f["smiles_chars"], "4N all"))
    jobs.append(Job("1", "`<Protein>`", "Protein", desc_train, int(f["epochs_stage1"]),
                    head + f["protein_chars_le512"], head + f["protein_chars_le512"], "4N all"))

    # -- stages 2 and 3: Tag-LLM's function tags, and their evaluation
    for task in (*REGRESSION_TASKS, "translate"):
        stage = "3" if task in ("ba", "translate") else "2"
        rows = translate_train if task == "translate" else train_rows[task]
        jobs.append(function_tag_job(stage, FUNCTION_TAGS[task], task, prompt(task), rows, epochs[task]))
        jobs.append(eval_job("Tag-LLM (5 tasks)", task, prompt(task)))

    # -- baselines (paper Tables 2-3) on the four regression tasks, Tag-LLM's epochs
    for task in REGRESSION_TASKS:
        rows, n_epochs = train_rows[task], epochs[task]
        virtual = p * (1 if task in ("descriptor", "qed") else 2) + p  # = total tag length (20 / 30)
        variants = {  # name: (prompt, virtual tokens)
            "LoRA (decode)": (prompt(task, "none", False, digits=True), 0),
            "LoRA + text + head": (prompt(task, "text", False), 0),
            "LoRA + head": (prompt(task, "none", False), 0),
            "prompt tuning (decode)": (prompt(task, "none", False, digits=True), virtual),
            "prompt tuning + text + head": (prompt(task, "text", False), virtual),
            "prompt tuning + head": (prompt(task, "none", False), virtual),
        }
        for name, (pr, extra) in variants.items():
            lora = name.startswith("LoRA")
            tokens = pr.total + extra
            jobs.append(Job("baseline", name, task, rows, n_epochs, tokens, tokens,
                            "4N all + LoRA grads" if lora else "4N all",
                            extra_flops_per_token=6 * LORA_PARAMS if lora else 0.0))
            eval_prompt = Prompt(pr.prefix + extra, 0)
            jobs.append(eval_job("baselines (6 x 4 tasks)", task, eval_prompt, digits="decode" in name))
        for name, domain in (("linear probing", "none"), ("linear probing + text", "text")):
            pr = prompt(task, domain, False)  # features of train and test, once; the head is cheap
            jobs.append(Job("baseline", name, task, rows + test_rows[task], 1, pr.total, 0,
                            "2N features once"))
    direct = {task: Prompt(f["template_tokens_direct_prompt"] + data_tokens[task], 0)
              for task in ("qed", "translate")}
    jobs.append(eval_job("direct prompting (QED, Translate)", "qed", direct["qed"], digits=True))
    jobs.append(eval_job("direct prompting (QED, Translate)", "translate", direct["translate"]))

    # -- ablations on DC (paper Table 4 and the tag-length sweep)
    dc_rows, dc_epochs = train_rows["dc"], epochs["dc"]
    ablations = {
        "no domain tags": prompt("dc", "none"),
        "no head (digits decoded)": prompt("dc", digits=True),
        **{f"tag length p = {n}": prompt("dc", function_length=n) for n in (1, 5, 20, 50)},
    }
    for name, pr in ablations.items():
        jobs.append(function_tag_job("ablation", name, "dc", pr, dc_rows, dc_epochs))
        jobs.append(eval_job("ablations (DC; enriched QED run)", "dc", pr, digits="digits" in name))
    pr = prompt("dc", function_tag=False)
    jobs.append(Job("ablation", "no function tags (probe)", "dc", dc_rows + dc_test, 1, pr.total, 0,
                    "2N features once"))
    # Enriched: <SMILES> trained with <QED> (full back-propagation through the QED prompt) plus its
    # stage-1 LM loss on one <SMILES> text batch per task batch; then a normal DC run with that tag.
    qed_prompt = prompt("qed")
    stage1_smiles = head + f["smiles_chars"]
    enrich_tokens = qed_prompt.total + stage1_smiles
    jobs.append(Job("ablation", "enriched `<SMILES>` (QED run)", "qed", qed_train, epochs["qed"],
                    enrich_tokens, enrich_tokens, "4N all"))
    jobs.append(eval_job("ablations (DC; enriched QED run)", "qed", qed_prompt))
    jobs.append(function_tag_job("ablation", "enriched (DC run)", "dc", prompt("dc"), dc_rows, dc_epochs))
    jobs.append(eval_job("ablations (DC; enriched QED run)", "dc", prompt("dc")))
    return jobs


# ------------------------------------------------------------------------------------------ report
STAGE_ORDER = {"1": 0, "2": 1, "3": 2, "eval": 3, "baseline": 4, "ablation": 5}
STAGE_NAMES = {"1": "stage 1", "2": "stage 2", "3": "stage 3", "eval": "evaluation",
               "baseline": "baselines", "ablation": "ablations"}


@dataclass
class Row:
    stage: str
    group: str
    tasks: list[str]
    rows: int
    epochs: list[int]
    tokens: float
    cost: list[str]
    hours: float


def summarise(jobs: Iterable[Job], throughput: Throughput, detail: bool = False) -> list[Row]:
    """One row per (stage, group), or per job with `detail`; in stage order."""
    rows: dict[tuple[str, str], Row] = {}
    for job in jobs:
        key = (job.stage, f"{job.group} / {job.task}" if detail else job.group)
        row = rows.setdefault(key, Row(job.stage, key[1], [], 0, [], 0.0, [], 0.0))
        row.rows += job.rows
        row.tokens += job.tokens
        row.hours += throughput.seconds(job) / 3600
        for values, value in ((row.tasks, job.task), (row.epochs, job.epochs), (row.cost, job.cost)):
            if value not in values:
                values.append(value)
    return sorted(rows.values(), key=lambda r: STAGE_ORDER.get(r.stage, 9))


def _epochs(values: list[int]) -> str:
    return str(values[0]) if len(values) == 1 else f"{min(values)}-{max(values)}"


def subtotals(rows: Iterable[Row]) -> dict[str, float]:
    """GPU hours per stage (stage 1-3, evaluation, baselines, ablations)."""
    out: dict[str, float] = {}
    for row in rows:
        name = STAGE_NAMES.get(row.stage, row.stage)
        out[name] = out.get(name, 0.0) + row.hours
    return out


def markdown(rows: list[Row], throughput: Throughput) -> str:
    kind = "MEASURED" if throughput.measured else "ESTIMATED"
    lines = [f"Throughput {kind}: {throughput.description}.", "",
             "| stage | task | rows | epochs | tokens (M) | cost model | GPU hours |",
             "|---|---|---:|---:|---:|---|---:|"]
    for row in rows:
        task = row.group if len(row.tasks) == 1 or row.stage in ("1", "eval") else \
            f"{row.group}, {len(row.tasks)} tasks"
        lines.append(f"| {row.stage} | {task} | {row.rows:,} | {_epochs(row.epochs)} | "
                     f"{row.tokens / 1e6:,.0f} | {'; '.join(row.cost)} | {row.hours:,.1f} |")
    total = sum(row.hours for row in rows)
    lines.append(f"| **total** | | | | {sum(r.tokens for r in rows) / 1e6:,.0f} | | **{total:,.0f}** |")
    lines += ["", "GPU hours by stage: " + ", ".join(f"{name} {hours:,.1f}"
                                                    for name, hours in subtotals(rows).items()) + "."]
    return "\n".join(lines)


def parse_overrides(items: list[str]) -> dict[str, float]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = float(value)
        except ValueError:
            raise ValueError(f"--set {key}: {value!r} is not a number") from None
    return out


def compute(peak_tflops: float = 312.0, mfu: float = 0.4, measured_json: str | None = None,
            overrides: Mapping[str, float] | None = None, preset: str | Path = ROOT / "presets/paper.yaml",
            detail: bool = False) -> dict:
    """The whole report as a dict (figures used, throughput, jobs, table rows, total hours)."""
    figures = {**FIGURES, **preset_figures(Path(preset))}
    for key, value in (overrides or {}).items():
        if key not in figures:
            raise ValueError(f"unknown figure {key!r}; known: {', '.join(sorted(figures))}")
        figures[key] = Figure(value, f"--set {key}={value:g}")
    values = {key: figure.value for key, figure in figures.items()}
    decode_ms = values["decode_step_ms"]
    if measured_json:
        throughput = measured_throughput(Path(measured_json), decode_ms)
    else:
        throughput = modelled_throughput(peak_tflops, mfu, decode_ms)
    jobs = build_jobs(values)
    rows = summarise(jobs, throughput, detail)
    return {"throughput": {"measured": throughput.measured, "description": throughput.description,
                           "forward_s_per_token": throughput.fwd_s,
                           "backward_s_per_token": throughput.bwd_s,
                           "decode_step_s": throughput.decode_step_s, **throughput.details},
            "n_params": N_PARAMS,
            "figures": {key: {"value": fig.value, "source": fig.source, "assumed": fig.assumed}
                        for key, fig in figures.items()},
            "jobs": [{**asdict(job), "tokens": job.tokens, "flops": job.flops,
                      "gpu_hours": throughput.seconds(job) / 3600} for job in jobs],
            "rows": [asdict(row) for row in rows],
            "subtotals": subtotals(rows),
            "total_gpu_hours": sum(row.hours for row in rows),
            "markdown": markdown(rows, throughput)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peak-tflops", type=float, default=312.0,
                        help="dense bf16 peak of one GPU (default 312: A100; H100/H200 989)")
    parser.add_argument("--mfu", type=float, default=0.4, help="model-FLOPs utilisation (default 0.4)")
    parser.add_argument("--measured-json", default="",
                        help="bench/gpu_check.py --json output: use its measured tokens/s instead")
    parser.add_argument("--preset", default=str(ROOT / "presets/paper.yaml"),
                        help="preset to read epochs, tag length and test sizes from")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="replace one figure (see --list), e.g. ba_train_val_rows=120000")
    parser.add_argument("--detail", action="store_true", help="one table row per job")
    parser.add_argument("--list", action="store_true", help="print every figure with its source")
    parser.add_argument("--json", default="", help="also write the full report as JSON here")
    args = parser.parse_args(argv)
    measured = args.measured_json if args.measured_json and Path(args.measured_json).is_file() else None
    if args.measured_json and measured is None:
        print(f"note: {args.measured_json} not found; using the MFU model", file=sys.stderr)
    try:
        report = compute(args.peak_tflops, args.mfu, measured, parse_overrides(args.overrides),
                         args.preset, args.detail)
    except ValueError as error:
        parser.error(str(error))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(report["markdown"])
    if args.list:
        print()
        for key, figure in report["figures"].items():
            print(f"{key} = {figure['value']:,.10g}  [{figure['source']}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
