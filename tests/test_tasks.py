"""Tasks and domain tags as data (tagllm/tasks.py): a spec is checked as it is built, travels as
JSON, and the config's tasks (new ones, or a built-in one redefined) reach the plan, the checks,
the tables and evaluation."""

import copy
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tagllm.config_check import config_problems
from tagllm.errors import UserError
from tagllm.plan import build_plan
from tagllm.report import long_rows, run_metric
from tagllm.scoring import evaluate_train_mean, write_translation
from tagllm.tasks import TASKS, build_task, get_task, is_builtin, registry, task_from_json

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = yaml.safe_load((ROOT / "config.yaml").read_text())
SCHEMA = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
COLUMNS = {"smiles": "smiles", "name": "text", "logS": "number"}
TEMPLATE = "The molecule <SMILES> {smiles} is called {name}. Its solubility is <Sol>"


def test_builtin_tasks_round_trip_through_their_json():
    for name, task in TASKS.items():
        again = task_from_json(json.loads(json.dumps(task.to_json())))
        assert again == task and again.to_json() == task.to_json() and is_builtin(again), name


def test_a_task_is_built_from_its_template_and_its_dataset_columns():
    task = build_task("sol", {"template": TEMPLATE, "label": "logS"}, {"SMILES"}, COLUMNS)
    assert (task.domain_tags, task.function_tag, task.stage) == (("SMILES",), "Sol", 2)
    assert task.fields == {"smiles": "smiles", "name": "text"}  # the dataset's kinds
    assert task.char_fields == {"smiles"} and task.columns() == ["smiles", "name", "logS"]
    assert task.column_kinds() == {"smiles": "smiles", "name": "text", "logS": "number"}
    assert not is_builtin(task)


@pytest.mark.parametrize("spec, columns, message", [
    ({"template": "<SMILES> {smiles} is <Sol> here"}, COLUMNS, "must end with its function tag"),
    ({"template": "<Mol> {smiles} <Sol>", "label": "logS"}, COLUMNS, "unknown domain tag Mol"),
    ({"template": "<SMILES> {smile} <Sol>", "label": "logS"}, COLUMNS,
     "field {smile} is not a column of its dataset"),
    ({"template": "<SMILES> {smiles} <Sol>", "label": "name"}, COLUMNS,
     "label 'name' is a text column; a regression task's label is a number column"),
    ({"template": "<SMILES> {smiles} <SMILES>"}, None, "is the name of a domain tag"),
    ({"template": "<SMILES> {smiles} <Sol>", "metric": "chrf"}, None, "metric is one of mse"),
    ({"template": "<SMILES> {smiles} <Sol>"}, None, "field {smiles} needs a kind"),
    ({"template": "<SMILES> {smiles} <Sol>", "group_by": ["name"], "fields": {"smiles": "smiles"}},
     None, "group_by scores a generation task per group"),
    ({"template": "<{lang}> {text} <Say>", "kind": "generation", "fields": {"lang": "text",
                                                                            "text": "text"}},
     None, "lists the domain tags its rows may name"),
    ({"template": "<SMILES> {smiles} <Sol>", "templat": "x"}, None, "unknown key templat"),
    ({"template": "<SMILES> {smiles} <Sol>", "function_tag": "QED",
      "fields": {"smiles": "smiles"}}, None, "is not the tag its template ends with"),
])
def test_a_bad_spec_is_refused_with_the_reason(spec, columns, message):
    with pytest.raises(UserError, match="task sol: ") as error:
        build_task("sol", spec, {"SMILES", "EN"}, columns)
    assert message in str(error.value)


def test_row_tags_name_a_domain_tag_per_row():
    task = get_task("translate")
    assert task.prompt({"src_lang": "el", "tgt_lang": "EN"}).startswith("# # Input: <EL> {src}")
    with pytest.raises(UserError, match="src_lang 'zh' names no domain tag"):
        task.prompt({"src_lang": "zh", "tgt_lang": "en"})
    assert task.source_text() == "src"


def test_a_config_task_replaces_a_builtin_one_and_keeps_its_runs():
    config = copy.deepcopy(DEFAULT)
    config["tasks"] = {"qed": {"template": "Druglike? <SMILES> {smiles} <QED>", "metric": "mae"}}
    tasks = registry(config)
    assert tasks.task("qed").metric == "mae" and not is_builtin(tasks.task("qed"))
    assert tasks.task("dc_synthetic").name == "dc"  # aliases still resolve
    assert build_plan(config).runs["qed"].task.metric == "mae"
    assert config_problems(config, SCHEMA) == []


