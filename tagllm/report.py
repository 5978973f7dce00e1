"""The paper's tables from saved evaluation and training files: no model is loaded, nothing is
retrained. Each table is written as CSV (long form: task, method, metric, value (the mean over
seeds), sd (their standard deviation), seeds (how many), paper_value) and Markdown (wide, "mean +-
sd (n seeds)" where a number has several seeds, the paper's value in its own column, a caption
naming the base model and data).

Tables: 1 translation (per direction), 2 scientific tasks, 3 PEFT baselines given Tag-LLM's help,
4 ablations and the tag-length sweep, 6 trainable parameters; `summary.csv` holds every number.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from tagllm.atomic import write_text
from tagllm.methods import MODEL_FREE_PAPER, SWEEP_PATTERN, get_method
from tagllm.tasks import get_task

SUMMARY_COLUMNS = ["task", "method", "metric", "value", "sd", "seeds", "paper_value"]
DIRECTIONS = ["en-fr", "fr-en", "en-ru", "ru-en", "en-de", "de-en", "it-fr", "fr-it", "es-pt",
              "pt-es"]
# Paper Table 1 (spBLEU, FLORES-101 devtest subset, LLaMA-7B).
TABLE1_PAPER = {
    "tagllm": [40.5, 45.7, 14.2, 30.1, 23.0, 40.5, 28.8, 23.9, 24.6, 27.8],
    "M2M": [42.0, 37.2, 27.1, 27.5, 32.6, 35.8, 34.4, 28.6, 28.1, 26.9],
    "GPT-3": [36.1, 42.8, 11.2, 28.1, 25.9, 40.4, None, None, None, None],
}
ZERO_SHOT = {"it-fr": "unseen pair", "fr-it": "unseen pair", "es-pt": "unseen languages",
             "pt-es": "unseen languages"}
TABLE2_METHODS = ["nearest_neighbour", "linear_probe", "prompt_tuning", "lora", "tagllm",
                  "tagllm_budget", "train_mean", "direct_prompting"]
TABLE3_METHODS = ["lora_text", "prompt_tuning_text", "linear_probe_text", "lora_head",
                  "prompt_tuning_head", "tagllm", "tagllm_budget"]
TABLE4_METHODS = ["tagllm", "enriched", "no_domain_tags", "no_function_tags", "no_head"]
# Paper Table 6 (LLaMA-7B, one domain + one function tag, p = 10).
TABLE6_PAPER = {"tagllm": 86016, "lora_head": 1052672, "prompt_tuning_head": 86016,
                "linear_probe": 4096}
TASK_ORDER = ["descriptor", "qed", "dc", "ba"]


def read_metrics(files: Iterable[str | Path]) -> list[dict]:
    return [json.loads(Path(f).read_text(encoding="utf-8")) for f in files]


def _number(value: float | None) -> float:
    """A metric as a float: metrics files write an undefined number (a correlation of constant
    predictions, spBLEU without its model) as null, which the tables show as "-"."""
    return math.nan if value is None else float(value)


def method_label(name: str) -> str:
    if name == "train_mean":
        return "training-mean predictor"
    if name == "nearest_neighbour":
        return "nearest neighbour (difflib)"
    return get_method(name).label


def paper_value(method: str, task: str) -> float | None:
    if method in MODEL_FREE_PAPER:
        return MODEL_FREE_PAPER[method].get(task)
    return get_method(method).paper.get(task)


def long_rows(evaluations: list[dict]) -> pd.DataFrame:
    """Every number, averaged over seeds: (run, method, metric) -> value, with the paper's."""
    records = []
    for metrics in evaluations:
        run, method = metrics.get("run", metrics["task"]), metrics["method"]
        if metrics["task"] == "translate":
            for direction, scores in metrics["directions"].items():
                paper = None
                if method in TABLE1_PAPER and direction in DIRECTIONS:
                    paper = TABLE1_PAPER[method][DIRECTIONS.index(direction)]
                for metric in ("spbleu", "bleu", "chrf", "nonempty"):
                    if metric in scores:  # `nonempty` is newer than some metrics files
                        records.append({"task": f"{run}:{direction}", "method": method,
                                        "metric": metric, "value": _number(scores[metric]),
                                        "paper_value": paper if metric == "spbleu" else None})
            continue
        task = get_task(metrics["task"])
        for metric in dict.fromkeys([task.metric, "mse", "mae", "pearson"]):
            records.append({"task": run, "method": method, "metric": metric,
                            "value": _number(metrics[metric]),
                            "paper_value": paper_value(method, task.name)
                            if metric == task.metric else None})
    frame = pd.DataFrame(records, columns=["task", "method", "metric", "value", "paper_value"])
    if frame.empty:
        return frame.reindex(columns=SUMMARY_COLUMNS)
    grouped = frame.groupby(["task", "method", "metric"], sort=False, dropna=False)
    return grouped.agg(value=("value", "mean"), sd=("value", "std"), seeds=("value", "size"),
                       paper_value=("paper_value", "first")).reset_index()[SUMMARY_COLUMNS]


