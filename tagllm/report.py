"""The paper's tables from saved evaluation and training files: no model is loaded, nothing is
retrained. Each table is written as CSV (long form: run, task, method, metric, value (the mean
over seeds), sd (their standard deviation), seeds (how many), paper_value, headline (whether the
metric is the task's own), direction (translation only)) and Markdown (wide, "mean +- sd (n
seeds)" where a number has several seeds, the paper's value in its own column, a caption naming
the base model and data).

Tables: 1 translation (per direction), 2 scientific tasks, 3 PEFT baselines given Tag-LLM's help,
4 ablations and the tag-length sweep, 6 trainable parameters; `summary.csv` holds every number.

A run (a key of `stage2`/`stage3`, e.g. `my_qed`) is not a task (what it learns, e.g. `qed`): the
tables label their rows and columns by run, and take a run's metric, paper values and order from
its task. Evaluation files record both (`run`, `task`, and the task's full spec, so a task defined
in a config needs no registry here); training metrics record the task only, so a run's name comes
from its folder, `results/runs/<method>/<run>/seed<N>/metrics.json`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from tagllm.atomic import write_text
from tagllm.methods import MODEL_FREE_PAPER, SWEEP_PATTERN, get_method
from tagllm.tasks import is_builtin, task_of_metrics

# `direction`: a translation direction (`en-fr`), empty for a regression run; last, as only
# translation rows have one.
KEYS = ["run", "task", "method", "metric", "direction"]
SUMMARY_COLUMNS = ["run", "task", "method", "metric", "value", "sd", "seeds", "paper_value",
                   "headline", "direction"]
DIRECTIONS = ["en-fr", "fr-en", "en-ru", "ru-en", "en-de", "de-en", "it-fr", "fr-it", "es-pt",
              "pt-es"]
# Paper Table 1 (spBLEU, FLORES-101 devtest subset, LLaMA-7B).
TABLE1_PAPER = {
    "tagllm": [40.5, 45.7, 14.2, 30.1, 23.0, 40.5, 28.8, 23.9, 24.6, 27.8],
    "M2M": [42.0, 37.2, 27.1, 27.5, 32.6, 35.8, 34.4, 28.6, 28.1, 26.9],
    "GPT-3": [36.1, 42.8, 11.2, 28.1, 25.9, 40.4, None, None, None, None],
}
# A translation's scores: corpus BLEU/chrF of greedy decoding, the share of non-empty answers, and
# the reference's teacher-forced NLL per character (model methods; lower is better).
TRANSLATION_METRICS = ("spbleu", "bleu", "chrf", "nonempty", "reference_nll")
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
TASK_ORDER = ["descriptor", "qed", "dc", "ba"]  # the paper's column order; other tasks follow
SEED_FOLDER = re.compile(r"seed\d+")


def read_metrics(files: Iterable[str | Path]) -> list[dict]:
    return [json.loads(Path(f).read_text(encoding="utf-8")) for f in files]


def read_run_metrics(files: Iterable[str | Path]) -> list[dict]:
    """Training metrics files, each with its run's name under `run`. Training records the task
    only, so the name is the folder above `seed<N>/` (`results/runs/<method>/<run>/seed<N>/`);
    a file outside that layout (a run trained by hand) is named after its task, as `evaluate`
    names its results without `--name`."""
    runs = []
    for path, metrics in zip(map(Path, files), read_metrics(files), strict=True):
        if "run" not in metrics and "task" in metrics:
            in_layout = SEED_FOLDER.fullmatch(path.parent.name)
            metrics["run"] = path.parent.parent.name if in_layout else metrics["task"]
        runs.append(metrics)
    return runs


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
    """Every number, averaged over seeds: (run, task, method, metric, direction) -> value, with
    the paper's (looked up by task: a run `my_qed` of task `qed` gets QED's; a task a config
    defines, or redefines, has only its own `paper_value`, for Tag-LLM)."""
    records = []
    for metrics in evaluations:
        task = task_of_metrics(metrics)
        builtin = is_builtin(task)
        run, method = metrics.get("run", metrics["task"]), metrics["method"]
        key = {"run": run, "task": task.name, "direction": None, "method": method}
        if metrics.get("directions"):  # a translation: scored per direction
            for direction, scores in metrics["directions"].items():
                paper = None
                if builtin and method in TABLE1_PAPER and direction in DIRECTIONS:
                    paper = TABLE1_PAPER[method][DIRECTIONS.index(direction)]
                for metric in TRANSLATION_METRICS:
                    if metric in scores:  # `nonempty`, `reference_nll` are newer than some files
                        records.append({**key, "direction": direction, "metric": metric,
                                        "value": _number(scores[metric]),
                                        "paper_value": paper if metric == "spbleu" else None,
                                        "headline": metric == task.metric})
            continue
        paper = paper_value(method, task.name) if builtin else \
            task.paper_value if method == "tagllm" else None
        scored = TRANSLATION_METRICS if "directions" in metrics else \
            ("mse", "mae", "pearson")  # a generation task scored as a whole: pooled scores
        for metric in dict.fromkeys([task.metric, *scored]):
            if metric in metrics:
                records.append({**key, "metric": metric, "value": _number(metrics[metric]),
                                "paper_value": paper if metric == task.metric else None,
                                "headline": metric == task.metric})
    frame = pd.DataFrame(records, columns=[*KEYS, "value", "paper_value", "headline"])
    if frame.empty:
        return frame.reindex(columns=SUMMARY_COLUMNS)
    grouped = frame.groupby(KEYS, sort=False, dropna=False)
    return grouped.agg(value=("value", "mean"), sd=("value", "std"), seeds=("value", "size"),
                       paper_value=("paper_value", "first"),
                       headline=("headline", "first")).reset_index()[SUMMARY_COLUMNS]


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


def _hit(frame: pd.DataFrame, run: str, method: str, metric: str,
         direction: str | None = None) -> pd.DataFrame:
    where = (frame.run == run) & (frame.method == method) & (frame.metric == metric)
    where &= frame.direction.isna() if direction is None else frame.direction == direction
    return frame[where]


def _value(frame: pd.DataFrame, run: str, method: str, metric: str) -> float | None:
    """The value (mean over seeds) of one number, or None."""
    hit = _hit(frame, run, method, metric)
    return float(hit.value.iloc[0]) if len(hit) else None


def _paper(frame: pd.DataFrame, run: str, method: str, metric: str,
           task: str | None = None) -> float | None:
    """The paper's value beside one of our numbers (as `long_rows` found it); for a method not
    run on `run`, the paper's for `task` (None without one)."""
    hit = _hit(frame, run, method, metric)
    if not len(hit):
        return paper_value(method, task) if task else None
    value = hit.paper_value.iloc[0]
    return None if value is None or pd.isna(value) else float(value)


