# Evaluation on the test splits: the trained runs and the training-mean predictor.


rule evaluate_run:
    input:
        model=get_model_dir(),
        run=rules.train_function_tag.output.meta,
        test=get_run_test,
    output:
        predictions="results/eval/tagllm/{run}/seed{seed}/predictions.parquet",
        metrics="results/eval/tagllm/{run}/seed{seed}/metrics.json",
    log:
        "logs/evaluate_run/{run}_seed{seed}.log",
    benchmark:
        "benchmarks/evaluate_run/{run}_seed{seed}.tsv"
    conda:
        "../../envs/tagllm.yaml"
    threads: 2
    params:
        task=get_run_task,
        device=lookup(dpath="device", within=config),
        dtype=lookup(dpath="model/dtype", within=config, default="float32"),
        char_level=get_char_level_flag,
        batch_size=lookup(dpath="evaluate/batch_size", within=config, default=16),
    shell:
        "python -m tagllm evaluate --model {input.model}"
        " --run results/runs/tagllm/{wildcards.run}/seed{wildcards.seed}"
        " --task {params.task} --name {wildcards.run} --test {input.test}"
        " --batch-size {params.batch_size} --device {params.device} --dtype {params.dtype}"
        " --threads {threads} {params.char_level}"
        " --out-dir results/eval/tagllm/{wildcards.run}/seed{wildcards.seed} > {log} 2>&1"


rule evaluate_train_mean:
    input:
        train=get_run_data,
        test=get_run_test,
    output:
        predictions="results/eval/train_mean/{run}/predictions.parquet",
        metrics="results/eval/train_mean/{run}/metrics.json",
    log:
        "logs/evaluate_train_mean/{run}.log",
    conda:
        "../../envs/tagllm.yaml"
    params:
        task=get_run_task,
    shell:
        "python -m tagllm evaluate-train-mean --task {params.task} --name {wildcards.run}"
        " --train {input.train} --test {input.test}"
        " --out-dir results/eval/train_mean/{wildcards.run} > {log} 2>&1"
