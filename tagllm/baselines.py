"""Baselines of paper Tables 2-4 that do not train tags: PEFT adapters (LoRA, prompt tuning) with a
regression head or decoding the label as text, the linear probe (the head alone on frozen features of
every training row, fit in closed form: `tagllm.probe`). The nearest neighbour (no model at all)
is in `tagllm.scoring`.

Every trained baseline uses the same data, batches, optimiser loop, checkpoints and run files as
Tag-LLM (`tagllm.train`), so differences in the tables come from the method only.
"""

from __future__ import annotations

import time
from dataclasses import asdict, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from tagllm import checkpoint, distributed
from tagllm.atomic import write_json
from tagllm.batching import collate, length_grouped_batches
from tagllm.loop import TrainConfig, optimise, peak_rss_mb, seed_everything, versions
from tagllm.methods import get_method
from tagllm.objectives import batched_features, readout_features, target_loss
from tagllm.probe import fit_ridge, head_from_fit
from tagllm.tags import TagTable
from tagllm.tasks import Task, as_task
from tagllm.train import (
    Base,
    _batch_order,
    encode_examples,
    fit_head,
    load_domain_tags,
    new_head,
    read_table,
    record_head_fits,
    write_run_spec,
)


def train_baseline(model_dir: str | Path, method_name: str, task: Task | str,
                   data_path: str | Path, out_dir: str | Path, tag_length: int,
                   config: TrainConfig, device: str = "cpu", dtype: str = "float32",
                   char_level: bool = True, domain_tag_dirs: list[str | Path] | None = None,
                   cpu_bf16_inference: str | bool = "auto") -> dict:
    """Train an adapter baseline or a linear probe; writes the run folder like Tag-LLM's."""
    method = get_method(method_name)
    if method.trainer not in ("adapter", "probe"):
        raise ValueError(f"method {method.name} is not a baseline (trainer: {method.trainer})")
    distributed.setup()
    seed_everything(config.seed)
    task = as_task(task)
    if task.kind != "regression" and method.trainer == "probe":
        raise ValueError(f"a linear probe needs a regression task, not {task.name}")
    base = Base.load(model_dir, dtype, device, char_level, cpu_bf16_inference)
    base.resume_precision([out_dir])
    if method.trainer == "probe":
        return _fit_probe(base, method, task, data_path, out_dir, tag_length, config,
                          domain_tag_dirs)
    frame, tags, examples, batches = _training_rows(base, method, task, data_path, tag_length,
                                                    config, domain_tag_dirs, config.max_examples)
    head, targets = None, None
    if task.kind == "regression" and method.head:
        labels = torch.tensor(frame[task.label].to_numpy(), dtype=torch.float32)
        head = new_head(base, labels, config).to(base.device)
        targets = head.to_training_units(labels.to(base.device))
    groups, named = [], {}
    if head is not None:
        groups.append({"params": list(head.parameters()), "lr": config.head_lr or config.lr})
        named.update(head.linear.named_parameters(prefix="head"))
    from tagllm.adapters import Adapter  # imports peft (seconds): only where it is used

    adapter = Adapter.create(base.model, method.adapter, method.virtual_tokens(task, tag_length))
    trainable = adapter.named_trainable()
    groups.insert(0, {"params": list(trainable.values())})
    named.update({f"adapter.{k}": v for k, v in trainable.items()})
    pad = base.tokenizer.pad_token_id

    def features() -> torch.Tensor:  # the adapted model's read-out, LoRA dropout off
        adapter.peft.eval()
        with base.autocast():
            return batched_features(
                lambda chosen: adapter.regression_hidden(tags.flat(), chosen, pad),
                examples, batches, base.info.hidden_size)

    # The head starts and ends as Tag-LLM's does (same settings, same schedule): at the probe on
    # the features training starts from, refit on the trained adapter's.
    probe = fit_head(features(), head, targets, "probe init") \
        if head is not None and config.head_init == "probe" else None
    adapter.peft.train()  # LoRA dropout on; the base has no dropout of its own in use
    step_loss = _adapter_step(base, tags, adapter, examples, batches, head, targets, config)
    started = time.perf_counter()
    metrics = optimise(groups, named, len(batches), step_loss,
                       _batch_order(len(batches), config.seed), config, out_dir,
                       checkpoint.fingerprint(dict(
                           task=task.to_json(), method=method.name, data=str(data_path),
                           n=len(examples), p=tag_length, model=base.info.model_id, config=config,
                           bf16=base.precision.bf16)),
                       extra_state={"bf16": base.precision.bf16})
    refit = fit_head(features(), head, targets, "head refit") \
        if head is not None and config.head_refit else None
    if distributed.is_main():
        adapter.peft.eval()
        adapter.save(out_dir)
        if tags.names:
            tags.save(out_dir)
        if head is not None:
            head.save(out_dir, base.info, config.head_init)
        write_run_spec(out_dir, method, task, frame, tag_length, base)
        metrics.update(task=task.name, task_spec=task.to_json(), method=method.name,
                       examples=len(examples), hidden_size=base.info.hidden_size,
                       base_model=base.info.model_id,
                       trainable_parameters=sum(p.numel() for g in groups for p in g["params"]),
                       precision=base.precision.to_json(),
                       total_wall_s=time.perf_counter() - started)
        record_head_fits(metrics, probe, refit, config.loss_scale)
        write_json(Path(out_dir) / "metrics.json", metrics)
        checkpoint.remove(out_dir)
    distributed.teardown()
    return metrics


