# Config validation, wildcard constraints and input functions. Logic lives in tagllm/.
from pathlib import Path

from snakemake.utils import validate

from tagllm.cli import dataset_cli_flags, to_cli_flags
from tagllm.data.prepare import required_downloads
from tagllm.tasks import get_task

# A dataset set to null in an overlay (e.g. the embedded synthetic sets in presets/paper.yaml) is off.
config["data"] = {
    name: entry for name, entry in config["data"].items() if entry is not None
}
validate(config, schema="../schemas/config.schema.yaml")

MODEL = config["model"]["name"]
DATASETS = config["data"]
DOMAIN_TAGS = list(config["stage1"])
TASKS = list(config["stage2"])


wildcard_constraints:
    model="|".join([MODEL]),
    tag="|".join(DOMAIN_TAGS) or "NONE",
    task="|".join(TASKS) or "NONE",
    dataset="|".join(DATASETS) or "NONE",
    source="[a-z0-9_.-]+",


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


def get_domain_tag_data(wildcards):
    """Training split of the dataset that holds a domain tag's unlabeled text."""
    return f"results/data/{config['stage1'][wildcards.tag]['dataset']}/train.parquet"


def get_domain_tag_column(wildcards):
    return config["stage1"][wildcards.tag]["column"]


def get_domain_tag_files(wildcards):
    """tags.json of every stage-1 tag that a task's prompt uses."""
    return [
        f"results/tags/stage1/{tag}/tags.json"
        for tag in get_task(wildcards.task).domain_tags
    ]


def get_domain_tag_dirs(wildcards):
    return " ".join(str(Path(f).parent) for f in get_domain_tag_files(wildcards))


def get_stage1_flags(wildcards):
    return to_cli_flags(config["stage1"][wildcards.tag].get("train", {}))


def get_stage2_flags(wildcards):
    return to_cli_flags(config["stage2"][wildcards.task].get("train", {}))


def get_char_level_flag(wildcards=None):
    return "--char-level" if config.get("char_level", True) else "--no-char-level"


def get_eval_metrics(wildcards=None):
    """Metrics files that go into the summary table."""
    return expand(
        "results/eval/{method}/{task}/metrics.json",
        method=["tagllm", "train_mean"],
        task=TASKS,
    )


def get_final_outputs():
    return [
        *expand("results/data/{dataset}/report.json", dataset=DATASETS),
        "results/tables/summary.csv",
        "results/tables/summary.md",
        *expand("results/figures/{task}_predictions.png", task=TASKS),
    ]
