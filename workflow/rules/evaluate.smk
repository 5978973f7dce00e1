# Evaluation on the test splits: the trained runs and the training-mean predictor.


rule evaluate_run:
    input:
        model=get_model_dir(),
        run=rules.train_function_tag.output.head,
        test="results/data/{task}/test.parquet",
    output:
        predictions="results/eval/tagllm/{task}/predictions.parquet",
        metrics="results/eval/tagllm/{task}/metrics.json",
    log:
        "logs/evaluate_run/{task}.log",
    benchmark:
        "benchmarks/evaluate_run/{task}.tsv"
    conda:
        "../../envs/tagllm.yaml"
    threads: 2
    params:
        device=lookup(dpath="device", within=config),
        dtype=lookup(dpath="model/dtype", within=config, default="float32"),
        char_level=get_char_level_flag,
        batch_size=lookup(dpath="evaluate/batch_size", within=config, default=16),
    shell:
        "python -m tagllm evaluate --model {input.model} --run results/runs/tagllm/{wildcards.task}"
        " --task {wildcards.task} --test {input.test} --batch-size {params.batch_size}"
        " --device {params.device} --dtype {params.dtype} --threads {threads} {params.char_level}"
        " --out-dir results/eval/tagllm/{wildcards.task} > {log} 2>&1"


rule evaluate_train_mean:
    input:
        train="results/data/{task}/train.parquet",
        test="results/data/{task}/test.parquet",
    output:
        predictions="results/eval/train_mean/{task}/predictions.parquet",
        metrics="results/eval/train_mean/{task}/metrics.json",
    log:
        "logs/evaluate_train_mean/{task}.log",
    conda:
        "../../envs/tagllm.yaml"
    shell:
        "python -m tagllm evaluate-train-mean --task {wildcards.task} --train {input.train}"
        " --test {input.test} --out-dir results/eval/train_mean/{wildcards.task} > {log} 2>&1"
