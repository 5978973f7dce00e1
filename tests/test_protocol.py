"""The three-stage protocol on the tiny model: enrichment, generation tasks, resume after SIGKILL,
and the torchrun code path with one process."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from tagllm.loop import TrainConfig
from tagllm.train import train_domain_tag, train_function_tag

FAST = {"epochs": 2, "lr": 1e-2, "batch_size": 4, "grad_accum": 1, "log_every": 1}


@pytest.fixture(scope="module")
def smiles_tag(tiny_model_dir, qed_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("s1") / "SMILES"
    train_domain_tag(tiny_model_dir, qed_dir / "train.parquet", "smiles", "SMILES", out, 4,
                     TrainConfig(**FAST, checkpoint_every=0))
    return out


def text_file(tmp_path, qed_dir):
    path = tmp_path / "smiles_text.parquet"
    pd.read_parquet(qed_dir / "train.parquet").rename(columns={"smiles": "text"}).to_parquet(path)
    return path


def test_enrichment_updates_the_domain_tag_and_freezing_keeps_it(smiles_tag, tiny_model_dir,
                                                                  qed_dir, tmp_path):
    stage1 = load_file(str(smiles_tag / "tags.safetensors"))["SMILES"]
    enrich = {"SMILES": str(text_file(tmp_path, qed_dir))}
    frozen = train_function_tag(tiny_model_dir, "qed", qed_dir / "train.parquet", [smiles_tag],
                                tmp_path / "frozen", 4, TrainConfig(**FAST), enrich_data=enrich)
    enriched = train_function_tag(tiny_model_dir, "qed", qed_dir / "train.parquet", [smiles_tag],
                                  tmp_path / "enriched", 4, TrainConfig(**FAST, enrich=True),
                                  enrich_data=enrich)
    assert torch.equal(load_file(str(tmp_path / "frozen/tags.safetensors"))["SMILES"], stage1)
    assert not torch.equal(load_file(str(tmp_path / "enriched/tags.safetensors"))["SMILES"], stage1)
    hidden = stage1.shape[1]
    assert frozen["trainable_parameters"] == 4 * hidden + hidden
    assert enriched["trainable_parameters"] == 2 * 4 * hidden + hidden
    assert enriched["enriched"] == ["SMILES"] and frozen["enriched"] == []


def translation_data(tmp_path):
    rows = [{"src_lang": a, "tgt_lang": b, "src": f"{a} text {i}", "tgt": f"{b} text {i}"}
            for i in range(6) for a, b in (("en", "fr"), ("fr", "en"))]
    path = tmp_path / "translation.parquet"
    pd.DataFrame(rows).to_parquet(path)
    return path


def test_translate_trains_on_target_text_with_language_tags(tiny_model_dir, tmp_path):
    lang_dirs = []
    text = tmp_path / "text.parquet"
    pd.DataFrame({"text": ["hello there", "bonjour"] * 4}).to_parquet(text)
    for lang in ("EN", "FR", "RU", "DE", "IT", "EL", "ES", "PT"):
        folder = tmp_path / lang
        train_domain_tag(tiny_model_dir, text, "text", lang, folder, 4,
                         TrainConfig(epochs=1, batch_size=8, checkpoint_every=0))
        lang_dirs.append(folder)
    metrics = train_function_tag(tiny_model_dir, "translate", translation_data(tmp_path),
                                 lang_dirs, tmp_path / "run", 4, TrainConfig(**FAST))
    assert metrics["stage"] == 3 and metrics["prefix_cache"]["enabled"]
    assert metrics["trainable_parameters"] == 4 * 32  # <Translate> only: no head
    assert not (tmp_path / "run" / "head.safetensors").exists()
    assert metrics["loss_curve"][-1]["loss"] < metrics["loss_curve"][0]["loss"]
    # The second epoch reads the prefixes the first kept; one epoch keeps none (nothing rereads).
    assert metrics["prefix_cache"]["kept_bytes"] > 0 and metrics["prefix_cache"]["reused_examples"]
    once = train_function_tag(tiny_model_dir, "translate", translation_data(tmp_path), lang_dirs,
                              tmp_path / "once", 4, TrainConfig(**{**FAST, "epochs": 1}))
    assert once["prefix_cache"]["kept_bytes"] == 0 and once["prefix_cache"]["prefix_forwards"]


@pytest.mark.parametrize("min_shared_saving", [0, 10**6])  # "<EN>" run once for the batch, or not
def test_generation_loss_cached_equals_full(tiny_base, monkeypatch, min_shared_saving):
    from tagllm import forward
    from tagllm.objectives import PrefixStore, generation_loss
    from tagllm.tags import TagTable

    monkeypatch.setattr(forward, "MIN_SHARED_SAVING", min_shared_saving)
    tags = TagTable(tiny_base.info)
    for name in ("EN", "FR"):
        tags.add_new(name, "domain", 1, 3, tiny_base.embeddings(), run="t")
        tags.set_trainable(name, False)
    tags.add_new("Translate", "function", 3, 2, tiny_base.embeddings(), run="t")
    encoder = tiny_base.encoder(tags, frozenset())
    examples = [encoder.encode("<EN> {src} <FR> <Translate>", {"src": s}, target=t)
                for s, t in (("hi", " salut a tous"), ("good morning all", " bonjour"))]
    full = generation_loss(tiny_base, tags, examples, None)
    full.backward()
    full_grad = tags.tags["Translate"].grad.clone()
    tags.tags["Translate"].grad = None
    cached = generation_loss(tiny_base, tags, examples, PrefixStore(10**9))
    cached.backward()
    assert abs(full.item() - cached.item()) < 1e-5 * abs(full.item())
    assert ((tags.tags["Translate"].grad - full_grad).norm() / full_grad.norm()).item() < 1e-5


def run_cli(args, env=None, wait=True):
    command = [sys.executable, "-m", "tagllm", *args]
    if wait:
        return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)


def test_resume_after_sigkill_equals_uninterrupted(smiles_tag, tiny_model_dir, qed_dir, tmp_path):
    common = ["train-function-tag", "--model", str(tiny_model_dir), "--task", "qed", "--data",
              str(qed_dir / "train.parquet"), "--domain-tags", str(smiles_tag), "--tag-length", "4",
              "--epochs", "40", "--batch-size", "2", "--grad-accum", "1", "--lr", "0.01",
              "--checkpoint-every", "5", "--log-every", "50",
              # float32 forced: `auto` times the CPU, which a busy machine can tip between runs
              "--cpu-bf16-inference", "false"]
    whole = run_cli([*common, "--out-dir", str(tmp_path / "whole")])
    assert whole.returncode == 0, whole.stderr[-2000:]

    killed = tmp_path / "killed"
    process = run_cli([*common, "--out-dir", str(killed)], wait=False)
    deadline = time.time() + 120
    while not (killed / "checkpoint.pt").exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert (killed / "checkpoint.pt").exists(), "no checkpoint was written before the kill"
    assert not (killed / "metrics.json").exists(), "the run finished before it could be killed"
    again = run_cli([*common, "--out-dir", str(killed)])
    assert again.returncode == 0, again.stderr[-2000:]
    assert "resuming at step" in again.stderr
    metrics = json.loads((killed / "metrics.json").read_text())
    assert metrics["resumed_from_step"] > 0
    expected = load_file(str(tmp_path / "whole" / "tags.safetensors"))
    got = load_file(str(killed / "tags.safetensors"))
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    assert torch.equal(load_file(str(tmp_path / "whole" / "head.safetensors"))["weight"],
                       load_file(str(killed / "head.safetensors"))["weight"])
    assert not (killed / "checkpoint.pt").exists()  # cleaned up after the run


def free_port() -> int:
    with socket.socket() as handle:
        handle.bind(("127.0.0.1", 0))
        return handle.getsockname()[1]


def test_torchrun_code_path_with_one_process(smiles_tag, tiny_model_dir, qed_dir, tmp_path):
    common = ["train-function-tag", "--model", str(tiny_model_dir), "--task", "qed", "--data",
              str(qed_dir / "train.parquet"), "--domain-tags", str(smiles_tag), "--tag-length", "4",
              "--epochs", "2", "--batch-size", "4", "--checkpoint-every", "0",
              "--cpu-bf16-inference", "false"]  # the same precision in both runs
    plain = run_cli([*common, "--out-dir", str(tmp_path / "plain")])
    env = {**os.environ, "RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1",
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}
    ddp = run_cli([*common, "--out-dir", str(tmp_path / "ddp")], env=env)
    assert plain.returncode == 0 and ddp.returncode == 0, ddp.stderr[-2000:]
    metrics = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert metrics["world_size"] == 1
    a = load_file(str(tmp_path / "plain" / "tags.safetensors"))
    b = load_file(str(tmp_path / "ddp" / "tags.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_torchrun_with_two_processes_on_gloo_equals_one_with_two_accumulated_batches(
        smiles_tag, tiny_model_dir, qed_dir, tmp_path):
    """Two ranks each take every other batch and average their gradients: the same steps as one
    process accumulating those two batches (the frozen base has no gradients to reduce)."""
    common = ["train-function-tag", "--model", str(tiny_model_dir), "--task", "qed", "--data",
              str(qed_dir / "train.parquet"), "--domain-tags", str(smiles_tag), "--tag-length", "4",
              "--epochs", "2", "--batch-size", "4", "--max-examples", "16", "--lr", "0.01",
              "--head-init", "zeros", "--checkpoint-every", "0", "--cpu-bf16-inference", "false"]
    one = run_cli([*common, "--grad-accum", "2", "--out-dir", str(tmp_path / "one")])
    assert one.returncode == 0, one.stderr[-2000:]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc_per_node=2", "-m", "tagllm", *common, "--grad-accum", "1",
                "--out-dir", str(tmp_path / "two")]
    two = subprocess.run(torchrun, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert two.returncode == 0, two.stderr[-3000:]
    metrics = json.loads((tmp_path / "two" / "metrics.json").read_text())
    single = json.loads((tmp_path / "one" / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["steps"] == single["steps"] == 4
    a = load_file(str(tmp_path / "one" / "tags.safetensors"))
    b = load_file(str(tmp_path / "two" / "tags.safetensors"))
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    head_a = load_file(str(tmp_path / "one" / "head.safetensors"))["weight"]
    assert torch.allclose(head_a, load_file(str(tmp_path / "two" / "head.safetensors"))["weight"],
                          atol=1e-5) and head_a.abs().sum() > 0  # trained from zeros


def test_reference_nll_sums_what_the_generation_loss_averages(tiny_base):
    """Each example's reference NLL is its own (batched with longer rows or alone), and their
    sum over the target tokens is the training loss on the same examples."""
    from tagllm.objectives import generation_loss, reference_nll
    from tagllm.tags import TagTable

    tags = TagTable(tiny_base.info)
    for name in ("EN", "FR", "Translate"):
        tags.add_new(name, "domain", 1, 2, tiny_base.embeddings(), run="t")
    encoder = tiny_base.encoder(tags, frozenset())
    examples = [encoder.encode("<EN> {src} <FR> <Translate>", {"src": s}, target=t)
                for s, t in (("hi", " salut a tous"), ("good morning all", " bonjour"),
                             ("a", " b"))]
    batched = reference_nll(tiny_base, tags, examples)
    alone = torch.cat([reference_nll(tiny_base, tags, [e]) for e in examples])
    assert torch.allclose(batched, alone, rtol=1e-5)
    targets = sum(len(e) - e.target_start for e in examples)
    with torch.no_grad():
        mean = generation_loss(tiny_base, tags, examples, None).item()
    assert batched.sum().item() / targets == pytest.approx(mean, rel=1e-5)
    assert (batched > 0).all()
