"""Shared fixtures: a tiny random Llama with a character tokenizer, built locally (no hub)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tagllm.model_sources import prepare_model
from tagllm.train import Base

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return prepare_model("tiny-random", tmp_path_factory.mktemp("models") / "tiny", seed=0)


@pytest.fixture()
def tiny_base(tiny_model_dir) -> Base:
    torch.manual_seed(0)
    # Forced, so that every test takes the same paths on every CPU (auto is tested on its own).
    return Base.load(tiny_model_dir, "float32", "cpu", cpu_bf16_inference="false")


@pytest.fixture(scope="session")
def qed_dir(tmp_path_factory) -> Path:
    from tagllm.data.prepare import Settings, prepare_dataset

    out = tmp_path_factory.mktemp("data") / "qed"
    prepare_dataset("qed", out, Settings("smi-file", path=str(DATA / "molecules.smi"),
                                         test_fraction=0.2))
    return out
