"""Evaluation: batched regression inference on a test split, predictions and metrics as files.

Also the training-mean predictor, the floor every regression method has to beat.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from tagllm.atomic import write_json, write_parquet
from tagllm.batching import length_grouped_batches
from tagllm.heads import RegressionHead
from tagllm.metrics import regression_metrics
from tagllm.objectives import regression_hidden
from tagllm.tags import TagTable
from tagllm.tasks import get_task
from tagllm.train import Base, read_table


@torch.no_grad()
def predict_regression(base: Base, tags: TagTable, head: RegressionHead, template: str,
                       char_fields: frozenset[str], rows: list[dict], batch_size: int
                       ) -> list[float]:
    """Predictions in label units, in the order of `rows` (batched by length, left padded)."""
    encoder = base.encoder(tags, char_fields)
    examples = [encoder.encode(template, row) for row in rows]
    predictions = [0.0] * len(rows)
    for indices in length_grouped_batches([len(e) for e in examples], batch_size, None):
        hidden = regression_hidden(base, tags, [examples[i] for i in indices], None, 0)
        values = head.to_label_units(head(hidden).squeeze(-1)).float().cpu().tolist()
        for index, value in zip(indices, values, strict=True):
            predictions[index] = value
    return predictions


def evaluate_regression(model_dir: str | Path, run_dir: str | Path, task_name: str,
                        test_path: str | Path, out_dir: str | Path, method: str = "tagllm",
                        batch_size: int = 16, device: str = "cpu", dtype: str = "float32",
                        char_level: bool = True, name: str = "") -> dict:
    """Score a trained run (tags + head) on `test_path`; writes predictions.parquet and metrics.json."""
    task = get_task(task_name)
    base = Base.load(model_dir, dtype, device, char_level)
    tags = TagTable(base.info)
    tags.load(run_dir, trainable=False)
    tags.to(base.device)
    head = RegressionHead.load(run_dir, base.info).to(base.device)
    frame = read_table(test_path, [task.label])
    predicted = predict_regression(base, tags, head, task.template, task.char_fields,
                                   frame.to_dict("records"), batch_size)
    return _write(frame, predicted, task.name, name or task_name, method, base.info.model_id,
                  out_dir)


def evaluate_train_mean(task_name: str, train_path: str | Path, test_path: str | Path,
                        out_dir: str | Path, name: str = "") -> dict:
    """Predict the training-label mean for every test example."""
    task = get_task(task_name)
    mean = float(read_table(train_path, [task.label])[task.label].mean())
    frame = read_table(test_path, [task.label])
    return _write(frame, [mean] * len(frame), task.name, name or task_name, "train_mean", "none",
                  out_dir)


def _write(frame: pd.DataFrame, predicted: list[float], task: str, run: str, method: str,
           model_id: str, out_dir: str | Path) -> dict:
    out_dir = Path(out_dir)
    result = frame.copy()
    result["y_pred"] = predicted
    metrics = {"task": task, "run": run, "method": method, "base_model": model_id,
               **regression_metrics(result["y"], result["y_pred"])}
    write_parquet(out_dir / "predictions.parquet", result)
    write_json(out_dir / "metrics.json", metrics)
    return metrics
