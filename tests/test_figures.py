"""The loss-curves figure on synthetic metrics: one panel per run, whatever the number of runs,
and two panels for two runs of one task."""

import json
import math

import pytest

from tagllm import figures
from tagllm.report import read_run_metrics

# Runs like those of the default config: methods and seeds on five tasks (29 curves).
RUNS = {"qed": ["tagllm", "tagllm_budget", "lora", "prompt_tuning", "lora_text", "lora_head",
                "prompt_tuning_text", "prompt_tuning_head", "tagllm_enrich"],
        "dc": ["tagllm", "no_domain_tags", "no_function_tags", "no_head", "enriched",
               "tagllm_p1", "tagllm_p5", "tagllm_p20", "tagllm_p50"],
        "descriptor": ["tagllm"], "ba": ["tagllm"], "translate": ["tagllm"]}


def metrics(method, task, seed, steps):
    curve = [{"step": s + 1, "loss": 2.0 * math.exp(-s / 40) + 0.1 * (s % 3) + 0.05}
             for s in range(steps)]
    return {"method": method, "task": task, "config": {"seed": seed}, "loss_curve": curve}


@pytest.fixture()
def drawn(monkeypatch):
    """The figures that `figures` saves, with their axes counted before they are closed."""
    saved = []

    def save(path, figure, **kwargs):
        saved.append(len(figure.axes))
        save_figure(path, figure, **kwargs)

    save_figure = figures.save_figure
    monkeypatch.setattr(figures, "save_figure", save)
    return saved


def test_loss_curves_one_panel_per_task(tmp_path, drawn):
    runs = [metrics(m, task, 0, 150) for task, methods in RUNS.items() for m in methods]
    runs += [metrics("tagllm", task, seed, 150) for task in ("qed", "dc", "descriptor", "ba")
             for seed in (1, 2)]
    runs.append({"method": "linear_probe", "task": "qed", "loss_curve": []})  # closed form
    assert len(runs) == 29 + 1
    out = tmp_path / "loss_curves.png"
    figures._loss_curves(runs, "Base model m; a setting line long enough to need wrapping " * 3,
                         out)
    assert out.stat().st_size > 0
    assert drawn == [len(RUNS)]


def test_loss_curves_without_any_curve(tmp_path, drawn):
    out = tmp_path / "loss_curves.png"
    figures._loss_curves([{"method": "linear_probe", "task": "qed", "loss_curve": []}], "s", out)
    assert out.stat().st_size > 0 and drawn == [1]


def test_loss_curves_one_panel_per_run_when_runs_share_a_task(tmp_path, monkeypatch):
    # The README's overlay: `my_qed` trains task qed beside the default run `qed`. Training
    # metrics name the task only; the run's name comes from its folder (report.read_run_metrics).
    paths = []
    for run in ("qed", "my_qed"):
        folder = tmp_path / "runs" / "tagllm" / run / "seed0"
        folder.mkdir(parents=True)
        (folder / "metrics.json").write_text(json.dumps(metrics("tagllm", "qed", 0, 30)))
        paths.append(folder / "metrics.json")
    titles = []
    monkeypatch.setattr(figures, "save_figure", lambda path, figure, **kwargs: titles.extend(
        axis.get_title(loc="left") for axis in figure.axes))
    figures._loss_curves(read_run_metrics(paths), "s", tmp_path / "loss_curves.png")
    assert titles == ["my_qed (task qed)", "qed"]
