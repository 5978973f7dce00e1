"""The paper preset's whole DAG, every rule of it, on a CPU: presets/paper.yaml with an overlay that
swaps only the download URLs (a file:// mirror of fixtures in the real formats, tests/paper_fixtures.py),
the model (a 2-layer random Llama with a SentencePiece tokenizer built locally) and what a CPU needs
(device, threads, no GPUs asked of the scheduler, shorter decoding). Every job of the dry run runs,
the downloads through the real download rule, and every table and figure of the preset is written.

What only a GPU run can show (speed, bf16 numerics of LLaMA-7B, memory, the paper's numbers) is listed
in docs/cluster.md."""

import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml
from paper_fixtures import write_mirror

from tagllm.data.sources import source_files
from tests.workflow_copy import copy_workflow

ROOT = Path(__file__).resolve().parents[1]

PRESET = "presets/paper.yaml"
# What the overlay changes, and nothing else: where the sources and the model come from, and what a
# CPU needs. model.dtype stays the preset's bfloat16 (the tiny model computes in it on a CPU).
OVERLAY = {
    "model": {"name": "tiny_llama_sp", "source": "tiny-random-llama-sp", "hub_id": ""},
    "device": "cpu",
    "threads": 1,
    "resources": {"gpu": 0, "eval_gpu": 0, "mem_mb": 2000, "runtime": 30},
    "evaluate": {"max_new_tokens": 8},
}
TABLES = ("summary", "table1_translation", "table2_tasks", "table3_peft", "table4_ablation",
          "table6_params")
FIGURES = ("headline", "tag_length", "ablation", "loss_curves", "qed_predictions",
           "descriptor_predictions", "dc_predictions", "ba_predictions")


def run(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """`python -m <args>` with this interpreter's environment first on PATH (jobs run `python -m
    tagllm`)."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)


def snakemake(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return run("snakemake", *args, cwd=cwd, timeout=timeout)


def jobs_planned(output: str) -> Counter:
    """Jobs per rule of a dry run's listing."""
    return Counter(re.findall(r"^(?:local)?rule (\w+):$", output, flags=re.MULTILINE))


def jobs_finished(output: str) -> Counter:
    """Jobs per rule that a run's log says finished."""
    return Counter(re.findall(r"^Finished jobid: \d+ \(Rule: (\w+)\)$", output, flags=re.MULTILINE))


@pytest.mark.slow
def test_paper_preset_runs_every_rule_on_a_cpu(tmp_path):
    copy_workflow(tmp_path, "presets")
    mirror = write_mirror(tmp_path / "mirror")
    overlay = tmp_path / "cpu.yaml"
    overlay.write_text(yaml.safe_dump({**OVERLAY, "download_mirror": mirror}))
    configs = ("--configfile", PRESET, str(overlay))

    preset = snakemake("-n", "--configfile", PRESET, cwd=tmp_path)
    dry = snakemake("-n", "--printshellcmds", *configs, cwd=tmp_path)
    for result in (preset, dry):
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    planned = jobs_planned(dry.stdout)
    assert planned == jobs_planned(preset.stdout)  # the overlay leaves the DAG as it is
    assert planned["download_source"] == 12 and planned["train_baseline"] == 33, planned
    assert "--dtype bfloat16" in dry.stdout and "--dtype float32" not in dry.stdout

    done = snakemake("--cores", "2", *configs, cwd=tmp_path, timeout=1800)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-6000:]
    assert jobs_finished(log) == planned

    results = tmp_path / "results"
    for table in TABLES:
        for ext in ("csv", "md"):
            assert (results / "tables" / f"{table}.{ext}").is_file(), (table, ext)
    for figure in FIGURES:
        assert (results / "figures" / f"{figure}.png").is_file(), figure
    # Every source came through the download rule from the mirror, with its provenance.
    downloads = tmp_path / "resources" / "downloads"
    records = list(downloads.rglob("*.source.json"))
    for record in records:
        entry = json.loads(record.read_text())
        url = entry.get("url") or entry.get("archive_url") or entry["shards"][0]["url"]
        assert url.startswith(f"{mirror}/"), (record, url)
    for source in {path.name for path in downloads.iterdir()}:
        assert all((downloads / source / name).is_file() for name in source_files(source))
    # DC and BA: TDC's test files, each row but the one the fixture spoils.
    for name in ("dc", "ba"):
        report = json.loads((results / "data" / name / "report.json").read_text())
        assert report["test_coverage"]["rejected"] == 1, name
    # Pre-flight passes on what the run made: downloads, model, its SentencePiece tokenizer.
    checked = run("tagllm", "preflight", *configs, cwd=tmp_path)
    lines = [line for line in checked.stdout.splitlines() if line.strip()]
    assert checked.returncode == 0 and all(line.startswith("ok") for line in lines), \
        checked.stdout + checked.stderr
    assert any("LlamaTokenizer: one token per character" in line for line in lines)
    again = snakemake("-n", *configs, cwd=tmp_path)
    assert "Nothing to be done" in again.stdout + again.stderr