def _lookup(frame: pd.DataFrame, run: str, method: str, metric: str,
            direction: str | None = None) -> float | str | None:
    """A table cell: the value, or "mean ± sd (n)" when it is the mean of several seeds."""
    hit = _hit(frame, run, method, metric, direction)
    if not len(hit):
        return None
    value, seeds = float(hit.value.iloc[0]), int(hit.seeds.iloc[0])
    return f"{cell(value)} ± {cell(float(hit.sd.iloc[0]))} ({seeds})" if seeds > 1 else value


def run_task(frame: pd.DataFrame, run: str) -> str | None:
    """The task of a run, as its evaluation files name it; None for a run without results."""
    tasks = frame.task[frame.run == run]
    return str(tasks.iloc[0]) if len(tasks) else None


def run_metric(frame: pd.DataFrame, run: str) -> str | None:
    """A run's headline metric (its task's), as the summary marks it; None without results."""
    metrics = frame.metric[(frame.run == run) & frame.headline.astype(bool)]
    return str(metrics.iloc[0]) if len(metrics) else None


def regression_runs(frame: pd.DataFrame) -> list[str]:
    """The runs scored without directions, in the paper's task order (runs of one task, and of
    tasks the paper lacks, in the order of their evaluation files)."""
    scored = frame[frame.direction.isna()]
    runs = dict(zip(scored.run, scored.task, strict=True))  # run -> task, first seen first
    order = {task: i for i, task in enumerate(TASK_ORDER)}
    return sorted(runs, key=lambda run: order.get(runs[run], len(TASK_ORDER)))


