"""Trainers. Stage 1: a domain tag, by next-token loss on `<tag> text`. Stages 2 and 3: a function tag
(with a regression head, or the LM head for generation tasks), domain tags frozen (or, with
`enrich`, updated with their stage-1 LM loss kept). Runs checkpoint and resume; under torchrun they
split the batches across processes."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

from tagllm import checkpoint, distributed
from tagllm.atomic import write_json
from tagllm.attention import use_direct_attention
from tagllm.batching import length_grouped_batches
from tagllm.heads import RegressionHead
from tagllm.loop import TrainConfig, optimise, seed_everything
from tagllm.methods import Method, format_label, get_method
from tagllm.model import load_frozen_model, model_info
from tagllm.objectives import (
    PrefixStore,
    generation_loss,
    lm_loss,
    readout_features,
    regression_hidden,
)
from tagllm.precision import Precision
from tagllm.precision import choose as choose_precision
from tagllm.prefix_store import prefix_keys
from tagllm.probe import RidgeFit, fit_ridge, head_from_fit
from tagllm.prompts import Encoded, PromptEncoder
from tagllm.table_checks import read_table
from tagllm.tags import TagTable, read_tag_files
from tagllm.tasks import DomainTag, Task, as_domain_tag, as_task

log = logging.getLogger("tagllm")
__all__ = ["Base", "encode_examples", "read_run_spec", "read_table", "train_domain_tag",
           "train_domain_tags", "train_function_tag", "train_function_tags"]
RUN_SPEC = "run.json"


@dataclass
class Base:
    """A frozen model, its tokenizer and identity."""

    model: torch.nn.Module
    tokenizer: object
    info: object
    char_level: bool = True  # protein and SMILES strings one character per token (paper)
    # Whether gradient-free CPU passes (cached prefixes, probe features, evaluation) run under bf16
    # autocast: chosen by measuring at load time (`tagllm.precision`), or forced.
    precision: Precision = field(default_factory=lambda: Precision("false", False, "default"))
    model_dir: str = ""  # the folder it was loaded from (recorded in run.json for `predict`)

    @classmethod
    def load(cls, model_dir: str | Path, dtype: str, device: str, char_level: bool = True,
             cpu_bf16_inference: str | bool = "auto") -> Base:
        model, tokenizer = load_frozen_model(model_dir, dtype=dtype, device=device)
        weights = model.get_input_embeddings().weight
        device_type = weights.device
        precision = replace(choose_precision(cpu_bf16_inference, device_type, model.config),
                            model_dtype=str(weights.dtype).removeprefix("torch."))
        # Half-precision CPU gradient passes take the direct attention only where bf16 is fast.
        use_direct_attention(model, cpu_half=precision.bf16 or device_type.type != "cpu")
        log.info("precision: %s", precision.reason)
        return cls(model, tokenizer, model_info(model, model_dir), char_level, precision,
                   str(model_dir))

    @property
    def cpu_bf16_inference(self) -> bool:
        return self.precision.bf16

    def resume_precision(self, run_dirs: Sequence[str | Path]) -> None:
        """Take the precision a checkpoint in `run_dirs` was made with, so that a resumed run
        continues as it started even where a new measurement would choose otherwise."""
        for run_dir in run_dirs:
            recorded = checkpoint.read_extra(run_dir)
            if recorded is None or "bf16" not in recorded or recorded["bf16"] == self.precision.bf16:
                continue
            self.precision = replace(self.precision, bf16=bool(recorded["bf16"]),
                                     reason=f"resumed: {run_dir}'s checkpoint was made with "
                                            f"bf16={recorded['bf16']} ({self.precision.reason})")
            use_direct_attention(self.model, cpu_half=self.precision.bf16
                                 or self.device.type != "cpu")
            log.info("precision: %s", self.precision.reason)
            return

    @property
    def device(self) -> torch.device:
        return self.model.get_input_embeddings().weight.device

    def embeddings(self) -> torch.Tensor:
        return self.model.get_input_embeddings().weight

    def encoder(self, tags: TagTable, char_fields: frozenset[str]) -> PromptEncoder:
        lengths = {name: tags.length(name) for name in tags.names}
        return PromptEncoder(self.tokenizer, lengths, tags.offsets(), char_fields,
                             char_level=self.char_level, eos_id=self.tokenizer.eos_token_id)

    def autocast(self):
        """bf16 autocast on GPUs (the frozen weights may be fp32); nothing on CPUs."""
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return torch.autocast("cpu", enabled=False)

    def inference_autocast(self):
        """Autocast for passes without gradients (see `cpu_bf16_inference`)."""
        if self.device.type == "cpu" and self.cpu_bf16_inference:
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return self.autocast()


def _batch_order(n_batches: int, seed: int):
    """Batch order per epoch: a fresh permutation each epoch, reproducible from seed and epoch."""

    def order(epoch: int) -> list[int]:
        generator = torch.Generator().manual_seed(seed * 1000 + epoch)
        return torch.randperm(n_batches, generator=generator).tolist()

    return order


def _domain_examples(base: Base, tags: TagTable, tag: DomainTag | str, texts) -> list[Encoded]:
    spec = as_domain_tag(tag)
    encoder = base.encoder(tags, spec.char_fields)
    return [encoder.encode(spec.template, {"text": t}) for t in texts]


# --------------------------------------------------------------------------- stage 1
def train_domain_tag(model_dir: str | Path, data_path: str | Path, column: str,
                     tag: DomainTag | str,
                     out_dir: str | Path, tag_length: int, config: TrainConfig,
                     device: str = "cpu", dtype: str = "float32", char_level: bool = True,
                     cpu_bf16_inference: str | bool = "auto") -> dict:
    """Stage 1: learn `<tag>` from unlabeled text by next-token prediction on `<tag> text`; `tag`
    is a DomainTag, its JSON spec or a built-in tag's name."""
    return train_domain_tags(model_dir, [(tag, data_path, column, out_dir)], tag_length, config,
                             device, dtype, char_level, cpu_bf16_inference)[0]


