# Config validation, wildcard constraints and input functions. Logic lives in tagllm/.
import sys
from pathlib import Path

from snakemake.utils import validate

from tagllm.cli import dataset_cli_flags, to_cli_flags
from tagllm.config_check import config_problems
from tagllm.data.prepare import required_downloads
from tagllm.methods import get_method
from tagllm.tasks import get_task

# Each config problem as one line naming its key, before the DAG is built (validate() below fills
# in the schema's defaults).
SCHEMA = f"{workflow.basedir}/workflow/schemas/config.schema.yaml"
if problems := config_problems(config, SCHEMA):
    sys.exit("\n".join(problems))
# A dataset or run set to null in an overlay (e.g. the embedded synthetic sets in
# presets/paper.yaml) is switched off.
for section in ("data", "stage2", "stage3"):
    config[section] = {
        name: entry
        for name, entry in (config.get(section) or {}).items()
        if entry is not None
    }
validate(config, schema="../schemas/config.schema.yaml")

MODEL = config["model"]["name"]
DATASETS = config["data"]
DOMAIN_TAGS = list(config["stage1"])
# Function-tag runs of stages 2 and 3, by run name: (task, dataset, settings).
RUNS = {
    name: {
        "task": entry.get("task", name),
        "dataset": entry.get("dataset", name),
        **entry,
    }
    for stage in ("stage2", "stage3")
    for name, entry in (config.get(stage) or {}).items()
}
REGRESSION_RUNS = [
    n for n, r in RUNS.items() if get_task(r["task"]).kind == "regression"
]
GENERATION_RUNS = [n for n in RUNS if n not in REGRESSION_RUNS]
SEEDS = config.get("seeds", [0])
HEADLINE = config.get("headline") or {}
HEADLINE_RUNS = HEADLINE.get("runs", [])
# Seeds beyond `seeds` that Tag-LLM trains with on the headline runs (stage 2-3 only: they read
# the stage-1 tags of the first seed).
EXTRA_SEEDS = [s for s in HEADLINE.get("seeds", []) if s not in SEEDS]


def job_seeds(method, run):
    """Seeds a (method, run) is trained and scored with: `seeds`, plus the headline seeds for
    Tag-LLM on the headline runs."""
    if method == "tagllm" and run in HEADLINE_RUNS:
        return [*SEEDS, *EXTRA_SEEDS]
    return SEEDS


def stage1_seed(seed):
    """The stage-1 seed a run of `seed` reads: its own, or the first for a headline-only seed."""
    return int(seed) if int(seed) in SEEDS else SEEDS[0]


BASELINES = config.get("baselines") or {}
ABLATIONS = config.get("ablations") or {}
RESOURCES = config.get("resources") or {}
# Conda environment of the rules that run the model (`--sdm conda`): PyPI's CUDA build of torch on
# GPU runs, the CPU build otherwise.
MODEL_ENV = (
    "../../envs/tagllm-cuda.yaml"
    if str(config.get("device", "cpu")).startswith("cuda")
    else "../../envs/tagllm.yaml"
)


