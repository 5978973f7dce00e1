# tagllm: Tag-LLM (Shen et al., ICML 2024) as a workflow. No logic here: see workflow/rules/.
import os

from snakemake.utils import min_version

min_version("9.0")

# envs/*.yaml install tagllm from this checkout through TAGLLM_ROOT (for `--sdm conda`).
os.environ.setdefault("TAGLLM_ROOT", workflow.basedir)


configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/predict.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        get_final_outputs(),
