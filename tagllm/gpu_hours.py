"""Expected GPU hours of the paper preset (presets/paper.yaml: LLaMA-7B, the paper's datasets), per stage
and task: the cost model behind `bench/gpu_hours.py` (docs/cluster.md's table) and
`python -m tagllm preflight`.

Every figure printed is an ESTIMATE: dataset sizes (sourced where a source was found, otherwise a labelled
assumption, or read from the prepared data present; see tagllm/gpu_figures.py), typical tokens per row,
and a throughput that is either modelled (peak TFLOP/s x MFU) or measured by bench/gpu_check.py on the
LLaMA-7B shape (--measured-json). Nothing is downloaded and no model is loaded; it runs in well under a
second.

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

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tagllm.gpu_figures import FIGURES, ROOT, Figure, preset_figures, seed_figures

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

    def present(task: str, train: int, test: int) -> tuple[int, int]:
        """The prepared data's row counts where it is present (`gpu_figures.data_figures`)."""
        return int(f.get(f"train_rows_{task}", train)), int(f.get(f"test_rows_{task}", test))

    qed_train, qed_test = present("qed", qed_train, qed_test)
    desc_train, desc_test = present("descriptor", desc_train, desc_test)
    dc_train, dc_test = present("dc", dc_train, dc_test)
    ba_train, ba_test = present("ba", ba_train, ba_test)
    translate_train, translate_test = present("translate", translate_train, translate_test)
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
        if task == "translate":  # prefill the prompt and decode the translation; then the
            # prompt with the reference, teacher-forced (its NLL)
            fwd = 2 * (pr.prefix + pr.function) + pr.target
            decode = steps(rows, f["new_tokens_translate"])
        else:
            fwd, decode = pr.prefix + pr.function, steps(rows, f["label_tokens"]) if digits else 0
        return Job("eval", group, task, rows, 1, fwd, 0, "2N" + (" + decode" if decode else ""),
                   decode_steps=decode)

    # -- stage 1: domain tags, <tag> text, LM loss on the text (full back-propagation)
    head = f["stage1_template_tokens"] + p
    for lang in LANGUAGES:
        rows = round(f.get(f"stage1_rows_{lang.upper()}", f[f"opus_{STAGE1_PAIRS[lang]}"] *
                           f["text_dedup_keep"] * (1 - f["text_test_fraction"])))
        jobs.append(Job("1", "language tags (8)", lang.upper(), rows, int(f["epochs_stage1"]),
                        head + sentence, head + sentence, "4N all"))
    jobs.append(Job("1", "`<SMILES>`", "SMILES", int(f.get("stage1_rows_SMILES", qed_train)),
                    int(f["epochs_stage1"]),
                    head + f["smiles_chars"], head + f["smiles_chars"], "4N all"))
    jobs.append(Job("1", "`<Protein>`", "Protein", int(f.get("stage1_rows_Protein", desc_train)),
                    int(f["epochs_stage1"]),
                    head + f["protein_chars_le512"], head + f["protein_chars_le512"], "4N all"))

    # -- stages 2 and 3: Tag-LLM's function tags, and their evaluation
    # (each seed the plan trains and scores Tag-LLM with: `seeds_<task>`, tagllm.plan)
    for task in (*REGRESSION_TASKS, "translate"):
        stage = "3" if task in ("ba", "translate") else "2"
        rows = translate_train if task == "translate" else train_rows[task]
        seeds = int(f.get(f"seeds_{task}", 1))
        group = FUNCTION_TAGS[task] + (f" x {seeds} seeds" if seeds > 1 else "")
        for _ in range(seeds):
            jobs.append(function_tag_job(stage, group, task, prompt(task), rows, epochs[task]))
            jobs.append(eval_job("Tag-LLM (5 tasks, every seed)", task, prompt(task)))

    # -- baselines (paper Tables 2-3) on the four regression tasks, Tag-LLM's epochs; the PEFT
    # rows on each seed the plan trains them with (`baseline_seeds_<task>`), the probes once
    for task in REGRESSION_TASKS:
        rows, n_epochs = train_rows[task], epochs[task]
        seeds = int(f.get(f"baseline_seeds_{task}", 1))
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
            eval_prompt = Prompt(pr.prefix + extra, 0)
            for _ in range(seeds):
                jobs.append(Job("baseline", name, task, rows, n_epochs, tokens, tokens,
                                "4N all + LoRA grads" if lora else "4N all",
                                extra_flops_per_token=6 * LORA_PARAMS if lora else 0.0))
                jobs.append(eval_job("baselines (6 x 4 tasks)", task, eval_prompt,
                                     digits="decode" in name))
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


def compute(peak_tflops: float = 312.0, mfu: float = 0.4, measured_json: str | None = None,
            overrides: Mapping[str, float] | None = None,
            preset: str | Path | Mapping = ROOT / "presets/paper.yaml", detail: bool = False,
            data: Mapping[str, Figure] | None = None) -> dict:
    """The whole report as a dict (figures used, throughput, jobs, table rows, total hours).

    `preset`: a preset file or a merged config mapping; `data`: figures read from the prepared data
    (`gpu_figures.data_figures`), which replace the assumed ones."""
    figures = {**FIGURES, **preset_figures(preset), **seed_figures(preset), **(data or {})}
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
