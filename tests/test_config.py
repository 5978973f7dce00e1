"""The config schema and checks: the default and the overlays pass; typos, bad values and names
that point nowhere fail before the DAG is built, one line each naming the key."""

import copy
import math
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml
from snakemake.utils import update_config

from tagllm.cli import to_cli_flags
from tagllm.config_check import config_problems
from tagllm.data.kinds import KIND_COLUMNS
from tagllm.tasks import TASKS

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
DEFAULT = yaml.safe_load((ROOT / "config.yaml").read_text())
# The ablations block (off in the default: presets/cpu_full.yaml has it).
ABLATIONS = yaml.safe_load((ROOT / "presets/cpu_full.yaml").read_text())["ablations"]


def validate(config):
    jsonschema.validate(config, SCHEMA, cls=jsonschema.Draft202012Validator)


def test_default_config_is_valid():
    validate(DEFAULT)


@pytest.mark.parametrize("path, key", [((), "devcie"), (("model",), "sorce"),
                                       (("stage2", "qed", "train"), "learning_rate"),
                                       (("data", "qed"), "max_row")])
def test_typo_is_rejected(path, key):
    config = copy.deepcopy(DEFAULT)
    section = config
    for part in path:
        section = section[part]
    section[key] = 1
    with pytest.raises(jsonschema.ValidationError, match=key):
        validate(config)


def test_bad_values_are_rejected():
    config = copy.deepcopy(DEFAULT)
    config["model"]["source"] = "huggingface"
    with pytest.raises(jsonschema.ValidationError):
        validate(config)
    config = copy.deepcopy(DEFAULT)
    config["stage1"]["Smiles"] = config["stage1"].pop("SMILES")
    assert "config stage1.Smiles: 'Smiles' is not a domain tag" in config_problems(config, SCHEMA)[0]
    assert "(did you mean 'SMILES'?)" in config_problems(config, SCHEMA)[0]


def test_train_settings_become_cli_flags():
    flags = to_cli_flags({"lr": 0.001, "standardize_labels": True, "cache_prefix": False})
    assert flags == "--lr 0.001 --standardize-labels --no-cache-prefix"
    with pytest.raises(ValueError, match="unknown training setting 'learning_rate'"):
        to_cli_flags({"learning_rate": 1})


# config_problems: every problem one line naming its key, before the DAG is built.
def problems(change):
    config = copy.deepcopy(DEFAULT)
    change(config)
    found = config_problems(config, SCHEMA)
    assert all("\n" not in line and line.startswith("config") for line in found), found
    return found


def test_default_config_and_presets_have_no_problems():
    assert config_problems(DEFAULT, SCHEMA) == []
    for overlay in ("presets/paper.yaml", "presets/mistral.yaml", "presets/cpu_full.yaml",
                    "tests/data/tiny.yaml"):
        config = copy.deepcopy(DEFAULT)
        update_config(config, yaml.safe_load((ROOT / overlay).read_text()))
        assert config_problems(config, SCHEMA) == [], overlay


def test_schema_errors_name_the_nested_key():
    def nested_typo(c):
        c["stage2"]["qed"]["train"]["epoch"] = 2

    def top_typo(c):
        c["devcie"] = "cpu"

    def kind_source(c):
        c["data"]["qed"]["source"] = "django"

    def no_source(c):
        c["data"]["extra"] = {"kind": "text", "lang": "en"}

    def tag_name(c):
        c["stage1"]["Smiles"] = c["stage1"].pop("SMILES")

    assert problems(nested_typo) == [
        "config stage2.qed.train: unknown key 'epoch' (did you mean 'epochs'?)"]
    assert problems(top_typo) == ["config: unknown key 'devcie' (did you mean 'device'?)"]
    assert problems(kind_source) == ["config data.qed.source: 'django' is not one of rdkit-nci, "
                                     "smi-file, binding-affinity (with kind qed)"]
    assert problems(no_source) == ["config data.extra: missing key 'source'"]
    assert problems(tag_name)[0].startswith("config stage1.Smiles: 'Smiles' is not a domain tag")
    assert problems(tag_name)[0].endswith("(did you mean 'SMILES'?)")


