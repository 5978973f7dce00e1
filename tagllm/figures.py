"""Figures from saved files: predicted-vs-true scatters, the headline comparison with its spread
over seeds, the tag-length curve and the ablation bars (paper Figure 3), and training loss curves
(one panel per run). No model is loaded. Figures are drawn per run (`my_qed`) and take the
metric from the run's task (`qed`), as the tables do."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from tagllm.atomic import save_figure
from tagllm.report import (
    TABLE4_METHODS,
    full_method,
    method_label,
    read_run_metrics,
    regression_runs,
    run_metric,
    tag_length_curve,
)
from tagllm.tasks import task_of_metrics


def plot_predictions(predictions: str | Path, out_png: str | Path, title: str) -> None:
    """Scatter of predicted against true labels, with the identity line; the label column is the
    task's (from the metrics.json beside the predictions; `y` without one)."""
    frame = pd.read_parquet(predictions)
    metrics = Path(predictions).with_name("metrics.json")
    label = task_of_metrics(json.loads(metrics.read_text(encoding="utf-8"))).label \
        if metrics.is_file() else "y"
    figure, axis = plt.subplots(figsize=(4.5, 4.5))
    axis.scatter(frame[label], frame["y_pred"], s=12, alpha=0.7)
    low = float(min(frame[label].min(), frame["y_pred"].min()))
    high = float(max(frame[label].max(), frame["y_pred"].max()))
    axis.plot([low, high], [low, high], color="grey", linewidth=1, linestyle="--")
    axis.set_xlabel("true")
    axis.set_ylabel("predicted")
    axis.set_title(title, fontsize=9)
    figure.tight_layout()
    save_figure(out_png, figure, dpi=120)
    plt.close(figure)


def plot_figures(summary_csv: str | Path, run_files: list[str | Path], ablation_run: str,
                 out_dir: str | Path, setting: str, tag_length: int = 10) -> None:
    """headline.png, tag_length.png, ablation.png and loss_curves.png under `out_dir`."""
    out_dir = Path(out_dir)
    frame = pd.read_csv(summary_csv)
    _headline(frame, setting, out_dir / "headline.png")
    metric = run_metric(frame, ablation_run) if ablation_run else None
    if metric is not None:
        _tag_length(frame, ablation_run, metric, tag_length, setting, out_dir / "tag_length.png")
        _ablation(frame, ablation_run, metric, tag_length, setting, out_dir / "ablation.png")
    else:  # an empty, titled figure: no `ablations:` section, or no results for its run
        missing = f"No results for ablation run {ablation_run}." if ablation_run else \
            "No ablations in this configuration (its `ablations:` section is off)."
        for name in ("tag_length", "ablation"):
            figure, axis = plt.subplots(figsize=(4.5, 3))
            axis.set_axis_off()
            axis.text(0.5, 0.5, textwrap.fill(f"{missing} {setting}", 70), ha="center",
                      va="center", fontsize=7, transform=axis.transAxes)
            save_figure(out_dir / f"{name}.png", figure, dpi=120)
            plt.close(figure)
    _loss_curves(read_run_metrics(run_files), setting, out_dir / "loss_curves.png")


HEADLINE_METHODS = ("tagllm", "linear_probe", "train_mean")


def _headline(frame, setting, out_png) -> None:
    """Per regression run, Tag-LLM against the linear probe and the training mean: the mean over
    seeds with +- one standard deviation, the number of seeds under each bar."""
    runs = regression_runs(frame)
    figure, axes = plt.subplots(1, max(len(runs), 1), figsize=(2.6 * max(len(runs), 1), 3.2),
                                squeeze=False)
    for axis, run in zip(axes[0], runs, strict=False):
        metric = run_metric(frame, run)
        rows = frame[(frame.run == run) & frame.direction.isna() &
                     (frame.metric == metric)].set_index("method")
        methods = [m for m in HEADLINE_METHODS if m in rows.index]
        values = rows.loc[methods, "value"].astype(float)
        spread = rows.loc[methods, "sd"].astype(float).fillna(0.0)
        axis.bar(range(len(methods)), values, yerr=spread, capsize=3, color="tab:blue")
        seeds = rows.loc[methods, "seeds"].astype(int)
        axis.set_xticks(range(len(methods)),
                        [f"{method_label(m)}\n({n} seed{'s' * (n > 1)})"
                         for m, n in zip(methods, seeds, strict=True)], fontsize=6)
        axis.set_title(f"{run} ({metric.upper()})", fontsize=8)
    figure.suptitle(f"Tag-LLM and the simplest baselines, mean ± sd over seeds ({setting})",
                    fontsize=7)
    figure.tight_layout()
    save_figure(out_png, figure, dpi=120)
    plt.close(figure)


