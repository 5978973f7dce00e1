"""Your own task, end to end: a CSV with user-named columns, a task and a domain tag defined in
config, trained, tabled and applied to new rows by `predict` (workflow and Python API)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.workflow_copy import copy_workflow

ROOT = Path(__file__).resolve().parents[1]

TEMPLATE = ("# # Input: The molecule is <Mol> {smiles}, called {name}. \n"
            "# # Output: Its ring atoms number <Rings>")
# Labels of our choosing: the number of ring atoms, a property a SMILES tag can learn.
OVERLAY = """
model: {name: tiny_random, source: tiny-random, dtype: float32}
tag_length: 4
domain_tags:
  Mol: {char_level: true}
tasks:
  rings:
    template: TEMPLATE
    label: ring_atoms
    metric: mae
data:
  mine:
    kind: table
    source: file
    path: my_data/molecules.csv
    columns: {smiles: smiles, name: text, ring_atoms: number}
    split: scaffold
    test_fraction: 0.25
stage1:
  Mol:
    dataset: mine
    column: smiles
    train: {epochs: 1, lr: 0.01, batch_size: 4, grad_accum: 1, max_examples: 8}
stage2:
  my_rings:
    task: rings
    dataset: mine
    train: {epochs: 2, lr: 0.01, batch_size: 4, grad_accum: 1, standardize_labels: true,
            head_init: probe, head_refit: true}
headline: {runs: [my_rings], seeds: [0], baselines: [linear_probe]}
baselines: {runs: [], methods: [], train: null, nearest_neighbour: [my_rings],
            direct_prompting: []}
predict:
  new_rows: {run: my_rings, input: my_data/new.csv}
# float32 forced: `auto` times the CPU, and the Python call below must match the rule's numbers.
evaluate: {batch_size: 8, max_test_rows: 0, max_new_tokens: 8, cpu_bf16_inference: false}
"""


def molecules() -> list[str]:
    lines = (ROOT / "tests/data/molecules.smi").read_text().splitlines()
    return [line.split()[0] for line in lines if line.strip()]


def write_fixture(folder: Path) -> None:
    from rdkit import Chem

    rows = []
    for i, smiles in enumerate(molecules()):
        mol = Chem.MolFromSmiles(smiles)
        if mol is None:  # the file's own broken rows: two of ours below
            continue
        rows.append({"name": f"m{i}", "smiles": smiles,
                     "ring_atoms": str(sum(atom.IsInRing() for atom in mol.GetAtoms()))})
    rows.insert(3, {"name": "broken", "smiles": "C1CC(", "ring_atoms": "3"})  # rejected
    rows.insert(5, {"name": "unlabelled", "smiles": "CCO", "ring_atoms": "n/a"})  # rejected
    (folder / "my_data").mkdir()
    pd.DataFrame(rows).to_csv(folder / "my_data/molecules.csv", index=False)
    new = pd.DataFrame({"name": ["aspirin", "typo", "benzene", "benzene"],
                        "smiles": ["CC(=O)Oc1ccccc1C(=O)O", "c1ccccc1C(=O", "c1ccccc1",
                                   "c1ccccc1"],
                        "note": ["kept", "as", "it", "is"]})
    new.to_csv(folder / "my_data/new.csv", index=False)


def snakemake(folder: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=folder,
                          capture_output=True, text=True, timeout=600, env=env)


def test_own_task_preset_switches_off_every_default_entry():
    default = yaml.safe_load((ROOT / "config.yaml").read_text())
    own = yaml.safe_load((ROOT / "presets/own_task.yaml").read_text())
    for section in ("data", "stage1", "stage2", "stage3"):
        assert own[section] == dict.fromkeys(default[section]), section
    assert own["headline"] is own["baselines"] is own["ablations"] is None


@pytest.mark.slow
def test_own_task_from_a_csv_to_predictions(tmp_path):
    copy_workflow(tmp_path, "presets")
    write_fixture(tmp_path)
    (tmp_path / "mine.yaml").write_text(OVERLAY.replace("TEMPLATE", json.dumps(TEMPLATE)))
    result = snakemake(tmp_path, "--cores", "2", "--configfile", "presets/own_task.yaml",
                       "mine.yaml")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results = tmp_path / "results"

    report = json.loads((results / "data/mine/report.json").read_text())
    assert report["rejected"] == {"invalid_smiles": 1, "nan_label": 1}
    assert report["kept"] + 2 + report["not_sampled"] == report["rows_in"]
    run = json.loads((results / "runs/tagllm/my_rings/seed0/run.json").read_text())
    assert run["task_spec"]["name"] == "rings" and run["task_spec"]["function_tag"] == "Rings"
    assert run["task_spec"]["fields"] == {"smiles": "smiles", "name": "text"}
    assert run["task_spec"]["domain_tags"] == ["Mol"]
    tags = json.loads((results / "tags/stage1/Mol/seed0/tags.json").read_text())
    assert [t["name"] for t in tags["tags"]] == ["Mol"]
    metrics = json.loads((results / "eval/tagllm/my_rings/seed0/metrics.json").read_text())
    assert metrics["task"] == "rings" and metrics["run"] == "my_rings" and metrics["metric"] == "mae"
    table = (results / "tables/table2_tasks.md").read_text()
    assert "my_rings mae (ours)" in table
    summary = pd.read_csv(results / "tables/summary.csv")
    assert {"tagllm", "linear_probe", "train_mean", "nearest_neighbour"} <= \
        set(summary[summary.run == "my_rings"].method)

    predicted = pd.read_parquet(results / "predictions/new_rows/predictions.parquet")
    assert list(predicted.columns) == ["name", "smiles", "note", "prediction", "rejected"]
    assert predicted["name"].tolist() == ["aspirin", "typo", "benzene", "benzene"]
    assert predicted["rejected"][1].startswith("invalid_smiles: smiles:")
    assert predicted["prediction"].isna().tolist() == [False, True, False, False]
    assert predicted["prediction"][2] == pytest.approx(predicted["prediction"][3])
    summary = json.loads((results / "predictions/new_rows/report.json").read_text())
    assert summary["rows"] == 4 and summary["predicted"] == 3
    assert summary["rejected"] == {"invalid_smiles": 1}

    # The same from Python, on rows without a name column: a clear error; then with it.
    import tagllm
    from tagllm.errors import UserError

    trained = tagllm.load_run(results / "runs/tagllm/my_rings/seed0", cpu_bf16_inference="false")
    with pytest.raises(UserError, match="no column 'name', which task rings reads"):
        trained.predict([{"smiles": "CCO"}])
    rows = trained.predict([{"smiles": "c1ccccc1", "name": "benzene"}])
    assert rows["prediction"][0] == pytest.approx(predicted["prediction"][2], rel=1e-4)
