"""Check a workflow config before the DAG is built: each problem is one line that names its key.

`config_problems` runs the JSON schema, refuses non-finite numbers (`.nan`, `.inf`), and checks
the names that tie the sections together: the tasks and domain tags a config defines (each
built as `tagllm.tasks.build_task` builds it, against the columns of the datasets its runs read),
the datasets that runs, stage-1 tags and synthetic inputs name (a dataset set to null in an
overlay is switched off), the stage-1 tags that the runs' tasks need, and the runs that headline,
baselines and ablations name. Without it these surface as
a schema dump or as a Snakemake MissingInputException. The imports are light (yaml, jsonschema
and the task and method registries) because the Snakefile runs this before any rule exists.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml
from jsonschema import Draft202012Validator, ValidationError
from jsonschema.exceptions import best_match

from tagllm.data.kinds import dataset_columns
from tagllm.errors import UserError
from tagllm.methods import METHODS, SWEEP_PATTERN
from tagllm.tasks import TASK_ALIASES, Task, build_task, registry, run_dataset

# The dataset kind each role of a synthetic dataset's `inputs:` is built from.
INPUT_KINDS = {"molecules": "qed", "proteins": "descriptor"}
_YAML_SPELLING = {math.inf: ".inf", -math.inf: "-.inf"}


def config_problems(config: Mapping, schema: str | Path | Mapping) -> list[str]:
    """Every problem of `config` (as loaded, null entries included), one line each; [] if none.

    The cross-references are checked only once the schema passes: they read its structure.
    """
    if not isinstance(schema, Mapping):
        schema = yaml.safe_load(Path(schema).read_text())
    problems = _non_finite(config, ())
    flagged = {line.split(":")[0] for line in problems}
    validator = Draft202012Validator(schema)
    for error in sorted(validator.iter_errors(config), key=lambda e: _key(e.absolute_path)):
        for leaf in _leaves(error):
            line = _describe(leaf, schema)
            if line.split(":")[0] not in flagged and line not in problems:
                problems.append(line)
    return problems or _reference_problems(config)


def _non_finite(value, path: tuple) -> list[str]:
    if isinstance(value, Mapping):
        return [line for key, item in value.items() for line in _non_finite(item, (*path, key))]
    if isinstance(value, list):
        return [line for i, item in enumerate(value) for line in _non_finite(item, (*path, i))]
    if isinstance(value, float) and not math.isfinite(value):
        spelled = _YAML_SPELLING.get(value, ".nan")
        return [f"{_where(path)}: {spelled} is not a finite number"]
    return []


def _leaves(error: ValidationError) -> list[ValidationError]:
    """The errors worth showing under `error`: for oneOf/anyOf, those of the branches whose type
    fits the value (a mapping is not meant to be null), not the whole block."""
    if not error.context:
        return [error]
    branches: dict[int, list[ValidationError]] = {}
    for sub in error.context:
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    fitting = [subs for subs in branches.values()
               if not any(s.validator == "type" and s.absolute_path == error.absolute_path
                          for s in subs)]
    if len(fitting) > 1:
        return [best_match(error.context)]
    if not fitting:  # described as "expected <the branches' types>"
        return [error]
    return [leaf for sub in fitting[0] for leaf in _leaves(sub)]


def _describe(error: ValidationError, schema: Mapping) -> str:
    """One line for a schema error: `config <key path>: <what is wrong>`."""
    where = _where(error.absolute_path)
    value = error.instance
    kind = error.validator
    if kind == "additionalProperties":
        known = list(error.schema.get("properties", {}))
        unknown = [k for k in value if k not in known]
        return f"{where}: {', '.join(_unknown(k, known) for k in unknown)}"
    if "propertyNames" in error.absolute_schema_path:
        if kind == "enum":
            return f"{where}: {_unknown(value, error.validator_value)}; known: " \
                   f"{', '.join(map(str, error.validator_value))}"
        return f"{where}: name {value!r} must match {error.validator_value}"
    if kind == "required":
        missing = [k for k in error.validator_value if k not in value]
        return f"{where}: missing key{'s' * (len(missing) > 1)} {', '.join(map(repr, missing))}" \
               f"{_condition(error, schema)}"
    if kind == "enum":
        choices = ", ".join(map(str, error.validator_value))
        return f"{where}: {value!r} is not one of {choices}{_suggest(value, error.validator_value)}" \
               f"{_condition(error, schema)}"
    if kind == "type":
        return f"{where}: expected {_types(error.validator_value)}, got {_shown(value)}" \
               f"{_number_hint(value, error.validator_value)}"
    if kind == "oneOf":  # no branch's type fits
        types = [b.get("type", "object") for b in error.validator_value if isinstance(b, Mapping)]
        return f"{where}: expected {_types(types)}, got {_shown(value)}"
    message = error.message if not isinstance(value, (Mapping, list)) else \
        error.message.replace(repr(value), _shown(value))
    return f"{where}: {message}"


def _reference_problems(config: Mapping) -> list[str]:
    """Names that must point at a dataset, a stage-1 tag, a run or a method."""
    problems: list[str] = []
    data = config.get("data") or {}
    datasets = {name: entry for name, entry in data.items() if entry is not None}

    def dataset(path: tuple, name: str, kind: str | None = None, why: str = "",
                note: str = "") -> dict | None:
        if name in data and data[name] is None:
            problems.append(f"{_where(path)}: dataset {name!r}{note} is switched off (null) in data")
        elif name not in datasets:
            problems.append(f"{_where(path)}: dataset {name!r}{note} is not a key of data"
                            f"{_suggest(name, datasets)}")
        elif kind and datasets[name]["kind"] != kind:
            problems.append(f"{_where(path)}: dataset {name!r}{note} is of kind "
                            f"{datasets[name]['kind']}; {why} needs one of kind {kind}")
        else:
            return datasets[name]
        return None

    for name, entry in datasets.items():
        for role, source in (entry.get("inputs") or {}).items():
            dataset(("data", name, "inputs", role), source, INPUT_KINDS[role], f"inputs.{role}")
    tasks, domain_tags = _task_problems(config, problems)
    stage1 = {tag: entry for tag, entry in (config.get("stage1") or {}).items()
              if entry is not None}
    for tag, entry in stage1.items():
        if tag not in domain_tags:
            problems.append(f"{_where(('stage1', tag))}: {tag!r} is not a domain tag (built-in: "
                            f"{', '.join(registry().domain_tags)}; a new one goes in domain_tags:)"
                            f"{_suggest(tag, domain_tags)}")
        found = dataset(("stage1", tag, "dataset"), entry["dataset"])
        columns = dataset_columns(found) if found else {}
        if found and entry["column"] not in columns:
            problems.append(f"{_where(('stage1', tag, 'column'))}: {entry['column']!r} is not a "
                            f"column of dataset {entry['dataset']!r} (kind {found['kind']}: "
                            f"{', '.join(columns)}){_suggest(entry['column'], columns)}")
    runs, switched_off = {}, set()  # run name -> (stage, its Task, or None for an unknown task)
    for stage in ("stage2", "stage3"):
        for name, entry in (config.get(stage) or {}).items():
            if entry is None:
                switched_off.add(name)
                continue
            if name in runs:
                problems.append(f"{_where((stage, name))}: run {name!r} is also in {runs[name][0]}")
            named = entry.get("task", name)
            task = tasks.get(named) or tasks.get(TASK_ALIASES.get(named, named))
            runs[name] = (stage, task)
            if task is None and entry.get("task", name) in (config.get("tasks") or {}):
                continue  # its task does not build: reported under tasks:
            if task is None and "task" in entry:
                problems.append(f"{_where((stage, name, 'task'))}: unknown task "
                                f"{entry['task']!r} (known: {', '.join(tasks)}; a new one "
                                f"goes in tasks:){_suggest(entry['task'], tasks)}")
                continue
            if task is None:
                problems.append(f"{_where((stage, name))}: the run's name is not a task, so it "
                                f"needs task: (one of {', '.join(tasks)})")
                continue
            if "dataset" in entry:
                found = dataset((stage, name, "dataset"), entry["dataset"])
            else:
                found = dataset((stage, name), name, note=" (the run's name: it sets no dataset:)")
            if found is not None:
                problem = _task_fits(task, config, found, entry.get("dataset", name))
                if problem:
                    problems.append(f"{_where((stage, name))}: {problem}")
            missing = [tag for tag in task.domain_tags if tag not in stage1]
            if missing:
                problems.append(f"{_where((stage, name))}: task {task.name} needs the stage-1 "
                                f"tag{'s' * (len(missing) > 1)} {', '.join(missing)}, which "
                                f"stage1 does not define")

    def run(path: tuple, name: str, regression: bool = False, single_input: bool = False,
            direct: bool = False) -> None:
        if name in switched_off and name not in runs:
            problems.append(f"{_where(path)}: run {name!r} is switched off (null) in stage2/stage3")
        elif name not in runs:
            problems.append(f"{_where(path)}: {name!r} is not a run (a key of stage2/stage3)"
                            f"{_suggest(name, runs)}")
        elif (task := runs[name][1]) is None:
            pass  # its unknown task is reported with the run
        elif regression and task.kind != "regression":
            problems.append(f"{_where(path)}: run {name!r} is not a regression run")
        elif single_input and len(task.char_fields) != 1:
            problems.append(f"{_where(path)}: run {name!r} has {len(task.char_fields)} SMILES or "
                            f"protein inputs; the nearest neighbour needs exactly one")
        elif direct and task.kind == "generation" and not {"src_lang", "tgt_lang"} <= set(
                task.input_columns()):
            problems.append(f"{_where(path)}: run {name!r} is not a translation (src_lang and "
                            f"tgt_lang); direct prompting asks for a translation")

    headline = config.get("headline") or {}
    baselines = config.get("baselines") or {}
    ablations = config.get("ablations") or {}
    for i, name in enumerate(headline.get("runs") or []):
        run(("headline", "runs", i), name)
    for i, method in enumerate(headline.get("baselines") or []):
        if method not in METHODS and not SWEEP_PATTERN.fullmatch(method):
            problems.append(f"{_where(('headline', 'baselines', i))}: {method!r} is not a method"
                            f"{_suggest(method, METHODS)}")
    for key, regression, single in (("runs", True, False), ("nearest_neighbour", True, True),
                                    ("direct_prompting", False, False)):
        for i, name in enumerate(baselines.get(key) or []):
            run(("baselines", key, i), name, regression, single, key == "direct_prompting")
    if ablations.get("run"):
        run(("ablations", "run"), ablations["run"])
    if config.get("predict") and not problems:
        _predict_problems(config, problems)
    enriching = [m for m in ablations.get("methods") or [] if METHODS[m].enriched_tags_from]
    if ablations.get("enrich_run"):
        run(("ablations", "enrich_run"), ablations["enrich_run"])
    elif enriching and ablations.get("run"):
        problems.append(f"{_where(('ablations',))}: the {enriching[0]} ablation needs enrich_run "
                        f"(the run whose training enriches the domain tags)")
    return problems


def _predict_problems(config: Mapping, problems: list[str]) -> None:
    """Each `predict:` entry names a (method, run, seed) that the plan trains."""
    from tagllm.plan import build_plan

    plan = build_plan(config)
    for name, entry in config["predict"].items():
        run, method = entry["run"], entry.get("method", "tagllm")
        if run not in plan.runs:
            problems.append(f"{_where(('predict', name, 'run'))}: {run!r} is not a run (a key "
                            f"of stage2/stage3){_suggest(run, plan.runs)}")
            continue
        trained = sorted(m for m, r in plan.jobs if r == run)
        if (method, run) not in plan.jobs:
            problems.append(f"{_where(('predict', name, 'method'))}: {method!r} is not trained on "
                            f"run {run!r} (trained there: {', '.join(trained)})")
            continue
        seeds = plan.job_seeds(method, run)
        seed = entry.get("seed", plan.seeds[0])
        if seed not in seeds:
            problems.append(f"{_where(('predict', name, 'seed'))}: {method} on {run} is trained "
                            f"with seeds {', '.join(map(str, seeds))}, not {seed}")


def _task_problems(config: Mapping, problems: list[str]) -> tuple[dict[str, Task], set[str]]:
    """The tasks that build (built-in and the config's own) and the domain tags known; a task of
    `tasks:` that does not build is one problem line."""
    builtin = registry()
    domain_tags = {*builtin.domain_tags, *(config.get("domain_tags") or {})}
    tasks = dict(builtin.tasks)
    for name, spec in (config.get("tasks") or {}).items():
        try:
            tasks[name] = build_task(name, spec or {}, domain_tags, *run_dataset(config, name))
        except UserError as error:
            problems.append(f"{_where(('tasks', name))}: {str(error).removeprefix(f'task {name}: ')}")
            tasks.pop(name, None)
    return tasks, domain_tags


def _task_fits(task: Task, config: Mapping, entry: Mapping, dataset: str) -> str | None:
    """Why `task` cannot read dataset `entry` (its fields and label are not columns of it, of the
    kinds the task needs), or None."""
    spec = (config.get("tasks") or {}).get(task.name) or registry().specs[task.name]
    columns = dataset_columns(entry)
    try:
        build_task(task.name, spec, task.domain_tags, columns,
                   f"dataset {dataset!r} (kind {entry['kind']})")
    except UserError as error:
        return str(error)
    wrong = [f"{column} is {columns[column]}, not {kind}"
             for column, kind in task.fields.items() if columns[column] != kind]
    if wrong:
        return f"task {task.name} reads dataset {dataset!r}, whose {'; '.join(wrong)}"
    return None


def _where(path: Sequence) -> str:
    """`config stage2.qed.train`, `config baselines.methods[2]` (or `config` for the top)."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return f"config {text}" if text else "config"


def _key(path: Sequence) -> list[str]:
    return [str(part) for part in path]


def _unknown(key, known) -> str:
    return f"unknown key {key!r}{_suggest(key, known)}"


def _suggest(name, known) -> str:
    close = difflib.get_close_matches(str(name), [str(k) for k in known], n=1, cutoff=0.6)
    if not close:  # case slips (Smiles for SMILES)
        close = [str(k) for k in known if str(k).lower() == str(name).lower()]
    return f" (did you mean {close[0]!r}?)" if close else ""


def _types(types) -> str:
    names = {"object": "a mapping", "array": "a list", "null": "null", "string": "a string",
             "integer": "an integer", "number": "a number", "boolean": "true or false"}
    types = [types] if isinstance(types, str) else types
    return " or ".join(names.get(t, t) for t in types)


def _shown(value) -> str:
    """A value for a one-line message: scalars as written, containers by kind and size."""
    if isinstance(value, Mapping):
        return f"a mapping with keys {', '.join(map(str, value))}" if value else "an empty mapping"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def _number_hint(value, expected) -> str:
    """PyYAML reads 1e-4 (no dot) as a string."""
    if isinstance(value, str) and "number" in expected:
        try:
            float(value)
        except ValueError:
            return ""
        return f" (YAML reads {value} as text: write it with a dot, e.g. 1.0e-4)"
    return ""


def _condition(error: ValidationError, schema: Mapping) -> str:
    """` (with kind qed)` when the error comes from an if/then rule of the schema."""
    path = list(error.absolute_schema_path)
    if "then" not in path:
        return ""
    at = len(path) - 1 - path[::-1].index("then")
    rule = _schema_at(schema, [*path[:at], "if"])
    parts = []
    for key, sub in (rule.get("properties") or {}).items():
        if "const" in sub:
            parts.append(f"{key} {sub['const']}")
        elif "enum" in sub:
            parts.append(f"{key} {'/'.join(map(str, sub['enum']))}")
    return f" (with {', '.join(parts)})" if parts else ""


def _schema_at(schema: Mapping, path: Sequence):
    """The subschema at a schema path, following local `$ref`s (which the path passes through)."""
    node = schema
    for part in path:
        while isinstance(node, Mapping) and "$ref" in node and part not in node:
            node = _schema_at(schema, node["$ref"].lstrip("#/").split("/"))
        node = node[part]
    return node
