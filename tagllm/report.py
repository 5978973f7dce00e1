"""Tables and figures from saved evaluation files: no model is loaded, nothing is retrained."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from tagllm.atomic import save_figure, write_text
from tagllm.tasks import get_task

SUMMARY_COLUMNS = ["task", "method", "metric", "value", "paper_value"]
# Paper Table 2 rows that have a counterpart here, keyed by (task, method).
PAPER_METHOD = {"tagllm": "Tag-LLaMA"}


def summary_rows(metric_files: list[str | Path]) -> pd.DataFrame:
    """One row per (run, method, metric), averaged over seeds: the task's headline metric (and MSE
    where the headline is another), with the paper's value beside the headline."""
    records = []
    for path in metric_files:
        metrics = json.loads(Path(path).read_text())
        task = get_task(metrics["task"])
        for metric in dict.fromkeys([task.metric, "mse"]):
            paper = task.paper_value if (metrics["method"] in PAPER_METHOD
                                         and metric == task.metric) else None
            records.append({"task": metrics.get("run", task.name), "method": metrics["method"],
                            "metric": metric, "value": metrics[metric], "paper_value": paper})
    frame = pd.DataFrame(records, columns=SUMMARY_COLUMNS)
    if frame.empty:
        return frame
    keys = ["task", "method", "metric"]
    grouped = frame.groupby(keys, sort=False, dropna=False)
    return grouped.agg(value=("value", "mean"), paper_value=("paper_value", "first")
                       ).reset_index()[SUMMARY_COLUMNS]


def write_summary(metric_files: list[str | Path], out_csv: str | Path, out_md: str | Path,
                  caption: str) -> pd.DataFrame:
    frame = summary_rows(metric_files)
    write_text(out_csv, frame.to_csv(index=False))
    write_text(out_md, f"{caption}\n\n{markdown_table(frame)}\n")
    return frame


def markdown_table(frame: pd.DataFrame) -> str:
    def cell(value: object) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "-"
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(False)]
    return "\n".join(lines)


def plot_predictions(predictions: str | Path, out_png: str | Path, title: str) -> None:
    """Scatter of predicted against true labels, with the identity line."""
    frame = pd.read_parquet(predictions)
    figure, axis = plt.subplots(figsize=(4.5, 4.5))
    axis.scatter(frame["y"], frame["y_pred"], s=12, alpha=0.7)
    low = float(min(frame["y"].min(), frame["y_pred"].min()))
    high = float(max(frame["y"].max(), frame["y_pred"].max()))
    axis.plot([low, high], [low, high], color="grey", linewidth=1, linestyle="--")
    axis.set_xlabel("true")
    axis.set_ylabel("predicted")
    axis.set_title(title, fontsize=9)
    figure.tight_layout()
    save_figure(out_png, figure, dpi=120)
    plt.close(figure)