def problems(change):
    config = copy.deepcopy(DEFAULT)
    change(config)
    return config_problems(config, SCHEMA)


def test_config_tasks_and_predict_entries_are_checked_one_line_each():
    def bad_template(c):
        c["tasks"] = {"sol": {"template": "<SMILES> {smiles} is <Sol> here"}}
        c["stage2"]["sol"] = {"dataset": "qed"}

    def wrong_column(c):
        c["tasks"] = {"sol": {"template": "<SMILES> {smile} <Sol>"}}
        c["stage2"]["sol"] = {"dataset": "qed"}

    def untrained(c):
        c["predict"] = {"new": {"run": "qed", "input": "new.csv", "method": "no_head"}}

    def baseline_seed(c):
        c["predict"] = {"new": {"run": "qed", "input": "new.csv", "method": "lora", "seed": 1}}

    def wrong_seed(c):
        c["predict"] = {"new": {"run": "descriptor", "input": "new.csv", "seed": 7}}

    def unknown_run(c):
        c["predict"] = {"new": {"run": "qde", "input": "new.csv"}}

    assert problems(bad_template) == [
        "config tasks.sol: the template must end with its function tag, e.g. '... is <Sol>'"]
    assert problems(wrong_column) == [
        "config tasks.sol: field {smile} is not a column of dataset 'qed' (kind qed) (columns: "
        "id, source_row, smiles, y)"]
    assert problems(untrained)[0].startswith(
        "config predict.new.method: 'no_head' is not trained on run 'qed' (trained there: ")
    # Tag-LLM has the headline seeds on qed, a baseline only `seeds`.
    assert problems(baseline_seed) == [
        "config predict.new.seed: lora on qed is trained with seeds 0, not 1"]
    assert problems(wrong_seed) == [
        "config predict.new.seed: tagllm on descriptor is trained with seeds 0, 1, 2, not 7"]
    assert problems(unknown_run) == [
        "config predict.new.run: 'qde' is not a run (a key of stage2/stage3) (did you mean 'qed'?)"]


def test_a_generation_task_without_groups_is_scored_as_a_whole(tmp_path):
    task = build_task("caption", {"template": "<EN> {text} <Caption>", "kind": "generation",
                                  "metric": "chrf", "label": "caption"},
                      {"EN"}, {"text": "text", "caption": "text"})
    frame = pd.DataFrame({"text": ["a b", "c d"], "caption": ["a b", "x y"]})
    metrics = write_translation(frame, ["a b", "c d"], task, "mine", "tagllm", "m", tmp_path)
    assert metrics["directions"] == {} and metrics["task_spec"]["name"] == "caption"
    summary = long_rows([metrics])
    assert set(summary.metric) >= {"chrf", "bleu"} and summary.direction.isna().all()
    assert run_metric(summary, "mine") == "chrf"
    assert summary[summary.metric == "chrf"].headline.item()


def test_scores_carry_the_task_spec_and_tdc_per_tissue_mae(tmp_path):
    train, test = tmp_path / "train.parquet", tmp_path / "test.parquet"
    pd.DataFrame({"drug1": ["a"] * 2, "smiles1": ["C"] * 2, "drug2": ["b"] * 2,
                  "smiles2": ["O"] * 2, "y": [1.0, 3.0]}).to_parquet(train)
    pd.DataFrame({"drug1": ["a"] * 3, "smiles1": ["C"] * 3, "drug2": ["b"] * 3,
                  "smiles2": ["O"] * 3, "y": [0.0, 4.0, 6.0],
                  "target_class": ["lung", "skin", "lung"]}).to_parquet(test)
    metrics = evaluate_train_mean("dc", train, test, tmp_path / "out", name="my_dc")
    assert metrics["task_spec"] == get_task("dc").to_json() and metrics["metric"] == "mae"
    # The mean 2.0 against lung's 0 and 6 (MAE 3) and skin's 4 (MAE 2).
    assert metrics["mae_by_target_class"] == {"lung": 3.0, "skin": 2.0}
    saved = json.loads((tmp_path / "out/metrics.json").read_text())
    assert saved["mae_by_target_class"] == {"lung": 3.0, "skin": 2.0}