def test_schema_type_errors_show_the_value_not_the_block():
    def scalar_run(c):
        c["stage2"]["qed"] = 5

    def yaml_exponent(c):
        c["stage2"]["qed"]["train"]["lr"] = "1e-4"

    def list_item(c):
        c["baselines"]["methods"].append("lorra")

    assert problems(scalar_run) == ["config stage2.qed: expected a mapping or null, got 5"]
    assert problems(yaml_exponent) == ["config stage2.qed.train.lr: expected a number, got '1e-4' "
                                       "(YAML reads 1e-4 as text: write it with a dot, e.g. 1.0e-4)"]
    [line] = problems(list_item)
    assert line.startswith("config baselines.methods[3]: 'lorra' is not one of linear_probe")
    assert line.endswith("(did you mean 'lora'?)")


@pytest.mark.parametrize("value, spelled", [(math.nan, ".nan"), (math.inf, ".inf"),
                                            (-math.inf, "-.inf")])
def test_non_finite_numbers_are_refused(value, spelled):
    def change(c):
        c["stage2"]["qed"]["train"]["lr"] = value
        c["data"]["qed"]["test_fraction"] = value

    assert problems(change) == [f"config data.qed.test_fraction: {spelled} is not a finite number",
                                f"config stage2.qed.train.lr: {spelled} is not a finite number"]


def test_unknown_and_switched_off_datasets_are_named():
    def unknown(c):
        c["stage2"]["qed"]["dataset"] = "qedd"
        c["data"]["dc_synthetic"]["inputs"]["molecules"] = "molecules"

    def switched_off(c):
        c["data"]["descriptor"] = None

    def wrong_kind(c):
        c["stage2"]["qed"]["dataset"] = "descriptor"

    assert problems(unknown) == [
        "config data.dc_synthetic.inputs.molecules: dataset 'molecules' is not a key of data",
        "config stage2.qed.dataset: dataset 'qedd' is not a key of data (did you mean 'qed'?)"]
    assert problems(switched_off) == [
        "config data.ba_synthetic.inputs.proteins: dataset 'descriptor' is switched off (null) in "
        "data",
        "config stage1.Protein.dataset: dataset 'descriptor' is switched off (null) in data",
        "config stage2.descriptor: dataset 'descriptor' (the run's name: it sets no dataset:) is "
        "switched off (null) in data"]
    assert problems(wrong_kind) == [
        "config stage2.qed: task qed: field {smiles} is not a column of dataset 'descriptor' (kind "
        "descriptor) (columns: id, source_row, sequence, y)"]


def test_stage1_tags_name_a_known_column_and_cover_the_runs():
    def column(c):
        c["stage1"]["SMILES"]["column"] = "smile"

    def missing_tag(c):
        del c["stage1"]["Protein"]

    assert problems(column) == ["config stage1.SMILES.column: 'smile' is not a column of dataset "
                                "'qed' (kind qed: id, source_row, smiles, y) (did you mean "
                                "'smiles'?)"]
    assert problems(missing_tag) == [
        "config stage2.descriptor: task descriptor needs the stage-1 tag Protein, which stage1 "
        "does not define",
        "config stage3.ba_synthetic: task ba needs the stage-1 tag Protein, which stage1 does not "
        "define"]


