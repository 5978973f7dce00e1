"""One training step of each path, timed side by side on the same batch (median of several rounds).

    python bench/train_step.py [--model results/models/smollm2_135m_instruct | --model tiny]
                               [--dtype float32 bfloat16 autocast] [--batch 8] [--tokens 128]
                               [--rounds 5] [--compare-attention] [--no-rss] [--json out.json]

Paths (batch B x T tokens of prompt, then a p-row function tag at the end; a p-row domain tag first):
- forward:        a no-grad forward of the batch (the floor a function-tag step is compared with)
- function_tag:   ours: frozen prefix run without gradients (KV cache), tag positions with gradients,
                  regression head at the last tag position
- function_tag_cached: the same step when the prefix cache is kept from an earlier epoch
- full_backprop:  the same loss and gradients by back-propagation through the whole input
- peft_prompt:    PEFT prompt tuning (PromptTuningConfig, as PEFT documents it) plus a regression
                  head on the last hidden state; 2p virtual tokens, the total tag length of the
                  prompt (the paper's prompt-tuning baseline), so its sequence is as long as ours
- domain_tag:     ours, stage 1: `<tag> text`, next-token loss, logits only at text positions
- peft_prompt_ce: PEFT prompt tuning (p virtual tokens) with the LM loss on the same batch
Ours run on tagllm.attention (as every model tagllm loads); `--compare-attention` also times
function_tag_cached, full_backprop and domain_tag with transformers' plain SDPA.
Ratios are ours / theirs, each the median over rounds of the ratio within a round (the paths of a
round run back to back); grad_rel_err compares cached-prefix and full-backprop tag gradients.
Peak RSS per path is measured in a fresh process per path.

Each `--dtype` is one setting in which every path runs with the base model's weights in that dtype
(tags, heads and losses stay float32): float32, and bfloat16, the half precision the paper trains
in and GPU runs use; `autocast` is float32 weights with the gradient-free passes (the cached
prefix, the forward floor) under bf16 autocast, what `cpu_bf16_inference` switches on. The last
table puts the settings side by side, with the choice `cpu_bf16_inference: auto` makes on this CPU.
grad_rel_err is an exactness check, so its target applies to float32 only.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import AutoConfig

from tagllm import attention, precision
from tagllm.batching import collate
from tagllm.forward import full_hidden
from tagllm.objectives import PrefixStore, lm_loss, regression_hidden
from tagllm.prompts import NO_SLOT, Encoded
from tagllm.tags import TagTable
from tagllm.train import Base

PATHS = ("forward", "function_tag", "function_tag_cached", "full_backprop", "peft_prompt",
         "domain_tag", "peft_prompt_ce")


# Setting -> (weights dtype, cpu_bf16_inference). bfloat16 weights keep `auto`, as a run would:
# the direct attention's half-precision path is taken only where bf16 is fast.
SETTINGS = {"float32": ("float32", "false"), "autocast": ("float32", "true"),
            "bfloat16": ("bfloat16", "auto")}


def model_folder(model: str) -> str:
    """The prepared model folder; 'tiny' builds a random 2-layer Llama in a temporary folder."""
    if model != "tiny":
        return model
    from tagllm.model_sources import prepare_model

    return str(prepare_model("tiny-random", Path(tempfile.mkdtemp()) / "tiny"))


class Setup:
    """The batch, tags and head shared by every path."""

    def __init__(self, folder: str, setting: str, batch: int, tokens: int, p: int, seed: int = 0
                 ) -> None:
        dtype, bf16_inference = SETTINGS[setting]
        base = Base.load(folder, dtype, "cpu", cpu_bf16_inference=bf16_inference)
        torch.manual_seed(seed)
        self.base, self.p, self.folder, self.dtype = base, p, folder, dtype
        vocab = base.info.vocab_size
        self.ids = torch.randint(10, min(vocab, 30000), (batch, tokens))
        self.tags = TagTable(base.info)
        self.tags.add_new("SMILES", "domain", 1, p, base.embeddings(), run="bench")
        self.tags.add_new("QED", "function", 2, p, base.embeddings(), run="bench")
        self.head = torch.nn.Linear(base.info.hidden_size, 1, bias=False)
        offsets = self.tags.offsets()
        self.function_examples = [self._encoded(row, [("SMILES", 0), ("QED", tokens)], offsets)
                                  for row in self.ids.tolist()]
        self.domain_examples = [self._encoded(row, [("SMILES", 0)], offsets)
                                for row in self.ids.tolist()]
        self.targets = torch.rand(batch)

    def _encoded(self, row: list[int], tags: list[tuple[str, int]], offsets) -> Encoded:
        ids, slots = list(row), [NO_SLOT] * len(row)
        for name, at in sorted(tags, key=lambda t: -t[1]):  # insert from the end
            start = offsets[name]
            ids[at:at] = [0] * self.p
            slots[at:at] = list(range(start, start + self.p))
        readout = max(i for i, slot in enumerate(slots) if slot != NO_SLOT)
        return Encoded(tuple(ids), tuple(slots), readout, len(ids))

    def regression_loss(self, hidden: torch.Tensor) -> torch.Tensor:
        """MSE of the head read from `hidden` (B, d) against the batch's targets."""
        return F.mse_loss(self.head(hidden.float()).squeeze(-1), self.targets)

    def trainable(self, function_only: bool) -> None:
        self.tags.set_trainable("SMILES", not function_only)
        self.tags.set_trainable("QED", function_only)


