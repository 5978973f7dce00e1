"""Table builders and figures from hand-written metrics files: values, the paper's numbers beside
ours, the tag-length curve and the trainable-parameter formulas; runs named apart from their task
(the README's `my_qed` of task `qed`) labelled by run and scored by task."""

import json
import math

import pandas as pd
import pytest

from tagllm.figures import plot_figures
from tagllm.report import build_tables, llama7b_parameter_counts, long_rows, read_run_metrics


def regression(method, run, task, mse, mae=None, pearson=0.5):
    return {"task": task, "run": run, "method": method, "base_model": "m", "mse": mse,
            "mae": mae if mae is not None else mse, "pearson": pearson, "spearman": pearson, "n": 3}


def translation(method, scores):
    # A model's reference NLL per character (copying the source has no model to score it).
    nll = {"tagllm": {"reference_nll": 1.25}, "direct_prompting": {"reference_nll": 1.5}}
    directions = {d: {"spbleu": math.nan, "bleu": b, "chrf": b + 1, "n": 2, "nonempty": 0.5,
                      **nll.get(method, {})}
                  for d, b in scores.items()}
    return {"task": "translate", "run": "translate", "method": method, "base_model": "m",
            "directions": directions, "spbleu": math.nan, "bleu": 1.0, "chrf": 2.0, "n": 4}


@pytest.fixture()
def files(tmp_path):
    evaluations = [
        regression("tagllm", "qed", "qed", 0.02), regression("tagllm", "qed", "qed", 0.04),
        regression("train_mean", "qed", "qed", 0.05), regression("lora", "qed", "qed", 0.03),
        regression("lora_head", "qed", "qed", 0.025),
        regression("tagllm", "dc_synthetic", "dc", 1.0, mae=5.0),
        regression("no_head", "dc_synthetic", "dc", 1.0, mae=7.0),
        regression("tagllm_p1", "dc_synthetic", "dc", 1.0, mae=6.0),
        regression("tagllm_p20", "dc_synthetic", "dc", 1.0, mae=5.5),
        translation("tagllm", {"en-fr": 10.0, "es-pt": 3.0}),
        translation("direct_prompting", {"en-fr": 4.0, "es-pt": 1.0}),
        translation("copy_source", {"en-fr": 2.0, "es-pt": 0.5}),
    ]
    runs = [{"method": "tagllm", "task": "qed", "trainable_parameters": 10 * 8 + 8,
             "hidden_size": 8, "loss_curve": [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.0}],
             "examples": 340, "config": {"epochs": 4, "batch_size": 8, "grad_accum": 2},
             "probe_init": {"alpha": 1.0}, "head_refit": {"alpha": 1.0}},
            {"method": "linear_probe", "task": "qed", "trainable_parameters": 8, "hidden_size": 8,
             "loss_curve": [], "examples": 340, "probe": {"alpha": 10.0}},
            {"method": "lora", "task": "qed", "trainable_parameters": 64, "hidden_size": 8,
             "loss_curve": [{"step": 1, "loss": 1.0}], "examples": 24,
             "config": {"epochs": 1, "batch_size": 8, "grad_accum": 1}}]
    return write_files(tmp_path, evaluations, runs)


def write_files(tmp_path, evaluations, runs):
    """Evaluation files anywhere; training metrics where the workflow puts them,
    `runs/<method>/<run>/seed<N>/metrics.json` (they record the task, not the run: the folder
    names the run). A training dict's `run` says which folder, and is not written."""
    paths = {"metrics": [], "runs": []}
    for i, item in enumerate(evaluations):
        path = tmp_path / f"metrics{i}.json"
        path.write_text(json.dumps(item))
        paths["metrics"].append(path)
    for item in runs:
        item = dict(item)
        seed = (item.get("config") or {}).get("seed", 0)
        path = tmp_path / "runs" / item["method"] / item.pop("run", item["task"]) / f"seed{seed}"
        path.mkdir(parents=True, exist_ok=True)
        (path / "metrics.json").write_text(json.dumps(item))
        paths["runs"].append(path / "metrics.json")
    return paths


