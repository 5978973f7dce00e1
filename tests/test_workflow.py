"""The Snakemake workflow: lint, dry run, and a tiny end-to-end run in a temporary folder."""

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tagllm.report import training_budget
from tests.workflow_copy import TINY, copy_workflow

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def snakemake(*args, cwd=ROOT):
    # Jobs run `python -m tagllm`: put this interpreter's environment first on PATH.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run([*SNAKEMAKE, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, env=env)


def test_lint_is_clean():
    result = snakemake("--lint")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "good condition" in result.stdout + result.stderr


def test_dry_run_lists_every_stage():
    # -F: list every job even after `make run` has filled results/ in this checkout. The default
    # leaves Tables 3-4 to presets/cpu_full.yaml, which adds the ablation family's jobs.
    result = snakemake("-n", "-F", "--quiet", "rules", "--configfile", "presets/cpu_full.yaml")
    assert result.returncode == 0, result.stderr
    listed = {line.split()[0] for line in result.stdout.splitlines() if line.strip()}
    for rule in ("prepare_model", "prepare_dataset", "train_domain_tag",
                 "train_domain_tags_together", "train_function_tag",
                 "train_function_tag_family", "train_baseline", "evaluate_run",
                 "evaluate_run_family", "evaluate_direct", "evaluate_model_free", "build_tables",
                 "train_tagllm_seeds", "evaluate_tagllm_seeds",
                 "plot_figures", "plot_predictions"):
        assert rule in listed, rule


def test_table_caption_reaches_its_command_whole():
    # cpu_full's caption names "the baselines' budget": an apostrophe inside single quotes once
    # broke the build-tables command (exit 2, nothing in its log).
    result = snakemake("-n", "-F", "-p", "--configfile", "presets/cpu_full.yaml")
    assert result.returncode == 0, result.stderr
    command = next(line for line in result.stdout.splitlines() if "build-tables" in line
                   and "--setting" in line)
    args = shlex.split(command[command.index("python -m tagllm"):])
    caption = args[args.index("--setting") + 1]
    assert "the rows at the baselines' budget: [0, 1, 2]" in caption
    assert caption.endswith("test rows per split all.")


def test_paper_preset_dry_run_lists_every_download(tmp_path):
    result = snakemake("-n", "-F", "--configfile", "presets/paper.yaml")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    # DC and BA from TDC's benchmark groups (their own test sets), not the raw TDC datasets.
    for source in ("binding_affinity", "tdc_drugcombo_group", "tdc_dti_dg_group", "flores101",
                   *(f"opus100_{p}" for p in ("ca-en", "de-en", "el-en", "en-es", "en-fr",
                                               "en-it", "en-pt", "en-ru"))):
        assert f"resources/downloads/{source}" in result.stdout, source
    for dataset in ("qed", "descriptor", "translation", "text_el", "dc", "ba"):
        assert f"results/data/{dataset}/report.json" in result.stdout, dataset
    assert "results/data/dc_synthetic" not in result.stdout  # switched off by the preset
    assert not re.search(r"resources/downloads/tdc_(drugcomb|bindingdb_patent)\b",
                         result.stdout)  # the raw TDC datasets are not needed
    # TDC's protocol: Tag-LLM on DC and BA over seeds 1-5; every other run seed 1.
    for run in ("dc", "ba"):
        for seed in range(1, 6):
            assert f"results/eval/tagllm/{run}/seed{seed}/metrics.json" in result.stdout
    assert "seed0" not in result.stdout