def _trainable(runs: list[dict]) -> dict[tuple[str, str], int]:
    """(method, run) -> trainable parameters, from training metrics read by `read_run_metrics`."""
    return {(r.get("method", "tagllm"), r["run"]): r["trainable_parameters"] for r in runs
            if "trainable_parameters" in r and "run" in r}


def table_tasks(frame: pd.DataFrame, methods: list[str], runs: list[dict]) -> pd.DataFrame:
    """Wide table: one row per method, per run our value and the paper's for its task (Tables 2
    and 3)."""
    trainable = _trainable(runs)
    columns = [(run, run_task(frame, run), run_metric(frame, run))
               for run in regression_runs(frame)]
    rows = []
    for method in methods:
        if not (frame.method == method).any():
            continue
        row = {"method": method_label(method)}
        counts = {trainable[(method, run)] for run, *_ in columns if (method, run) in trainable}
        row["trainable"] = "/".join(str(c) for c in sorted(counts)) if counts else \
            ("0" if method in ("nearest_neighbour", "train_mean", "direct_prompting") else "-")
        for run, task, metric in columns:
            row[f"{run} {metric} (ours)"] = _lookup(frame, run, method, metric)
            row[f"{run} (paper)"] = _paper(frame, run, method, metric, task)
        rows.append(row)
    return pd.DataFrame(rows)


def run_directions(translate: pd.DataFrame, run: str) -> list[str]:
    """The directions `run` was scored on: the paper's ten in its order, then any others (a
    config's own directions or groups) in the order they were scored."""
    present = list(dict.fromkeys(translate[translate.run == run].direction))
    return [d for d in DIRECTIONS if d in present] + [d for d in present if d not in DIRECTIONS]