def test_summary_averages_seeds_and_keeps_paper_values(files):
    frame = long_rows([json.loads(p.read_text()) for p in files["metrics"]])
    row = frame[(frame.run == "qed") & (frame.method == "tagllm") & (frame.metric == "mse")]
    assert row.value.item() == pytest.approx(0.03) and row.paper_value.item() == 0.008
    # Two seeds (0.02 and 0.04): their sample standard deviation and count.
    assert row.sd.item() == pytest.approx(0.0141421, rel=1e-4) and row.seeds.item() == 2
    one = frame[(frame.run == "qed") & (frame.method == "lora") & (frame.metric == "mse")]
    assert one.seeds.item() == 1 and math.isnan(one.sd.item())
    dc = frame[(frame.run == "dc_synthetic") & (frame.method == "no_head") & (frame.metric == "mae")]
    assert dc.paper_value.item() == 23.42 and dc.task.item() == "dc"  # the run's task, by name
    fr = frame[(frame.run == "translate") & (frame.direction == "en-fr") &
               (frame.method == "tagllm") & (frame.metric == "spbleu")]
    assert fr.paper_value.item() == 40.5 and fr.task.item() == "translate"
    assert list(frame.columns) == ["run", "task", "method", "metric", "value", "sd", "seeds",
                                   "paper_value", "headline", "direction"]


def test_every_table_is_written_with_the_paper_beside_ours(files, tmp_path):
    out = tmp_path / "tables"
    build_tables(files["metrics"], files["runs"], out, "Setting: tiny model, test data.", 10)
    for name in ("summary", "table1_translation", "table2_tasks", "table3_peft",
                 "table4_ablation", "table6_params"):
        assert (out / f"{name}.csv").is_file() and (out / f"{name}.md").is_file(), name
        assert "Setting: tiny model" in (out / f"{name}.md").read_text(), name
    table1 = (out / "table1_translation.md").read_text()
    assert "BLEU (13a tokenizer) instead" in table1  # spBLEU absent: said, not hidden
    # BLEU of Tag-LLM, direct prompting and the copied source, then their chrF, Tag-LLM's
    # non-empty share, the two models' reference NLL per character, then the paper.
    assert "| EN-FR | seen | 10 | 4 | 2 | 11 | 5 | 3 | 0.5 | 1.25 | 1.5 | 40.5 | 42 | 36.1 |" \
        in table1
    assert "| ES-PT | unseen languages | 3 | 1 | 0.5 | 4 | 2 | 1.5 | 0.5 | 1.25 | 1.5 | 24.6 | " \
        "28.1 | - |" in table1
    assert "Reference nats/char" in table1
    assert "copy source chrf (ours)" in table1
    table2 = (out / "table2_tasks.md").read_text()
    # The caption says what each trained row was trained on.
    assert ("linear probing: qed 340 rows, closed-form ridge" in table2
            and "LoRA: qed 24 rows x 1 epochs, batches 8x1." in table2
            and "Tag-LLM: qed 340 rows x 4 epochs, batches 8x2, head from the probe, refit"
            in table2)
    assert "| Tag-LLM | 88 | 0.03 ± 0.01414 (2) | 0.008 |" in table2
    assert "| LoRA | 64 | 0.03 | 0.02 |" in table2
    table4 = pd.read_csv(out / "table4_ablation.csv")
    assert set(table4.method) == {"tagllm", "no_head", "tagllm_p1", "tagllm_p20"}
    ablation = (out / "table4_ablation.md").read_text()
    assert "| tag length p = 1 | 6 | - |" in ablation and "| tag length p = 10 | 5 | 12.21 |" in ablation
    params = (out / "table6_params.md").read_text()
    # The run trained <QED> (10 x 8) and the head (8); <SMILES> (10 x 8) came from stage 1.
    assert "| Tag-LLM | 168 | 168 | 86016 | 86016 |" in params