def _adapter_step(base, tags, adapter, examples, batches, head, targets, config):
    """Loss of one batch through the adapted model: MSE via the head, or CE on the label text."""
    pad = base.tokenizer.pad_token_id

    def step_loss(_epoch: int, index: int) -> tuple[torch.Tensor, int]:
        chosen = [examples[i] for i in batches[index]]
        with base.autocast():
            if head is not None:
                predictions = head(adapter.regression_hidden(tags.flat(), chosen, pad)).squeeze(-1)
                loss = F.mse_loss(predictions.float(), targets[batches[index]]) * config.loss_scale
            else:
                batch = collate(chosen, pad, "right").to(base.device)
                hidden = adapter.hidden(tags.flat(), batch)
                starts = torch.tensor([e.target_start for e in chosen], device=base.device)
                loss = target_loss(base, hidden, batch, starts + batch.offsets)
        return loss, sum(len(e) for e in chosen)

    return step_loss


def _training_rows(base, method, task, data_path: str | Path, tag_length: int,
                   config: TrainConfig, domain_tag_dirs, max_examples: int):
    """The checked training table (at most `max_examples` rows, 0: all), the method's frozen tags,
    its encoded prompts and their length-grouped batches."""
    frame = read_table(data_path, task.columns(), max_examples, config.seed,
                       kinds=task.column_kinds())
    tags = TagTable(base.info)
    if method.uses_domain_tags:
        load_domain_tags(tags, list(domain_tag_dirs or []), task.domain_tags, tag_length)
    tags.to(base.device)
    examples = encode_examples(method, task, base.encoder(tags, task.char_fields),
                               frame.to_dict("records"), train=True)
    batches = length_grouped_batches([len(e) for e in examples], config.batch_size, None)
    return frame, tags, examples, batches


def _fit_probe(base, method, task: Task, data_path: str | Path, out_dir: str | Path,
               tag_length: int, config: TrainConfig, domain_tag_dirs) -> dict:
    """The head alone, fit to its optimum: frozen features of the training rows (computed once;
    the workflow gives the linear-probing baselines every row), ridge with a leave-one-out penalty
    (`tagllm.probe`), in the head's training units."""
    started = time.perf_counter()
    frame, tags, examples, batches = _training_rows(base, method, task, data_path, tag_length,
                                                    config, domain_tag_dirs, config.max_examples)
    labels = torch.tensor(frame[task.label].to_numpy(), dtype=torch.float32)
    head = new_head(base, labels, replace(config, head_init="zeros", head_bias=True))
    with base.inference_autocast():
        features = readout_features(base, tags, examples, batches, None)
    fit = fit_ridge(features, head.to_training_units(labels))
    head_from_fit(fit, head)
    metrics = {"steps": 0, "probe": fit.summary(), "wall_s": time.perf_counter() - started,
               "tokens": sum(len(e) for e in examples), "config": asdict(config),
               "versions": versions(), "peak_rss_mb": peak_rss_mb()}
    if distributed.is_main():
        if tags.names:
            tags.save(out_dir)
        head.save(out_dir, base.info, "probe")
        write_run_spec(out_dir, method, task, frame, tag_length, base)
        metrics.update(task=task.name, task_spec=task.to_json(), method=method.name,
                       examples=len(examples), hidden_size=base.info.hidden_size,
                       base_model=base.info.model_id,
                       trainable_parameters=sum(p.numel() for p in head.parameters()),
                       precision=base.precision.to_json(),
                       total_wall_s=time.perf_counter() - started)
        write_json(Path(out_dir) / "metrics.json", metrics)
    distributed.teardown()
    return metrics
