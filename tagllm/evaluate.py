"""Evaluation: batched inference on a test split, predictions and metrics as files.

One entry point scores any trained run (Tag-LLM, an ablation or a PEFT baseline, as its `run.json`
says): regression through its head, or by greedy decoding of the label as text; translation by
greedy decoding, scored with sacreBLEU per direction. Direct prompting scores the untouched base
model; the training-mean and nearest-neighbour predictors need no model at all.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch

from tagllm.batching import collate, length_grouped_batches, splice_tags
from tagllm.generate import decode_texts, greedy_decode, stop_token_ids
from tagllm.heads import RegressionHead
from tagllm.methods import Method, get_method, parse_label
from tagllm.objectives import PrefixStore, reference_nll, regression_hidden
from tagllm.scoring import scored_rows, training_labels, write_regression, write_translation
from tagllm.tags import TAGS_META, TagTable
from tagllm.tasks import LANGUAGE_NAMES, Task, as_task, task_of_metrics
from tagllm.train import Base, encode_examples, read_run_spec

# Direct prompting of translation: the base model told the languages in words, no tags; an
# instruct model in the chat format it was tuned on (the paper's Input/Output lines left SmolLM2
# silent on 91% of the rows: a line break, then its end-of-turn token).
DIRECT_TRANSLATION = "Translate from {src_name} to {tgt_name}.\n# # Input: {src} \n# # Output:"
DIRECT_INSTRUCTION = "Translate from {src_name} to {tgt_name}: {src}"


def direct_translation_template(tokenizer, src_lang: str, tgt_lang: str) -> str:
    """The template (with a `{src}` field) that asks the untrained model for a translation: its chat
    format when the tokenizer has one, else the paper's Input/Output lines with an instruction."""
    names = {"src_name": LANGUAGE_NAMES[src_lang], "tgt_name": LANGUAGE_NAMES[tgt_lang],
             "src": "{src}"}
    if not getattr(tokenizer, "chat_template", None):
        return DIRECT_TRANSLATION.format(**names)
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": DIRECT_INSTRUCTION.format(**names)}], tokenize=False,
        add_generation_prompt=True)
    bos = tokenizer.bos_token or ""
    # The prompt encoder adds BOS itself where the tokenizer does.
    return text[len(bos):] if bos and text.startswith(bos) and \
        tokenizer("", add_special_tokens=True).input_ids else text


def direct_translation_target(tokenizer, task: Task, row: dict) -> str:
    """The reference as the untrained model's answer to `direct_translation_template`: the reply
    itself in the chat format (the encoder ends it with the end token), else as Tag-LLM's."""
    return str(row[task.label]) if getattr(tokenizer, "chat_template", None) else task.target(row)


LABEL_TOKENS = 12  # decoded label: "-12.34" and an end token fit easily