def train_domain_tags(model_dir: str | Path,
                      tags: Sequence[tuple[DomainTag | str, str | Path, str, str | Path]],
                      tag_length: int,
                      config: TrainConfig, device: str = "cpu", dtype: str = "float32",
                      char_level: bool = True, cpu_bf16_inference: str | bool = "auto"
                      ) -> list[dict]:
    """`train_domain_tag` for several tags with the same settings, one after another in this
    process (the model loaded once): `tags` are (tag, data file, text column, out_dir). As with
    several function tags, final checkpoints are kept until all are done."""
    distributed.setup()
    base = Base.load(model_dir, dtype, device, char_level, cpu_bf16_inference)
    base.resume_precision([out_dir for *_, out_dir in tags])
    several = len(tags) > 1
    results = [_train_domain_tag(base, tag, data_path, column, out_dir, tag_length, config,
                                 keep_checkpoint=several)
               for tag, data_path, column, out_dir in tags]
    if several and distributed.is_main():
        for *_, out_dir in tags:
            checkpoint.remove(out_dir)
    distributed.teardown()
    return results


def _train_domain_tag(base: Base, tag: DomainTag | str, data_path: str | Path, column: str,
                      out_dir: str | Path, tag_length: int, config: TrainConfig,
                      keep_checkpoint: bool = False) -> dict:
    seed_everything(config.seed)
    spec = as_domain_tag(tag)
    tag = spec.name
    texts = read_table(data_path, [column], config.max_examples, config.seed)[column].astype(str)
    tags = TagTable(base.info)
    tags.add_new(tag, "domain", 1, tag_length, base.embeddings(), run=f"stage1/{tag}")
    tags.to(base.device)
    examples = _domain_examples(base, tags, spec, texts)
    batches = length_grouped_batches([len(e) for e in examples], config.batch_size, None)

    def step_loss(_epoch: int, index: int) -> tuple[torch.Tensor, int]:
        chosen = [examples[i] for i in batches[index]]
        with base.autocast():
            return lm_loss(base, tags, chosen), sum(len(e) for e in chosen)

    metrics = optimise(
        [{"params": tags.trainable_parameters()}], dict(tags.tags.items()), len(batches),
        step_loss, _batch_order(len(batches), config.seed), config, out_dir,
        checkpoint.fingerprint(dict(stage=1, tag=tag, data=str(data_path), n=len(examples),
                                    p=tag_length, model=base.info.model_id, config=config,
                                    bf16=base.precision.bf16)),
        keep_final=keep_checkpoint, extra_state={"bf16": base.precision.bf16})
    if distributed.is_main():
        tags.save(out_dir)
        metrics.update(stage=1, tag=tag, examples=len(examples), base_model=base.info.model_id,
                       hidden_size=base.info.hidden_size,
                       trainable_parameters=tags.num_trainable(),
                       precision=base.precision.to_json())
        write_json(Path(out_dir) / "metrics.json", metrics)
        if not keep_checkpoint:
            checkpoint.remove(out_dir)
    return metrics