def cell(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def markdown_table(frame: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(False)]
    return "\n".join(lines)


def _hit(frame: pd.DataFrame, task: str, method: str, metric: str) -> pd.DataFrame:
    return frame[(frame.task == task) & (frame.method == method) & (frame.metric == metric)]


def _value(frame: pd.DataFrame, task: str, method: str, metric: str) -> float | None:
    """The value (mean over seeds) of one number, or None."""
    hit = _hit(frame, task, method, metric)
    return float(hit.value.iloc[0]) if len(hit) else None


def _lookup(frame: pd.DataFrame, task: str, method: str, metric: str) -> float | str | None:
    """A table cell: the value, or "mean ± sd (n)" when it is the mean of several seeds."""
    hit = _hit(frame, task, method, metric)
    if not len(hit):
        return None
    value, seeds = float(hit.value.iloc[0]), int(hit.seeds.iloc[0])
    return f"{cell(value)} ± {cell(float(hit.sd.iloc[0]))} ({seeds})" if seeds > 1 else value


def regression_runs(frame: pd.DataFrame) -> list[str]:
    runs = [t for t in dict.fromkeys(frame.task) if ":" not in t]
    return sorted(runs, key=lambda r: TASK_ORDER.index(get_task(r).name))


def _trainable(runs: list[dict]) -> dict[tuple[str, str], int]:
    return {(r.get("method", "tagllm"), r["task"]): r["trainable_parameters"] for r in runs
            if "trainable_parameters" in r and "task" in r}


def table_tasks(frame: pd.DataFrame, methods: list[str], runs: list[dict]) -> pd.DataFrame:
    """Wide table: one row per method, per task our value and the paper's (Tables 2 and 3)."""
    trainable = _trainable(runs)
    rows = []
    for method in methods:
        if not (frame.method == method).any():
            continue
        row = {"method": method_label(method)}
        counts = {trainable[(method, r)] for r in regression_runs(frame) if (method, r) in trainable}
        row["trainable"] = "/".join(str(c) for c in sorted(counts)) if counts else \
            ("0" if method in ("nearest_neighbour", "train_mean", "direct_prompting") else "-")
        for run in regression_runs(frame):
            metric = get_task(run).metric
            row[f"{run} {metric} (ours)"] = _lookup(frame, run, method, metric)
            row[f"{run} (paper)"] = paper_value(method, get_task(run).name)
        rows.append(row)
    return pd.DataFrame(rows)


def table_translation(frame: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Table 1: spBLEU per direction (BLEU when the flores101 model is absent) and chrF, ours
    (Tag-LLM, direct prompting, and copying the source: the floor) and the paper's."""
    translate = frame[frame.task.str.contains(":")]
    has_spbleu = translate[translate.metric == "spbleu"].value.notna().any()
    metric = "spbleu" if has_spbleu else "bleu"
    runs = sorted({t.split(":")[0] for t in translate.task})
    rows = []
    for run in runs:
        for direction in DIRECTIONS:
            task = f"{run}:{direction}"
            if not (translate.task == task).any():
                continue
            index = DIRECTIONS.index(direction)
            ours = {f"{label} {score} (ours)": _lookup(translate, task, method, score)
                    for score in (metric, "chrf")
                    for method, label in (("tagllm", "Tag-LLM"),
                                          ("direct_prompting", "direct prompting"),
                                          ("copy_source", "copy source"))}
            ours["Tag-LLM non-empty (ours)"] = _lookup(translate, task, "tagllm", "nonempty")
            rows.append({
                "direction": direction.upper(), "setting": ZERO_SHOT.get(direction, "seen"),
                **ours,
                "Tag-LLaMA spBLEU (paper)": TABLE1_PAPER["tagllm"][index],
                "M2M spBLEU (paper)": TABLE1_PAPER["M2M"][index],
                "GPT-3 spBLEU (paper)": TABLE1_PAPER["GPT-3"][index],
            })
    note = "" if has_spbleu else (
        "spBLEU needs sacreBLEU's flores101 SentencePiece model, which was not present (offline): "
        "our columns are BLEU (13a tokenizer) instead, so they are not directly comparable.")
    return pd.DataFrame(rows), note


def full_method(frame: pd.DataFrame, run: str, tag_length: int) -> str:
    """The "full Tag-LLM" of the ablations: the sweep's own run at the default tag length when the
    ablations have their own budget (it exists then), else Tag-LLM's run."""
    own = f"tagllm_p{tag_length}"
    return own if ((frame.task == run) & (frame.method == own)).any() else "tagllm"


def table_ablation(frame: pd.DataFrame, run: str, tag_length: int) -> pd.DataFrame:
    """Table 4 and the tag-length sweep on one run (paper: DC, MAE)."""
    metric = get_task(run).metric
    rows = []
    for method in TABLE4_METHODS:
        if method == "tagllm":
            method = full_method(frame, run, tag_length)
        value = _lookup(frame, run, method, metric)
        if value is not None:
            full = SWEEP_PATTERN.fullmatch(method) or method == "tagllm"
            rows.append({"variant": "full Tag-LLM" if full else method_label(method),
                         f"{metric} (ours)": value,
                         f"{metric} (paper)": paper_value("tagllm" if full else method,
                                                          get_task(run).name)})
    for p, value in tag_length_curve(frame, run, tag_length):
        rows.append({"variant": f"tag length p = {p}", f"{metric} (ours)": value,
                     f"{metric} (paper)": paper_value("tagllm", "dc")
                     if p == 10 and get_task(run).name == "dc" else None})
    return pd.DataFrame(rows)


def tag_length_curve(frame: pd.DataFrame, run: str, tag_length: int) -> list[tuple[int, float]]:
    """(p, metric) for every tag length run on `run`; the default length is Tag-LLM itself."""
    metric = get_task(run).metric
    points = []
    for method in dict.fromkeys(frame[frame.task == run].method):
        match = SWEEP_PATTERN.fullmatch(method)
        if match:
            points.append((int(match.group(1)), _value(frame, run, method, metric)))
    if points:
        full = _value(frame, run, full_method(frame, run, tag_length), metric)
        if full is not None and tag_length not in [p for p, _ in points]:
            points.append((tag_length, full))
    return sorted(points)


def llama7b_parameter_counts(tag_length: int = 10, hidden: int = 4096, layers: int = 32) -> dict:
    """Trainable parameters of each method on LLaMA-7B's shape (one domain + one function tag):
    tags p x d each, prompt tuning the same number of virtual tokens, LoRA (rank 8 on the query
    and value projections, PEFT's default for LLaMA) r x (d_in + d_out) per matrix, head d."""
    from tagllm.methods import LORA_RANK

    tags = 2 * tag_length * hidden
    lora = layers * 2 * LORA_RANK * (hidden + hidden)
    return {"tagllm": tags + hidden, "prompt_tuning_head": tags + hidden,
            "lora_head": lora + hidden, "linear_probe": hidden}


def table_params(runs: list[dict], tag_length: int) -> pd.DataFrame:
    """Table 6: trainable parameters in our runs (single-domain task; for Tag-LLM the run's
    function tag and head plus the stage-1 domain tag), on LLaMA-7B's shape by the same formulas,
    and the paper's."""
    trainable = _trainable(runs)
    hidden = next((r["hidden_size"] for r in runs if "hidden_size" in r), 4096)
    formula_here = llama7b_parameter_counts(tag_length, hidden)
    formula_7b = llama7b_parameter_counts(tag_length)
    rows = []
    for method, paper in TABLE6_PAPER.items():
        # A Tag-LLM run trains its function tag and head; its domain tag was trained in stage 1.
        stage1 = tag_length * hidden if method == "tagllm" else 0
        counts = sorted({count + stage1 for (m, task), count in trainable.items()
                         if m == method and len(get_task(task).domain_tags) == 1})
        rows.append({"method": method_label(method),
                     "measured in our runs": "/".join(map(str, counts)) or "-",
                     "formula, this model": formula_here[method] if method != "lora_head" else "-",
                     "formula, LLaMA-7B": formula_7b[method],
                     "paper (LLaMA-7B)": paper})
    return pd.DataFrame(rows)


def _write_table(out_dir: Path, name: str, title: str, setting: str, wide: pd.DataFrame,
                 long: pd.DataFrame, note: str = "") -> None:
    caption = f"**{title}.** {setting}" + (f" {note}" if note else "")
    write_text(out_dir / f"{name}.md", f"{caption}\n\n{markdown_table(wide)}\n")
    write_text(out_dir / f"{name}.csv", long.to_csv(index=False))


# The training settings two rows must share to be compared at one budget.
BUDGET_KEYS = ("epochs", "batch_size", "grad_accum", "warmup_ratio")


def training_budget(run: dict) -> dict:
    """What a run was trained on, from its metrics.json: rows, epochs, batches and schedule, and
    how its head started and ended (a linear probe: rows and its closed form)."""
    if "probe" in run:
        return {"examples": run["examples"], "fit": "closed-form ridge"}
    config = run.get("config", {})
    return {"examples": run["examples"], **{key: config.get(key) for key in BUDGET_KEYS},
            "head_from_probe": "probe_init" in run, "head_refit": "head_refit" in run}


def describe_budget(run: dict) -> str:
    budget = training_budget(run)
    if "fit" in budget:
        return f"{run['task']} {budget['examples']} rows, {budget['fit']}"
    head = "".join(part for part, on in ((", head from the probe", budget["head_from_probe"]),
                                         (", refit", budget["head_refit"])) if on)
    return (f"{run['task']} {budget['examples']} rows x {budget['epochs']} epochs, batches "
            f"{budget['batch_size']}x{budget['grad_accum']}{head}")


def budget_note(runs: list[dict], methods: list[str], task: str | None = None) -> str:
    """What each trained row of a table was trained on (per run; only `task`'s if given), so
    that a reader sees which comparisons share a budget."""
    parts = []
    for method in methods:
        budgets = sorted({describe_budget(run) for run in runs
                          if run.get("method") == method and "examples" in run
                          and task in (None, run.get("task"))})
        if budgets:
            parts.append(f"{get_method(method).label}: {'; '.join(budgets)}")
    return f"Training budgets: {'. '.join(parts)}." if parts else ""


def build_tables(metric_files: list[str | Path], run_files: list[str | Path],
                 out_dir: str | Path, setting: str, tag_length: int = 10,
                 ablation_run: str | None = None) -> pd.DataFrame:
    """Write summary.{csv,md} and table1-4, table6 (.md, .csv) under `out_dir`."""
    out_dir = Path(out_dir)
    frame = long_rows(read_metrics(metric_files))
    runs = read_metrics(run_files)
    write_text(out_dir / "summary.csv", frame.to_csv(index=False))
    write_text(out_dir / "summary.md", f"**Every number of this run.** {setting}\n\n"
                                       f"{markdown_table(frame)}\n")
    translation, note = table_translation(frame)
    _write_table(out_dir, "table1_translation", "Table 1: translation (greedy decoding)", setting,
                 translation, frame[frame.task.str.contains(":")], note)
    for name, title, methods in (
            ("table2_tasks", "Table 2: scientific tasks", TABLE2_METHODS),
            ("table3_peft", "Table 3: PEFT baselines given Tag-LLM's help", TABLE3_METHODS)):
        wide = table_tasks(frame, methods, runs)
        long = frame[frame.method.isin(methods) & ~frame.task.str.contains(":")]
        _write_table(out_dir, name, title, setting, wide, long, budget_note(runs, methods))
    ablation_run = ablation_run or _ablation_run(frame)
    ablation = table_ablation(frame, ablation_run, tag_length) if ablation_run else pd.DataFrame()
    long = frame[(frame.task == ablation_run) & (frame.method.isin(TABLE4_METHODS) |
                                                 frame.method.str.fullmatch(SWEEP_PATTERN))]
    note = budget_note(runs, list(dict.fromkeys(long.method)),
                       get_task(ablation_run).name) if ablation_run else ""
    _write_table(out_dir, "table4_ablation", f"Table 4: ablations on {ablation_run}", setting,
                 ablation, long, note)
    params = table_params(runs, tag_length)
    _write_table(out_dir, "table6_params", "Table 6: trainable parameters", setting, params,
                 params)
    return frame


def _ablation_run(frame: pd.DataFrame) -> str | None:
    ablated = frame[frame.method.isin(TABLE4_METHODS[1:]) |
                    frame.method.str.fullmatch(SWEEP_PATTERN)]
    return str(ablated.task.iloc[0]) if len(ablated) else None