class Predictor:
    """A base model with a run's tags, head and adapter loaded: batched predictions."""

    def __init__(self, base: Base, method: Method, tags: TagTable, head: RegressionHead | None,
                 adapter=None, function_tag: str | None = None) -> None:
        self.base, self.method, self.tags, self.head, self.adapter = base, method, tags, head, adapter
        self.function_tag = function_tag if function_tag in tags.names else None

    @classmethod
    def from_run(cls, base: Base, run_dir: str | Path | None, method: Method, task: Task
                 ) -> Predictor:
        tags = TagTable(base.info)
        head, adapter = None, None
        if run_dir is not None:
            run_dir = Path(run_dir)
            if (run_dir / TAGS_META).is_file():
                tags.load(run_dir, trainable=False)
            if task.kind == "regression" and method.head and method.trainer != "none":
                head = RegressionHead.load(run_dir, base.info).to(base.device)
            if method.adapter != "none":
                from tagllm.adapters import Adapter

                adapter = Adapter.load(base.model, run_dir)
        tags.to(base.device)
        return cls(base, method, tags, head, adapter, task.function_tag if method.function_tag
                   else None)

    def _embeds(self, batch):
        if self.adapter is not None:
            return self.adapter.inputs(self.tags.flat(), batch)
        return splice_tags(self.base.model.get_input_embeddings(), self.tags.flat(),
                           batch.input_ids, batch.slots), batch

    def function_rows(self) -> set[int]:
        """Rows of the tag table that hold the function tag (where a cached prefix ends)."""
        start = self.tags.offsets()[self.function_tag]
        return set(range(start, start + self.tags.length(self.function_tag)))

    @torch.no_grad()
    def regress(self, examples, batch_size: int, store: PrefixStore | None = None) -> list[float]:
        """Head predictions in label units, in the order of `examples`. With a `store`, the frozen
        part before the function tag comes from it (computed once for every run evaluated on the
        same rows with the same domain tags), and only the function tag runs per run."""
        predictions = [0.0] * len(examples)
        pad = self.base.tokenizer.pad_token_id
        if self.function_tag is None or self.adapter is not None:
            store = None
        split_rows = self.function_rows() if store is not None else None
        for indices in length_grouped_batches([len(e) for e in examples], batch_size, None):
            chosen = [examples[i] for i in indices]
            with self.base.inference_autocast():
                if self.adapter is None:
                    hidden = regression_hidden(self.base, self.tags, chosen, store, split_rows)
                else:
                    hidden = self.adapter.regression_hidden(self.tags.flat(), chosen, pad)
            values = self.head.to_label_units(self.head(hidden).squeeze(-1)).float().cpu()
            for index, value in zip(indices, values.tolist(), strict=True):
                predictions[index] = value
        return predictions

    @torch.no_grad()
    def reference_nll(self, examples, batch_size: int) -> list[float] | None:
        """Summed NLL (nats) of each example's target (the reference answer), teacher-forced after
        its prompt, in the order of `examples`; None for an adapter run (an adapter changes the
        model itself: not scored teacher-forced yet)."""
        if self.adapter is not None:
            return None
        nll = [0.0] * len(examples)
        for indices in length_grouped_batches([len(e) for e in examples], batch_size, None):
            with self.base.inference_autocast():
                values = reference_nll(self.base, self.tags, [examples[i] for i in indices])
            for index, value in zip(indices, values.tolist(), strict=True):
                nll[index] = value
        return nll

    @torch.no_grad()
    def generate(self, examples, batch_size: int, max_new_tokens: int,
                 stop_at_newline: bool) -> list[str]:
        """Greedy continuations of `examples` (left padded, batched by length), in order."""
        tokenizer = self.base.tokenizer
        stops, blanks = stop_token_ids(tokenizer, stop_at_newline)
        texts = [""] * len(examples)
        for indices in length_grouped_batches([len(e) for e in examples], batch_size, None):
            batch = collate([examples[i] for i in indices], tokenizer.pad_token_id,
                            "left").to(self.base.device)
            # Not `inference_autocast`: one token per step is too little work for bf16 to pay off
            # on a CPU (bench/generate.py: 98 generated tokens/s in float32, 71 under autocast).
            with self.base.autocast():
                embeds, batch = self._embeds(batch)
                ids = greedy_decode(self.base.model, embeds, batch, max_new_tokens, stops,
                                    tokenizer.pad_token_id, blanks)
            for index, text in zip(indices, decode_texts(tokenizer, ids), strict=True):
                texts[index] = text
        return texts


def evaluate_run(model_dir: str | Path, run_dir: str | Path | None, task: Task | str | None,
                 test_path: str | Path, out_dir: str | Path, batch_size: int = 16,
                 device: str = "cpu", dtype: str = "float32", char_level: bool = True,
                 name: str = "", method_name: str = "", train_path: str | Path | None = None,
                 max_rows: int = 0, max_new_tokens: int = 64,
                 cpu_bf16_inference: str | bool = "auto") -> dict:
    """Score a run (or, with `method_name="direct_prompting"` and no run, the base model) on the
    first `max_rows` rows of `test_path` (0: all); writes predictions.parquet and metrics.json."""
    return evaluate_runs(model_dir, [run_dir], [out_dir], task, test_path, batch_size,
                         device, dtype, char_level, name, method_name, train_path, max_rows,
                         max_new_tokens, cpu_bf16_inference)[0]


def evaluate_runs(model_dir: str | Path, run_dirs: Sequence[str | Path | None],
                  out_dirs: Sequence[str | Path], task: Task | str | None, test_path: str | Path,
                  batch_size: int = 16, device: str = "cpu", dtype: str = "float32",
                  char_level: bool = True, name: str = "", method_name: str = "",
                  train_path: str | Path | None = None, max_rows: int = 0,
                  max_new_tokens: int = 64, cpu_bf16_inference: str | bool = "auto",
                  cache_budget_mb: int = 4096) -> list[dict]:
    """`evaluate_run` for several runs of one task on the same test rows, in one process: the
    model is loaded once, and the frozen prefix before the function tag is computed once for
    every run that shares it (a tag-length sweep, the ablations that keep Tag-LLM's prompt).
    A run's own task (its run.json) is the one it is scored on; `task` (a Task, its spec or a
    built-in name) is for runs that have none, such as direct prompting."""
    if len(run_dirs) != len(out_dirs):
        raise ValueError(f"{len(run_dirs)} runs but {len(out_dirs)} output folders")
    specs = [read_run_spec(run_dir) if run_dir is not None else {} for run_dir in run_dirs]
    methods = [get_method(method_name or spec.get("method", "tagllm")) for spec in specs]
    adapters = [method.name for method in methods if method.adapter != "none"]
    if adapters and len(run_dirs) > 1:
        # PEFT wraps the model's layers in place: a later run would see them.
        raise ValueError(f"adapter runs ({adapters}) must be evaluated one per process")
    # An unknown task fails before the model loads.
    tasks = [scored_task(spec, task) for spec in specs]
    base = Base.load(model_dir, dtype, device, char_level, cpu_bf16_inference)
    # One run reuses nothing: no store memory then (the prefix path still runs the common start once).
    store = PrefixStore(cache_budget_mb * 2**20 if len(run_dirs) > 1 else 0)
    return [_evaluate(base, store, run_dir, spec, method, run_task_, test_path, out_dir,
                      batch_size, name, train_path, max_rows, max_new_tokens)
            for run_dir, spec, method, run_task_, out_dir in zip(run_dirs, specs, methods, tasks,
                                                                 out_dirs, strict=True)]