PEFT_PATHS = ("peft_prompt", "peft_prompt_ce")


def step_functions(setup: Setup, peft_paths: tuple[str, ...] = PEFT_PATHS) -> dict:
    base, tags = setup.base, setup.tags
    kept = PrefixStore(10**12)

    def regression_step(store) -> None:
        setup.trainable(function_only=True)
        setup.regression_loss(regression_hidden(base, tags, setup.function_examples, store)
                              ).backward()

    def forward() -> None:
        with torch.no_grad(), base.inference_autocast():
            batch = collate(setup.function_examples, base.tokenizer.pad_token_id or 0, "left")
            full_hidden(base.model, tags.flat(), batch)

    def domain_tag() -> None:
        setup.trainable(function_only=False)
        lm_loss(base, tags, setup.domain_examples).backward()

    steps = {
        "forward": forward,
        "function_tag": lambda: regression_step(PrefixStore(0)),
        "function_tag_cached": lambda: regression_step(kept),
        "full_backprop": lambda: regression_step(None),
        "domain_tag": domain_tag,
    }
    steps.update({path: peft_step(setup, path) for path in peft_paths})
    return steps


def peft_step(setup: Setup, path: str):
    """PEFT prompt tuning as its documentation uses it: the model loaded by transformers as it
    comes (its own SDPA attention, not ours), wrapped by `get_peft_model`. Virtual tokens = the
    total tag length of the prompt it stands in for, as the paper's baseline: 2p for the
    regression step (domain + function tag), p for the LM step (domain tag)."""
    from peft import PromptTuningConfig, PromptTuningInit, TaskType, get_peft_model
    from transformers import AutoModelForCausalLM

    regression = path == "peft_prompt"
    config = PromptTuningConfig(task_type=TaskType.CAUSAL_LM,
                                num_virtual_tokens=setup.p * (2 if regression else 1),
                                prompt_tuning_init=PromptTuningInit.RANDOM)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(setup.folder, dtype=setup.dtype),
                           config)
    ids = setup.ids
    mask = torch.ones_like(ids)

    def regression_step() -> None:
        out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        setup.regression_loss(out.hidden_states[-1][:, -1]).backward()

    def causal_lm_step() -> None:
        model(input_ids=ids, attention_mask=mask, labels=ids).loss.backward()

    return regression_step if regression else causal_lm_step


def gradient_error(setup: Setup) -> float:
    setup.trainable(function_only=True)
    grads = []
    for store in (None, PrefixStore(0)):
        setup.tags.tags["QED"].grad = None
        setup.regression_loss(regression_hidden(setup.base, setup.tags, setup.function_examples,
                                                store)).backward()
        grads.append(setup.tags.tags["QED"].grad.clone())
    return ((grads[1] - grads[0]).norm() / grads[0].norm()).item()


