# Base model and datasets.


rule prepare_model:
    output:
        folder=directory("results/models/{model}"),
    log:
        "logs/prepare_model/{model}.log",
    benchmark:
        "benchmarks/prepare_model/{model}.tsv"
    conda:
        "../../envs/tagllm.yaml"
    params:
        source=lookup(dpath="model/source", within=config),
        hub_id=lookup(dpath="model/hub_id", within=config, default=""),
    shell:
        "python -m tagllm prepare-model --source {params.source} --model-id '{params.hub_id}'"
        " --out {output.folder} > {log} 2>&1"


rule prepare_qed:
    output:
        train="results/data/qed/train.parquet",
        test="results/data/qed/test.parquet",
        rejected="results/data/qed/rejected.parquet",
        report="results/data/qed/report.json",
    log:
        "logs/prepare_qed/qed.log",
    conda:
        "../../envs/tagllm.yaml"
    params:
        source=lookup(dpath="data/qed/source", within=config, default="rdkit-nci"),
        path=lookup(dpath="data/qed/path", within=config, default=""),
        max_rows=lookup(dpath="data/qed/max_rows", within=config, default=0),
        max_chars=lookup(dpath="data/qed/max_chars", within=config, default=512),
        test_fraction=lookup(dpath="data/qed/test_fraction", within=config, default=0.1),
        seed=lookup(dpath="data/qed/seed", within=config, default=0),
    shell:
        "python -m tagllm prepare-qed --out-dir results/data/qed --source {params.source}"
        " --path '{params.path}' --max-rows {params.max_rows} --max-chars {params.max_chars}"
        " --test-fraction {params.test_fraction} --seed {params.seed} > {log} 2>&1"
