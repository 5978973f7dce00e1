"""bench/gpu_hours.py: the table adds up, gpu_check's measured tokens/s replace the MFU model, and the
modelled compute hours scale with 1 / MFU."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def gpu_hours():
    spec = importlib.util.spec_from_file_location("gpu_hours", ROOT / "bench" / "gpu_hours.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_hours"] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("gpu_hours", None)


def test_table_sums_to_total(gpu_hours):
    report = gpu_hours.compute()
    total = report["total_gpu_hours"]
    assert total > 0
    assert sum(row["hours"] for row in report["rows"]) == pytest.approx(total)
    assert sum(job["gpu_hours"] for job in report["jobs"]) == pytest.approx(total)
    assert sum(report["subtotals"].values()) == pytest.approx(total)
    assert report["markdown"].startswith("Throughput ESTIMATED")
    # the paper's epochs come from the preset
    assert report["figures"]["epochs_descriptor"]["value"] == 4
    assert report["figures"]["epochs_ba"]["source"].startswith("paper.yaml")


def test_measured_json_replaces_the_mfu_model(gpu_hours, tmp_path, capsys):
    measured = {"shape": "llama-7b", "device": "cuda", "batch": 4, "tokens": 1024,
                "parameters_non_embedding": 6_476_271_616,
                "stage1": {"step_s": 1.0, "tokens_per_s": 4000.0, "tflops": 100.0, "mfu": 0.1},
                "function_tag": {"step_s": 0.3, "tokens_per_s": 12000.0, "tflops": 90.0, "mfu": 0.09},
                "peak_memory_gib": 30.0}
    path = tmp_path / "gpu_check.json"
    path.write_text(json.dumps(measured))
    out = tmp_path / "hours.json"
    assert gpu_hours.main(["--measured-json", str(path), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("Throughput MEASURED")
    assert "4,000 tokens/s" in printed and "12,000 tokens/s" in printed
    report = json.loads(out.read_text())
    assert report["throughput"]["measured"]
    # stage 1 runs forward and backward over every token: exactly the measured stage-1 rate
    job = next(j for j in report["jobs"] if j["stage"] == "1" and j["task"] == "EN")
    assert job["gpu_hours"] == pytest.approx(job["tokens"] / 4000 / 3600)
    # a function-tag job (mostly forward) runs faster per token than stage 1, slower than pure forward
    qed = next(j for j in report["jobs"] if j["stage"] == "2" and j["task"] == "qed")
    per_token = qed["gpu_hours"] * 3600 / qed["tokens"]
    assert 1 / 12000 * 0.9 < per_token < 1 / 4000


def test_doubling_mfu_halves_the_hours(gpu_hours):
    no_decoding = {"decode_step_ms": 0}  # decoding is memory-bound, not FLOP-bound
    slow = gpu_hours.compute(mfu=0.4, overrides=no_decoding)
    fast = gpu_hours.compute(mfu=0.8, overrides=no_decoding)
    assert fast["total_gpu_hours"] == pytest.approx(slow["total_gpu_hours"] / 2)
    with pytest.raises(ValueError, match="unknown figure"):
        gpu_hours.compute(overrides={"no_such_figure": 1})
