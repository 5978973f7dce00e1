"""How well does stage 1 learn a domain tag? Trains stage-1 tags of `config.yaml` (by default the
ones that are not languages: `<SMILES>`, `<Protein>`) under several settings and scores each on
held-out text by stage 1's own objective.

    python bench/domain_tags.py [--results results] [--config config.yaml] [--tags SMILES Protein]
                                [--settings "" lr=0.03,max_examples=96] [--texts 32]

For each setting (overrides of each tag's stage-1 train block; "" is the block as it is), every
tag is trained as stage 1 trains it (`tagllm.train.train_domain_tags`: one process, the model
loaded once) into a temporary folder. Printed per tag and setting: the mean next-token loss of the
first `--texts` rows of the tag's test split after `<tag>` (`tagllm.objectives.text_losses`, nats
per token), its training loss, how far the tag moved from its initialisation (norm of the change
over the init's norm) and the training seconds. The first row of each tag is the untrained
initialisation (the paper's mean-embedding init): a setting that does not beat it has not taught
the model anything about the domain. Reads what `make run` left under `results/` (the model and
the prepared data); nothing under results/ changes.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
from stage1_common import losses_after, moved, parse_setting, read_setup, stage1_parser

from tagllm.loop import TrainConfig
from tagllm.precision import describe_cpu
from tagllm.tags import TagTable, mean_embedding_init
from tagllm.train import Base, train_domain_tags

LANGUAGE_KIND = "text"


def held_out_loss(base: Base, tags: TagTable, tag: str, texts: list[str],
                  batch_size: int = 8) -> float:
    """Mean over texts of each text's next-token loss after `<tag>`."""
    return float(losses_after(base, tags, tag, texts, batch_size).mean())


def main() -> None:
    parser = stage1_parser(__doc__.splitlines()[0], [""], 32)
    parser.add_argument("--tags", nargs="+", help="stage-1 tags (default: all but languages)")
    args = parser.parse_args()
    config, results, model_dir = read_setup(args)
    stage1 = config["stage1"]
    names = args.tags or [name for name, entry in stage1.items()
                          if config["data"][entry["dataset"]]["kind"] != LANGUAGE_KIND]
    unknown = [name for name in names if name not in stage1]
    if unknown:
        raise SystemExit(f"not stage-1 tags of {args.config}: {', '.join(unknown)}")
    settings = [parse_setting(text) for text in args.settings]
    tag_length = int(config.get("tag_length", 10))
    base = Base.load(model_dir, "float32", "cpu", True, False)
    init = mean_embedding_init(base.embeddings().detach(), tag_length).cpu()
    print(f"{describe_cpu()}; p = {tag_length}, {args.texts} held-out texts per tag, float32")
    print(f"{'tag':8} {'setting':34} {'held-out':>8} {'train':>6} {'moved':>6} {'train s':>8}")
    for name in names:
        entry = stage1[name]
        data = results / "data" / entry["dataset"]
        texts = pd.read_parquet(data / "test.parquet")[entry["column"]].astype(str)
        texts = texts.head(args.texts).tolist()
        untrained = TagTable(base.info)
        untrained.add_new(name, "domain", 1, tag_length, base.embeddings(), run="init")
        print(f"{name:8} {'untrained init':34} {held_out_loss(base, untrained, name, texts):8.3f}")
        for text, setting in zip(args.settings, settings, strict=True):
            train_config = replace(TrainConfig(**entry.get("train", {})), **setting)
            with tempfile.TemporaryDirectory() as tmp:
                start = time.perf_counter()
                metrics = train_domain_tags(model_dir, [(name, data / "train.parquet",
                                                         entry["column"], Path(tmp))],
                                            tag_length, train_config, cpu_bf16_inference=False)[0]
                seconds = time.perf_counter() - start
                trained = TagTable(base.info)
                trained.load(tmp, names=[name])
            label = text or "config.yaml as it is"
            print(f"{name:8} {label:34} {held_out_loss(base, trained, name, texts):8.3f} "
                  f"{metrics['final_loss']:6.3f} {moved(trained, [name], init):6.3f} {seconds:8.1f}")


if __name__ == "__main__":
    main()
