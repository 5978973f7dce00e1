"""Do the stage-1 language tags say which language follows? Trains the language tags of
`config.yaml`'s stage 1 under several settings and scores each set by language identification.

    python bench/language_tags.py [--results results] [--config config.yaml]
                                  [--settings lr=0.001 lr=0.03,max_examples=48] [--texts 16]

For each setting (overrides of every language tag's stage-1 train block), the tags are trained as
stage 1 trains them (`tagllm.train.train_domain_tags`, one process, the model loaded once) into a
temporary folder. Then every held-out text (the first `--texts` rows of each language's
`results/data/text_<lang>/test.parquet`) is scored after every tag: the mean next-token loss of
the text given `<tag> text`. A tag set identifies a text's language when the text's own tag gives
it the lowest loss. Printed per setting: identification accuracy (chance 1/8; tags that are all
alike tie, and a tie counts as a miss), the mean loss after the own tag and after the others, and
how far the tags moved from their shared initialisation (norm of the change over the init's norm).
The first row is the untrained initialisation. Reads what `make run` left under `results/` (the
model and the prepared text data); nothing under results/ changes.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch
from stage1_common import losses_after, moved, parse_setting, read_setup, stage1_parser

from tagllm.loop import TrainConfig
from tagllm.precision import describe_cpu
from tagllm.tags import TagTable, mean_embedding_init
from tagllm.train import Base, train_domain_tags


def score(base: Base, tags: TagTable, languages: list[str], texts: dict[str, list[str]]) -> dict:
    """Identification accuracy and losses of one tag set on every language's held-out texts."""
    hits = total = 0
    own, other = [], []
    for language in languages:
        losses = torch.stack([losses_after(base, tags, tag, texts[language])
                              for tag in languages])  # (tags, N)
        mine = losses[languages.index(language)]
        best = losses.min(0).values
        others = torch.cat([losses[:languages.index(language)],
                            losses[languages.index(language) + 1:]])
        hits += int(((mine == best) & ((others > mine).all(0))).sum())
        total += mine.numel()
        own.append(mine.mean().item())
        other.append(others.mean().item())
    return {"accuracy": hits / total, "own_loss": sum(own) / len(own),
            "other_loss": sum(other) / len(other)}


def main() -> None:
    args = stage1_parser(__doc__.splitlines()[0], ["lr=0.001"], 16).parse_args()
    config, results, model_dir = read_setup(args)
    stage1 = config["stage1"]
    languages = [name for name, entry in stage1.items()
                 if config["data"][entry["dataset"]]["kind"] == "text"]
    tag_length = int(config.get("tag_length", 10))
    texts = {lang: pd.read_parquet(results / "data" / stage1[lang]["dataset"] / "test.parquet")
             [stage1[lang]["column"]].astype(str).head(args.texts).tolist() for lang in languages}
    base = Base.load(model_dir, "float32", "cpu", True, False)
    init = mean_embedding_init(base.embeddings().detach(), tag_length).cpu()
    print(f"{describe_cpu()}; {len(languages)} language tags, p = {tag_length}, "
          f"{args.texts} held-out texts each")
    untrained = TagTable(base.info)
    for lang in languages:
        untrained.add_new(lang, "domain", 1, tag_length, base.embeddings(), run="init")
    rows = [("untrained init", score(base, untrained, languages, texts), 0.0, 0.0)]
    for text in args.settings:
        setting = parse_setting(text)
        with tempfile.TemporaryDirectory() as tmp:
            jobs = [(lang, results / "data" / stage1[lang]["dataset"] / "train.parquet",
                     stage1[lang]["column"], Path(tmp) / lang) for lang in languages]
            train_config = replace(TrainConfig(**stage1[languages[0]].get("train", {})), **setting)
            start = time.perf_counter()
            train_domain_tags(model_dir, jobs, tag_length, train_config, cpu_bf16_inference=False)
            seconds = time.perf_counter() - start
            trained = TagTable(base.info)
            for lang, *_, out_dir in jobs:
                trained.load(out_dir, names=[lang])
            rows.append((text, score(base, trained, languages, texts),
                         moved(trained, languages, init), seconds))
    print(f"{'setting':32} {'accuracy':>8} {'own loss':>9} {'others':>7} {'moved':>6} {'train s':>8}")
    for name, scores, shift, seconds in rows:
        print(f"{name:32} {scores['accuracy']:8.3f} {scores['own_loss']:9.3f} "
              f"{scores['other_loss']:7.3f} {shift:6.3f} {seconds:8.1f}")


if __name__ == "__main__":
    main()
