"""Trainers: stage 1 (a domain tag, next-token loss on the text after it) and stage 2 (a function tag
plus regression head, domain tags frozen, on the cached frozen prefix)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

from tagllm.atomic import write_json
from tagllm.batching import collate, length_grouped_batches
from tagllm.forward import (
    PrefixCache,
    encode_prefix,
    forward_suffix,
    full_hidden,
    gather_positions,
    readout_index,
    split_batch,
)
from tagllm.heads import RegressionHead
from tagllm.loop import TrainConfig, optimise, seed_everything
from tagllm.model import load_frozen_model, model_info
from tagllm.prompts import FIELD_PATTERN, Encoded, PromptEncoder
from tagllm.tags import TagTable
from tagllm.tasks import get_domain_tag, get_task

log = logging.getLogger("tagllm")


@dataclass
class Base:
    """A frozen model, its tokenizer and identity."""

    model: torch.nn.Module
    tokenizer: object
    info: object
    char_level: bool = True  # protein and SMILES strings one character per token (paper)

    @classmethod
    def load(cls, model_dir: str | Path, dtype: str, device: str, char_level: bool = True) -> Base:
        model, tokenizer = load_frozen_model(model_dir, dtype=dtype, device=device)
        return cls(model, tokenizer, model_info(model, model_dir), char_level)

    @property
    def device(self) -> torch.device:
        return self.model.get_input_embeddings().weight.device

    def embeddings(self) -> torch.Tensor:
        return self.model.get_input_embeddings().weight

    def encoder(self, tags: TagTable, char_fields: frozenset[str]) -> PromptEncoder:
        lengths = {name: tags.length(name) for name in tags.names}
        return PromptEncoder(self.tokenizer, lengths, tags.offsets(), char_fields,
                             char_level=self.char_level)


def read_table(path: str | Path, columns: list[str], max_rows: int = 0, seed: int = 0
               ) -> pd.DataFrame:
    """Read a prepared Parquet file, checking it has the columns and at least one row."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: dataset file not found (did the prepare rule run?)")
    frame = pd.read_parquet(path)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; has {list(frame.columns)}")
    if frame.empty:
        raise ValueError(f"{path}: dataset is empty")
    if max_rows and len(frame) > max_rows:
        frame = frame.sample(n=max_rows, random_state=seed).sort_index()
    return frame.reset_index(drop=True)


# --------------------------------------------------------------------------- stage 1
def lm_loss(base: Base, tags: TagTable, examples: list[Encoded]) -> torch.Tensor:
    """Next-token cross-entropy on the text after each example's last tag; logits only there."""
    batch = collate(examples, base.tokenizer.pad_token_id, "right").to(base.device)
    hidden = full_hidden(base.model, tags.flat(), batch)  # (B, T, d)
    starts = torch.tensor([e.readout for e in examples], device=base.device)  # last tag position
    positions = torch.arange(batch.input_ids.shape[1], device=base.device)
    # Position j predicts token j+1; targets are the text tokens after the tag.
    predicts = (positions.unsqueeze(0) >= starts.unsqueeze(1)) & batch.attention_mask.bool()
    predicts[:, -1] = False
    targets = torch.zeros_like(predicts)
    targets[:, 1:] = predicts[:, :-1]
    logits = base.model.get_output_embeddings()(hidden[predicts])  # (N, V)
    return F.cross_entropy(logits.float(), batch.input_ids[targets])


def train_domain_tag(model_dir: str | Path, data_path: str | Path, column: str, tag: str,
                     out_dir: str | Path, tag_length: int, config: TrainConfig,
                     device: str = "cpu", dtype: str = "float32", char_level: bool = True) -> dict:
    """Stage 1: learn `<tag>` from unlabeled text by next-token prediction on `<tag> text`."""
    seed_everything(config.seed)
    spec = get_domain_tag(tag)
    base = Base.load(model_dir, dtype, device, char_level)
    texts = read_table(data_path, [column], config.max_examples, config.seed)[column].astype(str)
    tags = TagTable(base.info).to(base.device)
    tags.add_new(tag, "domain", 1, tag_length, base.embeddings(), run=f"stage1/{tag}")
    tags.to(base.device)
    encoder = base.encoder(tags, spec.char_fields)
    examples = [encoder.encode(spec.template, {"text": t}) for t in texts]
    lengths = [len(e) for e in examples]
    batches = length_grouped_batches(lengths, config.batch_size, None)

    def step_loss(_epoch: int, index: int) -> tuple[torch.Tensor, int]:
        chosen = [examples[i] for i in batches[index]]
        return lm_loss(base, tags, chosen), sum(len(e) for e in chosen)

    metrics = optimise(tags.trainable_parameters(), len(batches), step_loss,
                       _shuffled_order(len(batches), config.seed), config)
    tags.save(out_dir)
    metrics.update(stage=1, tag=tag, examples=len(examples), base_model=base.info.model_id,
                   trainable_parameters=tags.num_trainable())
    write_json(Path(out_dir) / "metrics.json", metrics)
    return metrics