# --------------------------------------------------------------------------- stages 2 and 3
def load_domain_tags(tags: TagTable, folders: list[str | Path], needed: tuple[str, ...],
                     tag_length: int | None) -> None:
    """Add, frozen, each needed domain tag from the first folder that holds it (a stage-1 folder,
    or a run folder whose enriched domain tags replace the stage-1 ones)."""
    for folder in folders:
        meta, _ = read_tag_files(Path(folder))
        stored = [r["name"] for r in meta["tags"]]
        wanted = [n for n in needed if n in stored and n not in tags.names]
        if wanted:
            tags.load(folder, trainable=False, names=wanted, expected_length=tag_length)
    missing = [t for t in needed if t not in tags.names]
    if missing:
        raise ValueError(f"domain tag(s) {missing} not found in {[str(f) for f in folders]}")


def encode_examples(method: Method, task, encoder: PromptEncoder, rows: list[dict],
                    train: bool) -> list[Encoded]:
    """Prompts of `rows` as `method` writes them. For training, the target is the translation, or
    the label as text when the method decodes it; without a function tag a head reads the last
    prompt position."""
    examples = []
    for row in rows:
        target = None
        if train and task.kind == "generation":
            target = task.target(row)
        elif train and not method.head:
            target = " " + format_label(float(row[task.label]))
        encoded = encoder.encode(method.prompt(task, row), row, target=target)
        if not method.function_tag:
            encoded = replace(encoded, readout=encoded.target_start - 1)
        examples.append(encoded)
    return examples


def write_run_spec(out_dir: str | Path, method: Method, task: Task, frame: pd.DataFrame,
                   tag_length: int, base: Base) -> None:
    """run.json: what evaluation and prediction need to rebuild the run without a registry (the
    method, the full task spec, the base model and how it tokenises), and the training labels'
    mean (the answer when a decoded text holds no number) and range (decoded numbers are clipped
    to it)."""
    spec = {"format": "tagllm.run/1", "method": method.name, "task": task.name,
            "task_spec": task.to_json(), "base_model": base.info.model_id,
            "model_dir": base.model_dir, "char_level": base.char_level,
            "tag_length": tag_length,
            "function_tag_length": method.function_tag_length or tag_length}
    if task.kind == "regression":
        labels = frame[task.label].astype(float)
        spec.update(label_mean=float(labels.mean()), label_min=float(labels.min()),
                    label_max=float(labels.max()))
    write_json(Path(out_dir) / RUN_SPEC, spec)


def read_run_spec(run_dir: str | Path) -> dict:
    path = Path(run_dir) / RUN_SPEC
    if not path.is_file():
        raise FileNotFoundError(f"{path}: run description is missing (did training finish?)")
    return json.loads(path.read_text(encoding="utf-8"))