def test_llama7b_formulas_match_the_paper_where_the_paper_is_consistent():
    counts = llama7b_parameter_counts()
    assert counts["tagllm"] == 86016 and counts["prompt_tuning_head"] == 86016
    assert counts["linear_probe"] == 4096
    assert counts["lora_head"] == 32 * 2 * 8 * (4096 + 4096) + 4096  # PEFT's q,v default


def test_figures_from_the_summary(files, tmp_path):
    out = tmp_path / "tables"
    build_tables(files["metrics"], files["runs"], out, "s", 10)
    plot_figures(out / "summary.csv", files["runs"], "dc_synthetic", tmp_path / "figures", "s")
    for name in ("headline", "tag_length", "ablation", "loss_curves"):
        assert (tmp_path / "figures" / f"{name}.png").stat().st_size > 1000, name


# The README's own-data overlay: a run `my_qed` of task `qed` beside the default `qed`, and
# ablations on a run `my_dc` of task `dc`. Runs label the tables; tasks give metric and paper.
def seeded(run, seed, trainable, examples, epochs, accum, method="tagllm", task="qed"):
    return {"method": method, "task": task, "run": run, "trainable_parameters": trainable,
            "hidden_size": 8, "examples": examples, "loss_curve": [{"step": 1, "loss": 1.0}],
            "config": {"seed": seed, "epochs": epochs, "batch_size": 8, "grad_accum": accum}}


@pytest.fixture()
def own_files(tmp_path):
    evaluations = [
        regression("tagllm", "qed", "qed", 0.02),
        regression("tagllm", "my_qed", "qed", 0.01), regression("tagllm", "my_qed", "qed", 0.03),
        regression("train_mean", "qed", "qed", 0.05),
        regression("train_mean", "my_qed", "qed", 0.06),
        regression("linear_probe", "my_qed", "qed", 0.015),
        regression("lora_head", "qed", "qed", 0.025),
        regression("tagllm", "my_dc", "dc", 1.0, mae=5.0),
        regression("no_head", "my_dc", "dc", 1.0, mae=7.0),
        regression("tagllm_p1", "my_dc", "dc", 1.0, mae=6.0),
    ]
    runs = [seeded("qed", 0, 10 * 8 + 8, 340, 4, 2),
            # my_qed: function tag of length 5, so another count than qed's.
            seeded("my_qed", 0, 5 * 8 + 8, 100, 2, 1), seeded("my_qed", 1, 5 * 8 + 8, 100, 2, 1),
            {"method": "linear_probe", "task": "qed", "run": "my_qed", "trainable_parameters": 8,
             "hidden_size": 8, "loss_curve": [], "examples": 100, "probe": {"alpha": 1.0}},
            seeded("my_dc", 0, 10 * 8 + 8, 32, 2, 1, task="dc"),
            seeded("my_dc", 0, 10 * 8, 32, 2, 1, method="no_head", task="dc"),
            seeded("my_dc", 0, 1 * 8 + 8, 32, 2, 1, method="tagllm_p1", task="dc")]
    return write_files(tmp_path, evaluations, runs)


def test_training_metrics_are_named_by_their_run_folder(own_files, tmp_path):
    runs = read_run_metrics(own_files["runs"])
    assert [(r["method"], r["run"], r["task"]) for r in runs[:3]] == [
        ("tagllm", "qed", "qed"), ("tagllm", "my_qed", "qed"), ("tagllm", "my_qed", "qed")]
    # Trained by hand outside the workflow's layout: named after the task, as `evaluate` does.
    loose = tmp_path / "loose.json"
    loose.write_text(json.dumps({"method": "tagllm", "task": "qed"}))
    assert read_run_metrics([loose])[0]["run"] == "qed"


