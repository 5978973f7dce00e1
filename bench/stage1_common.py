"""What the stage-1 benches (language_tags.py, domain_tags.py) share: their common options, the
`key=value` settings they train under, the config, model and data they read from results/, and
how they score a tag (held-out loss after it, how far it moved from its initialisation)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch
import yaml

from tagllm.objectives import text_losses
from tagllm.tags import TagTable
from tagllm.train import Base, _domain_examples


def parse_setting(text: str) -> dict:
    """`lr=0.03,max_examples=96` -> {"lr": 0.03, "max_examples": 96}; "" -> {}."""
    setting = {}
    for item in filter(None, text.split(",")):
        key, _, value = item.partition("=")
        if not key or not value:
            raise SystemExit(f"bad setting {item!r}: expected key=value")
        setting[key] = yaml.safe_load(value)
    return setting


def stage1_parser(description: str, settings: list[str], texts: int) -> argparse.ArgumentParser:
    """--results, --config, --settings (default `settings`), --texts (default `texts`), --threads."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--results", default="results")
    parser.add_argument("--config", default="config.yaml")
    parser.add_argument("--settings", nargs="+", default=settings,
                        help='overrides of each tag\'s train block, e.g. "" lr=0.03,epochs=2 '
                             '("" is the block as it is)')
    parser.add_argument("--texts", type=int, default=texts, help="held-out texts per tag")
    parser.add_argument("--threads", type=int, default=1)
    return parser


def read_setup(args: argparse.Namespace) -> tuple[dict, Path, Path]:
    """(config, results folder, model folder); quiet logs and the thread count set."""
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    config = yaml.safe_load(Path(args.config).read_text())
    results = Path(args.results)
    return config, results, results / "models" / config["model"]["name"]


def losses_after(base: Base, tags: TagTable, tag: str, texts: list[str],
                 batch_size: int = 8) -> torch.Tensor:
    """Stage 1's loss of each text after `<tag>` (mean next-token loss, nats per token). (N,)"""
    return torch.cat([text_losses(base, tags, _domain_examples(base, tags, tag,
                                                                texts[start:start + batch_size]))
                      for start in range(0, len(texts), batch_size)])


def moved(tags: TagTable, names: list[str], init: torch.Tensor) -> float:
    """Mean over the named tags of ||tag - init|| / ||init||."""
    return sum(float((tags.tags[t].detach().cpu() - init).norm() / init.norm())
               for t in names) / len(names)
