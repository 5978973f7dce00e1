# Config validation, wildcard constraints and input functions. Logic lives in tagllm/.
import shlex
import sys
from pathlib import Path

from snakemake.utils import validate

from tagllm.cli import dataset_cli_flags, domain_tag_cli_arg, task_cli_arg, to_cli_flags
from tagllm.config_check import config_problems
from tagllm.data.kinds import required_downloads
from tagllm.methods import get_method
from tagllm.plan import build_plan, switched_on

# Each config problem as one line naming its key, before the DAG is built (validate() below fills
# in the schema's defaults).
SCHEMA = f"{workflow.basedir}/workflow/schemas/config.schema.yaml"
if problems := config_problems(config, SCHEMA):
    sys.exit("\n".join(problems))
# A dataset, stage-1 tag or run set to null in an overlay (e.g. the embedded synthetic sets in
# presets/paper.yaml, everything in presets/own_task.yaml) is switched off.
config.update(switched_on(config))
# A section set to null (presets/own_task.yaml) is an empty one.
for section in (
    "headline",
    "baselines",
    "ablations",
    "predict",
    "tasks",
    "domain_tags",
):
    config[section] = config.get(section) or {}
validate(config, schema="../schemas/config.schema.yaml")

# What the config asks for (tagllm/plan.py): the runs, every trained (method, run) with its
# settings and seeds, and the runs trained or scored together in one job.
PLAN = build_plan(config)
TASK_REGISTRY = PLAN.registry
MODEL = config["model"]["name"]
DATASETS = config["data"]
DOMAIN_TAGS = list(config["stage1"])
RUNS = PLAN.runs  # run name -> tagllm.plan.Run (name, task, dataset, stage, train)
REGRESSION_RUNS = PLAN.regression_runs
SEEDS = PLAN.seeds
HEADLINE_RUNS = PLAN.headline_runs
EXTRA_SEEDS = PLAN.extra_seeds
stage1_seed = PLAN.stage1_seed
# Trained runs applied to new rows (`tagllm predict`), by output name.
PREDICT = config.get("predict") or {}
ABLATIONS = config.get("ablations") or {}
# Conda environment of the rules that run the model (`--sdm conda`): PyPI's CUDA build of torch on
# GPU runs, the CPU build otherwise.
MODEL_ENV = (
    "../../envs/tagllm-cuda.yaml"
    if str(config.get("device", "cpu")).startswith("cuda")
    else "../../envs/tagllm.yaml"
)
JOBS = PLAN.jobs
TAG_METHODS = PLAN.tag_methods
BASELINE_METHODS = PLAN.baseline_methods
FAMILY_RUN = PLAN.family_run
SEEDED_RUNS = PLAN.seeded_runs
SEEDS_TOGETHER = PLAN.seeds_together
TAGS_TOGETHER = PLAN.tags_together
TRAINED_TOGETHER = PLAN.trained_together
EVALUATED_TOGETHER = PLAN.evaluated_together


wildcard_constraints:
    model="|".join([MODEL]),
    method="[a-z0-9_]+",
    tag="|".join(DOMAIN_TAGS) or "NONE",
    run="|".join(RUNS) or "NONE",
    dataset="|".join(DATASETS) or "NONE",
    source="[a-z0-9_.-]+",
    seed="[0-9]+",
    name="|".join(PREDICT) or "NONE",


def get_model_dir(wildcards=None):
    """The local model folder every training and evaluation job loads."""
    return f"results/models/{MODEL}"


def get_download_mirror_flag(wildcards=None):
    """--mirror of the download rule: the copy of the sources' URLs it reads (download_mirror)."""
    mirror = lookup(dpath="download_mirror", within=config, default="")
    return f"--mirror {shlex.quote(mirror)}" if mirror else ""


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
    if entry.get("test"):  # a table dataset's separate test file
        inputs["test_file"] = entry["test"]
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
        f"--tag {' '.join(domain_tag_cli_arg(TASK_REGISTRY.domain_tag(t)) for t in TAGS_TOGETHER)}"
        f" --data {' '.join(get_tags_together_data(wildcards))}"
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


def run_task_arg(run):
    """--task of a run: a built-in task's name, or the task's spec as JSON."""
    return task_cli_arg(RUNS[run].task) if run else ""


def get_run_task(wildcards):
    return run_task_arg(wildcards.run)


def get_domain_tag_arg(wildcards):
    """--tag of a stage-1 run: a built-in tag's name, or the tag's spec as JSON."""
    return domain_tag_cli_arg(TASK_REGISTRY.domain_tag(wildcards.tag))


def get_run_data(wildcards):
    return f"results/data/{RUNS[wildcards.run].dataset}/train.parquet"


def get_run_test(wildcards):
    return f"results/data/{RUNS[wildcards.run].dataset}/test.parquet"


def stage1_tag_files(run, seed):
    """tags.json of the stage-1 tags of a run's domain tags."""
    return [
        f"results/tags/stage1/{tag}/seed{stage1_seed(seed)}/tags.json"
        for tag in RUNS[run].task.domain_tags
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
    settings = JOBS[(wildcards.method, wildcards.run)]
    if not (settings.get("enrich", False) or get_method(wildcards.method).enrich):
        return ""
    pairs = [
        f"{tag}={domain_tag_data(tag)}:{config['stage1'][tag]['column']}"
        for tag in RUNS[wildcards.run].task.domain_tags
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


def get_eval_metrics(wildcards=None):
    return PLAN.eval_metric_files()


def get_run_metrics(wildcards=None):
    return PLAN.run_metric_files()


SETTING = PLAN.setting(MODEL)
TABLES = [
    "summary",
    "table1_translation",
    "table2_tasks",
    "table3_peft",
    "table4_ablation",
    "table6_params",
]
FIGURES = ["headline", "tag_length", "ablation", "loss_curves"]


def predict_run_dir(name):
    """The run folder a `predict:` entry applies: results/runs/<method>/<run>/seed<N>."""
    entry = PREDICT[name]
    seed = entry.get("seed", SEEDS[0])
    return f"results/runs/{entry.get('method', 'tagllm')}/{entry['run']}/seed{seed}"


def get_predict_run(wildcards):
    return f"{predict_run_dir(wildcards.name)}/run.json"


def get_predict_rows(wildcards):
    return PREDICT[wildcards.name]["input"]


def get_predict_run_dir(wildcards):
    return predict_run_dir(wildcards.name)


def get_final_outputs():
    return [
        *expand("results/data/{dataset}/report.json", dataset=DATASETS),
        *expand("results/predictions/{name}/predictions.parquet", name=PREDICT),
        *expand("results/tables/{table}.{ext}", table=TABLES, ext=["csv", "md"]),
        *expand("results/figures/{figure}.png", figure=FIGURES),
        *expand("results/figures/{run}_predictions.png", run=REGRESSION_RUNS),
    ]