def method_jobs():
    """Every trained (method, run) pair -> its train settings: Tag-LLM on every run, the
    baselines on baselines.runs (and Tag-LLM at their budget, when it is their own), and
    headline.baselines on headline.runs, the ablations and the tag-length sweep on ablations.run.
    """
    jobs = {("tagllm", run): RUNS[run].get("train", {}) for run in RUNS}

    def add(method, run, overrides):
        if run not in RUNS:
            raise ValueError(f"{method}: run {run!r} is not a key of stage2/stage3")
        jobs[(method, run)] = {**RUNS[run].get("train", {}), **(overrides or {})}

    def baseline_settings(method):
        # A linear probe is nearly free (features computed once, closed-form fit): every row.
        every_row = {"max_examples": 0} if get_method(method).trainer == "probe" else {}
        return {**(BASELINES.get("train") or {}), **every_row}

    for run in BASELINES.get("runs", []):
        for method in BASELINES.get("methods", []):
            add(method, run, baseline_settings(method))
        if BASELINES.get("train") and BASELINES.get("methods"):
            # The baselines' own (smaller) budget: Tag-LLM trains on it too, for a row beside
            # theirs with the same examples, epochs, batches and schedule.
            add("tagllm_budget", run, BASELINES["train"])
    for run in HEADLINE_RUNS:
        for method in HEADLINE.get("baselines", []):
            add(method, run, baseline_settings(method))
    run = ABLATIONS.get("run")
    for method in ABLATIONS.get("methods", []) if run else []:
        add(method, run, ABLATIONS.get("train"))
        if get_method(method).enriched_tags_from:
            add(
                get_method(method).enriched_tags_from,
                ABLATIONS["enrich_run"],
                ABLATIONS.get("enrich_train"),
            )
    for length in ABLATIONS.get("tag_lengths", []) if run else []:
        # With its own (smaller) budget the sweep needs its own run at the default length too;
        # otherwise Tag-LLM's run is that point.
        if length != config["tag_length"] or ABLATIONS.get("train"):
            add(f"tagllm_p{length}", run, ABLATIONS.get("train"))
    return jobs


JOBS = method_jobs()
TAG_METHODS = sorted({m for m, _ in JOBS if get_method(m).trainer == "tags"})
BASELINE_METHODS = sorted({m for m, _ in JOBS if get_method(m).trainer != "tags"})


def family_training():
    """Runs on ablations.run trained in one job, one after another: the tag-length sweep and the
    ablations that train tags with its settings from the stage-1 domain tags. One model load, and
    the frozen prefixes computed once for all of them (with `together`; fewer than two: no
    family)."""
    run = ABLATIONS.get("run")
    if not run or not config.get("together", False):
        return []
    settings = {**RUNS[run].get("train", {}), **(ABLATIONS.get("train") or {})}
    members = [
        method
        for method, on in JOBS
        if on == run
        and not (method == "tagllm" and run in SEEDED_RUNS)
        and get_method(method).trainer == "tags"
        and not get_method(method).enrich
        and not get_method(method).enriched_tags_from
        and not JOBS[(method, on)].get("enrich", False)
        and JOBS[(method, on)] == settings
    ]
    return sorted(members, key=sharing_order) if len(members) > 1 else []


def sharing_order(method):
    """Runs with Tag-LLM's prompt and stage-1 tags first (their prefixes are shared, in the same
    batches), then those that share only some (no_head), then the rest."""
    spec = get_method(method)
    if (
        spec.head
        and spec.function_tag
        and spec.uses_domain_tags
        and not spec.enriched_tags_from
    ):
        return (0, method)
    return (1 if spec.uses_domain_tags and not spec.enriched_tags_from else 2, method)


def family_evaluation():
    """Runs on ablations.run scored in one job, one after another: every trained method there
    but the PEFT adapters (which change the model in place). The test rows' frozen prefix is
    computed once for all the runs that share it (with `together`)."""
    run = ABLATIONS.get("run")
    if not run or not config.get("together", False):
        return []
    members = [
        method
        for method, on in JOBS
        if on == run
        and get_method(method).adapter == "none"
        and not (method == "tagllm" and run in SEEDED_RUNS)
    ]
    return sorted(members, key=sharing_order) if len(members) > 1 else []


def domain_tags_together():
    """Stage-1 tags trained in one job, one after another (with `together`): those with the most
    common training settings, when at least two share them (the eight language tags here).
    """
    if not config.get("together", False):
        return []
    groups = {}
    for tag, entry in config["stage1"].items():
        groups.setdefault(repr(sorted(entry.get("train", {}).items())), []).append(tag)
    largest = max(groups.values(), key=len, default=[])
    return largest if len(largest) > 1 else []