def scored_task(spec: dict, task: Task | str | None) -> Task:
    """The task a run is scored on: the one its run.json (`spec`) holds, else `task`."""
    if spec.get("task_spec") or spec.get("task"):
        return task_of_metrics(spec)
    if task is None or task == "":
        raise ValueError("no task: the run's run.json names none, and none was given (--task)")
    return as_task(task)


def _evaluate(base: Base, store: PrefixStore, run_dir: str | Path | None, spec: dict,
              method: Method, task: Task, test_path: str | Path, out_dir: str | Path,
              batch_size: int, name: str, train_path: str | Path | None, max_rows: int,
              max_new_tokens: int) -> dict:
    predictor = Predictor.from_run(base, run_dir, method, task)
    frame = scored_rows(test_path, task, max_rows)
    rows = frame.to_dict("records")
    run = name or task.name
    if task.kind == "generation":
        encoder = base.encoder(predictor.tags, task.char_fields)
        if method.name == "direct_prompting":
            texts = [direct_translation_template(base.tokenizer, r["src_lang"], r["tgt_lang"])
                     for r in rows]
            examples = [encoder.encode(t, r) for t, r in zip(texts, rows, strict=True)]
            references = [encoder.encode(t, r, direct_translation_target(base.tokenizer, task, r))
                          for t, r in zip(texts, rows, strict=True)]
        else:
            examples = encode_examples(method, task, encoder, rows, train=False)
            references = encode_examples(method, task, encoder, rows, train=True)
        hypotheses = predictor.generate(examples, batch_size, max_new_tokens, stop_at_newline=True)
        return write_translation(frame, hypotheses, task, run, method.name, base.info.model_id,
                                 out_dir, reference_nll=predictor.reference_nll(references,
                                                                                batch_size),
                                 precision=base.precision.to_json())
    examples = encode_examples(method, task, base.encoder(predictor.tags, task.char_fields), rows,
                               train=False)
    if predictor.head is not None:
        passes, reused = store.computed, store.reused
        predicted = predictor.regress(examples, batch_size, store)
        cache = {"prefix_forwards": store.computed - passes,
                 "reused_examples": store.reused - reused}
        return write_regression(frame, predicted, task, run, method.name, base.info.model_id,
                                out_dir, test_path, precision=base.precision.to_json(),
                                prefix_cache=cache)
    if "label_mean" not in spec:
        if train_path is None:
            raise ValueError("decoding a label needs the training labels (a run or --train)")
        labels = training_labels(train_path, task)
        spec = {"label_mean": labels.mean(), "label_min": labels.min(), "label_max": labels.max()}
    predicted, decoded, parsed, clipped = decode_labels(predictor, examples, batch_size, spec)
    frame = frame.assign(decoded=decoded, parsed=[p is not None for p in parsed])
    return write_regression(frame, predicted, task, run, method.name, base.info.model_id, out_dir,
                            test_path, unparsed=sum(p is None for p in parsed), clipped=clipped,
                            fallback=float(spec["label_mean"]),
                            precision=base.precision.to_json())


def decode_labels(predictor: Predictor, examples, batch_size: int, spec: dict
                  ) -> tuple[list[float], list[str], list[float | None], int]:
    """A label-decoding run's predictions (see `decoded_predictions`, with the training labels'
    mean and range from `spec`), the decoded texts, the numbers read from them and how many were
    clipped."""
    decoded = predictor.generate(examples, batch_size, LABEL_TOKENS, stop_at_newline=True)
    parsed = [parse_label(text) for text in decoded]
    predicted, clipped = decoded_predictions(parsed, float(spec["label_mean"]),
                                             float(spec["label_min"]), float(spec["label_max"]))
    return predicted, decoded, parsed, clipped


def decoded_predictions(parsed: list[float | None], mean: float, low: float, high: float
                        ) -> tuple[list[float], int]:
    """Numbers read from decoded text as predictions: no number -> the training mean; a number
    outside the training labels' range (digits run on: "2000.", "12121212") -> clipped to it, so
    one runaway answer cannot swamp the MSE. Returns the predictions and how many were clipped."""
    predictions, clipped = [], 0
    for value in parsed:
        if value is None or not math.isfinite(value):
            predictions.append(mean)
            continue
        bounded = min(max(value, low), high)
        clipped += bounded != value
        predictions.append(bounded)
    return predictions, clipped