def _tag_length(frame, run, metric, tag_length, setting, out_png) -> None:
    points = tag_length_curve(frame, run, tag_length)
    figure, axis = plt.subplots(figsize=(4.5, 3.5))
    if points:
        axis.plot([p for p, _ in points], [v for _, v in points], marker="o")
        axis.set_xscale("log")
        axis.set_xticks([p for p, _ in points], [str(p) for p, _ in points])
    axis.set_xlabel("tag length p")
    axis.set_ylabel(f"{run} test {metric.upper()}")
    axis.set_title(f"Tag length ({setting})", fontsize=8)
    figure.tight_layout()
    save_figure(out_png, figure, dpi=120)
    plt.close(figure)


def _ablation(frame, run, metric, tag_length, setting, out_png) -> None:
    full = full_method(frame, run, tag_length)
    methods = [full if m == "tagllm" else m for m in TABLE4_METHODS]
    scored = frame[(frame.run == run) & frame.direction.isna() & (frame.metric == metric)]
    rows = scored[scored.method.isin(methods)]
    rows = rows.set_index("method").reindex([m for m in methods if m in set(rows.method)])
    if full in rows.index:
        rows.loc[full, "paper_value"] = scored[scored.method == "tagllm"].paper_value.max()
    figure, axis = plt.subplots(figsize=(6, 3.5))
    labels = ["full" if m == full else method_label(m) for m in rows.index]
    axis.bar(range(len(rows)), rows["value"], label="ours")
    paper = rows["paper_value"].astype(float)
    if paper.notna().any():
        axis.scatter(range(len(rows)), paper, color="black", marker="_", s=400, label="paper",
                     zorder=3)
    axis.set_xticks(range(len(rows)), labels, rotation=20, ha="right", fontsize=7)
    axis.set_ylabel(f"{run} test {metric.upper()}")
    axis.set_title(f"Ablations ({setting})", fontsize=8)
    axis.legend(fontsize=7)
    figure.tight_layout()
    save_figure(out_png, figure, dpi=120)
    plt.close(figure)


def _loss_curves(runs: list[dict], setting: str, out_png) -> None:
    """One panel per run (stage-1 tags: per tag), one line per method and seed: the running mean
    of the training loss over about 5% of the run's steps, drawn over the raw values (faint).
    Runs as `read_run_metrics` reads them; one without a name is named after its task."""
    panels: dict[str, list[tuple[str, int | None, list[dict]]]] = {}
    for run in runs:
        if run.get("loss_curve"):
            name, task = run.get("run") or run.get("task"), run.get("task")
            if name is None:
                panel = f"stage 1 <{run.get('tag', '?')}>"
            else:  # a run of another name than its task says which task it is
                panel = name if name == task else f"{name} (task {task})"
            seed = (run.get("config") or {}).get("seed")
            panels.setdefault(panel, []).append((run.get("method", "tag"), seed, run["loss_curve"]))
    names = sorted(panels) or ["no training loss recorded"]
    figure, axes = plt.subplots(len(names), 1, figsize=(8, 1.2 + 2.3 * len(names)), squeeze=False,
                                layout="constrained")
    for axis, panel in zip(axes[:, 0], names, strict=True):
        lines = sorted(panels.get(panel, []), key=lambda line: (line[0], line[1] or 0))
        seeded = {m for m in {line[0] for line in lines}
                  if sum(line[0] == m for line in lines) > 1}  # methods with several seeds here
        colours = plt.get_cmap("tab10" if len(lines) <= 10 else "tab20")
        positive = True
        for i, (method, seed, curve) in enumerate(lines):
            steps = [point["step"] for point in curve]
            loss = pd.Series([point["loss"] for point in curve], dtype=float)
            positive = positive and bool((loss > 0).all())
            window = max(1, round(len(loss) / 20))
            colour = colours(i % colours.N)
            axis.plot(steps, loss, color=colour, linewidth=0.6, alpha=0.25)
            axis.plot(steps, loss.rolling(window, min_periods=1).mean(), color=colour,
                      linewidth=1.4, label=f"{method} seed {seed}" if method in seeded else method)
        if positive and lines:
            axis.set_yscale("log")
        axis.set_title(panel, fontsize=9, loc="left")
        axis.set_ylabel("training loss", fontsize=8)
        axis.tick_params(labelsize=7)
        if lines:
            axis.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False,
                        ncol=1 if len(lines) <= 12 else 2)
        else:
            axis.set_axis_off()
    axes[-1, 0].set_xlabel("optimiser step", fontsize=8)
    title = ("Training loss per run: running mean over about 5% of each run's steps, raw values "
             f"faint ({setting})")
    figure.suptitle(textwrap.fill(title, 120), fontsize=8)
    save_figure(out_png, figure, dpi=120)
    plt.close(figure)
