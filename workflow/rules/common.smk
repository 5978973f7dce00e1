# Config validation, wildcard constraints and input functions. Logic lives in tagllm/.
from pathlib import Path

from snakemake.utils import validate

from tagllm.cli import dataset_cli_flags, to_cli_flags
from tagllm.data.prepare import required_downloads
from tagllm.tasks import get_task

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
SEEDS = config.get("seeds", [0])


wildcard_constraints:
    model="|".join([MODEL]),
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


def get_run_flags(wildcards):
    return train_flags(RUNS[wildcards.run].get("train", {}), wildcards.seed)


def get_run_task(wildcards):
    return RUNS[wildcards.run]["task"]


def get_run_data(wildcards):
    return f"results/data/{RUNS[wildcards.run]['dataset']}/train.parquet"


def get_run_test(wildcards):
    return f"results/data/{RUNS[wildcards.run]['dataset']}/test.parquet"


def get_run_domain_tags(wildcards):
    """tags.json of every stage-1 tag that a run's prompts use (same seed)."""
    return [
        f"results/tags/stage1/{tag}/seed{wildcards.seed}/tags.json"
        for tag in get_task(RUNS[wildcards.run]["task"]).domain_tags
    ]


def get_run_domain_tag_dirs(wildcards):
    return " ".join(str(Path(f).parent) for f in get_run_domain_tags(wildcards))


def get_run_enrich_data(wildcards):
    """--enrich-data TAG=PATH:COLUMN for each domain tag of a run that enriches them."""
    run = RUNS[wildcards.run]
    if not run.get("train", {}).get("enrich", False):
        return ""
    pairs = [
        f"{tag}={domain_tag_data(tag)}:{config['stage1'][tag]['column']}"
        for tag in get_task(run["task"]).domain_tags
        if tag in config["stage1"]
    ]
    return "--enrich-data " + " ".join(pairs)


def get_char_level_flag(wildcards=None):
    return "--char-level" if config.get("char_level", True) else "--no-char-level"


def get_eval_metrics(wildcards=None):
    """Metrics files that go into the summary table (every regression run, every seed)."""
    return [
        *expand(
            "results/eval/tagllm/{run}/seed{seed}/metrics.json",
            run=REGRESSION_RUNS,
            seed=SEEDS,
        ),
        *expand("results/eval/train_mean/{run}/metrics.json", run=REGRESSION_RUNS),
    ]


def get_final_outputs():
    return [
        *expand("results/data/{dataset}/report.json", dataset=DATASETS),
        *expand(
            "results/runs/tagllm/{run}/seed{seed}/metrics.json", run=RUNS, seed=SEEDS
        ),
        "results/tables/summary.csv",
        "results/tables/summary.md",
        *expand("results/figures/{run}_predictions.png", run=REGRESSION_RUNS),
    ]
