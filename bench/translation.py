"""How well does Tag-LLM translate under other stage-1 and Translate settings? Trains the eight
language tags and `<Translate>` of `config.yaml` under each setting and scores them on the
translation test rows, beside direct prompting and copying the source.

    python bench/translation.py [--results results] [--config config.yaml] [--threads 2]
        [--settings stage1.lr=0.001,stage1.max_examples=16 translate.max_examples=576]

A setting overrides train keys: `stage1.<key>` in every language tag's train block,
`translate.<key>` in the Translate run's (the config's own values otherwise; an empty setting,
`""`, is the config as it is). Each setting trains stage 1 and Translate with the library's own
trainers (`train_domain_tags`, `train_function_tag`) into a temporary folder and scores the run
with `evaluate_run` on `results/data/translation/test.parquet`. Printed per setting: the
reference NLL (the reference translations teacher-forced after the prompt, nats per character;
lower is better), chrF pooled and the mean chrF of the six seen directions, and the training
seconds. Direct prompting and copying the source are read from `results/eval/` when `make run`
scored them. Everything runs in float32 unless `--bf16` (so that rows differ only by setting).
Reads what `make run` left under `results/` (the model and the prepared data); nothing under
results/ changes.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
import yaml

from tagllm.evaluate import evaluate_run
from tagllm.loop import TrainConfig
from tagllm.precision import describe_cpu
from tagllm.report import DIRECTIONS, ZERO_SHOT
from tagllm.train import train_domain_tags, train_function_tag

SEEN = [d for d in DIRECTIONS if d not in ZERO_SHOT]


def parse_setting(text: str) -> dict[str, dict]:
    """`stage1.lr=0.03,translate.epochs=1` -> {"stage1": {"lr": 0.03}, "translate": {"epochs": 1}}."""
    setting: dict[str, dict] = {"stage1": {}, "translate": {}}
    for item in filter(None, text.split(",")):
        key, _, value = item.partition("=")
        part, _, name = key.partition(".")
        if part not in setting or not name:
            raise SystemExit(f"{item!r}: a key is stage1.<key> or translate.<key>")
        setting[part][name] = yaml.safe_load(value)
    return setting


def scores(metrics: dict) -> dict:
    """Pooled chrF, the seen directions' mean chrF and the pooled reference NLL of one evaluation."""
    directions = metrics.get("directions", {})
    seen = [directions[d]["chrf"] for d in SEEN if d in directions]
    return {"reference_nll": metrics.get("reference_nll", float("nan")),
            "chrf": metrics["chrf"], "chrf_seen": sum(seen) / len(seen) if seen else float("nan")}


def run_setting(text: str, config: dict, results: Path, languages: list[str], tag_length: int,
                bf16: bool, tmp: Path) -> tuple[dict, float]:
    """Train stage 1's language tags and Translate as `text` says, score them; (scores, train s)."""
    setting = parse_setting(text)
    model_dir = results / "models" / config["model"]["name"]
    stage1, translate = config["stage1"], config["stage3"]["translate"]
    jobs = [(lang, results / "data" / stage1[lang]["dataset"] / "train.parquet",
             stage1[lang]["column"], tmp / lang) for lang in languages]
    stage1_config = replace(TrainConfig(**stage1[languages[0]].get("train", {})),
                            **setting["stage1"])
    translate_config = replace(TrainConfig(**translate.get("train", {})), **setting["translate"])
    start = time.perf_counter()
    train_domain_tags(model_dir, jobs, tag_length, stage1_config, cpu_bf16_inference=bf16)
    train_function_tag(model_dir, "translate",
                       results / "data" / translate.get("dataset", "translation") / "train.parquet",
                       [out_dir for *_, out_dir in jobs], tmp / "translate", tag_length,
                       translate_config, cpu_bf16_inference=bf16)
    seconds = time.perf_counter() - start
    evaluation = config.get("evaluate", {})
    metrics = evaluate_run(model_dir, tmp / "translate", None,
                           results / "data" / translate.get("dataset", "translation") /
                           "test.parquet", tmp / "eval",
                           batch_size=evaluation.get("batch_size", 16),
                           max_rows=evaluation.get("max_test_rows", 0),
                           max_new_tokens=evaluation.get("max_new_tokens", 24),
                           cpu_bf16_inference=bf16)
    return scores(metrics), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default="results")
    parser.add_argument("--config", default="config.yaml")
    parser.add_argument("--settings", nargs="+", default=[""],
                        help="overrides, e.g. stage1.lr=0.03,translate.max_examples=576")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--bf16", action="store_true",
                        help="gradient-free passes under bf16 autocast (default: float32)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    config = yaml.safe_load(Path(args.config).read_text())
    results = Path(args.results)
    languages = [name for name, entry in config["stage1"].items()
                 if config["data"][entry["dataset"]]["kind"] == "text"]
    tag_length = int(config.get("tag_length", 10))
    print(f"{describe_cpu()}; {args.threads} threads; {'bf16' if args.bf16 else 'float32'}")
    rows = []
    for name, path in (("direct prompting", "direct_prompting"), ("copy source", "copy_source")):
        file = results / "eval" / path / "translate" / "metrics.json"
        if file.is_file():
            rows.append((name, scores(json.loads(file.read_text())), float("nan")))
    for text in args.settings:
        with tempfile.TemporaryDirectory() as tmp:
            found, seconds = run_setting(text, config, results, languages, tag_length, args.bf16,
                                         Path(tmp))
        rows.append((text or "config.yaml as it is", found, seconds))
    print(f"{'setting':58} {'ref nll':>8} {'chrF':>6} {'seen':>6} {'train s':>8}")
    for name, found, seconds in rows:
        print(f"{name:58} {found['reference_nll']:8.3f} {found['chrf']:6.1f} "
              f"{found['chrf_seen']:6.1f} {seconds:8.1f}")


if __name__ == "__main__":
    main()
