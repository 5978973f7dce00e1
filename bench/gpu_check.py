"""Throughput and model-FLOPs utilisation of the stage-1 and function-tag steps on a LLaMA-7B-shaped
model with random weights (no download; run by bench/gpu_check.sh).

    python bench/gpu_check.py [--device cuda] [--shape llama-7b|tiny] [--batch 4] [--tokens 1024]

FLOPs count the matmuls of the frozen model: 2N per token forward and 2N per token backward
(activation gradients only; the weights are frozen, so there are no weight gradients), N = parameters
outside the embeddings; attention-score FLOPs are left out. MFU = achieved / --peak-tflops
(default 989, the H100/H200 dense bf16 peak).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from tagllm.attention import use_direct_attention
from tagllm.model import freeze
from tagllm.model_sources import char_tokenizer
from tagllm.objectives import PrefixStore, lm_loss, regression_hidden
from tagllm.precision import cpu_identity, describe_cpu
from tagllm.prompts import NO_SLOT, Encoded
from tagllm.tags import BaseModelInfo, TagTable
from tagllm.train import Base

SHAPES = {
    "llama-7b": {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
                 "num_attention_heads": 32, "num_key_value_heads": 32, "vocab_size": 32000},
    "tiny": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 4, "vocab_size": 32000},
}


def build(shape: str, device: str) -> Base:
    config = LlamaConfig(**SHAPES[shape], max_position_embeddings=4096, pad_token_id=0)
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    with torch.device(device):
        model = LlamaForCausalLM(config).to(dtype)
    model.eval()
    freeze(model)
    use_direct_attention(model)  # as load_frozen_model does
    tokenizer = char_tokenizer()
    info = BaseModelInfo(f"random-{shape}", config.hidden_size, config.vocab_size)
    return Base(model, tokenizer, info)


def examples(batch: int, tokens: int, p: int, tags: TagTable, function: bool) -> list[Encoded]:
    offsets = tags.offsets()
    out = []
    for _ in range(batch):
        ids = torch.randint(10, 32000, (tokens,)).tolist()
        slots = [NO_SLOT] * tokens
        ids[0:0], slots[0:0] = [0] * p, list(range(offsets["D"], offsets["D"] + p))
        if function:
            ids += [0] * p
            slots += list(range(offsets["F"], offsets["F"] + p))
        out.append(Encoded(tuple(ids), tuple(slots), len(ids) - 1 if function else p - 1,
                           len(ids)))
    return out


def timed(step, device: str, repeats: int) -> float:
    step()  # warm-up
    timings = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        started = time.perf_counter()
        step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--shape", default="llama-7b", choices=sorted(SHAPES))
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=1024)
    parser.add_argument("--tag-length", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--peak-tflops", type=float, default=989.0)
    parser.add_argument("--json", default="")
    args = parser.parse_args()

    base = build(args.shape, args.device)
    n_params = sum(p.numel() for name, p in base.model.named_parameters() if "embed" not in name)
    tags = TagTable(base.info)
    tags.add_new("D", "domain", 1, args.tag_length, base.embeddings(), run="gpu_check")
    tags.add_new("F", "function", 2, args.tag_length, base.embeddings(), run="gpu_check")
    tags.to(base.device)
    head = torch.nn.Linear(base.info.hidden_size, 1, bias=False).to(base.device)
    stage1 = examples(args.batch, args.tokens, args.tag_length, tags, function=False)
    function = examples(args.batch, args.tokens, args.tag_length, tags, function=True)

    def stage1_step() -> None:
        tags.set_trainable("D", True)
        tags.set_trainable("F", False)
        with base.autocast():
            lm_loss(base, tags, stage1).backward()

    def function_step() -> None:
        tags.set_trainable("D", False)
        tags.set_trainable("F", True)
        with base.autocast():
            hidden = regression_hidden(base, tags, function, PrefixStore(0))
            head(hidden.float()).pow(2).mean().backward()

    results = {"shape": args.shape, "device": args.device, "batch": args.batch,
               "tokens": args.tokens, "parameters_non_embedding": n_params,
               "cpu": cpu_identity()}
    if args.device.startswith("cuda"):
        results["gpu"] = torch.cuda.get_device_name(torch.device(args.device))
        print(f"GPU: {results['gpu']}")
    print(describe_cpu())
    seq = args.tokens + args.tag_length
    for name, step, fwd_tokens, bwd_tokens in (
            ("stage1", stage1_step, args.batch * seq, args.batch * seq),
            ("function_tag", function_step, args.batch * (seq + args.tag_length),
             args.batch * args.tag_length)):
        seconds = timed(step, args.device, args.repeats)
        flops = 2 * n_params * (fwd_tokens + bwd_tokens)
        results[name] = {"step_s": seconds, "tokens_per_s": fwd_tokens / seconds,
                         "tflops": flops / seconds / 1e12,
                         "mfu": flops / seconds / (args.peak_tflops * 1e12)}
        print(f"{name:13s} {seconds * 1000:9.1f} ms/step {fwd_tokens / seconds:10.0f} tokens/s "
              f"{flops / seconds / 1e12:8.2f} TFLOP/s  MFU {results[name]['mfu']:.1%}")
    if args.device.startswith("cuda"):
        results["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
        print(f"peak GPU memory {results['peak_memory_gib']:.1f} GiB")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