def seeded_runs():
    """Headline runs whose Tag-LLM seeds train in one job, and are scored in one (with
    `together`): the first seed and the headline-only ones, which read the same stage-1 tags, so
    their frozen prefixes are computed once."""
    return HEADLINE_RUNS if config.get("together", False) and EXTRA_SEEDS else []


FAMILY_RUN = ABLATIONS.get("run", "")
SEEDED_RUNS = seeded_runs()
SEEDS_TOGETHER = [SEEDS[0], *EXTRA_SEEDS]
TAGS_TOGETHER = domain_tags_together()
TRAINED_TOGETHER = family_training()
EVALUATED_TOGETHER = family_evaluation()


wildcard_constraints:
    model="|".join([MODEL]),
    method="[a-z0-9_]+",
    tag="|".join(DOMAIN_TAGS) or "NONE",
    run="|".join(RUNS) or "NONE",
    dataset="|".join(DATASETS) or "NONE",
    source="[a-z0-9_.-]+",
    seed="[0-9]+",


def get_model_dir(wildcards=None):
    """The local model folder every training and evaluation job loads."""
    return f"results/models/{MODEL}"


def get_dataset_inputs(wildcards):
    """Downloads, local files and upstream datasets that one dataset is prepared from."""
    entry = DATASETS[wildcards.dataset]
    inputs = {
        "downloads": expand(
            "resources/downloads/{source}",
            source=required_downloads(
                entry["kind"], entry["source"], entry.get("lang", "")
            ),
        )
    }
    if entry.get("path"):
        inputs["file"] = entry["path"]
    for role, name in entry.get("inputs", {}).items():
        inputs[role] = expand(
            "results/data/{name}/{split}.parquet", name=name, split=["train", "test"]
        )
    return inputs


def get_dataset_flags(wildcards):
    entry = DATASETS[wildcards.dataset]
    return dataset_cli_flags(
        entry, get_dataset_inputs(wildcards), "resources/downloads"
    )


def domain_tag_data(tag):
    """Training split of the dataset that holds a domain tag's unlabeled text."""
    return f"results/data/{config['stage1'][tag]['dataset']}/train.parquet"


def get_domain_tag_data(wildcards):
    return domain_tag_data(wildcards.tag)


def get_domain_tag_column(wildcards):
    return config["stage1"][wildcards.tag]["column"]


def train_flags(settings, seed):
    """CLI flags of a `train:` block; the seed comes from the job's wildcard."""
    return to_cli_flags({**settings, "seed": int(seed)})


def get_stage1_flags(wildcards):
    return train_flags(config["stage1"][wildcards.tag].get("train", {}), wildcards.seed)


def get_tags_together_flags(wildcards):
    return train_flags(
        config["stage1"][TAGS_TOGETHER[0]].get("train", {}), wildcards.seed
    )


def get_tags_together_data(wildcards):
    return [domain_tag_data(tag) for tag in TAGS_TOGETHER]


def get_tags_together_args(wildcards):
    """--tag, --data, --column and --out-dir of the stage-1 tags trained in one job."""
    columns = [config["stage1"][tag]["column"] for tag in TAGS_TOGETHER]
    outs = [f"results/tags/stage1/{tag}/seed{wildcards.seed}" for tag in TAGS_TOGETHER]
    return (
        f"--tag {' '.join(TAGS_TOGETHER)} --data {' '.join(get_tags_together_data(wildcards))}"
        f" --column {' '.join(columns)} --out-dir {' '.join(outs)}"
    )


def get_run_flags(wildcards):
    return train_flags(JOBS[(wildcards.method, wildcards.run)], wildcards.seed)


def get_family_flags(wildcards):
    return train_flags(JOBS[(TRAINED_TOGETHER[0], FAMILY_RUN)], wildcards.seed)


def get_family_run_dirs(wildcards):
    return " ".join(
        f"results/runs/{method}/{FAMILY_RUN}/seed{wildcards.seed}"
        for method in TRAINED_TOGETHER
    )


def get_family_eval_inputs(wildcards):
    return [
        f"results/runs/{method}/{FAMILY_RUN}/seed{wildcards.seed}/run.json"
        for method in EVALUATED_TOGETHER
    ]


