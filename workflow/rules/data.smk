# Base model, downloads of the paper's real sources, and dataset preparation.


rule prepare_model:
    output:
        folder=directory("results/models/{model}"),
    log:
        "logs/prepare_model/{model}.log",
    benchmark:
        "benchmarks/prepare_model/{model}.tsv"
    # Every model job waits for it, and the datasets: before anything else that is ready.
    priority: 30
    conda:
        "../../envs/tagllm.yaml"
    params:
        source=lookup(dpath="model/source", within=config),
        hub_id=lookup(dpath="model/hub_id", within=config, default=""),
    shell:
        "python -m tagllm prepare-model --source {params.source} --model-id '{params.hub_id}'"
        " --out {output.folder} > {log} 2>&1"


rule download_source:
    output:
        folder=directory("resources/downloads/{source}"),
    log:
        "logs/download_source/{source}.log",
    conda:
        "../../envs/tagllm.yaml"
    params:
        retries=3,
        mirror=get_download_mirror_flag,
    shell:
        "python -m tagllm download --source {wildcards.source} --out-dir {output.folder}"
        " --retries {params.retries} {params.mirror} > {log} 2>&1"


rule prepare_dataset:
    input:
        unpack(get_dataset_inputs),
    output:
        train="results/data/{dataset}/train.parquet",
        test="results/data/{dataset}/test.parquet",
        rejected="results/data/{dataset}/rejected.parquet",
        report="results/data/{dataset}/report.json",
    log:
        "logs/prepare_dataset/{dataset}.log",
    benchmark:
        "benchmarks/prepare_dataset/{dataset}.tsv"
    # Seconds each, and the longest training jobs wait for them (ba_synthetic waited for a core
    # behind 10 minutes of training jobs of priority 10).
    priority: 30
    conda:
        "../../envs/tagllm.yaml"
    params:
        flags=get_dataset_flags,
    shell:
        "python -m tagllm prepare-dataset --out-dir results/data/{wildcards.dataset}"
        " {params.flags} > {log} 2>&1"
