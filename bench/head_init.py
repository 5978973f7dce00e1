"""Probe then tune against the paper's head initialisation, on the same seeds, data and settings.

    python bench/head_init.py --run qed [--results results] [--seeds 0 1 2]
                              [--inits mean_embedding zeros probe] [--json out.json]

Reads what `make run` left under `results/` (the model, the prepared run data, the seed-0 stage-1
tags) and the run's train block in `config.yaml`; every (init, seed) pair trains Tag-LLM with only
`head_init` and `seed` changed, in one process, so the frozen prefixes are computed once for all of
them (the stage-1 tags are the same), and all are scored on the same test rows in one process. The
training mean, and with `--probe` the linear-probing baseline (closed form on the frozen model's
features of every training row), are printed beside them. Prints test metrics per run and
mean +- sd per init; `--json` keeps them. Runs go to a temporary folder (nothing under results/ changes).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from dataclasses import fields
from pathlib import Path

import torch
import yaml

from tagllm.baselines import train_baseline
from tagllm.evaluate import evaluate_runs
from tagllm.loop import TrainConfig
from tagllm.plan import build_plan
from tagllm.precision import describe_cpu
from tagllm.scoring import evaluate_train_mean
from tagllm.train import train_function_tags


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True)
    parser.add_argument("--results", default="results")
    parser.add_argument("--config", default="config.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--inits", nargs="+", default=["mean_embedding", "zeros", "probe"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--probe", action="store_true", help="also fit and score linear_probe")
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    config = yaml.safe_load(Path(args.config).read_text())
    runs = build_plan(config).runs
    if args.run not in runs:
        raise SystemExit(f"{args.run}: not a stage2/stage3 run of {args.config}")
    task, dataset, train_block = runs[args.run].task, runs[args.run].dataset, runs[args.run].train
    results = Path(args.results)
    model = results / "models" / config["model"]["name"]
    data = results / "data" / dataset
    domain = [results / "tags" / "stage1" / tag / "seed0" for tag in task.domain_tags]
    known = {f.name for f in fields(TrainConfig)}
    train = {k: v for k, v in train_block.items() if k in known}
    print(f"# {args.run}: {describe_cpu()}; train block {train}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        pairs = [(init, seed) for init in args.inits for seed in args.seeds]
        outs = [Path(tmp) / f"{init}_seed{seed}" for init, seed in pairs]
        configs = [TrainConfig(**{**train, "head_init": init, "seed": seed, "checkpoint_every": 0})
                   for init, seed in pairs]
        started = time.perf_counter()
        train_function_tags(model, task, data / "train.parquet", domain,
                            [("tagllm", out) for out in outs], config["tag_length"], configs[0],
                            char_level=config.get("char_level", True), configs=configs)
        trained = time.perf_counter() - started
        scores = evaluate_runs(model, outs, [out / "eval" for out in outs], task,
                               data / "test.parquet", char_level=config.get("char_level", True))
        mean = evaluate_train_mean(task, data / "train.parquet", data / "test.parquet",
                                   Path(tmp) / "train_mean")
        probe = None
        if args.probe:
            out = Path(tmp) / "linear_probe"
            train_baseline(model, "linear_probe", task, data / "train.parquet", out,
                           config["tag_length"], TrainConfig(**train),
                           char_level=config.get("char_level", True))
            probe = evaluate_runs(model, [out], [out / "eval"], task, data / "test.parquet",
                                  char_level=config.get("char_level", True))[0]
    metric = task.metric
    rows = {}
    for (init, seed), score in zip(pairs, scores, strict=True):
        rows.setdefault(init, []).append(score[metric])
        print(f"{init:15s} seed {seed}: mse {score['mse']:.5f}  mae {score['mae']:.4f}  "
              f"pearson {score['pearson']:.3f}")
    print(f"\n{'init':15s} {metric} mean +- sd over {len(args.seeds)} seeds")
    for init, values in rows.items():
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        print(f"{init:15s} {statistics.mean(values):.5f} +- {sd:.5f}")
    print(f"{'training mean':15s} {mean[metric]:.5f}")
    if probe is not None:
        print(f"{'linear probe':15s} {probe[metric]:.5f}")
    print(f"trained {len(pairs)} runs in {trained:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"run": args.run, "cpu": describe_cpu(),
                                               "metric": metric, "runs": rows,
                                               "train_mean": mean[metric],
                                               "linear_probe": probe and probe[metric]}, indent=1))


if __name__ == "__main__":
    sys.exit(main())