def current_rss_mb() -> float:
    """Resident memory now (Linux /proc; ru_maxrss would only show the model-loading peak)."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize() / 2**20


def _peak_rss_child(model: str, dtype: str, batch: int, tokens: int, p: int, path: str,
                    queue) -> None:
    import gc
    import threading

    setup = Setup(model, dtype, batch, tokens, p)
    step = step_functions(setup, (path,) if path in PEFT_PATHS else ())[path]
    gc.collect()
    baseline = current_rss_mb()
    peak, running = [baseline], [True]

    def sample() -> None:
        while running[0]:
            peak[0] = max(peak[0], current_rss_mb())
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    for _ in range(2):
        step()
    running[0] = False
    sampler.join()
    queue.put((baseline, peak[0]))


def peak_rss(model: str, dtype: str, batch: int, tokens: int, p: int, path: str) -> dict:
    """Peak resident memory while a path runs two steps, in a fresh process, and its increase over
    the resident memory before the steps (model, tags and batch loaded)."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=_peak_rss_child, args=(model, dtype, batch, tokens, p, path, queue))
    child.start()
    baseline, peak = queue.get()
    child.join()
    return {"peak_rss_mb": peak, "step_rss_increase_mb": peak - baseline}


# Paths also timed with transformers' plain SDPA in place of tagllm.attention (`--compare-attention`).
ATTENTION_COMPARED = ("function_tag_cached", "full_backprop", "domain_tag")


def with_plain_sdpa(model, step):
    """`step` run with the model switched to transformers' SDPA, then switched back."""
    def run() -> None:
        model.set_attn_implementation("sdpa")
        try:
            step()
        finally:
            model.set_attn_implementation(attention.NAME)
    return run


TARGETS = {"function_tag_vs_forward": 1.3, "function_tag_vs_full_backprop": 0.6,
           "function_tag_vs_peft": 0.4, "domain_tag_vs_peft": 1.0, "grad_rel_err": 1e-5}


def measure(args: argparse.Namespace, folder: str, dtype: str) -> dict:
    """Every path timed in one setting (weights in `dtype`), interleaved, median of the rounds."""
    setup = Setup(folder, dtype, args.batch, args.tokens, args.tag_length)
    steps = step_functions(setup)
    if args.compare_attention:
        steps.update({f"{name}@sdpa": with_plain_sdpa(setup.base.model, steps[name])
                      for name in ATTENTION_COMPARED})
    for step in steps.values():  # warm-up (and fills the kept prefix cache)
        step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.rounds):  # interleaved, so that machine noise hits every path alike
        for name, step in steps.items():
            started = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - started)
    median = {name: statistics.median(values) for name, values in times.items()}

    def ratio(numerator: str, denominator: str) -> float:
        """Median over rounds of the ratio within each round: both paths ran back to back, so a
        slow spell of the machine that spans a round cancels out."""
        return statistics.median(a / b for a, b in zip(times[numerator], times[denominator],
                                                       strict=True))

    two_epochs = [(a + b) / 2 / c for a, b, c in zip(times["function_tag"],
                                                     times["function_tag_cached"],
                                                     times["peft_prompt"], strict=True)]
    results = {
        "median_s": median,
        "function_tag_vs_forward": ratio("function_tag", "forward"),
        "function_tag_vs_full_backprop": ratio("function_tag", "full_backprop"),
        "function_tag_vs_peft": ratio("function_tag", "peft_prompt"),
        "function_tag_cached_vs_forward": ratio("function_tag_cached", "forward"),
        # Mean step over two epochs when the prefix cache is kept (the embedded default's case).
        "function_tag_vs_peft_two_epochs": statistics.median(two_epochs),
        "peft_vs_forward": ratio("peft_prompt", "forward"),
        "domain_tag_vs_peft": ratio("domain_tag", "peft_prompt_ce"),
        "grad_rel_err": gradient_error(setup),
    }
    if args.compare_attention:  # > 1: tagllm.attention is faster than plain SDPA
        results["plain_sdpa_vs_ours"] = {name: ratio(f"{name}@sdpa", name)
                                         for name in ATTENTION_COMPARED}
    if not args.no_rss:
        results["memory"] = {path: peak_rss(folder, dtype, args.batch, args.tokens,
                                            args.tag_length, path) for path in PATHS}
    return results


