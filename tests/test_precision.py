"""The CPU precision decision: bf16 only where the (stubbed) timing says it is clearly faster, forced
settings respected without timing, and the choice recorded in every run's metrics.json."""

import json

import pytest
import torch
from transformers import LlamaConfig

from tagllm import precision
from tagllm.loop import TrainConfig
from tagllm.train import Base, train_function_tag

CONFIG = LlamaConfig(hidden_size=576, intermediate_size=1536, num_attention_heads=9,
                     num_key_value_heads=3)  # SmolLM2-135M's shapes


def stub(float32_ms: float, bf16_ms: float):
    calls = []

    def timer(rows, shapes):
        def one_pass(bf16):
            calls.append((rows, list(shapes), bf16))
            return bf16_ms if bf16 else float32_ms

        return one_pass

    return timer, calls


@pytest.mark.parametrize(("float32_ms", "bf16_ms", "expected"), [
    (30.0, 10.0, True),   # bf16 units (AMX, AVX512-BF16): 3x faster
    (10.0, 60.0, False),  # AVX2 only: emulated bf16, 6x slower
    (11.0, 10.0, False),  # a near tie is not "clearly faster"
    (12.5, 10.0, True),   # exactly the required speed-up
])
def test_auto_takes_bf16_only_when_clearly_faster(float32_ms, bf16_ms, expected):
    timer, calls = stub(float32_ms, bf16_ms)
    choice = precision.choose("auto", "cpu", CONFIG, timer)
    assert choice.bf16 is expected
    assert (choice.float32_ms, choice.bf16_ms) == (float32_ms, bf16_ms)
    # A warm-up each way, then rounds that alternate the two.
    assert [bf16 for *_, bf16 in calls] == [False, True] * (precision.REPEATS + 1)
    assert calls[0][1] == [(576, 576), (192, 576), (192, 576), (576, 576), (1536, 576),
                           (1536, 576), (576, 1536)]  # the model's own projections
    recorded = choice.to_json()
    assert recorded["speedup"] == pytest.approx(float32_ms / bf16_ms)
    assert recorded["setting"] == "auto" and "measured" in recorded["reason"]
    assert {"model", "capability", "bf16_units", "threads"} <= set(recorded["cpu"])


@pytest.mark.parametrize(("setting", "expected"), [("true", True), ("false", False),
                                                   (True, True), (False, False)])
def test_forced_settings_are_respected_without_timing(setting, expected):
    timer, calls = stub(1.0, 100.0)  # timing would say the opposite of "true"
    choice = precision.choose(setting, "cpu", CONFIG, timer)
    assert choice.bf16 is expected and calls == []
    assert "forced" in choice.reason and choice.float32_ms is None


def test_gpus_do_not_take_the_cpu_setting():
    timer, calls = stub(100.0, 1.0)
    choice = precision.choose("auto", torch.device("cuda"), CONFIG, timer)
    assert not choice.bf16 and calls == []


def test_bad_settings_fail_with_the_choices():
    with pytest.raises(ValueError, match="auto"):
        precision.choose("fast", "cpu", CONFIG)


def test_large_layers_are_timed_at_a_capped_size():
    big = LlamaConfig(hidden_size=4096, intermediate_size=11008, num_attention_heads=32)
    assert max(max(shape) for shape in precision.layer_shapes(big)) == precision.MAX_TIMED_DIM


def test_real_timing_runs_and_loaded_bases_record_it(tiny_model_dir):
    assert precision.time_products(8, [(16, 32)])(True) > 0
    base = Base.load(tiny_model_dir, "float32", "cpu", cpu_bf16_inference="auto")
    assert base.precision.setting == "auto" and base.precision.float32_ms is not None
    assert base.cpu_bf16_inference is base.precision.bf16


def test_choice_is_recorded_in_metrics(tiny_model_dir, qed_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(precision, "time_products",
                        lambda rows, shapes: lambda bf16: 1.0 if bf16 else 3.0)
    train_function_tag(tiny_model_dir, "qed", qed_dir / "train.parquet", [], tmp_path, 2,
                       TrainConfig(epochs=1, batch_size=8, max_examples=8),
                       method_name="no_domain_tags")
    recorded = json.loads((tmp_path / "metrics.json").read_text())["precision"]
    assert recorded["bf16"] and recorded["speedup"] == pytest.approx(3.0)
    assert recorded["cpu"]["capability"] == torch.backends.cpu.get_cpu_capability()
    assert recorded["model_dtype"] == "float32"


def test_a_resumed_run_keeps_the_precision_it_started_with(tiny_model_dir, tmp_path):
    from tagllm import checkpoint

    checkpoint.save(tmp_path, {"fingerprint": "x", "extra": {"bf16": True}})
    base = Base.load(tiny_model_dir, "float32", "cpu", cpu_bf16_inference="false")
    base.resume_precision([tmp_path / "no_checkpoint_here", tmp_path])
    assert base.precision.bf16 and "resumed" in base.precision.reason
    from tagllm import attention

    assert base.model.config._attn_implementation == attention.NAME  # the half path follows