def table_translation(frame: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Table 1: spBLEU per direction (BLEU when the flores101 model is absent) and chrF, ours
    (Tag-LLM, direct prompting, and copying the source: the floor) and the paper's, for every
    direction scored (the paper's columns are empty for directions it does not have)."""
    translate = frame[frame.direction.notna()]
    has_spbleu = translate[translate.metric == "spbleu"].value.notna().any()
    metric = "spbleu" if has_spbleu else "bleu"
    runs = list(dict.fromkeys(translate.run))
    rows = []
    for run in runs:
        for direction in run_directions(translate, run):
            index = DIRECTIONS.index(direction) if direction in DIRECTIONS else None
            ours = {f"{label} {score} (ours)": _lookup(translate, run, method, score, direction)
                    for score in (metric, "chrf")
                    for method, label in (("tagllm", "Tag-LLM"),
                                          ("direct_prompting", "direct prompting"),
                                          ("copy_source", "copy source"))}
            ours["Tag-LLM non-empty (ours)"] = _lookup(translate, run, "tagllm", "nonempty",
                                                       direction)
            for method, label in (("tagllm", "Tag-LLM"), ("direct_prompting", "direct prompting")):
                ours[f"{label} reference nats/char (ours)"] = _lookup(
                    translate, run, method, "reference_nll", direction)
            rows.append({
                **({"run": run} if len(runs) > 1 else {}),  # one run: the directions say it all
                "direction": direction.upper(),
                # Whether a direction outside the paper's was trained on is not in its scores.
                "setting": ZERO_SHOT.get(direction, "seen") if index is not None else "-",
                **ours,
                **{f"{name} spBLEU (paper)": None if index is None else TABLE1_PAPER[key][index]
                   for key, name in (("tagllm", "Tag-LLaMA"), ("M2M", "M2M"),
                                     ("GPT-3", "GPT-3"))},
            })
    note = "" if has_spbleu else (
        "spBLEU needs sacreBLEU's flores101 SentencePiece model, which was not present (offline): "
        "our columns are BLEU (13a tokenizer) instead, so they are not directly comparable. ")
    note += ("Reference nats/char: the reference translation scored teacher-forced after each "
             "method's prompt, in nats per character (lower is better; independent of what "
             "greedy decoding picks). Each method is charged for the answer as it ends it: "
             "Tag-LLM for the line break and end token it is trained to give, direct prompting "
             "in a chat format for the end token only.")
    return pd.DataFrame(rows), note


def full_method(frame: pd.DataFrame, run: str, tag_length: int) -> str:
    """The "full Tag-LLM" of the ablations: the sweep's own run at the default tag length when the
    ablations have their own budget (it exists then), else Tag-LLM's run."""
    own = f"tagllm_p{tag_length}"
    return own if ((frame.run == run) & (frame.method == own)).any() else "tagllm"


def table_ablation(frame: pd.DataFrame, run: str, tag_length: int) -> pd.DataFrame:
    """Table 4 and the tag-length sweep on one run (paper: DC, MAE); empty when the run has no
    results."""
    task, metric = run_task(frame, run), run_metric(frame, run)
    if task is None or metric is None:
        return pd.DataFrame()
    rows = []
    for method in TABLE4_METHODS:
        if method == "tagllm":
            method = full_method(frame, run, tag_length)
        value = _lookup(frame, run, method, metric)
        if value is not None:
            full = SWEEP_PATTERN.fullmatch(method) or method == "tagllm"
            rows.append({"variant": "full Tag-LLM" if full else method_label(method),
                         f"{metric} (ours)": value,
                         f"{metric} (paper)": _paper(frame, run, "tagllm" if full else method,
                                                     metric)})
    for p, value in tag_length_curve(frame, run, tag_length):
        rows.append({"variant": f"tag length p = {p}", f"{metric} (ours)": value,
                     f"{metric} (paper)": _paper(frame, run, "tagllm", metric)
                     if p == 10 and task == "dc" else None})
    return pd.DataFrame(rows)


def tag_length_curve(frame: pd.DataFrame, run: str, tag_length: int) -> list[tuple[int, float]]:
    """(p, metric) for every tag length run on `run`; the default length is Tag-LLM itself."""
    metric = run_metric(frame, run)
    if metric is None:
        return []
    points = []
    for method in dict.fromkeys(frame[frame.run == run].method):
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
    hidden = next((r["hidden_size"] for r in runs if "hidden_size" in r), 4096)
    formula_here = llama7b_parameter_counts(tag_length, hidden)
    formula_7b = llama7b_parameter_counts(tag_length)
    rows = []
    for method, paper in TABLE6_PAPER.items():
        # A Tag-LLM run trains its function tag and head; its domain tag was trained in stage 1.
        stage1 = tag_length * hidden if method == "tagllm" else 0
        counts = sorted({r["trainable_parameters"] + stage1 for r in runs
                         if r.get("method", "tagllm") == method and "trainable_parameters" in r
                         and "task" in r and len(task_of_metrics(r).domain_tags) == 1})
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


def _run_name(run: dict) -> str:
    """A training metrics dict's run (`read_run_metrics` adds it), else its task."""
    return run.get("run", run.get("task", "?"))


def describe_budget(run: dict) -> str:
    budget = training_budget(run)
    if "fit" in budget:
        return f"{_run_name(run)} {budget['examples']} rows, {budget['fit']}"
    head = "".join(part for part, on in ((", head from the probe", budget["head_from_probe"]),
                                         (", refit", budget["head_refit"])) if on)
    return (f"{_run_name(run)} {budget['examples']} rows x {budget['epochs']} epochs, batches "
            f"{budget['batch_size']}x{budget['grad_accum']}{head}")


def budget_note(runs: list[dict], methods: list[str], run_name: str | None = None) -> str:
    """What each trained row of a table was trained on (per run; only `run_name`'s if given),
    so that a reader sees which comparisons share a budget."""
    parts = []
    for method in methods:
        budgets = sorted({describe_budget(run) for run in runs
                          if run.get("method") == method and "examples" in run
                          and run_name in (None, _run_name(run))})
        if budgets:
            parts.append(f"{get_method(method).label}: {'; '.join(budgets)}")
    return f"Training budgets: {'. '.join(parts)}." if parts else ""


def decoding_note(evaluations: list[dict], methods: list[str], run_name: str | None = None
                  ) -> str:
    """For each row that decodes its label as text: how many answers held no number (scored as
    the training mean) and how many were clipped to the training labels' range, over its seeds.
    A row whose answers hold no number measures that fallback, not the method."""
    counts: dict[tuple[str, str], list[int]] = {}
    for evaluation in evaluations:
        method, run = evaluation.get("method"), evaluation.get("run")
        if method in methods and "unparsed" in evaluation and run_name in (None, run):
            total = counts.setdefault((method, run), [0, 0, 0])
            for i, key in enumerate(("unparsed", "clipped", "n")):
                total[i] += int(evaluation.get(key) or 0)
    parts = [f"{get_method(method).label} on {run}: {unparsed} of {n} without a number, "
             f"{clipped} clipped" for (method, run), (unparsed, clipped, n) in
             sorted(counts.items(), key=lambda item: (methods.index(item[0][0]), item[0][1]))]
    return (f"Decoded answers (no number: scored as the training mean; clipped: to the training "
            f"labels' range): {'; '.join(parts)}.") if parts else ""


def row_notes(runs: list[dict], evaluations: list[dict], methods: list[str],
              run_name: str | None = None) -> str:
    """A table's notes on its rows: what each was trained on, and how its decoded answers read."""
    notes = (budget_note(runs, methods, run_name),
             decoding_note(evaluations, methods, run_name))
    return " ".join(note for note in notes if note)


def build_tables(metric_files: list[str | Path], run_files: list[str | Path],
                 out_dir: str | Path, setting: str, tag_length: int = 10,
                 ablation_run: str | None = None) -> pd.DataFrame:
    """Write summary.{csv,md} and table1-4, table6 (.md, .csv) under `out_dir`."""
    out_dir = Path(out_dir)
    evaluations = read_metrics(metric_files)
    frame = long_rows(evaluations)
    runs = read_run_metrics(run_files)
    write_text(out_dir / "summary.csv", frame.to_csv(index=False))
    write_text(out_dir / "summary.md", f"**Every number of this run.** {setting}\n\n"
                                       f"{markdown_table(frame)}\n")
    translation, note = table_translation(frame)
    _write_table(out_dir, "table1_translation", "Table 1: translation (greedy decoding)", setting,
                 translation, frame[frame.direction.notna()], note)
    for name, title, methods in (
            ("table2_tasks", "Table 2: scientific tasks", TABLE2_METHODS),
            ("table3_peft", "Table 3: PEFT baselines given Tag-LLM's help", TABLE3_METHODS)):
        wide = table_tasks(frame, methods, runs)
        long = frame[frame.method.isin(methods) & frame.direction.isna()]
        _write_table(out_dir, name, title, setting, wide, long,
                     row_notes(runs, evaluations, methods))
    ablation_run = ablation_run or _ablation_run(frame)
    ablation = table_ablation(frame, ablation_run, tag_length) if ablation_run else pd.DataFrame()
    long = frame[(frame.run == ablation_run) & (frame.method.isin(TABLE4_METHODS) |
                                                frame.method.str.fullmatch(SWEEP_PATTERN))]
    note = row_notes(runs, evaluations, list(dict.fromkeys(long.method)), ablation_run) \
        if ablation_run else ""
    title = f"Table 4: ablations on {ablation_run}" if ablation_run else \
        "Table 4: ablations (none in this configuration: `ablations:` is off)"
    _write_table(out_dir, "table4_ablation", title, setting, ablation, long, note)
    params = table_params(runs, tag_length)
    _write_table(out_dir, "table6_params", "Table 6: trainable parameters", setting, params,
                 params, "Measured counts include the regression head's bias (+1) where the head "
                 "has one (started from the closed-form probe, refit, or `head_bias`; the paper's "
                 "head is bias-free, as the formulas are).")
    return frame


def _ablation_run(frame: pd.DataFrame) -> str | None:
    ablated = frame[frame.method.isin(TABLE4_METHODS[1:]) |
                    frame.method.str.fullmatch(SWEEP_PATTERN)]
    return str(ablated.run.iloc[0]) if len(ablated) else None
