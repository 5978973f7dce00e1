"""Table builders and figures from hand-written metrics files: values, the paper's numbers beside
ours, the tag-length curve and the trainable-parameter formulas."""

import json
import math

import pandas as pd
import pytest

from tagllm.figures import plot_figures
from tagllm.report import build_tables, llama7b_parameter_counts, long_rows


def regression(method, run, task, mse, mae=None, pearson=0.5):
    return {"task": task, "run": run, "method": method, "base_model": "m", "mse": mse,
            "mae": mae if mae is not None else mse, "pearson": pearson, "spearman": pearson, "n": 3}


def translation(method, scores):
    directions = {d: {"spbleu": math.nan, "bleu": b, "chrf": b + 1, "n": 2, "nonempty": 0.5}
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
    paths = {"metrics": [], "runs": []}
    for kind, items in (("metrics", evaluations), ("runs", runs)):
        for i, item in enumerate(items):
            path = tmp_path / f"{kind}{i}.json"
            path.write_text(json.dumps(item))
            paths[kind].append(path)
    return paths


def test_summary_averages_seeds_and_keeps_paper_values(files):
    frame = long_rows([json.loads(p.read_text()) for p in files["metrics"]])
    row = frame[(frame.task == "qed") & (frame.method == "tagllm") & (frame.metric == "mse")]
    assert row.value.item() == pytest.approx(0.03) and row.paper_value.item() == 0.008
    # Two seeds (0.02 and 0.04): their sample standard deviation and count.
    assert row.sd.item() == pytest.approx(0.0141421, rel=1e-4) and row.seeds.item() == 2
    one = frame[(frame.task == "qed") & (frame.method == "lora") & (frame.metric == "mse")]
    assert one.seeds.item() == 1 and math.isnan(one.sd.item())
    dc = frame[(frame.task == "dc_synthetic") & (frame.method == "no_head") & (frame.metric == "mae")]
    assert dc.paper_value.item() == 23.42
    fr = frame[(frame.task == "translate:en-fr") & (frame.method == "tagllm") &
               (frame.metric == "spbleu")]
    assert fr.paper_value.item() == 40.5


def test_every_table_is_written_with_the_paper_beside_ours(files, tmp_path):
    out = tmp_path / "tables"
    build_tables(files["metrics"], files["runs"], out, "Setting: tiny model, test data.", 10)
    for name in ("summary", "table1_translation", "table2_tasks", "table3_peft",
                 "table4_ablation", "table6_params"):
        assert (out / f"{name}.csv").is_file() and (out / f"{name}.md").is_file(), name
        assert "Setting: tiny model" in (out / f"{name}.md").read_text(), name
    table1 = (out / "table1_translation.md").read_text()
    assert "BLEU (13a tokenizer) instead" in table1  # spBLEU absent: said, not hidden
    # BLEU of Tag-LLM, direct prompting and the copied source, then their chrF, then the paper.
    assert "| EN-FR | seen | 10 | 4 | 2 | 11 | 5 | 3 | 0.5 | 40.5 | 42 | 36.1 |" in table1
    assert "| ES-PT | unseen languages | 3 | 1 | 0.5 | 4 | 2 | 1.5 | 0.5 | 24.6 | 28.1 | - |" in table1
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