def test_unknown_and_switched_off_runs_are_named():
    def unknown(c):
        c["headline"]["runs"][0] = "qde"
        c["headline"]["baselines"] = ["linear_prob"]
        c["ablations"] = {**ABLATIONS, "run": "nope"}
        c["stage2"]["tox"] = {"train": {}}

    def switched_off(c):
        c["stage3"]["translate"] = None

    def twice(c):
        c["stage3"]["qed"] = {"task": "qed"}

    def unfit(c):
        c["baselines"]["nearest_neighbour"] = ["dc_synthetic"]
        c["baselines"]["runs"] = ["translate"]
        c["ablations"] = {k: v for k, v in ABLATIONS.items() if k != "enrich_run"}

    assert problems(unknown) == [
        "config stage2.tox: the run's name is not a task, so it needs task: (one of descriptor, "
        "qed, dc, ba, translate)",
        "config headline.runs[0]: 'qde' is not a run (a key of stage2/stage3) (did you mean 'qed'?)",
        "config headline.baselines[0]: 'linear_prob' is not a method (did you mean 'linear_probe'?)",
        "config ablations.run: 'nope' is not a run (a key of stage2/stage3)"]
    assert problems(switched_off) == ["config baselines.direct_prompting[1]: run 'translate' is "
                                      "switched off (null) in stage2/stage3"]
    assert problems(twice) == ["config stage3.qed: run 'qed' is also in stage2"]
    assert problems(unfit) == [
        "config baselines.runs[0]: run 'translate' is not a regression run",
        "config baselines.nearest_neighbour[0]: run 'dc_synthetic' has 2 SMILES or protein "
        "inputs; the nearest neighbour needs exactly one",
        "config ablations: the enriched ablation needs enrich_run (the run whose training enriches "
        "the domain tags)"]


def test_check_tables_match_the_registries():
    from tagllm.data import prepare

    rows = [line.strip("| ").split(" | ") for line in prepare.__doc__.splitlines()
            if line.startswith("| ")]
    table = {kind: tuple(columns.split(", ")) for kind, _, columns in rows[1:]}  # after the header
    assert table == {kind: tuple(columns) for kind, columns in KIND_COLUMNS.items()}
    # Every built-in task reads the columns of the dataset kind it was written for.
    kinds = {"descriptor": "descriptor", "qed": "qed", "dc": "dc", "ba": "ba",
             "translate": "translation"}
    assert set(kinds) == set(TASKS)
    for name, task in TASKS.items():
        columns = KIND_COLUMNS[kinds[name]]
        assert {column: columns[column] for column in task.fields} == dict(task.fields)
        assert columns[task.label] == ("number" if task.kind == "regression" else "text")


def test_dry_run_prints_one_line_and_fails(tmp_path):
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("stage2:\n  qed:\n    train: {epoch: 2, lr: .inf}\n")
    result = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--configfile", str(overlay)],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "config stage2.qed.train: unknown key 'epoch' (did you mean 'epochs'?)\n" in output
    assert "config stage2.qed.train.lr: .inf is not a finite number\n" in output
    assert "Traceback" not in output and "MissingInput" not in output and "{'" not in output


def test_readme_own_data_overlay_plans_its_run_into_the_tables(tmp_path):
    # The README's overlay as it stands (its SMILES path pointed at a file that exists): the run
    # `my_qed` of task `qed` is trained, evaluated under its own name and goes into the tables
    # (tests/test_report.py builds tables from such a run).

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```yaml\n(.*?my_qed.*?)```", readme, re.S)
    assert block, "README: the own-data overlay example (run my_qed) is gone"
    overlay = yaml.safe_load(block.group(1))
    (smi := tmp_path / "my.smi").write_text("CCO ethanol\nc1ccccc1 benzene\n")
    overlay["data"]["my_molecules"]["path"] = str(smi)
    (config := tmp_path / "my.yaml").write_text(yaml.safe_dump(overlay))
    result = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-F", "--configfile",
                             str(config)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    jobs = result.stdout
    assert "--task qed --data results/data/my_molecules/train.parquet" in jobs
    assert "--out-dir results/runs/tagllm/my_qed/seed0" in jobs
    assert "--task qed --name my_qed --test results/data/my_molecules/test.parquet" in jobs
    tables = next(block for block in jobs.split("\n\n") if "rule build_tables:" in block)
    for path in ("results/eval/tagllm/my_qed/seed0/metrics.json",
                 "results/eval/train_mean/my_qed/metrics.json",
                 "results/runs/tagllm/my_qed/seed0/metrics.json"):
        assert path in tables, path
