"""A trained run applied to new rows without labels: `tagllm predict` and, from Python,
`tagllm.load_run(path).predict(rows)`.

A run folder holds everything needed (its `run.json` names the method, the task's full spec, the
base model folder and how it tokenises; the tags, head and adapter sit beside it), so no config
or registry is read. Each input row is validated as the task's fields say (SMILES canonicalised
and parsed, proteins of standard residues, text not blank) and encoded; a row that fails gets no
prediction and a reason in the `rejected` column, and the rest of the file is still predicted.
The output keeps every input column, in the input's row order, and adds `prediction` (and, for a
method that writes the label as text, `decoded`: what it wrote).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from tagllm.atomic import write_json, write_parquet, write_text
from tagllm.data import table
from tagllm.data.validation import Rejections
from tagllm.errors import UserError
from tagllm.evaluate import LABEL_TOKENS, Predictor, decode_labels
from tagllm.methods import Method, get_method
from tagllm.tasks import Task, task_of_metrics
from tagllm.train import Base, encode_examples, read_run_spec

log = logging.getLogger("tagllm")

PREDICTION, REJECTED, DECODED = "prediction", "rejected", "decoded"
# Longest field value predicted on (characters): a protein or SMILES goes in one token per
# character, and the model's context bounds it further (checked per row).
DEFAULT_MAX_CHARS = 5000


@dataclass
class TrainedRun:
    """A run folder loaded on its base model, ready to predict."""

    path: Path
    spec: dict  # run.json
    task: Task
    method: Method
    base: Base
    predictor: Predictor

    def predict(self, rows: pd.DataFrame | Iterable[Mapping[str, object]], batch_size: int = 16,
                max_new_tokens: int = 64, max_chars: int = DEFAULT_MAX_CHARS,
                source: str = "rows") -> pd.DataFrame:
        """`rows` (a DataFrame, or dicts) with `prediction` added, and `rejected`: empty for a
        predicted row, else why it got no prediction (`invalid_smiles: smiles: RDKit cannot
        parse it`). Rows need the task's input columns; a label column is not needed."""
        frame = rows.reset_index(drop=True) if isinstance(rows, pd.DataFrame) \
            else pd.DataFrame(list(rows))
        for column in (PREDICTION, REJECTED, DECODED):
            if column in frame.columns:
                raise UserError(f"{source}: has a column {column!r}, which predict writes; "
                                f"rename it")
        inputs = self.task.input_columns()
        missing = [c for c in inputs if c not in frame.columns]
        if missing:
            raise UserError(f"{source}: no column{'s' * (len(missing) > 1)} "
                            f"{', '.join(map(repr, missing))}, which task {self.task.name} reads "
                            f"(it has {', '.join(map(repr, frame.columns))})")
        kinds = {column: self.task.fields.get(column, "text") for column in inputs}
        rejections = Rejections()
        valid = table.validate_rows(frame[inputs], kinds, source, max_chars, rejections,
                                    keep_duplicates=True)
        reasons = {r["row"]: f"{r['reason']}: {r['detail']}" for r in rejections.rows}
        positions, examples = self._encode(valid, reasons, max_new_tokens)
        values, decoded = self._values(examples, batch_size, max_new_tokens)
        predictions: list[object] = [None] * len(frame)
        for position, value in zip(positions, values, strict=True):
            predictions[position] = value
        result = frame.copy()
        result[PREDICTION] = pd.Series(predictions, dtype=float if self.task.kind == "regression"
                                       else object)
        if decoded is not None:  # a method that writes the label as text: what it wrote
            texts: list[object] = [None] * len(frame)
            for position, text in zip(positions, decoded, strict=True):
                texts[position] = text
            result[DECODED] = texts
        result[REJECTED] = [reasons.get(i + 1, "") for i in range(len(frame))]
        return result

    def _encode(self, valid: pd.DataFrame, reasons: dict[int, str], max_new_tokens: int
                ) -> tuple[list[int], list]:
        """Positions (0-based rows of the input) and encoded prompts of the rows that encode and
        fit the model's context with the tokens decoded after them; the others get a reason."""
        encoder = self.base.encoder(self.predictor.tags, self.task.char_fields)
        context = getattr(self.base.model.config, "max_position_embeddings", None)
        decoded = max_new_tokens if self.task.kind == "generation" else \
            0 if self.predictor.head is not None else LABEL_TOKENS
        positions, examples = [], []
        for row in valid.to_dict("records"):
            try:
                [example] = encode_examples(self.method, self.task, encoder, [row], train=False)
            except UserError as error:  # a row naming no domain tag of the task
                reasons[int(row["source_row"])] = f"unknown_tag: {error}"
                continue
            if context and len(example) + decoded > context:
                reasons[int(row["source_row"])] = (f"too_long: {len(example)} tokens (+{decoded} "
                                                   f"decoded) > the model's context of {context}")
                continue
            positions.append(int(row["source_row"]) - 1)
            examples.append(example)
        return positions, examples

    def _values(self, examples: list, batch_size: int, max_new_tokens: int
                ) -> tuple[list[object], list[str] | None]:
        """The predictions, and the texts decoded for a label-decoding method (else None): an
        answer without a number is the training mean, one out of the training range is clipped
        (`evaluate.decoded_predictions`), so the text shows which."""
        if self.task.kind == "generation":
            return self.predictor.generate(examples, batch_size, max_new_tokens,
                                           stop_at_newline=True) if examples else [], None
        if self.predictor.head is not None:
            return self.predictor.regress(examples, batch_size) if examples else [], None
        if not examples:
            return [], []
        predicted, decoded, _, _ = decode_labels(self.predictor, examples, batch_size, self.spec)
        return predicted, decoded


