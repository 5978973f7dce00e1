"""The experiment plan: a (validated) workflow config turned into typed runs and the jobs to run.

One place says what a config asks for, so that the workflow's `.smk` files, the GPU-hours
estimate and the tables read the same answer: the function-tag runs (a run name, e.g. `my_qed`,
is not a task, e.g. `qed`: a run has a task), every trained (method, run) pair with its training
settings, the seeds each is trained and scored with, the runs trained or scored together in one
job, the model-free predictors and the files the tables read. Light imports (the task and method
registries: yaml, no torch, rdkit or transformers), since Snakemake builds it before any job runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from tagllm.methods import get_method
from tagllm.tasks import Registry, Task, registry

STAGES = ("stage2", "stage3")
# Sections whose entries an overlay switches off by setting them to null.
SWITCHABLE = ("data", "stage1", *STAGES)


@dataclass(frozen=True)
class Run:
    """One function-tag run of stage 2 or 3: its name, task, dataset and training settings."""

    name: str
    task: Task
    dataset: str
    stage: str  # the config section: stage2 or stage3
    train: Mapping[str, object] = field(default_factory=dict)

    @property
    def regression(self) -> bool:
        return self.task.kind == "regression"


@dataclass(frozen=True)
class Plan:
    """What a config asks the workflow to do (see the module docstring)."""

    config: Mapping[str, object]
    registry: Registry
    runs: dict[str, Run]
    seeds: list[int]
    headline_runs: list[str]
    extra_seeds: list[int]  # headline seeds beyond `seeds` (Tag-LLM on the headline runs)
    jobs: dict[tuple[str, str], dict]  # (method, run) -> training settings
    # baselines.seeds beyond `seeds`: the rows trained at the baselines' budget (their PEFT rows
    # and Tag-LLM beside them), whose few examples are drawn per seed.
    budget_seeds: list[int] = field(default_factory=list)

    @property
    def regression_runs(self) -> list[str]:
        return [name for name, run in self.runs.items() if run.regression]

    @property
    def generation_runs(self) -> list[str]:
        return [name for name, run in self.runs.items() if not run.regression]

    @property
    def together(self) -> bool:
        return bool(self.config.get("together", False))

    def section(self, name: str) -> Mapping:
        return self.config.get(name) or {}

    def job_seeds(self, method: str, run: str) -> list[int]:
        """Seeds a (method, run) is trained and scored with: `seeds`, plus the headline seeds for
        Tag-LLM on the headline runs and baselines.seeds for the rows trained at the baselines'
        budget."""
        if method == "tagllm" and run in self.headline_runs:
            return [*self.seeds, *self.extra_seeds]
        if self.at_baselines_budget(method, run):
            return [*self.seeds, *self.budget_seeds]
        return self.seeds

    def at_baselines_budget(self, method: str, run: str) -> bool:
        """Whether (method, run) is a trained baseline of baselines.runs or the Tag-LLM row beside
        them (`tagllm_budget`, or `tagllm` itself when the baselines get the run's own settings);
        a linear probe is not (every row, in closed form: one seed is all it has)."""
        baselines = self.section("baselines")
        trained = [m for m in baselines.get("methods") or [] if get_method(m).trainer != "probe"]
        if run not in (baselines.get("runs") or []) or not trained:
            return False
        beside = "tagllm_budget" if baselines.get("train") else "tagllm"
        return method == beside or method in trained

    def _extra_budget_seeds(self, method: str, run: str) -> bool:
        return bool(self.budget_seeds) and self.at_baselines_budget(method, run)

    def stage1_seed(self, seed: int | str) -> int:
        """The stage-1 seed a run of `seed` reads: its own, or the first for a seed beyond `seeds`
        (a headline seed or one of the baselines' budget)."""
        return int(seed) if int(seed) in self.seeds else self.seeds[0]

    @property
    def tag_methods(self) -> list[str]:
        return sorted({m for m, _ in self.jobs if get_method(m).trainer == "tags"})

    @property
    def baseline_methods(self) -> list[str]:
        return sorted({m for m, _ in self.jobs if get_method(m).trainer != "tags"})

    # ------------------------------------------------------------------- runs in one job
    @property
    def family_run(self) -> str:
        return str(self.section("ablations").get("run") or "")

    @property
    def seeded_runs(self) -> list[str]:
        """Headline runs whose Tag-LLM seeds train in one job, and are scored in one (with
        `together`): the first seed and the headline-only ones, which read the same stage-1
        tags, so their frozen prefixes are computed once."""
        return list(self.headline_runs) if self.together and self.extra_seeds else []

    @property
    def seeds_together(self) -> list[int]:
        return [self.seeds[0], *self.extra_seeds]

    @property
    def tags_together(self) -> list[str]:
        """Stage-1 tags trained in one job, one after another (with `together`): those with the
        most common training settings, when at least two share them (the eight language tags of
        the embedded default)."""
        if not self.together:
            return []
        groups: dict[str, list[str]] = {}
        for tag, entry in self.section("stage1").items():
            groups.setdefault(repr(sorted((entry.get("train") or {}).items())), []).append(tag)
        largest = max(groups.values(), key=len, default=[])
        return largest if len(largest) > 1 else []

    @property
    def trained_together(self) -> list[str]:
        """Methods on ablations.run trained in one job, one after another: the tag-length sweep
        and the ablations that train tags with its settings from the stage-1 domain tags. One
        model load, and the frozen prefixes computed once for all of them (with `together`;
        fewer than two: no family)."""
        run = self.family_run
        if not run or not self.together:
            return []
        settings = {**self.runs[run].train, **(self.section("ablations").get("train") or {})}
        members = [
            method for method, on in self.jobs
            if on == run and not (method == "tagllm" and run in self.seeded_runs)
            and get_method(method).trainer == "tags" and not get_method(method).enrich
            and not get_method(method).enriched_tags_from
            and not self.jobs[(method, on)].get("enrich", False)
            and not self._extra_budget_seeds(method, on)
            and self.jobs[(method, on)] == settings]
        return sorted(members, key=sharing_order) if len(members) > 1 else []

    @property
    def evaluated_together(self) -> list[str]:
        """Methods on ablations.run scored in one job, one after another: every trained method
        there but the PEFT adapters (which change the model in place). The test rows' frozen
        prefix is computed once for all the runs that share it (with `together`)."""
        run = self.family_run
        if not run or not self.together:
            return []
        members = [method for method, on in self.jobs
                   if on == run and get_method(method).adapter == "none"
                   and not (method == "tagllm" and run in self.seeded_runs)
                   and not self._extra_budget_seeds(method, on)]
        return sorted(members, key=sharing_order) if len(members) > 1 else []

    # ------------------------------------------------------------------- what the tables read
    def model_free_jobs(self) -> list[tuple[str, str]]:
        """(method, run) scored without a model: the training mean on every regression run, the
        nearest neighbour on the runs listed for it, the copied source on every generation run
        with one source text (translation)."""
        jobs = [("train_mean", run) for run in self.regression_runs]
        jobs += [("copy_source", run) for run in self.generation_runs
                 if self.runs[run].task.source_text() is not None]
        return jobs + [("nearest_neighbour", run)
                       for run in self.section("baselines").get("nearest_neighbour") or []]

    def direct_prompting_runs(self) -> list[str]:
        return list(self.section("baselines").get("direct_prompting") or [])

    def eval_metric_files(self) -> list[str]:
        """Every evaluation metrics file that goes into the tables."""
        trained = [f"results/eval/{method}/{run}/seed{seed}/metrics.json"
                   for method, run in self.jobs for seed in self.job_seeds(method, run)
                   if method != "tagllm_enrich"]
        untrained = [f"results/eval/{method}/{run}/metrics.json"
                     for method, run in [*self.model_free_jobs(),
                                         *(("direct_prompting", r)
                                           for r in self.direct_prompting_runs())]]
        return trained + untrained

    def run_metric_files(self) -> list[str]:
        """Training metrics of every trained run (loss curves, trainable parameters)."""
        return [f"results/runs/{method}/{run}/seed{seed}/metrics.json"
                for method, run in self.jobs for seed in self.job_seeds(method, run)]

    def setting(self, model: str) -> str:
        """One line naming the base model and data, in every table caption and figure title."""
        source = self.config["model"].get("hub_id") or self.config["model"]["source"]
        extra = (f" (Tag-LLM on {', '.join(self.headline_runs)}: "
                 f"{[*self.seeds, *self.extra_seeds]})" if self.extra_seeds else "")
        if any(self._extra_budget_seeds(method, run) for method, run in self.jobs):
            extra += (f" (the rows at the baselines' budget: "
                      f"{[*self.seeds, *self.budget_seeds]})")
        rows = (self.section("evaluate").get("max_test_rows") or 0) or "all"
        return (f"Base model {model} ({source}); data {', '.join(sorted(self.section('data')))} "
                f"(see results/data/*/report.json; *_synthetic = synthetic scores); seeds "
                f"{self.seeds}{extra}; test rows per split {rows}.")


def sharing_order(method: str) -> tuple[int, str]:
    """Runs with Tag-LLM's prompt and stage-1 tags first (their prefixes are shared, in the same
    batches), then those that share only some (no_head), then the rest."""
    spec = get_method(method)
    if spec.head and spec.function_tag and spec.uses_domain_tags and not spec.enriched_tags_from:
        return (0, method)
    return (1 if spec.uses_domain_tags and not spec.enriched_tags_from else 2, method)


def switched_on(config: Mapping[str, object]) -> dict:
    """`config` as the workflow reads it: datasets, stage-1 tags and runs set to null are off."""
    return {**config, **{section: {name: entry for name, entry in
                                   (config.get(section) or {}).items() if entry is not None}
                         for section in SWITCHABLE}}


def build_plan(config: Mapping[str, object]) -> Plan:
    """The plan of a config (null entries are switched off)."""
    config = switched_on(config)
    tasks = registry(config)
    runs = {name: Run(name, tasks.task(entry.get("task", name)), entry.get("dataset", name),
                      stage, dict(entry.get("train") or {}))
            for stage in STAGES for name, entry in config[stage].items()}
    seeds = list(config.get("seeds") or [0])
    headline = config.get("headline") or {}
    extra = [s for s in headline.get("seeds") or [] if s not in seeds]
    budget = [s for s in (config.get("baselines") or {}).get("seeds") or [] if s not in seeds]
    plan = Plan(config, tasks, runs, seeds, list(headline.get("runs") or []), extra, {}, budget)
    plan.jobs.update(method_jobs(config, runs))
    return plan


def method_jobs(config: Mapping[str, object], runs: Mapping[str, Run]
                ) -> dict[tuple[str, str], dict]:
    """Every trained (method, run) pair -> its train settings: Tag-LLM on every run, the
    baselines on baselines.runs (and Tag-LLM at their budget, when it is their own), and
    headline.baselines on headline.runs, the ablations and the tag-length sweep on ablations.run.
    """
    baselines = config.get("baselines") or {}
    headline = config.get("headline") or {}
    ablations = config.get("ablations") or {}
    jobs = {("tagllm", name): dict(run.train) for name, run in runs.items()}

    def add(method: str, run: str, overrides: Mapping | None) -> None:
        if run not in runs:
            raise ValueError(f"{method}: run {run!r} is not a key of stage2/stage3")
        jobs[(method, run)] = {**runs[run].train, **(overrides or {})}

    def baseline_settings(method: str) -> dict:
        # A linear probe is nearly free (features computed once, closed-form fit): every row.
        every_row = {"max_examples": 0} if get_method(method).trainer == "probe" else {}
        return {**(baselines.get("train") or {}), **every_row}

    for run in baselines.get("runs") or []:
        for method in baselines.get("methods") or []:
            add(method, run, baseline_settings(method))
        if baselines.get("train") and baselines.get("methods"):
            # The baselines' own (smaller) budget: Tag-LLM trains on it too, for a row beside
            # theirs with the same examples, epochs, batches and schedule.
            add("tagllm_budget", run, baselines["train"])
    for run in headline.get("runs") or []:
        for method in headline.get("baselines") or []:
            add(method, run, baseline_settings(method))
    run = ablations.get("run")
    for method in ablations.get("methods") or [] if run else []:
        add(method, run, ablations.get("train"))
        if get_method(method).enriched_tags_from:
            add(get_method(method).enriched_tags_from, ablations["enrich_run"],
                ablations.get("enrich_train"))
    for length in ablations.get("tag_lengths") or [] if run else []:
        # With its own (smaller) budget the sweep needs its own run at the default length too;
        # otherwise Tag-LLM's run is that point.
        if length != config["tag_length"] or ablations.get("train"):
            add(f"tagllm_p{length}", run, ablations.get("train"))
    return jobs