def report(dtype: str, results: dict) -> None:
    print(f"setting {dtype} (weights {SETTINGS[dtype][0]}, gradient-free passes under bf16 "
          f"autocast: {SETTINGS[dtype][1]}):")
    for name, value in results["median_s"].items():
        memory = results.get("memory", {}).get(name)
        print(f"  {name:22s} {value * 1000:9.1f} ms" + (
            f"  peak RSS {memory['peak_rss_mb']:7.0f} MiB (+{memory['step_rss_increase_mb']:.0f}"
            " MiB over the loaded model)" if memory else ""))
    for key, target in TARGETS.items():
        if key == "grad_rel_err" and dtype != "float32":
            print(f"  {key:32s} {results[key]:.3g}  (bf16 rounding; the target is for float32)")
            continue
        verdict = "ok" if results[key] <= target else "MISSED"
        print(f"  {key:32s} {results[key]:.3g}  (target <= {target:g}: {verdict})")
    print(f"  {'function_tag_cached_vs_forward':32s} {results['function_tag_cached_vs_forward']:.3g}"
          "  (later epochs, prefix cache kept)")
    print(f"  {'function_tag_vs_peft_two_epochs':32s} "
          f"{results['function_tag_vs_peft_two_epochs']:.3g}  (mean step over 2 epochs, cache kept)")
    print(f"  {'peft_vs_forward':32s} {results['peft_vs_forward']:.3g}  (PEFT's step in forwards)")
    for name, ratio in results.get("plain_sdpa_vs_ours", {}).items():
        print(f"  {name + ' plain SDPA / ours':32s} {ratio:.3g}  (tagllm.attention's gain)")


def side_by_side(results: dict, settings: list[str]) -> None:
    """Each path's median step in every setting, and each setting against the first."""
    first = settings[0]
    print("side by side (ms per step; ratio: the first setting's time / this one's, > 1: faster):")
    print(f"  {'path':22s}" + "".join(f" {name:>10s}" for name in settings)
          + "".join(f" {first + '/' + name:>18s}" for name in settings[1:]))
    for path, seconds in results[first]["median_s"].items():
        times = [results[name]["median_s"].get(path) for name in settings]
        if any(t is None for t in times):
            continue
        print(f"  {path:22s}" + "".join(f" {t * 1000:10.1f}" for t in times)
              + "".join(f" {seconds / t:18.2f}" for t in times[1:]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="results/models/smollm2_135m_instruct",
                        help="a prepared model folder, or 'tiny' for a random 2-layer Llama")
    parser.add_argument("--dtype", nargs="+", default=["float32", "bfloat16"],
                        choices=sorted(SETTINGS), help="settings to measure, one by one")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=128, help="prompt tokens per example")
    parser.add_argument("--tag-length", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (median)")
    parser.add_argument("--no-rss", action="store_true", help="skip the per-path memory runs")
    parser.add_argument("--compare-attention", action="store_true",
                        help="also time " + ", ".join(ATTENTION_COMPARED) + " with plain SDPA")
    parser.add_argument("--json", default="", help="also write the results here")
    args = parser.parse_args()

    folder = model_folder(args.model)
    choice = precision.choose("auto", "cpu", AutoConfig.from_pretrained(folder))
    results = {"model": args.model, "batch": args.batch, "tokens": args.tokens,
               "tag_length": args.tag_length, "rounds": args.rounds, "targets": TARGETS,
               "cpu": precision.cpu_identity(), "auto_precision": choice.to_json()}
    print(precision.describe_cpu())
    print(f"cpu_bf16_inference auto here: {'bf16' if choice.bf16 else 'float32'} ({choice.reason})")
    print(f"model {args.model}, batch {args.batch} x {args.tokens} tokens, p = {args.tag_length}, "
          f"median of {args.rounds}, {torch.get_num_threads()} threads")
    for dtype in args.dtype:
        results[dtype] = measure(args, folder, dtype)
        report(dtype, results[dtype])
    if len(args.dtype) > 1:
        side_by_side(results, args.dtype)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