def load_run(path: str | Path, model_dir: str | Path | None = None, device: str = "cpu",
             dtype: str = "float32", cpu_bf16_inference: str | bool = "auto") -> TrainedRun:
    """A run folder (`results/runs/<method>/<run>/seed<N>`) on its base model: the folder its
    run.json names, or `model_dir`. The tags refuse a model other than the one they were trained
    on."""
    path = Path(path)
    spec = read_run_spec(path)
    task = task_of_metrics(spec)  # an older run.json names a built-in task only
    method = get_method(spec.get("method", "tagllm"))
    if method.trainer == "none":
        raise UserError(f"{path}: method {method.name} trains nothing; there is no run to apply")
    model_dir = Path(model_dir) if model_dir else recorded_model_dir(path, spec)
    base = Base.load(model_dir, dtype, device, bool(spec.get("char_level", True)),
                     cpu_bf16_inference)
    if spec.get("base_model") and base.info.model_id != spec["base_model"]:
        raise UserError(f"{path}: trained on base model {spec['base_model']!r}, but {model_dir} "
                        f"holds {base.info.model_id!r}")
    return TrainedRun(path, spec, task, method, base, Predictor.from_run(base, path, method, task))


def recorded_model_dir(run_dir: Path, spec: Mapping[str, object]) -> Path:
    """The base model folder run.json names: as recorded (relative to the workflow's folder, where
    the run was trained), from here or from the folder that holds the run's `results/`."""
    recorded = Path(str(spec.get("model_dir") or ""))
    candidates = [recorded] if recorded.is_absolute() else \
        [recorded, *(parent / recorded for parent in run_dir.resolve().parents)]
    for candidate in candidates if str(recorded) not in ("", ".") else []:
        if candidate.is_dir():
            return candidate
    raise UserError(f"{run_dir}: its base model folder {str(recorded)!r} is not here; pass the "
                    f"folder (--model) of {spec.get('base_model', 'its base model')}")


def write_table(path: str | Path, frame: pd.DataFrame) -> None:
    """Parquet, CSV or TSV by the suffix, written atomically."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        write_parquet(path, frame)
    elif suffix in table.SEPARATORS:
        write_text(path, frame.to_csv(sep=table.SEPARATORS[suffix], index=False))
    else:
        raise UserError(f"{path}: unknown table format {suffix!r}; use .parquet, .csv or .tsv")


def predict_file(run_dir: str | Path, input_path: str | Path, output_path: str | Path,
                 model_dir: str | Path | None = None, report_path: str | Path | None = None,
                 batch_size: int = 16, max_new_tokens: int = 64,
                 max_chars: int = DEFAULT_MAX_CHARS, device: str = "cpu", dtype: str = "float32",
                 cpu_bf16_inference: str | bool = "auto") -> dict:
    """Predict every row of a CSV, TSV or Parquet file; write them (every input column kept, plus
    `prediction` and `rejected`) and, with `report_path`, a JSON summary: rows, predicted,
    rejected by reason. Returns the summary."""
    frame = table.read_table(input_path, None)
    run = load_run(run_dir, model_dir, device, dtype, cpu_bf16_inference)
    result = run.predict(frame, batch_size, max_new_tokens, max_chars, source=str(input_path))
    write_table(output_path, result)
    rejected = Counter(reason.split(":", 1)[0] for reason in result[REJECTED] if reason)
    summary = {"run": str(run_dir), "task": run.task.name, "method": run.method.name,
               "base_model": run.base.info.model_id, "input": str(input_path),
               "output": str(output_path), "rows": len(result),
               "predicted": int((result[REJECTED] == "").sum()),
               "rejected": dict(sorted(rejected.items())),
               "precision": run.base.precision.to_json()}
    if report_path is not None:
        write_json(report_path, summary)
    log.info("predicted %d of %d rows of %s (rejected: %s)", summary["predicted"], len(result),
             input_path, summary["rejected"] or "none")
    return summary
