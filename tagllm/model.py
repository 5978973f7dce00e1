"""Load a causal LM from a local folder (made by `prepare-model`), freeze it, and describe it.

The base model is never trained: every weight gets `requires_grad=False`, so no weight gradient or
optimiser state is ever allocated for it.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from tagllm.attention import use_direct_attention
from tagllm.errors import UserError
from tagllm.tags import BaseModelInfo

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
SOURCE_FILE = "tagllm_source.json"


def resolve_device(name: str) -> torch.device:
    """`name` (cpu, cuda, cuda:N or auto) as a device this machine has, else a `UserError`."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise UserError(f"--device {name!r}: not a device name (use cpu, cuda, cuda:N or "
                        "auto)") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name!r}: CUDA is not available on this machine (use --device "
                        "cpu or auto)")
    if device.type == "cuda" and device.index is not None and \
            device.index >= torch.cuda.device_count():
        raise UserError(f"--device {name!r}: this machine has {torch.cuda.device_count()} CUDA "
                        "device(s)")
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"--device {name!r}: only cpu and cuda devices are supported")
    return device


def check_model_folder(path: str | Path) -> Path:
    """`path` if it is a model folder, else a `UserError` (transformers would take a missing
    folder for a hub id and fail with a message about repository names)."""
    folder = Path(path)
    if not folder.is_dir():
        raise UserError(f"{folder}: model folder not found (make one with `python -m tagllm "
                        "prepare-model`)")
    if not (folder / "config.json").is_file():
        raise UserError(f"{folder}: not a model folder (no config.json); make one with "
                        "`python -m tagllm prepare-model`")
    return folder


def load_frozen_model(path: str | Path, dtype: str = "float32", device: str = "cpu",
                      trust_remote_code: bool = False) -> tuple[PreTrainedModel, object]:
    """Load model + tokenizer, put the model in eval mode and freeze every weight."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, not {dtype!r}")
    target = resolve_device(device)  # before the slow load, so a wrong device fails at once
    folder = check_model_folder(path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            str(folder), dtype=DTYPES[dtype], trust_remote_code=trust_remote_code
        )
    except (OSError, SafetensorError) as error:  # a folder with some files missing or torn
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"{folder}: cannot load the model ({first_line}); make the folder again "
                        "with `python -m tagllm prepare-model`") from error
    model.to(target)
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
    try:
        model_id = json.loads(source.read_text())["model_id"] if source.is_file() else str(path)
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as error:
        raise UserError(f"{source}: not a readable model description ({error!r}); make the folder "
                        "again with `python -m tagllm prepare-model`") from error
    return BaseModelInfo(model_id=model_id, hidden_size=model.config.hidden_size,
                         vocab_size=model.get_input_embeddings().weight.shape[0])