def test_config_typo_fails_before_any_job(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("devcie: cpu\n")
    result = snakemake("-n", "--configfile", str(bad))
    assert result.returncode != 0
    assert "devcie" in result.stdout + result.stderr


@pytest.mark.slow
def test_tiny_end_to_end_run(tmp_path):
    copy_workflow(tmp_path, *TINY)
    result = snakemake("--cores", "2", "--configfile", "tests/data/tiny.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    results = tmp_path / "results"
    for name in ("qed", "descriptor", "translation", "text_el", "dc_synthetic", "ba_synthetic"):
        report = json.loads((results / "data" / name / "report.json").read_text())
        assert report["kept"] + sum(report["rejected"].values()) + report["not_sampled"] == \
            report["rows_in"], name
    for path in ("models/tiny_random/config.json", "data/qed/train.parquet",
                 "data/qed/rejected.parquet", "data/qed/report.json",
                 "tags/stage1/SMILES/seed0/tags.safetensors", "tags/stage1/PT/seed0/tags.json",
                 "runs/tagllm/qed/seed0/head.safetensors", "runs/tagllm/qed/seed0/metrics.json",
                 "runs/tagllm/translate/seed0/tags.safetensors",
                 "runs/tagllm/ba_synthetic/seed0/head.safetensors",
                 "eval/tagllm/qed/seed0/predictions.parquet", "tables/summary.md",
                 "runs/lora/qed/seed0/adapter/adapter_model.safetensors",
                 "runs/tagllm_p2/dc_synthetic/seed0/tags.safetensors",
                 "eval/tagllm/translate/seed0/predictions.parquet",
                 "eval/direct_prompting/translate/metrics.json",
                 "eval/nearest_neighbour/qed/predictions.parquet",
                 "figures/qed_predictions.png", "figures/dc_synthetic_predictions.png",
                 *(f"figures/{name}.png" for name in ("headline", "tag_length", "ablation", "loss_curves")),
                 *(f"tables/{name}.{ext}" for name in ("table1_translation", "table2_tasks",
                                                       "table3_peft", "table4_ablation",
                                                       "table6_params") for ext in ("md", "csv"))):
        assert (results / path).is_file(), path
    metrics = json.loads((results / "eval/tagllm/qed/seed0/metrics.json").read_text())
    assert {"mse", "mae", "pearson", "spearman", "n"} <= set(metrics)
    summary = pd.read_csv(results / "tables/summary.csv")
    assert list(summary.columns) == ["run", "task", "method", "metric", "value", "sd", "seeds",
                                     "paper_value", "headline", "direction"]
    assert {"tagllm", "train_mean", "lora", "prompt_tuning_head", "nearest_neighbour",
            "direct_prompting", "no_function_tags", "enriched", "tagllm_p2",
            "copy_source", "linear_probe", "tagllm_budget"} == set(summary["method"])
    # Every trained row of the baselines' comparison shares one budget (read from its run's
    # files); the linear probe has every row, in closed form.
    budgets = {method: training_budget(json.loads(
        (results / f"runs/{method}/qed/seed0/metrics.json").read_text()))
        for method in ("lora", "prompt_tuning_head", "tagllm_budget", "linear_probe")}
    assert budgets["lora"] == {**budgets["tagllm_budget"], "head_from_probe": False,
                               "head_refit": False}
    assert budgets["prompt_tuning_head"] == budgets["tagllm_budget"]
    assert budgets["tagllm_budget"]["examples"] == 8
    assert budgets["linear_probe"]["fit"] == "closed-form ridge"
    assert "Tag-LLM at the baselines' budget: qed 8 rows x 1 epochs" in \
        (results / "tables/table2_tasks.md").read_text()
    # The headline seeds: Tag-LLM on qed trained and scored on seeds 0 and 1 in one job each; the
    # tables show their mean, sd and count.
    assert (tmp_path / "logs/train_tagllm_seeds/qed.log").is_file()
    assert (tmp_path / "logs/evaluate_tagllm_seeds/qed.log").is_file()
    seed1 = json.loads((results / "runs/tagllm/qed/seed1/metrics.json").read_text())
    assert seed1["config"]["seed"] == 1 and seed1["prefix_cache"]["prefix_forwards"] == 0
    qed_mse = summary[(summary.run == "qed") & (summary.method == "tagllm") &
                      (summary.metric == "mse")]
    assert qed_mse.seeds.item() == 2 and qed_mse.sd.item() >= 0
    probe = json.loads((results / "runs/linear_probe/qed/seed0/metrics.json").read_text())
    assert probe["examples"] == probe["probe"]["rows"] > 8  # every row, not baselines.train's 8
    assert {"qed", "descriptor", "dc_synthetic", "ba_synthetic", "translate"} <= set(summary.run)
    assert {"en-fr", "es-pt"} <= set(summary.direction.dropna())
    # Both model methods score the reference translations teacher-forced; copying cannot.
    nll = summary[(summary.run == "translate") & (summary.metric == "reference_nll")]
    assert set(nll.method) == {"tagllm", "direct_prompting"}
    assert nll.value.notna().all() and (nll.value > 0).all()
    assert set(summary[summary.run == "dc_synthetic"].task) == {"dc"}
    headline = summary[(summary.method == "tagllm") & (summary.run == "qed") &
                       (summary.metric == "mse")]
    assert headline["paper_value"].tolist() == [0.008]
    for table in ("table2_tasks", "table3_peft", "table4_ablation", "table1_translation"):
        text = (results / f"tables/{table}.md").read_text()
        assert "(paper)" in text and "tiny_random" in text, table
    train = json.loads((results / "runs/tagllm/ba_synthetic/seed0/metrics.json").read_text())
    assert train["versions"]["tagllm"] and train["loss_curve"] and train["stage"] == 3
    tags = json.loads((results / "runs/tagllm/ba_synthetic/seed0/tags.json").read_text())
    assert [t["name"] for t in tags["tags"]] == ["Protein", "SMILES", "BA"]
    assert list((tmp_path / "logs").rglob("*.log"))
    # together: the sweep point reused the prefixes of the run trained before it in the
    # same job, and the runs on dc_synthetic were scored in one job.
    sweep = json.loads((results / "runs/tagllm_p2/dc_synthetic/seed0/metrics.json").read_text())
    assert sweep["prefix_cache"]["reused_examples"] > 0 and not sweep["prefix_cache"]["prefix_forwards"]
    assert (tmp_path / "logs/train_function_tag_family/dc_synthetic_seed0.log").is_file()
    assert (tmp_path / "logs/evaluate_run_family/dc_synthetic_seed0.log").is_file()
    assert (tmp_path / "logs/train_domain_tags_together/seed0.log").is_file()  # the language tags
    # A second run has nothing to do.
    again = snakemake("--cores", "2", "--configfile", "tests/data/tiny.yaml", "-n", cwd=tmp_path)
    assert "Nothing to be done" in again.stdout + again.stderr


def test_paper_preset_on_slurm_lists_every_job_with_gpus():
    result = snakemake("-n", "-F", "--configfile", "presets/paper.yaml", "--profile",
                       "profiles/slurm")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    by_rule: dict[str, list[str]] = {}
    for block in result.stdout.split("\n\n"):
        heads = [line for line in block.splitlines() if line.startswith(("rule ", "localrule "))]
        if heads:
            by_rule.setdefault(heads[0].split()[1].rstrip(":"), []).append(block)
    gpu_rules = ("train_domain_tag", "train_function_tag", "train_baseline", "evaluate_run",
                 "evaluate_direct")
    for rule in (*gpu_rules, "download_source", "prepare_dataset", "evaluate_model_free",
                 "build_tables", "plot_figures", "plot_predictions"):
        assert rule in by_rule, rule
    for rule in gpu_rules:
        for block in by_rule[rule]:
            assert "gpu=1" in block and "slurm_partition=CHANGE_ME_gpu_partition" in block, block
    outputs = result.stdout
    for path in ("results/runs/lora/ba/seed1", "results/runs/tagllm_p50/dc/seed1",
                 "results/runs/enriched/dc/seed1", "results/eval/direct_prompting/translate",
                 "results/tables/table4_ablation.md", "results/figures/tag_length.png"):
        assert path in outputs, path


@pytest.mark.slow
def test_training_rules_launch_torchrun_on_two_stand_in_devices(tmp_path):
    """The launcher a training rule gets with `resources.gpu: 2` (gpu_slots, then torchrun with
    two processes), on a CPU: two stand-in devices (TAGLLM_GPUS), Gloo instead of NCCL."""
    copy_workflow(tmp_path, *TINY)
    (tmp_path / "two.yaml").write_text("resources: {gpu: 2, eval_gpu: 0}\n")
    target = "results/runs/tagllm/qed/seed0/metrics.json"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "TAGLLM_GPUS": "2", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([*SNAKEMAKE, "--cores", "2", "--resources", "gpu=2", "--configfile",
                             "tests/data/tiny.yaml", "two.yaml", "--printshellcmds", target],
                            cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    launch = "python -m tagllm.gpu_slots --gpus 2 -- torchrun --standalone --nproc_per_node=2"
    log = result.stdout + result.stderr
    assert f"{launch} -m tagllm train-function-tag" in log
    assert f"{launch} -m tagllm train-domain-tag" in log
    for seed in (0, 1):  # the headline seeds of tiny.yaml, trained in one job
        metrics = json.loads((tmp_path / f"results/runs/tagllm/qed/seed{seed}/metrics.json")
                             .read_text())
        assert metrics["world_size"] == 2 and metrics["steps"] > 0
    stage1 = json.loads((tmp_path / "results/tags/stage1/SMILES/seed0/metrics.json").read_text())
    assert stage1["world_size"] == 2