def get_family_eval_dirs(wildcards):
    """--run and --out-dir of the family evaluation, in member order."""
    runs = [str(Path(f).parent) for f in get_family_eval_inputs(wildcards)]
    outs = [
        f"results/eval/{method}/{FAMILY_RUN}/seed{wildcards.seed}"
        for method in EVALUATED_TOGETHER
    ]
    return f"--run {' '.join(runs)} --out-dir {' '.join(outs)}"


def seed_dirs(kind, run):
    """results/<kind>/tagllm/<run>/seed<N> of the seeds trained and scored together."""
    return [f"results/{kind}/tagllm/{run}/seed{seed}" for seed in SEEDS_TOGETHER]


def get_seed_run_dirs(wildcards):
    return " ".join(seed_dirs("runs", wildcards.run))


def get_seeds_flags(wildcards):
    seeds = " ".join(str(seed) for seed in SEEDS_TOGETHER)
    return (
        f"{train_flags(JOBS[('tagllm', wildcards.run)], SEEDS[0])} --run-seeds {seeds}"
    )


def get_seeds_domain_tags_flag(wildcards):
    return domain_tags_flag(stage1_tag_files(wildcards.run, SEEDS[0]))


def get_seeds_eval_dirs(wildcards):
    """--run and --out-dir of the evaluation of a headline run's seeds, in seed order."""
    runs, outs = seed_dirs("runs", wildcards.run), seed_dirs("eval", wildcards.run)
    return f"--run {' '.join(runs)} --out-dir {' '.join(outs)}"


def get_run_task(wildcards):
    return RUNS[wildcards.run]["task"]


def get_run_data(wildcards):
    return f"results/data/{RUNS[wildcards.run]['dataset']}/train.parquet"


def get_run_test(wildcards):
    return f"results/data/{RUNS[wildcards.run]['dataset']}/test.parquet"


def stage1_tag_files(run, seed):
    """tags.json of the stage-1 tags of a run's domain tags."""
    return [
        f"results/tags/stage1/{tag}/seed{stage1_seed(seed)}/tags.json"
        for tag in get_task(RUNS[run]["task"]).domain_tags
    ]


def get_run_domain_tags(wildcards):
    """tags.json of every domain tag that a method's prompts use (same seed): the stage-1 tags,
    after the enriched ones of another run when the method takes those."""
    method = get_method(wildcards.method)
    if not method.uses_domain_tags:
        return []
    files = stage1_tag_files(wildcards.run, wildcards.seed)
    if method.enriched_tags_from:
        source = f"results/runs/{method.enriched_tags_from}/{ABLATIONS['enrich_run']}"
        files.insert(0, f"{source}/seed{wildcards.seed}/tags.json")
    return files


def get_family_domain_tags(wildcards):
    """Stage-1 tags.json of the family run's domain tags (the members that use domain tags)."""
    return stage1_tag_files(FAMILY_RUN, wildcards.seed)


def domain_tags_flag(tag_files):
    """--domain-tags with the folders of these tags.json files (nothing without any)."""
    dirs = " ".join(str(Path(f).parent) for f in tag_files)
    return f"--domain-tags {dirs}" if dirs else ""


def get_family_domain_tags_flag(wildcards):
    return domain_tags_flag(get_family_domain_tags(wildcards))


def get_domain_tags_flag(wildcards):
    return domain_tags_flag(get_run_domain_tags(wildcards))


def get_run_enrich_data(wildcards):
    """--enrich-data TAG=PATH:COLUMN for each domain tag of a run that enriches them."""
    run = RUNS[wildcards.run]
    settings = JOBS[(wildcards.method, wildcards.run)]
    if not (settings.get("enrich", False) or get_method(wildcards.method).enrich):
        return ""
    pairs = [
        f"{tag}={domain_tag_data(tag)}:{config['stage1'][tag]['column']}"
        for tag in get_task(run["task"]).domain_tags
        if tag in config["stage1"]
    ]
    return "--enrich-data " + " ".join(pairs)


