"""The tag table: named, learned input vectors of shape [p, d], their initialisation, save and load.

A tag is a `p x d` matrix spliced into `inputs_embeds`; the base model never sees a token for it and can
never generate it. Tags are stored as `tags.safetensors` (one tensor per tag) plus `tags.json` (names,
shapes, base model, stage and provenance); loading checks the base model and the shapes.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from tagllm import __version__
from tagllm.atomic import atomic_path, write_json
from tagllm.errors import UserError

TAGS_FILE = "tags.safetensors"
TAGS_META = "tags.json"


class TagFileError(UserError):
    """A tag file that is missing, malformed, or made for another base model."""


@dataclass(frozen=True)
class BaseModelInfo:
    """What a tag is bound to: the base model's identity and embedding width."""

    model_id: str
    hidden_size: int
    vocab_size: int


@dataclass
class TagRecord:
    """Metadata kept for one tag in tags.json."""

    name: str
    length: int
    kind: str  # "domain" or "function"
    stage: int
    init: str
    trained_in: str = ""
    provenance: dict[str, str] = field(default_factory=dict)


def mean_embedding_init(embeddings: torch.Tensor, length: int) -> torch.Tensor:
    """Paper init: the mean token embedding, rescaled to the mean token-embedding norm, repeated p times.

    The authors' code hard-codes the norm factor (7.8, LLaMA-7B only); here it is computed. (p, d)
    """
    weights = embeddings.detach().float()  # (V, d)
    mean = weights.mean(dim=0)  # (d,)
    target_norm = weights.norm(dim=1).mean()
    scaled = mean * (target_norm / mean.norm().clamp_min(1e-12))
    return scaled.unsqueeze(0).repeat(length, 1)  # (p, d)


