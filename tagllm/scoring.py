"""Scoring predictions as files, and the predictors that need no model: the training mean, the
nearest neighbour by `difflib.SequenceMatcher` (the paper's QED and Descriptor baseline) and the
copied source (translation's floor). Light imports (no torch, no transformers): the workflow's
model-free jobs start in about a second rather than the nine that loading those takes."""

from __future__ import annotations

from difflib import SequenceMatcher
from pathlib import Path

import pandas as pd

from tagllm.atomic import write_json, write_parquet
from tagllm.metrics import regression_metrics, target_class_metrics, translation_metrics
from tagllm.table_checks import read_table
from tagllm.tasks import Task, as_task


def scored_rows(test_path: str | Path, task: Task, max_rows: int,
              columns: list[str] | None = None) -> pd.DataFrame:
    """The test rows scored (`first_rows`), checked as the task's columns say."""
    return first_rows(read_table(test_path, columns or task.columns(), kinds=task.column_kinds()),
                      task, max_rows)


def training_labels(train_path: str | Path, task: Task) -> pd.Series:
    return read_table(train_path, [task.label], kinds=task.column_kinds())[task.label].astype(float)


def first_rows(frame: pd.DataFrame, task: Task, max_rows: int) -> pd.DataFrame:
    """The first `max_rows` test rows (0: all), per group for a task scored per group
    (translation: per direction)."""
    if not max_rows:
        return frame
    if task.group_by:
        return frame.groupby(list(task.group_by), sort=False).head(max_rows)
    return frame.head(max_rows)


def evaluate_train_mean(task: Task | str, train_path: str | Path, test_path: str | Path,
                        out_dir: str | Path, name: str = "", max_rows: int = 0) -> dict:
    """Predict the training-label mean for every test example."""
    task = as_task(task)
    mean = float(training_labels(train_path, task).mean())
    frame = scored_rows(test_path, task, max_rows, [task.label])
    return write_regression(frame, [mean] * len(frame), task, name or task.name, "train_mean",
                            "none", out_dir, test_path)


def evaluate_nearest_neighbour(task: Task | str, train_path: str | Path, test_path: str | Path,
                               out_dir: str | Path, name: str = "", max_rows: int = 0) -> dict:
    """Predict the label of the most similar training string (single-input tasks: QED, Descriptor)."""
    task = as_task(task)
    fields = sorted(task.char_fields)
    if len(fields) != 1:
        raise ValueError(f"nearest neighbour needs a task with one input string, not {task.name}")
    column = fields[0]
    train = read_table(train_path, [column, task.label], kinds=task.column_kinds())
    frame = scored_rows(test_path, task, max_rows, [column, task.label])
    predicted = nearest_neighbour_labels(train[column].astype(str).tolist(),
                                         train[task.label].astype(float).tolist(),
                                         frame[column].astype(str).tolist())
    return write_regression(frame, predicted, task, name or task.name, "nearest_neighbour",
                            "none", out_dir, test_path)


def evaluate_copy_source(task: Task | str, train_path: str | Path | None, test_path: str | Path,
                         out_dir: str | Path, name: str = "", max_rows: int = 0) -> dict:
    """Translation by copying the source sentence: the floor a translation must clear (names,
    numbers and placeholders such as `%(name)s` carry over unchanged). `train_path` is unused."""
    task = as_task(task)
    source = task.source_text()
    if source is None:
        raise ValueError(f"copying the source scores a generation task with one text input, "
                         f"not {task.name}")
    frame = scored_rows(test_path, task, max_rows)
    return write_translation(frame, frame[source].astype(str).tolist(), task,
                             name or task.name, "copy_source", "none", out_dir)


def write_regression(frame: pd.DataFrame, predicted: list[float], task: Task, run: str,
                     method: str, model_id: str, out_dir: str | Path, test_path: str | Path,
                     **extra) -> dict:
    """predictions.parquet and metrics.json of a regression run; with TDC's per-tissue MAE when
    the test split has a `target_class` column (the DrugCombo benchmark group)."""
    out_dir = Path(out_dir)
    result = frame.copy()
    result["y_pred"] = predicted
    metrics = {"task": task.name, "task_spec": task.to_json(), "metric": task.metric, "run": run,
               "method": method, "base_model": model_id,
               **regression_metrics(result[task.label], result["y_pred"]),
               **target_class_metrics(test_path, result[task.label], result["y_pred"]), **extra}
    write_parquet(out_dir / "predictions.parquet", result)
    write_json(out_dir / "metrics.json", metrics)
    return metrics


def write_translation(frame: pd.DataFrame, hypotheses: list[str], task: Task, run: str,
                      method: str, model_id: str, out_dir: str | Path,
                      reference_nll: list[float] | None = None, **extra) -> dict:
    """sacreBLEU scores of decoded texts against the task's label column, per group (translation:
    per direction, keyed `src-tgt`) and all groups pooled. With `reference_nll` (each row's
    reference scored teacher-forced by the model, nats), also `reference_nll`: nats per character
    of the reference, which does not depend on what greedy decoding happened to pick."""
    out_dir = Path(out_dir)
    result = frame.assign(hypothesis=hypotheses)
    if reference_nll is not None:
        result = result.assign(reference_nll=reference_nll)

    def scores(part: pd.DataFrame) -> dict:
        found = translation_metrics(part["hypothesis"].tolist(), part[task.label].tolist())
        if reference_nll is not None:
            found["reference_nll"] = nll_per_char(part["reference_nll"], part[task.label])
        return found

    directions = {}
    for values, group in (result.groupby(list(task.group_by), sort=True) if task.group_by
                          else ()):
        key = "-".join(str(v) for v in (values if isinstance(values, tuple) else (values,)))
        directions[key] = scores(group)
    metrics = {"task": task.name, "task_spec": task.to_json(), "metric": task.metric, "run": run,
               "method": method, "base_model": model_id, "directions": directions,
               **scores(result), **extra}
    write_parquet(out_dir / "predictions.parquet", result)
    write_json(out_dir / "metrics.json", metrics)
    return metrics


def nll_per_char(nll: pd.Series, references: pd.Series) -> float:
    """Total NLL over total reference characters (nats per character): comparable across prompts
    and tokenisations of the same references. NaN if any row has none."""
    return float(nll.sum(skipna=False) / references.astype(str).str.len().sum())


def nearest_neighbour_labels(train_items: list[str], train_labels: list[float],
                             queries: list[str]) -> list[float]:
    """For each query, the label of the most similar training string by
    `difflib.SequenceMatcher.ratio` (ties: the earlier training row). The cheap upper bounds
    `real_quick_ratio` and `quick_ratio` skip candidates that cannot beat the best so far."""
    if not train_items:
        raise ValueError("nearest neighbour needs at least one training example")
    predictions = []
    for query in queries:
        matcher = SequenceMatcher(None, autojunk=False)
        matcher.set_seq2(query)
        best, best_label = -1.0, train_labels[0]
        for item, label in zip(train_items, train_labels, strict=True):
            matcher.set_seq1(item)
            if matcher.real_quick_ratio() <= best or matcher.quick_ratio() <= best:
                continue
            ratio = matcher.ratio()
            if ratio > best:
                best, best_label = ratio, label
        predictions.append(float(best_label))
    return predictions
