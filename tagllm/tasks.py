"""Tasks and domain tags as data: which tags a task uses, its prompt, kind, metric and columns.

The paper's five tasks and ten domain tags are the built-in defaults (`builtin_tasks.yaml`); a
config's `tasks:` and `domain_tags:` sections add to them or replace them, in the same form
(`registry`). A task travels to a job, and into every `run.json` and `metrics.json`, as its
`to_json()` spec, so a saved run is read without any registry.

Prompts end with the function tag; a regression head reads the hidden state at its last position,
and a generation task continues with its `label` column's text after it. `<{column}>` in a template
is a tag named by the row (translation's source and target languages). `# #` is literal.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import yaml

from tagllm.data.kinds import dataset_columns
from tagllm.errors import UserError
from tagllm.prompts import FIELD_PATTERN

LANGUAGE_NAMES = {"en": "English", "fr": "French", "ru": "Russian", "de": "German", "it": "Italian",
                  "el": "Greek", "es": "Spanish", "pt": "Portuguese"}
KINDS = ("regression", "generation")
METRICS = {"regression": ("mse", "mae", "pearson", "spearman"),
           "generation": ("spbleu", "bleu", "chrf")}
FIELD_KINDS = ("smiles", "protein", "text", "number")  # a number field goes in as its text
CHAR_KINDS = ("smiles", "protein")  # one character per token, as the paper does
# Lower is better for these metrics.
LOWER_IS_BETTER = ("mse", "mae")
TAG_PATTERN = re.compile(r"<([A-Za-z][A-Za-z0-9_]*)>")
ROW_TAG_PATTERN = re.compile(r"<\{(\w+)\}>")
TASK_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
BUILTIN_FILE = Path(__file__).with_name("builtin_tasks.yaml")
SPEC_FORMAT = "tagllm.task/1"


@dataclass(frozen=True)
class DomainTag:
    name: str
    char_level: bool = False  # stage-1 text one character per token (SMILES, proteins)

    @property
    def template(self) -> str:  # stage 1: `<tag> text`
        return f"<{self.name}> {{text}}"

    @property
    def char_fields(self) -> frozenset[str]:
        return frozenset({"text"}) if self.char_level else frozenset()

    def to_json(self) -> dict:
        return {"name": self.name, "char_level": self.char_level}


@dataclass(frozen=True)
class Task:
    name: str
    template: str
    kind: str  # "regression" or "generation"
    metric: str  # headline metric
    label: str  # regression: the number column; generation: the text column to produce
    fields: Mapping[str, str]  # template field -> smiles, protein or text
    domain_tags: tuple[str, ...]
    function_tag: str
    stage: int  # 2: single-domain function tag; 3: cross-domain
    group_by: tuple[str, ...] = ()  # generation: scored per group (translation: per direction)
    paper_value: float | None = None  # Tag-LLaMA's number in paper Table 2
    row_tags: tuple[str, ...] = field(default=(), compare=False)  # columns naming a tag per row

    @property
    def char_fields(self) -> frozenset[str]:
        return frozenset(name for name, kind in self.fields.items() if kind in CHAR_KINDS)

    @property
    def lower_is_better(self) -> bool:
        return self.metric in LOWER_IS_BETTER

    def prompt(self, row: Mapping[str, object]) -> str:
        """The template for one row: a `<{column}>` tag becomes the domain tag the row names there
        (case-insensitive: `en` is `<EN>`)."""
        if not self.row_tags:
            return self.template
        by_lower = {tag.lower(): tag for tag in self.domain_tags}

        def tag_of(match: re.Match) -> str:
            value = str(row[match.group(1)])
            if value.lower() not in by_lower:
                raise UserError(f"task {self.name}: {match.group(1)} {value!r} names no domain "
                                f"tag of the task ({', '.join(self.domain_tags)})")
            return f"<{by_lower[value.lower()]}>"

        return ROW_TAG_PATTERN.sub(tag_of, self.template)

    def target(self, row: Mapping[str, object]) -> str | None:
        """Text the LM must produce after the prompt (generation tasks only), ended by the line
        break at which decoding stops: without it, training never shows where an answer ends."""
        return f" {row[self.label]}\n" if self.kind == "generation" else None

    def input_columns(self) -> list[str]:
        """Columns a prompt reads, in template order (row-tag columns included)."""
        return list(dict.fromkeys(FIELD_PATTERN.findall(self.template)))

    def columns(self) -> list[str]:
        """Columns training and scoring read: the inputs, the group columns and the label."""
        return list(dict.fromkeys([*self.input_columns(), *self.group_by, self.label]))

    def __hash__(self) -> int:  # fields is a dict
        return hash((self.name, self.template, self.kind, self.label))

    def source_text(self) -> str | None:
        """A generation task's one text input (translation: `src`), which the copy-the-source
        baseline copies; None when it has none or several."""
        texts = [column for column, kind in self.fields.items() if kind == "text"
                 and column not in (*self.row_tags, *self.group_by)]
        return texts[0] if self.kind == "generation" and len(texts) == 1 else None

    def column_kinds(self) -> dict[str, str]:
        """What each column of `columns()` holds: smiles, protein, text or number (the label of
        a regression task)."""
        kinds = {column: "text" for column in self.columns()}
        kinds.update(self.fields)
        kinds[self.label] = "number" if self.kind == "regression" else "text"
        return kinds

    def to_json(self) -> dict:
        """The spec this task is rebuilt from (`task_from_json`), with its name."""
        spec = {"format": SPEC_FORMAT, "name": self.name, "template": self.template,
                "kind": self.kind, "metric": self.metric, "label": self.label,
                "fields": dict(self.fields), "domain_tags": list(self.domain_tags),
                "function_tag": self.function_tag, "stage": self.stage,
                "group_by": list(self.group_by)}
        if self.paper_value is not None:
            spec["paper_value"] = self.paper_value
        return spec


SPEC_KEYS = {"template", "kind", "metric", "label", "fields", "domain_tags", "stage", "group_by",
             "paper_value", "function_tag", "name", "format"}


def build_task(name: str, spec: Mapping[str, object], domain_tags: Iterable[str],
               columns: Mapping[str, str] | None = None, dataset: str = "its dataset") -> Task:
    """A task from its spec, checked: the template ends with its function tag, every other tag is
    a known domain tag, every field has a kind (given, or the dataset column's), and with the
    dataset's `columns` (column -> smiles, protein, text or number) known, the template's fields
    and the label are columns of it. Errors name the task and the problem."""
    where = f"task {name}"
    if not TASK_NAME.fullmatch(name):
        raise UserError(f"{where}: a task name is lower case letters, digits and _")
    unknown = sorted(set(spec) - SPEC_KEYS)
    if unknown:
        raise UserError(f"{where}: unknown key{'s' * (len(unknown) > 1)} {', '.join(unknown)} "
                        f"(a task takes {', '.join(sorted(SPEC_KEYS - {'name', 'format'}))})")
    template = spec.get("template")
    if not isinstance(template, str) or not template.strip():
        raise UserError(f"{where}: template must be a non-empty string")
    kind = spec.get("kind", "regression")
    if kind not in KINDS:
        raise UserError(f"{where}: kind must be one of {', '.join(KINDS)}, not {kind!r}")
    metric = spec.get("metric", METRICS[kind][0])
    if metric not in METRICS[kind]:
        raise UserError(f"{where}: a {kind} task's metric is one of {', '.join(METRICS[kind])}, "
                        f"not {metric!r}")
    label = str(spec.get("label", "y" if kind == "regression" else "target"))
    known = set(domain_tags)
    row_tags = tuple(ROW_TAG_PATTERN.findall(template))
    tags = TAG_PATTERN.findall(ROW_TAG_PATTERN.sub("", template))
    if not tags or not template.rstrip().endswith(f"<{tags[-1]}>"):
        raise UserError(f"{where}: the template must end with its function tag, e.g. "
                        f"'... is <{name.capitalize()}>'")
    function_tag, used = tags[-1], tags[:-1]
    if function_tag in known:
        raise UserError(f"{where}: its function tag <{function_tag}> is the name of a domain tag")
    if row_tags:
        listed = spec.get("domain_tags")
        if not listed:
            raise UserError(f"{where}: a template with <{{column}}> tags lists the domain tags "
                            f"its rows may name (domain_tags:)")
        used = [*used, *listed]
    elif spec.get("domain_tags") is not None and list(spec["domain_tags"]) != list(
            dict.fromkeys(used)):
        raise UserError(f"{where}: domain_tags {list(spec['domain_tags'])} differ from the "
                        f"template's {list(dict.fromkeys(used))}")
    domain = tuple(dict.fromkeys(used))
    missing = [tag for tag in domain if tag not in known]
    if missing:
        raise UserError(f"{where}: unknown domain tag{'s' * (len(missing) > 1)} "
                        f"{', '.join(missing)} (known: {', '.join(sorted(known))}; a new one "
                        f"goes in domain_tags:)")
    inputs = list(dict.fromkeys(FIELD_PATTERN.findall(template)))
    given = dict(spec.get("fields") or {})
    fields = {}
    for column in inputs:
        kind_of = given.get(column) or (columns or {}).get(column)
        if columns is not None and column not in columns:
            raise UserError(f"{where}: field {{{column}}} is not a column of {dataset} "
                            f"(columns: {', '.join(columns)})")
        if kind_of is None:
            raise UserError(f"{where}: field {{{column}}} needs a kind (fields: {{{column}: "
                            f"smiles|protein|text|number}})")
        if kind_of not in FIELD_KINDS:
            raise UserError(f"{where}: field {column} is {kind_of!r}; a field is one of "
                            f"{', '.join(FIELD_KINDS)}")
        fields[column] = kind_of
    extra = sorted(set(given) - set(inputs))
    if extra:
        raise UserError(f"{where}: fields {', '.join(extra)} are not in the template")
    if columns is not None:
        label_kind = "number" if kind == "regression" else "text"
        if label not in columns:
            raise UserError(f"{where}: label {label!r} is not a column of {dataset} "
                            f"(columns: {', '.join(columns)})")
        if columns[label] != label_kind:
            raise UserError(f"{where}: label {label!r} is a {columns[label]} column; a {kind} "
                            f"task's label is a {label_kind} column")
    group_by = tuple(spec.get("group_by") or ())
    if group_by and kind != "generation":
        raise UserError(f"{where}: group_by scores a generation task per group; a regression "
                        f"task is scored on all its rows")
    missing_groups = [c for c in group_by if columns is not None and c not in columns]
    if missing_groups:
        raise UserError(f"{where}: group_by {', '.join(missing_groups)} not a column of "
                        f"{dataset} (columns: {', '.join(columns or {})})")
    if spec.get("function_tag") not in (None, function_tag):
        raise UserError(f"{where}: function_tag {spec['function_tag']!r} is not the tag its "
                        f"template ends with (<{function_tag}>)")
    stage = int(spec.get("stage", 3 if len(domain) > 1 else 2))
    paper = spec.get("paper_value")
    return Task(name, template, kind, metric, label, fields, domain, function_tag, stage,
                group_by, None if paper is None else float(paper), row_tags)


def task_from_json(spec: Mapping[str, object] | str) -> Task:
    """A task from `Task.to_json()` (a dict, or its JSON text), trusting its domain tags."""
    if isinstance(spec, str):
        spec = json.loads(spec)
    return build_task(str(spec["name"]), spec, list(spec.get("domain_tags") or []))


@dataclass(frozen=True)
class Registry:
    """Every task and domain tag a config defines (built-in ones included), by name."""

    tasks: Mapping[str, Task]
    domain_tags: Mapping[str, DomainTag]
    specs: Mapping[str, Mapping[str, object]]  # task specs as given, for checks against datasets

    def task(self, name: str) -> Task:
        name = TASK_ALIASES.get(name, name) if name not in self.tasks else name
        if name not in self.tasks:
            raise UserError(f"unknown task {name!r}; known tasks: "
                            f"{', '.join(sorted([*self.tasks, *TASK_ALIASES]))}")
        return self.tasks[name]

    def domain_tag(self, name: str) -> DomainTag:
        if name not in self.domain_tags:
            raise UserError(f"unknown domain tag {name!r}; known: "
                            f"{', '.join(sorted(self.domain_tags))}")
        return self.domain_tags[name]


@cache
def _builtin() -> dict:
    return yaml.safe_load(BUILTIN_FILE.read_text(encoding="utf-8"))


def registry(config: Mapping[str, object] | None = None) -> Registry:
    """The built-in tasks and domain tags, with a config's `tasks:` and `domain_tags:` entries
    added (or replacing built-in ones of the same name)."""
    config = config or {}
    tag_specs = {**_builtin()["domain_tags"], **(config.get("domain_tags") or {})}
    domain = {}
    for name, spec in tag_specs.items():
        spec = spec or {}
        unknown = sorted(set(spec) - {"char_level"})
        if not TAG_PATTERN.fullmatch(f"<{name}>") or unknown:
            raise UserError(f"domain tag {name!r}: a tag name is letters, digits and _ (starting "
                            f"with a letter) and takes only char_level")
        domain[name] = DomainTag(name, bool(spec.get("char_level", False)))
    own = config.get("tasks") or {}
    specs = {**_builtin()["tasks"], **own}
    tasks = {name: build_task(name, spec, domain, *(run_dataset(config, name) if name in own
                                                    else (None,)))
             for name, spec in specs.items()}
    return Registry(tasks, domain, specs)


def run_dataset(config: Mapping[str, object], task: str) -> tuple[Mapping[str, str] | None, str]:
    """The columns (with their kinds) of the dataset that the first run of `task` reads, and how
    to name it in a message; (None, ...) when no run of the config reads a known dataset. A task
    of the config takes its fields' kinds from there."""
    data = config.get("data") or {}
    for stage in ("stage2", "stage3"):
        for run, entry in (config.get(stage) or {}).items():
            if entry is None or entry.get("task", run) != task:
                continue
            name = entry.get("dataset", run)
            if data.get(name):
                return dataset_columns(data[name]), f"dataset {name!r} (kind {data[name]['kind']})"
    return None, "its dataset"


# The embedded default's synthetic datasets use the same prompts and tags.
TASK_ALIASES = {"dc_synthetic": "dc", "ba_synthetic": "ba"}


@cache
def builtin_registry() -> Registry:
    return registry()


def get_task(name: str) -> Task:
    """A built-in task by name (or alias)."""
    return builtin_registry().task(name)


def get_domain_tag(name: str) -> DomainTag:
    """A built-in domain tag by name."""
    return builtin_registry().domain_tag(name)


def is_builtin(task: Task) -> bool:
    """Whether `task` is a built-in one as shipped (a config may redefine a built-in name)."""
    return task.name in TASKS and TASKS[task.name].to_json() == task.to_json()


def as_task(task: Task | str | Mapping[str, object]) -> Task:
    """A task given as itself, its spec (a dict or JSON text, as the workflow passes it) or the
    name of a built-in one."""
    if isinstance(task, Task):
        return task
    if isinstance(task, Mapping) or str(task).lstrip().startswith("{"):
        return task_from_json(task)
    return get_task(str(task))


def as_domain_tag(tag: DomainTag | str) -> DomainTag:
    """A domain tag given as itself, its spec (JSON text) or the name of a built-in one."""
    if isinstance(tag, DomainTag):
        return tag
    if tag.lstrip().startswith("{"):
        spec = json.loads(tag)
        return DomainTag(str(spec["name"]), bool(spec.get("char_level", False)))
    return get_domain_tag(tag)


def task_of_metrics(metrics: Mapping[str, object]) -> Task:
    """The task of a saved metrics.json or run.json: its spec, or (older files) the built-in one."""
    spec = metrics.get("task_spec")
    return task_from_json(spec) if spec else get_task(str(metrics["task"]))


TASKS = builtin_registry().tasks
DOMAIN_TAGS = builtin_registry().domain_tags