class TagTable(nn.Module):
    """Named tags, each an `nn.Parameter` of shape (p, d); trainable or frozen per tag."""

    def __init__(self, base: BaseModelInfo) -> None:
        super().__init__()
        self.base = base
        self.tags = nn.ParameterDict()
        self.records: dict[str, TagRecord] = {}

    # ----------------------------------------------------------------- construction
    def add(self, record: TagRecord, value: torch.Tensor, trainable: bool) -> None:
        if record.name in self.tags:
            raise ValueError(f"tag <{record.name}> is already in the table")
        if tuple(value.shape) != (record.length, self.base.hidden_size):
            raise TagFileError(
                f"tag <{record.name}> has shape {tuple(value.shape)}, expected "
                f"({record.length}, {self.base.hidden_size}) for {self.base.model_id}"
            )
        self.tags[record.name] = nn.Parameter(value.detach().float().clone(), requires_grad=trainable)
        self.records[record.name] = record

    def add_new(
        self, name: str, kind: str, stage: int, length: int, embeddings: torch.Tensor, run: str
    ) -> None:
        """Add a freshly initialised, trainable tag."""
        if isinstance(length, bool) or not isinstance(length, int) or length < 1:
            raise UserError(f"tag <{name}>: tag length must be a whole number >= 1, not {length!r}")
        record = TagRecord(name=name, length=length, kind=kind, stage=stage, init="mean_embedding",
                           trained_in=run)
        self.add(record, mean_embedding_init(embeddings, length), trainable=True)

    def set_trainable(self, name: str, trainable: bool) -> None:
        self.tags[name].requires_grad_(trainable)

    # ----------------------------------------------------------------- lookup
    @property
    def names(self) -> list[str]:
        return list(self.tags.keys())

    def trainable_names(self) -> list[str]:
        return [name for name, value in self.tags.items() if value.requires_grad]

    def length(self, name: str) -> int:
        return self.tags[name].shape[0]

    def offsets(self) -> dict[str, int]:
        """Row offset of each tag inside `flat()`."""
        offsets, start = {}, 0
        for name, value in self.tags.items():
            offsets[name] = start
            start += value.shape[0]
        return offsets

    def flat(self) -> torch.Tensor:
        """All tags stacked row-wise in table order. (sum p, d); (0, d) for an empty table."""
        if not self.tags:
            return torch.empty(0, self.base.hidden_size)
        return torch.cat(list(self.tags.values()), dim=0)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [value for value in self.tags.values() if value.requires_grad]

    def trainable_rows(self) -> set[int]:
        """Rows of `flat()` that belong to trainable tags."""
        offsets = self.offsets()
        return {offsets[name] + row for name in self.trainable_names()
                for row in range(self.length(name))}

    def num_trainable(self) -> int:
        return sum(value.numel() for value in self.tags.values() if value.requires_grad)

    # ----------------------------------------------------------------- persistence
    def save(self, folder: str | Path, names: list[str] | None = None) -> None:
        """Write tags.safetensors + tags.json (atomically) for `names` (default: all tags)."""
        folder = Path(folder)
        names = names or self.names
        tensors = {name: self.tags[name].detach().cpu().contiguous() for name in names}
        refuse_non_finite(folder, {f"tag <{name}>": value for name, value in tensors.items()})
        with atomic_path(folder / TAGS_FILE) as tmp:
            save_file(tensors, str(tmp), metadata={"model_id": self.base.model_id})
        write_json(folder / TAGS_META, {
            "format": "tagllm.tags/1",
            "tagllm_version": __version__,
            "base_model": asdict(self.base),
            "tags": [asdict(self.records[name]) for name in names],
        })

    def load(self, folder: str | Path, trainable: bool = False, names: list[str] | None = None,
             expected_length: int | None = None) -> list[str]:
        """Add the tags stored in `folder` (all, or `names`); returns the names added."""
        folder = Path(folder)
        meta, tensors = read_tag_files(folder)
        stored = BaseModelInfo(**meta["base_model"])
        if stored.hidden_size != self.base.hidden_size or stored.model_id != self.base.model_id:
            raise TagFileError(
                f"{folder / TAGS_META}: tags were trained for {stored.model_id} (hidden size "
                f"{stored.hidden_size}) but the base model is {self.base.model_id} (hidden size "
                f"{self.base.hidden_size}); retrain the tags for this model"
            )
        records = {r["name"]: TagRecord(**r) for r in meta["tags"]}
        wanted = names or list(records)
        for name in wanted:
            if name not in records:
                raise TagFileError(f"{folder / TAGS_META}: no tag <{name}> (has {sorted(records)})")
            if expected_length is not None and records[name].length != expected_length:
                raise TagFileError(
                    f"{folder / TAGS_META}: tag <{name}> has length {records[name].length} but this "
                    f"run uses tag length {expected_length}; retrain it or change tag_length"
                )
            self.add(records[name], tensors[name], trainable=trainable)
        return wanted


def refuse_non_finite(folder: str | Path, tensors: dict[str, torch.Tensor]) -> None:
    """Fail, naming `folder`, rather than save a tensor holding NaN or infinity: a diverged run
    must not leave files that the next step reads as trained."""
    bad = [name for name, value in tensors.items() if not torch.isfinite(value).all()]
    if bad:
        raise UserError(f"{folder}: NaN or infinite values in {', '.join(bad)}; not saved (the "
                        "training diverged: try a lower learning rate)")


def read_tag_files(folder: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """Read and cross-check tags.json and tags.safetensors in `folder`."""
    meta_path, tensor_path = folder / TAGS_META, folder / TAGS_FILE
    for path in (meta_path, tensor_path):
        if not path.is_file():
            raise TagFileError(f"{path}: tag file is missing (did the training rule finish?)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        tensors = load_file(str(tensor_path))
    except (json.JSONDecodeError, OSError, RuntimeError, SafetensorError) as error:
        raise TagFileError(f"{folder}: cannot read tag files: {error}") from error
    if meta.get("format") != "tagllm.tags/1":
        raise TagFileError(f"{meta_path}: not a tagllm tag file (format={meta.get('format')!r})")
    for record in meta["tags"]:
        name = record["name"]
        if name not in tensors:
            raise TagFileError(f"{tensor_path}: tensor for tag <{name}> is missing")
        if tensors[name].shape[0] != record["length"]:
            raise TagFileError(
                f"{tensor_path}: tag <{name}> has length {tensors[name].shape[0]}, "
                f"tags.json says {record['length']}"
            )
    return meta, tensors