def train_function_tag(model_dir: str | Path, task: Task | str, data_path: str | Path,
                       domain_tag_dirs: list[str | Path], out_dir: str | Path, tag_length: int,
                       config: TrainConfig, device: str = "cpu", dtype: str = "float32",
                       char_level: bool = True, enrich_data: dict[str, str] | None = None,
                       method_name: str = "tagllm", cpu_bf16_inference: str | bool = "auto"
                       ) -> dict:
    """Learn a task's function tag (and regression head); domain tags frozen unless enriching.

    `method_name` picks Tag-LLM or one of its ablations (see `tagllm.methods`). `enrich_data` maps
    a domain tag to its stage-1 text, as `path` (a `text` column) or `path:column`; with
    `config.enrich` those tags are updated too and their LM loss is added to the task loss."""
    return train_function_tags(model_dir, task, data_path, domain_tag_dirs,
                               [(method_name, out_dir)], tag_length, config, device, dtype,
                               char_level, enrich_data, cpu_bf16_inference)[0]


def train_function_tags(model_dir: str | Path, task: Task | str, data_path: str | Path,
                        domain_tag_dirs: list[str | Path],
                        runs: Sequence[tuple[str, str | Path]], tag_length: int,
                        config: TrainConfig, device: str = "cpu", dtype: str = "float32",
                        char_level: bool = True, enrich_data: dict[str, str] | None = None,
                        cpu_bf16_inference: str | bool = "auto",
                        configs: Sequence[TrainConfig] | None = None) -> list[dict]:
    """Train several runs of one task on the same data, one after another in this process: `runs`
    are (method, out_dir) pairs, all trained with `config` unless `configs` gives one per run
    (other seeds, another head init). The base model is loaded once, and the frozen prefixes are
    computed once for every run that reads them (the tag-length sweep and the ablations that keep
    Tag-LLM's prompt all share the `<SMILES>` prefix), as long as they fit in
    `config.cache_budget_mb`. Each run writes the files it writes when trained alone."""
    configs = list(configs) if configs is not None else [config] * len(runs)
    if len(configs) != len(runs):
        raise ValueError(f"{len(runs)} runs but {len(configs)} training configs")
    methods = [get_method(name) for name, _ in runs]
    for method in methods:
        if method.trainer != "tags":
            raise ValueError(f"method {method.name} does not train tags "
                             f"(its trainer: {method.trainer})")
    task = as_task(task)  # an unknown task fails before the model loads
    distributed.setup()
    base = Base.load(model_dir, dtype, device, char_level, cpu_bf16_inference)
    base.resume_precision([out_dir for _, out_dir in runs])
    # Several runs: each keeps its final checkpoint until all are done, so that a rerun after a
    # kill skips the finished ones (the workflow deletes a failed job's outputs, not checkpoints).
    several = len(runs) > 1
    # A prefix is kept only where it is read again: by another run, another epoch, or the head's
    # probe start and refit (one epoch of Translate on 1,152 pairs would hold ~2 GB for nothing).
    rereads = several or any(c.epochs > 1 or c.head_init == "probe" or c.head_refit
                             for c in configs)
    store = PrefixStore(config.cache_budget_mb * 2**20 if rereads else 0) \
        if config.cache_prefix else None
    # Runs that start from the same tags on the same rows (the seeds of one run) have the same
    # features for their probe start: computed once.
    start_features: dict[Hashable, torch.Tensor] = {}
    results = [_train_run(base, store, method, task, data_path, domain_tag_dirs, out_dir,
                          tag_length, run_config, enrich_data, keep_checkpoint=several,
                          start_features=start_features)
               for method, (_, out_dir), run_config in zip(methods, runs, configs, strict=True)]
    if several and distributed.is_main():
        for _, out_dir in runs:
            checkpoint.remove(out_dir)
    distributed.teardown()
    return results