def test_own_run_of_a_known_task_is_labelled_by_run_and_scored_by_task(own_files, tmp_path):
    out = tmp_path / "tables"
    frame = build_tables(own_files["metrics"], own_files["runs"], out, "s", 10)
    mine = frame[(frame.run == "my_qed") & (frame.method == "tagllm") & (frame.metric == "mse")]
    assert mine.task.item() == "qed" and mine.seeds.item() == 2 and mine.paper_value.item() == 0.008
    summary = pd.read_csv(out / "summary.csv")
    assert set(zip(summary.run, summary.task, strict=True)) == {
        ("qed", "qed"), ("my_qed", "qed"), ("my_dc", "dc")}
    table2 = (out / "table2_tasks.md").read_text()
    # Runs of one task keep the evaluation files' order; the paper's task order across tasks.
    assert ("| method | trainable | qed mse (ours) | qed (paper) | my_qed mse (ours) | "
            "my_qed (paper) | my_dc mae (ours) | my_dc (paper) |") in table2
    # Trainable parameters per run: my_qed's 48 and qed's (and my_dc's) 88.
    assert "| Tag-LLM | 48/88 | 0.02 | 0.008 | 0.02 ± 0.01414 (2) | 0.008 | 5 | 12.21 |" in table2
    assert "| linear probing | 8 | - | 0.012 | 0.015 | 0.012 | - | 24.11 |" in table2
    assert ("Tag-LLM: my_dc 32 rows x 2 epochs, batches 8x1; my_qed 100 rows x 2 epochs, "
            "batches 8x1; qed 340 rows x 4 epochs, batches 8x2.") in table2
    assert "linear probing: my_qed 100 rows, closed-form ridge" in table2
    table3 = (out / "table3_peft.md").read_text()
    assert "| Tag-LLM | 48/88 | 0.02 | 0.008 | 0.02 ± 0.01414 (2) |" in table3
    # The ablations: found on my_dc, DC's metric and paper values, only my_dc's budgets.
    table4 = (out / "table4_ablation.md").read_text()
    assert "Table 4: ablations on my_dc" in table4 and "qed" not in table4
    assert "Training budgets: Tag-LLM: my_dc 32 rows x 2 epochs, batches 8x1." in table4
    assert "| full Tag-LLM | 5 | 12.21 |" in table4 and "| tag length p = 10 | 5 | 12.21 |" in table4
    long = pd.read_csv(out / "table4_ablation.csv")
    assert set(long.run) == {"my_dc"} and set(long.task) == {"dc"}
    # Table 6: Tag-LLM's runs (plus the stage-1 <SMILES>, 10 x 8) counted per run.
    assert "| Tag-LLM | 128/168 |" in (out / "table6_params.md").read_text()
    assert "| linear probing | 8 |" in (out / "table6_params.md").read_text()


def test_figures_of_own_runs(own_files, tmp_path, monkeypatch):
    from tagllm import figures

    drawn = {}

    def save(path, figure, **kwargs):
        drawn[path.name] = [axis.get_title(loc="left") or axis.get_title() for axis in figure.axes]
        save_figure(path, figure, **kwargs)

    save_figure = figures.save_figure
    monkeypatch.setattr(figures, "save_figure", save)
    out = tmp_path / "tables"
    build_tables(own_files["metrics"], own_files["runs"], out, "s", 10)
    plot_figures(out / "summary.csv", own_files["runs"], "my_dc", tmp_path / "figures", "s")
    for name in ("headline", "tag_length", "ablation", "loss_curves"):
        assert (tmp_path / "figures" / f"{name}.png").stat().st_size > 1000, name
    assert drawn["headline.png"] == ["qed (MSE)", "my_qed (MSE)", "my_dc (MAE)"]
    assert drawn["loss_curves.png"] == ["my_dc (task dc)", "my_qed (task qed)", "qed"]
    assert drawn["ablation.png"] == ["Ablations (s)"]