def get_bf16_inference_flag(wildcards=None):
    setting = lookup(dpath="evaluate/cpu_bf16_inference", within=config, default="auto")
    if isinstance(setting, bool):  # YAML's true/false
        setting = "true" if setting else "false"
    return f"--cpu-bf16-inference {setting}"


def get_char_level_flag(wildcards=None):
    return "--char-level" if config.get("char_level", True) else "--no-char-level"


def get_launcher(wildcards, resources):
    """How a training job starts: on distinct GPUs of this machine (tagllm.gpu_slots; a no-op
    under SLURM), and under torchrun when it has more than one."""
    gpus = int(resources.gpu)
    if gpus == 0:
        return "python -m tagllm"
    slots = f"python -m tagllm.gpu_slots --gpus {gpus} --"
    if gpus == 1:
        return f"{slots} python -m tagllm"
    return f"{slots} torchrun --standalone --nproc_per_node={gpus} -m tagllm"


def get_model_free_command(wildcards):
    return f"evaluate-{wildcards.method.replace('_', '-')}"


def get_eval_launcher(wildcards, resources):
    gpus = int(resources.gpu)
    return (
        f"python -m tagllm.gpu_slots --gpus {gpus} -- python -m tagllm"
        if gpus
        else "python -m tagllm"
    )


def model_free_jobs():
    """(method, run) scored without a model: the training mean on every regression run, the
    nearest neighbour on the runs listed for it, the copied source on every translation run.
    """
    jobs = [("train_mean", run) for run in REGRESSION_RUNS]
    jobs += [("copy_source", run) for run in GENERATION_RUNS]
    return jobs + [
        ("nearest_neighbour", run) for run in BASELINES.get("nearest_neighbour", [])
    ]


def get_eval_metrics(wildcards=None):
    """Every evaluation metrics file that goes into the tables."""
    trained = [
        f"results/eval/{method}/{run}/seed{seed}/metrics.json"
        for method, run in JOBS
        for seed in job_seeds(method, run)
        if method != "tagllm_enrich"
    ]
    untrained = [
        f"results/eval/{method}/{run}/metrics.json"
        for method, run in model_free_jobs()
        + [("direct_prompting", r) for r in BASELINES.get("direct_prompting", [])]
    ]
    return trained + untrained


def get_run_metrics(wildcards=None):
    """Training metrics of every trained run (loss curves, trainable parameters)."""
    return [
        f"results/runs/{method}/{run}/seed{seed}/metrics.json"
        for method, run in JOBS
        for seed in job_seeds(method, run)
    ]


# One line that names the base model and data of this run, in every table caption and figure title.
SETTING = (
    f"Base model {MODEL} ({config['model'].get('hub_id') or config['model']['source']}); data "
    f"{', '.join(sorted(DATASETS))} (see results/data/*/report.json; *_synthetic = synthetic "
    f"scores); seeds {SEEDS}"
    + (
        f" (Tag-LLM on {', '.join(HEADLINE_RUNS)}: {[*SEEDS, *EXTRA_SEEDS]})"
        if EXTRA_SEEDS
        else ""
    )
    + "; test rows per split "
    f"{lookup(dpath='evaluate/max_test_rows', within=config, default=0) or 'all'}."
)
TABLES = [
    "summary",
    "table1_translation",
    "table2_tasks",
    "table3_peft",
    "table4_ablation",
    "table6_params",
]
FIGURES = ["headline", "tag_length", "ablation", "loss_curves"]


def get_final_outputs():
    return [
        *expand("results/data/{dataset}/report.json", dataset=DATASETS),
        *expand("results/tables/{table}.{ext}", table=TABLES, ext=["csv", "md"]),
        *expand("results/figures/{figure}.png", figure=FIGURES),
        *expand("results/figures/{run}_predictions.png", run=REGRESSION_RUNS),
    ]
