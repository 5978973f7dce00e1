"""The experiment plan (tagllm/plan.py): typed runs, jobs and seeds from a config, run names kept
apart from task names, light imports; and the schema's enums match the Python registries."""

import copy
import subprocess
import sys
from pathlib import Path

import yaml
from snakemake.utils import update_config

from tagllm import gpu_hours
from tagllm.data.kinds import KIND_COLUMNS
from tagllm.data.prepare import KIND_SOURCES
from tagllm.data.table import COLUMN_KINDS, SPLITS
from tagllm.gpu_figures import seed_figures
from tagllm.methods import METHODS
from tagllm.plan import build_plan
from tagllm.preflight import active, load_config
from tagllm.tasks import FIELD_KINDS, KINDS, METRICS

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = yaml.safe_load((ROOT / "config.yaml").read_text())
SCHEMA = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())


def overlaid(*files: str) -> dict:
    config = copy.deepcopy(DEFAULT)
    for name in files:
        update_config(config, yaml.safe_load((ROOT / name).read_text()))
    return active(config)


def test_default_plan_runs_jobs_and_seeds():
    plan = build_plan(active(copy.deepcopy(DEFAULT)))
    assert plan.runs["dc_synthetic"].task.name == "dc"  # a run is not its task
    assert plan.runs["dc_synthetic"].dataset == "dc_synthetic"
    assert plan.regression_runs == ["qed", "descriptor", "dc_synthetic", "ba_synthetic"]
    assert plan.generation_runs == ["translate"]
    assert plan.job_seeds("tagllm", "qed") == [0, 1, 2]
    assert plan.job_seeds("lora", "qed") == [0]
    assert plan.stage1_seed(2) == 0
    # The baselines' budget, Tag-LLM beside it, and the probe on every row.
    assert plan.jobs[("lora", "qed")]["max_examples"] == 24
    assert plan.jobs[("tagllm_budget", "qed")]["max_examples"] == 24
    assert plan.jobs[("linear_probe", "qed")]["max_examples"] == 0
    assert plan.tags_together == ["EN", "FR", "RU", "DE", "IT", "EL", "ES", "PT"]
    # Tables 3-4 are presets/cpu_full.yaml's (below): the default fits 15 minutes on AVX2.
    assert not plan.family_run and not plan.trained_together
    assert {m for m, _ in plan.jobs} == {"tagllm", "tagllm_budget", "linear_probe",
                                         "prompt_tuning", "lora"}
    assert plan.seeded_runs == plan.headline_runs and plan.seeds_together == [0, 1, 2]
    assert "results/eval/copy_source/translate/metrics.json" in plan.eval_metric_files()
    assert len(plan.run_metric_files()) == sum(len(plan.job_seeds(m, r)) for m, r in plan.jobs)


def test_full_cpu_preset_adds_tables_3_and_4_at_tagllm_budget():
    plan = build_plan(overlaid("presets/cpu_full.yaml"))
    assert plan.jobs[("lora_head", "qed")]["max_examples"] == 24  # the baselines' common budget
    # Ablations and sweep on Tag-LLM's own settings: its seed-0 run is the full row and p = 10.
    assert plan.jobs[("tagllm_p50", "dc_synthetic")] == plan.jobs[("tagllm", "dc_synthetic")]
    assert ("tagllm_p10", "dc_synthetic") not in plan.jobs
    # One job for the sweep and the tag-training ablations (Tag-LLM's prompt first: shared
    # prefixes); the enriched and probe ablations train elsewhere, but are scored with them.
    assert plan.trained_together == ["tagllm_p1", "tagllm_p20", "tagllm_p5", "tagllm_p50",
                                     "no_head", "no_domain_tags"]
    assert {"enriched", "no_function_tags"} <= set(plan.evaluated_together)


def test_baselines_seeds_reach_every_row_at_their_budget_but_the_probes():
    plan = build_plan(overlaid("presets/cpu_full.yaml"))  # baselines.seeds: [0, 1, 2]
    for method in ("tagllm_budget", "prompt_tuning", "lora", "lora_head", "prompt_tuning_text"):
        assert plan.job_seeds(method, "qed") == [0, 1, 2], method
    # A probe fits every row in closed form (nothing to draw), and the headline keeps its own.
    assert plan.job_seeds("linear_probe", "qed") == plan.job_seeds("linear_probe_text", "qed") == [0]
    assert plan.job_seeds("tagllm", "qed") == [0, 1, 2]
    assert plan.job_seeds("no_head", "dc_synthetic") == [0]
    assert plan.stage1_seed(2) == 0  # the extra seeds read the first seed's stage-1 tags
    assert "results/eval/lora_head/qed/seed2/metrics.json" in plan.eval_metric_files()
    assert "the rows at the baselines' budget: [0, 1, 2]" in plan.setting("m")


