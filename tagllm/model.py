"""Load a causal LM (hub id or local folder), freeze it, and describe it.

The base model is never trained: every weight gets `requires_grad=False`, so no weight gradient or
optimiser state is ever allocated for it.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from tagllm.attention import use_direct_attention
from tagllm.tags import BaseModelInfo

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
SOURCE_FILE = "tagllm_source.json"


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} was requested but CUDA is not available")
    return torch.device(name)


def load_frozen_model(path: str | Path, dtype: str = "float32", device: str = "cpu",
                      trust_remote_code: bool = False) -> tuple[PreTrainedModel, object]:
    """Load model + tokenizer, put the model in eval mode and freeze every weight."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, not {dtype!r}")
    tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    model = AutoModelForCausalLM.from_pretrained(
        str(path), dtype=DTYPES[dtype], trust_remote_code=trust_remote_code
    )
    model.to(resolve_device(device))
    model.eval()
    freeze(model)
    use_direct_attention(model)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def freeze(model: torch.nn.Module) -> None:
    for parameter in model.parameters():
        parameter.requires_grad_(False)


def model_info(model: PreTrainedModel, path: str | Path) -> BaseModelInfo:
    """Identity of the base model: the id recorded when it was prepared, else the folder name."""
    source = Path(path) / SOURCE_FILE
    model_id = json.loads(source.read_text())["model_id"] if source.is_file() else str(path)
    return BaseModelInfo(model_id=model_id, hidden_size=model.config.hidden_size,
                         vocab_size=model.get_input_embeddings().weight.shape[0])
