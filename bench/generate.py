"""Greedy decoding throughput, measured side by side: our batched decoding with the KV cache against
decoding one example at a time (what the authors' evaluation does) and HF `generate` one at a time.

    python bench/generate.py [--model results/models/smollm2_135m_instruct | --model tiny]
                             [--batch 16] [--new-tokens 24] [--rounds 3] [--json out.json]

Every path decodes the same prompts for exactly `--new-tokens` tokens (no early stop, so each does
the same work) and reports generated tokens per second, the median over `--rounds`. Ratios:
`batched_vs_one_at_a_time` (target >= 4 at batch 16) and `batched_vs_hf_generate`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from tagllm.batching import collate, splice_tags
from tagllm.generate import greedy_decode
from tagllm.precision import cpu_identity, describe_cpu
from tagllm.tags import TagTable
from tagllm.train import Base

SENTENCES = [
    "The file could not be saved because the disk is full.", "Enter a valid email address.",
    "This field is required.", "Ensure this value has at most 100 characters.",
    "Select a valid choice. That choice is not one of the available choices.",
    "The password is too similar to the username.", "Log in again", "Change password",
    "Please correct the errors below.", "Are you sure you want to delete the selected objects?",
    "Your password was changed.", "The two password fields did not match.",
    "Enter a whole number.", "Upload a valid image.", "Thanks for spending some quality time today.",
    "Recent actions",
]
TEMPLATE = "Translate from English to French.\n# # Input: {src} \n# # Output:"


def load_base(model: str, bf16: bool) -> Base:
    if model == "tiny":
        from tagllm.model_sources import prepare_model

        model = str(prepare_model("tiny-random", Path(tempfile.mkdtemp()) / "tiny"))
    return Base.load(model, "float32", "cpu", cpu_bf16_inference=bf16)


def median_seconds(run, rounds: int) -> float:
    run()  # warm-up
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="results/models/smollm2_135m_instruct")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cpu-bf16-inference", action=argparse.BooleanOptionalAction,
                        default=False, help="decode under bf16 autocast (as the embedded default)")
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    base = load_base(args.model, args.cpu_bf16_inference)
    tags = TagTable(base.info)
    encoder = base.encoder(tags, frozenset())
    prompts = [encoder.encode(TEMPLATE, {"src": SENTENCES[i % len(SENTENCES)]})
               for i in range(args.batch)]
    pad = base.tokenizer.pad_token_id
    model = base.model

    def decode(chosen):
        batch = collate(chosen, pad, "left")
        with base.inference_autocast():
            embeds = splice_tags(model.get_input_embeddings(), tags.flat(), batch.input_ids,
                                 batch.slots)
            return greedy_decode(model, embeds, batch, args.new_tokens, set(), pad)

    def hf_generate_one_at_a_time():
        for example in prompts:
            ids = torch.tensor([example.ids])
            with torch.no_grad(), base.inference_autocast():
                model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                               max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens,
                               pad_token_id=pad)

    tokens = args.batch * args.new_tokens
    seconds = {
        "batched": median_seconds(lambda: decode(prompts), args.rounds),
        "one_at_a_time": median_seconds(lambda: [decode([p]) for p in prompts], args.rounds),
        "hf_generate_one_at_a_time": median_seconds(hf_generate_one_at_a_time, args.rounds),
    }
    rates = {name: tokens / s for name, s in seconds.items()}
    result = {
        "model": base.info.model_id, "batch": args.batch, "new_tokens": args.new_tokens,
        "threads": args.threads, "cpu_bf16_inference": args.cpu_bf16_inference,
        "cpu": cpu_identity(),
        "tokens_per_s": rates,
        "batched_vs_one_at_a_time": rates["batched"] / rates["one_at_a_time"],
        "batched_vs_hf_generate": rates["batched"] / rates["hf_generate_one_at_a_time"],
        "target_batched_vs_one_at_a_time": 4.0,
    }
    print(describe_cpu())
    for name, rate in rates.items():
        print(f"{name:28s} {rate:8.1f} generated tokens/s (median of {args.rounds})")
    print(f"batched / one at a time      {result['batched_vs_one_at_a_time']:.2f}x (target >= 4)")
    print(f"batched / HF generate        {result['batched_vs_hf_generate']:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