def test_baselines_seeds_reach_tagllm_when_the_baselines_get_its_budget():
    # baselines.train null (the paper's way): Tag-LLM's own run is the row beside the baselines.
    config = overlaid("presets/cpu_full.yaml")
    config["baselines"]["train"] = None
    config["headline"]["runs"] = ["descriptor"]
    plan = build_plan(config)
    assert ("tagllm_budget", "qed") not in plan.jobs
    assert plan.job_seeds("tagllm", "qed") == plan.job_seeds("lora_head", "qed") == [0, 1, 2]
    assert plan.job_seeds("tagllm", "dc_synthetic") == [0]


def test_rows_with_more_seeds_stay_out_of_the_ablation_family():
    # The family jobs train and score one seed; a row on baselines.seeds trains on its own.
    config = overlaid("presets/cpu_full.yaml")
    config["ablations"]["train"] = config["baselines"]["train"]
    config["baselines"]["runs"] = ["dc_synthetic"]
    plan = build_plan(config)
    assert plan.job_seeds("tagllm_budget", "dc_synthetic") == [0, 1, 2]
    assert "tagllm_budget" not in plan.trained_together + plan.evaluated_together
    assert "no_head" in plan.trained_together


def test_captions_name_budget_seeds_only_where_a_row_has_them():
    config = overlaid("presets/cpu_full.yaml")
    config["baselines"]["methods"] = ["linear_probe", "linear_probe_text"]  # nothing to draw
    plan = build_plan(config)
    assert not any(plan.at_baselines_budget(m, r) for m, r in plan.jobs)
    assert "baselines' budget" not in plan.setting("m")


def test_plan_of_an_own_task_keeps_run_and_task_apart():
    plan = build_plan(overlaid("presets/own_task.yaml", "examples/activity/config.yaml"))
    assert list(plan.runs) == ["activity"]
    run = plan.runs["activity"]
    assert run.task.function_tag == "Activity" and run.task.domain_tags == ("Ligand",)
    assert run.task.fields == {"smiles": "smiles"}  # from the table's declared columns
    assert set(plan.jobs) == {("tagllm", "activity"), ("linear_probe", "activity")}
    assert plan.model_free_jobs() == [("train_mean", "activity"),
                                      ("nearest_neighbour", "activity")]


def test_gpu_hours_count_the_seeds_the_plan_trains():
    figures = seed_figures(ROOT / "presets/paper.yaml")
    assert figures["seeds_dc"].value == figures["seeds_ba"].value == 5
    assert figures["seeds_qed"].value == 1
    assert figures["baseline_seeds_qed"].value == figures["baseline_seeds_dc"].value == 1
    # baselines.seeds multiplies the PEFT rows' GPU hours (not the probes'), and Tag-LLM's on the
    # runs where it is the row beside them (the paper preset gives the baselines its budget).
    config = load_config([ROOT / "presets/paper.yaml"], ROOT)
    one = gpu_hours.compute(preset=config)["subtotals"]
    config["baselines"]["seeds"] = [0, 1, 2]
    figures = seed_figures(config)
    assert figures["baseline_seeds_qed"].value == figures["seeds_qed"].value == 3
    three = gpu_hours.compute(preset=config)["subtotals"]
    assert 2.5 * one["baselines"] < three["baselines"] < 3 * one["baselines"]


def test_the_plan_imports_no_model_or_chemistry_library():
    code = ("import sys, tagllm.plan, tagllm.config_check, tagllm.cli; "
            "print(sorted(m for m in ('torch', 'transformers', 'rdkit', 'Bio', 'peptides') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _enum(*path):
    node = SCHEMA
    for part in path:
        node = node[part]
    return node["enum"] if "enum" in node else node["items"]["enum"]


def test_schema_enums_match_the_registries():
    task = SCHEMA["$defs"]["task"]["properties"]
    assert set(task["kind"]["enum"]) == set(KINDS)
    assert set(task["metric"]["enum"]) == {m for ms in METRICS.values() for m in ms}
    assert set(task["fields"]["additionalProperties"]["enum"]) == set(FIELD_KINDS)
    dataset = SCHEMA["$defs"]["dataset"]["properties"]
    assert set(dataset["kind"]["enum"]) == set(KIND_SOURCES) == {*KIND_COLUMNS, "table"}
    assert set(dataset["source"]["enum"]) == {s for ss in KIND_SOURCES.values() for s in ss}
    assert set(dataset["columns"]["additionalProperties"]["enum"]) == set(COLUMN_KINDS)
    assert set(dataset["split"]["enum"]) == set(SPLITS)
    baselines = _enum("properties", "baselines", "properties", "methods")
    assert set(baselines) <= set(METHODS)
    assert all(METHODS[m].trainer in ("adapter", "probe") for m in baselines)
    ablations = _enum("properties", "ablations", "properties", "methods")
    assert set(ablations) <= set(METHODS)