# --------------------------------------------------------------------------- stage 2
class PrefixStore:
    """Cached prefixes per batch, kept across epochs while they fit in `budget_bytes`."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget = budget_bytes
        self.used = 0
        self.items: dict[int, PrefixCache] = {}
        self.computed = 0

    def get(self, index: int, compute) -> PrefixCache:
        if index in self.items:
            return self.items[index]
        cache = compute()
        self.computed += 1
        if self.used + cache.nbytes() <= self.budget:
            self.items[index] = cache
            self.used += cache.nbytes()
        return cache


def regression_hidden(base: Base, tags: TagTable, examples: list[Encoded],
                      store: PrefixStore | None, index: int) -> torch.Tensor:
    """Hidden state at each example's readout position; cached-prefix path when `store` is given."""
    pad = base.tokenizer.pad_token_id
    rows = tags.flat()
    if store is None:
        batch = collate(examples, pad, "left").to(base.device)
        return gather_positions(full_hidden(base.model, rows, batch),
                                readout_index(examples, batch))
    trainable_rows = tags.trainable_rows()
    split = split_batch(examples, trainable_rows, pad)
    prefix = store.get(index, lambda: encode_prefix(base.model, rows, split.prefix.to(base.device)))
    suffix = split.suffix.to(base.device)
    hidden = forward_suffix(base.model, rows, prefix, suffix)
    return gather_positions(hidden, readout_index(split.suffix_examples, suffix))


def train_function_tag(model_dir: str | Path, task_name: str, data_path: str | Path,
                       domain_tag_dirs: list[str | Path], out_dir: str | Path, tag_length: int,
                       config: TrainConfig, device: str = "cpu", dtype: str = "float32",
                       char_level: bool = True) -> dict:
    """Stage 2: learn the task's function tag and regression head; domain tags stay frozen."""
    seed_everything(config.seed)
    task = get_task(task_name)
    if task.kind != "regression":
        raise ValueError(f"task {task_name!r} is a {task.kind} task, not regression")
    base = Base.load(model_dir, dtype, device, char_level)
    frame = read_table(data_path, [*_fields(task.template), task.label], config.max_examples,
                       config.seed)
    if frame[task.label].isna().any():
        bad = frame.index[frame[task.label].isna()].tolist()[:5]
        raise ValueError(f"{data_path}: NaN labels in rows {bad}")
    tags = TagTable(base.info)
    for folder in domain_tag_dirs:
        tags.load(folder, trainable=False, expected_length=tag_length)
    missing = [t for t in task.domain_tags if t not in tags.names]
    if missing:
        raise ValueError(f"task {task_name} needs domain tag(s) {missing}; got {tags.names}")
    tags.add_new(task.function_tag, "function", 2, tag_length, base.embeddings(),
                 run=f"stage2/{task_name}")
    tags.to(base.device)
    labels = torch.tensor(frame[task.label].to_numpy(), dtype=torch.float32)
    head = _new_head(base, labels, config).to(base.device)
    encoder = base.encoder(tags, task.char_fields)
    examples = [encoder.encode(task.template, row) for row in frame.to_dict("records")]
    batches = length_grouped_batches([len(e) for e in examples], config.batch_size, None)
    store = PrefixStore(config.cache_budget_mb * 2**20) if config.cache_prefix else None
    targets = head.to_training_units(labels.to(base.device))

    def step_loss(_epoch: int, index: int) -> tuple[torch.Tensor, int]:
        chosen = [examples[i] for i in batches[index]]
        hidden = regression_hidden(base, tags, chosen, store, index)
        predictions = head(hidden).squeeze(-1)
        loss = F.mse_loss(predictions.float(), targets[batches[index]]) * config.loss_scale
        return loss, sum(len(e) for e in chosen)

    started = time.perf_counter()
    params = [{"params": tags.trainable_parameters()},
              {"params": list(head.parameters()), "lr": config.head_lr or config.lr}]
    metrics = optimise(params, len(batches), step_loss,
                       _shuffled_order(len(batches), config.seed), config)
    tags.save(out_dir)
    head.save(out_dir, base.info, config.head_init)
    metrics.update(
        stage=2, task=task_name, function_tag=task.function_tag, examples=len(examples),
        base_model=base.info.model_id, trainable_parameters=tags.num_trainable() + sum(
            p.numel() for p in head.parameters()),
        prefix_cache={"enabled": store is not None,
                      "kept_bytes": store.used if store else 0,
                      "prefix_forwards": store.computed if store else 0},
        total_wall_s=time.perf_counter() - started,
    )
    write_json(Path(out_dir) / "metrics.json", metrics)
    return metrics


def _new_head(base: Base, labels: torch.Tensor, config: TrainConfig) -> RegressionHead:
    if config.standardize_labels:
        std = float(labels.std()) if len(labels) > 1 else 1.0
        head = RegressionHead(base.info.hidden_size, 1, float(labels.mean()), std or 1.0)
    else:
        head = RegressionHead(base.info.hidden_size, 1)
    head.initialise(config.head_init, base.embeddings())
    return head


def _shuffled_order(n_batches: int, seed: int):
    """Batch order per epoch: a fresh permutation each epoch, reproducible from the seed."""

    def order(epoch: int) -> list[int]:
        generator = torch.Generator().manual_seed(seed * 1000 + epoch)
        return torch.randperm(n_batches, generator=generator).tolist()

    return order


def _fields(template: str) -> list[str]:
    return FIELD_PATTERN.findall(template)