def test_ablation_budgets_of_a_run_whose_task_is_an_alias(tmp_path):
    # The default's `dc_synthetic`: its files name the task `dc_synthetic` (an alias of `dc`);
    # Table 4 used to look its budgets up under `dc` and found none.
    evaluations = [regression("tagllm", "dc_synthetic", "dc_synthetic", 1.0, mae=5.0),
                   regression("no_head", "dc_synthetic", "dc_synthetic", 1.0, mae=7.0)]
    runs = [seeded("dc_synthetic", 0, 88, 32, 2, 1, task="dc_synthetic"),
            seeded("dc_synthetic", 0, 80, 32, 2, 1, method="no_head", task="dc_synthetic")]
    files = write_files(tmp_path, evaluations, runs)
    frame = build_tables(files["metrics"], files["runs"], tmp_path / "tables", "s", 10)
    assert set(frame.task) == {"dc"}
    table4 = (tmp_path / "tables" / "table4_ablation.md").read_text()
    assert "Table 4: ablations on dc_synthetic" in table4
    assert ("Training budgets: Tag-LLM: dc_synthetic 32 rows x 2 epochs, batches 8x1. without "
            "regression head (digits decoded): dc_synthetic 32 rows") in table4
    assert "| full Tag-LLM | 5 | 12.21 |" in table4


def test_table1_lists_directions_beyond_the_papers(tmp_path):
    """A translation scored on a direction the paper does not have (a config's own) is in Table
    1 after the paper's, with empty paper columns and no claimed setting."""
    evaluations = [translation("tagllm", {"en-es": 7.0, "en-fr": 10.0}),
                   translation("copy_source", {"en-es": 2.0, "en-fr": 2.0})]
    paths = write_files(tmp_path, evaluations, [])
    out = tmp_path / "tables"
    build_tables(paths["metrics"], paths["runs"], out, "Setting: test.", 10)
    table1 = (out / "table1_translation.md").read_text()
    rows = [line for line in table1.splitlines() if line.startswith("| EN-")]
    assert [row.split(" | ")[0] for row in rows] == ["| EN-FR", "| EN-ES"]
    # Tag-LLM's BLEU 7, direct prompting absent, copy source 2, then chrF; no paper values.
    assert rows[1] == "| EN-ES | - | 7 | - | 2 | 8 | - | 3 | 0.5 | 1.25 | - | - | - | - |"


def test_table4_says_when_no_ablations_ran(tmp_path):
    # The embedded default has `ablations: null` (presets/cpu_full.yaml runs them).
    files = write_files(tmp_path, [regression("tagllm", "qed", "qed", 0.02)],
                        [seeded("qed", 0, 88, 32, 1, 1)])
    build_tables(files["metrics"], files["runs"], tmp_path / "tables", "s", 10)
    table4 = (tmp_path / "tables" / "table4_ablation.md").read_text()
    assert "Table 4: ablations (none in this configuration" in table4


def test_captions_count_decoded_answers_without_a_number(tmp_path):
    # A row that decodes digits falls back to the training mean where an answer holds no number:
    # with every answer unparsed it measures the fallback, and its caption must say so.
    decoded = [{**regression("lora", "qed", "qed", 0.12), "unparsed": u, "clipped": c}
               for u, c in ((1, 2), (3, 0))]
    no_head = {**regression("no_head", "dc_synthetic", "dc", 1.0, mae=4.6),
               "unparsed": 3, "clipped": 0}
    files = write_files(tmp_path, [regression("tagllm", "qed", "qed", 0.02), *decoded,
                                   regression("tagllm", "dc_synthetic", "dc", 1.0, mae=4.0),
                                   no_head], [seeded("qed", 0, 88, 32, 1, 1)])
    build_tables(files["metrics"], files["runs"], tmp_path / "tables", "s", 10)
    table2 = (tmp_path / "tables" / "table2_tasks.md").read_text().split("\n")[0]
    table3 = (tmp_path / "tables" / "table3_peft.md").read_text().split("\n")[0]
    table4 = (tmp_path / "tables" / "table4_ablation.md").read_text().split("\n")[0]
    assert "LoRA on qed: 4 of 6 without a number, 2 clipped" in table2  # summed over seeds
    assert "Decoded answers" not in table3  # its rows all have a head
    assert "without regression head (digits decoded) on dc_synthetic: 3 of 3 without a number" \
        in table4