def _train_run(base: Base, store: PrefixStore | None, method: Method, task: Task,
               data_path: str | Path, domain_tag_dirs: list[str | Path], out_dir: str | Path,
               tag_length: int, config: TrainConfig, enrich_data: dict[str, str] | None,
               keep_checkpoint: bool = False,
               start_features: dict[Hashable, torch.Tensor] | None = None) -> dict:
    """One run of `train_function_tags` on a loaded base, with the shared prefix store and the
    probe-start features of the runs before it (`readout_key` -> features)."""
    seed_everything(config.seed)
    frame = read_table(data_path, task.columns(), config.max_examples, config.seed,
                       kinds=task.column_kinds())
    tags = TagTable(base.info)
    if method.uses_domain_tags:
        load_domain_tags(tags, domain_tag_dirs, task.domain_tags, tag_length)
    enriched = sorted(enrich_data or {}) if (config.enrich or method.enrich) else []
    for name in enriched:
        tags.set_trainable(name, True)
    if method.function_tag:
        tags.add_new(task.function_tag, "function", task.stage,
                     method.function_tag_length or tag_length, base.embeddings(),
                     run=f"stage{task.stage}/{task.name}/{method.name}")
    tags.to(base.device)
    encoder = base.encoder(tags, task.char_fields)
    examples = encode_examples(method, task, encoder, frame.to_dict("records"), train=True)
    batches = length_grouped_batches([len(e) for e in examples], config.batch_size, None)
    passes_before = store.computed if store else 0
    reused_before = store.reused if store else 0
    kept_before = store.used if store else 0
    head, targets = None, None
    if task.kind == "regression" and method.head:
        labels = torch.tensor(frame[task.label].to_numpy(), dtype=torch.float32)
        head = new_head(base, labels, config).to(base.device)
        targets = head.to_training_units(labels.to(base.device))
    # "Probe then tune": the head starts at the closed form on the features training starts from
    # (so the first steps' loss is the fit's training loss); the first epoch reads the prefixes
    # this pass stored.
    def features() -> torch.Tensor:  # the passes of a training step, without gradients
        with base.autocast():
            return readout_features(base, tags, examples, batches, store)

    probe = None
    if head is not None and config.head_init == "probe":
        start_features = {} if start_features is None else start_features
        key = readout_key(tags, examples)
        if key not in start_features:
            start_features[key] = features()
        probe = fit_head(start_features[key], head, targets, "probe init")
    enrich_batches = _enrichment(base, tags, enriched, enrich_data or {}, config)

    def step_loss(_epoch: int, index: int) -> tuple[torch.Tensor, int]:
        chosen = [examples[i] for i in batches[index]]
        with base.autocast():
            if head is None:
                loss = generation_loss(base, tags, chosen, store)
            else:
                predictions = head(regression_hidden(base, tags, chosen, store)).squeeze(-1)
                loss = F.mse_loss(predictions.float(), targets[batches[index]]) * config.loss_scale
            for texts in enrich_batches(index):
                loss = loss + config.enrich_lm_weight * lm_loss(base, tags, texts)
        return loss, sum(len(e) for e in chosen)

    started = time.perf_counter()
    groups = [{"params": tags.trainable_parameters()}]
    named = {f"tag.{k}": v for k, v in tags.tags.items() if v.requires_grad}
    if head is not None:
        groups.append({"params": list(head.parameters()), "lr": config.head_lr or config.lr})
        named.update(head.linear.named_parameters(prefix="head"))
    metrics = optimise(groups, named, len(batches), step_loss,
                       _batch_order(len(batches), config.seed), config, out_dir,
                       checkpoint.fingerprint(dict(
                           task=task.to_json(), method=method.name, data=str(data_path),
                           n=len(examples), p=tag_length, model=base.info.model_id, config=config,
                           domain=[str(d) for d in domain_tag_dirs], enriched=enriched,
                           bf16=base.precision.bf16)),
                       keep_final=keep_checkpoint, extra_state={"bf16": base.precision.bf16})
    # The jointly trained head lags behind features that moved under it: refit it in closed form
    # on the features of the tags as trained (the tags stay as they are).
    refit = fit_head(features(), head, targets, "head refit") \
        if head is not None and config.head_refit else None
    if distributed.is_main():
        tags.save(out_dir)
        if head is not None:
            head.save(out_dir, base.info, config.head_init)
        write_run_spec(out_dir, method, task, frame, tag_length, base)
        metrics.update(
            stage=task.stage, task=task.name, task_spec=task.to_json(), method=method.name,
            function_tag=task.function_tag if method.function_tag else None,
            examples=len(examples), base_model=base.info.model_id, enriched=enriched,
            hidden_size=base.info.hidden_size,
            trainable_parameters=sum(p.numel() for g in groups for p in g["params"]),
            # This run's share of the store: bytes it added, prefix passes it ran, and examples it
            # was served from the store (counted each time, every epoch).
            prefix_cache={"enabled": store is not None,
                          "kept_bytes": store.used - kept_before if store else 0,
                          "prefix_forwards": store.computed - passes_before if store else 0,
                          "reused_examples": store.reused - reused_before if store else 0},
            precision=base.precision.to_json(), total_wall_s=time.perf_counter() - started)
        record_head_fits(metrics, probe, refit, config.loss_scale)
        write_json(Path(out_dir) / "metrics.json", metrics)
        if not keep_checkpoint:
            checkpoint.remove(out_dir)
    return metrics


def _enrichment(base: Base, tags: TagTable, enriched: list[str], data: dict[str, str],
                config: TrainConfig):
    """For each task batch index, the stage-1 batches (one per enriched tag) to add an LM loss on."""
    per_tag: dict[str, list[list[Encoded]]] = {}
    for name in enriched:
        if name not in data:
            raise ValueError(f"enriching <{name}> needs its stage-1 text (enrich_data)")
        path, _, column = data[name].partition(":")
        column = column or "text"
        texts = read_table(path, [column], config.max_examples, config.seed)[column]
        examples = _domain_examples(base, tags, name, texts.astype(str))
        order = length_grouped_batches([len(e) for e in examples], config.batch_size, config.seed)
        per_tag[name] = [[examples[i] for i in batch] for batch in order]

    def batches_for(index: int) -> list[list[Encoded]]:
        return [chunks[index % len(chunks)] for chunks in per_tag.values()]

    return batches_for


def new_head(base: Base, labels: torch.Tensor, config: TrainConfig) -> RegressionHead:
    """A regression head as `config` says; `head_init: probe` starts at zeros with a bias, which
    `fit_head` then sets."""
    mean, std = 0.0, 1.0
    if config.standardize_labels:
        mean = float(labels.mean())
        std = (float(labels.std()) if len(labels) > 1 else 1.0) or 1.0
    probe = config.head_init == "probe"
    head = RegressionHead(base.info.hidden_size, 1, mean, std,
                          bias=config.head_bias or probe or config.head_refit)
    head.initialise("zeros" if probe else config.head_init, base.embeddings())
    return head


def readout_key(tags: TagTable, examples: list[Encoded]) -> Hashable:
    """What the read-out features of `examples` depend on: each whole prompt as the prefix store
    keys it (ids and the values at its tag slots) and its read-out position. Two runs with the
    same key have the same features."""
    return tuple(zip(prefix_keys(examples, tags.flat()), (e.readout for e in examples),
                     strict=True))


def fit_head(features: torch.Tensor, head: RegressionHead, targets: torch.Tensor,
             why: str) -> RidgeFit:
    """Set `head` to the closed-form ridge fit of `targets` on `features` (N, d): where a run's
    head starts ("probe then tune") or ends (the refit on the trained features)."""
    fit = fit_ridge(features, targets.cpu())
    head_from_fit(fit, head)
    log.info("%s: ridge alpha %.3g, training MSE %.5f, leave-one-out MSE %.5f (%d rows)", why,
             fit.alpha, fit.train_mse, fit.loo_mse, fit.rows)
    return fit


def record_head_fits(metrics: dict, probe: RidgeFit | None, refit: RidgeFit | None,
                     loss_scale: float) -> None:
    """Where the head started and ended as a closed form: each fit and its training loss."""
    for key, fit in (("probe_init", probe), ("head_refit", refit)):
        if fit is not None:
            metrics[key] = {**fit.summary(), "train_loss": fit.train_mse * loss_scale}

