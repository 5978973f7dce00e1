# Evaluation on the test splits: every trained run, direct prompting of the base model, and the
# predictors that need no model (training mean, nearest neighbour).


rule evaluate_run:
    input:
        model=get_model_dir(),
        run="results/runs/{method}/{run}/seed{seed}/run.json",
        test=get_run_test,
    output:
        predictions="results/eval/{method}/{run}/seed{seed}/predictions.parquet",
        metrics="results/eval/{method}/{run}/seed{seed}/metrics.json",
    log:
        "logs/evaluate_run/{method}_{run}_seed{seed}.log",
    benchmark:
        "benchmarks/evaluate_run/{method}_{run}_seed{seed}.tsv"
    conda:
        MODEL_ENV
    threads: lookup(dpath="threads", within=config, default=2)
    resources:
        gpu=lookup(dpath="resources/eval_gpu", within=config, default=0),
        mem_mb=lookup(dpath="resources/mem_mb", within=config, default=8000),
        runtime=lookup(dpath="resources/runtime", within=config, default=120),
    params:
        launch=get_eval_launcher,
        task=get_run_task,
        device=lookup(dpath="device", within=config),
        dtype=lookup(dpath="model/dtype", within=config, default="float32"),
        char_level=get_char_level_flag,
        bf16_inference=get_bf16_inference_flag,
        batch_size=lookup(dpath="evaluate/batch_size", within=config, default=16),
        max_rows=lookup(dpath="evaluate/max_test_rows", within=config, default=0),
        max_new_tokens=lookup(
            dpath="evaluate/max_new_tokens", within=config, default=64
        ),
    shell:
        "{params.launch} evaluate --model {input.model}"
        " --run results/runs/{wildcards.method}/{wildcards.run}/seed{wildcards.seed}"
        " --task {params.task} --name {wildcards.run} --test {input.test}"
        " --batch-size {params.batch_size} --max-rows {params.max_rows}"
        " --max-new-tokens {params.max_new_tokens} --device {params.device}"
        " --dtype {params.dtype} --threads {threads} {params.char_level} {params.bf16_inference}"
        " --out-dir results/eval/{wildcards.method}/{wildcards.run}/seed{wildcards.seed}"
        " > {log} 2>&1"


if SEEDED_RUNS:

    ruleorder: evaluate_tagllm_seeds > evaluate_run

    # The seeds of train_tagllm_seeds scored in one job: the test rows' frozen prefix (the same
    # stage-1 tags) computed once for all of them.
    rule evaluate_tagllm_seeds:
        input:
            model=get_model_dir(),
            runs=expand(
                "results/runs/tagllm/{{run}}/seed{seed}/run.json", seed=SEEDS_TOGETHER
            ),
            test=get_run_test,
        output:
            predictions=expand(
                "results/eval/tagllm/{{run}}/seed{seed}/predictions.parquet",
                seed=SEEDS_TOGETHER,
            ),
            metrics=expand(
                "results/eval/tagllm/{{run}}/seed{seed}/metrics.json",
                seed=SEEDS_TOGETHER,
            ),
        log:
            "logs/evaluate_tagllm_seeds/{run}.log",
        benchmark:
            "benchmarks/evaluate_tagllm_seeds/{run}.tsv"
        wildcard_constraints:
            run="|".join(SEEDED_RUNS),
        conda:
            MODEL_ENV
        threads: lookup(dpath="threads", within=config, default=2)
        resources:
            gpu=lookup(dpath="resources/eval_gpu", within=config, default=0),
            mem_mb=lookup(dpath="resources/mem_mb", within=config, default=8000),
            runtime=lookup(dpath="resources/runtime", within=config, default=120)
            * len(SEEDS_TOGETHER),
        params:
            launch=get_eval_launcher,
            task=get_run_task,
            runs=get_seeds_eval_dirs,
            device=lookup(dpath="device", within=config),
            dtype=lookup(dpath="model/dtype", within=config, default="float32"),
            char_level=get_char_level_flag,
            bf16_inference=get_bf16_inference_flag,
            batch_size=lookup(dpath="evaluate/batch_size", within=config, default=16),
            max_rows=lookup(dpath="evaluate/max_test_rows", within=config, default=0),
            max_new_tokens=lookup(
                dpath="evaluate/max_new_tokens", within=config, default=64
            ),
        shell:
            "{params.launch} evaluate --model {input.model} {params.runs}"
            " --task {params.task} --name {wildcards.run} --test {input.test}"
            " --batch-size {params.batch_size} --max-rows {params.max_rows}"
            " --max-new-tokens {params.max_new_tokens} --device {params.device}"
            " --dtype {params.dtype} --threads {threads} {params.char_level}"
            " {params.bf16_inference} > {log} 2>&1"


if EVALUATED_TOGETHER:

    ruleorder: evaluate_run_family > evaluate_run

    # Every run on ablations.run but the PEFT adapters in one job: one model load, the test rows'
    # frozen prefix computed once for the runs that share it (tagllm.evaluate.evaluate_runs).
    rule evaluate_run_family:
        input:
            model=get_model_dir(),
            runs=get_family_eval_inputs,
            test=f"results/data/{RUNS[FAMILY_RUN].dataset}/test.parquet",
        output:
            predictions=expand(
                "results/eval/{method}/{run}/seed{{seed}}/predictions.parquet",
                method=EVALUATED_TOGETHER,
                run=FAMILY_RUN,
            ),
            metrics=expand(
                "results/eval/{method}/{run}/seed{{seed}}/metrics.json",
                method=EVALUATED_TOGETHER,
                run=FAMILY_RUN,
            ),
        log:
            f"logs/evaluate_run_family/{FAMILY_RUN}_seed{{seed}}.log",
        benchmark:
            f"benchmarks/evaluate_run_family/{FAMILY_RUN}_seed{{seed}}.tsv"
        conda:
            MODEL_ENV
        threads: lookup(dpath="threads", within=config, default=2)
        resources:
            gpu=lookup(dpath="resources/eval_gpu", within=config, default=0),
            mem_mb=lookup(dpath="resources/mem_mb", within=config, default=8000),
            # One run's time limit for each run of the job.
            runtime=lookup(dpath="resources/runtime", within=config, default=120)
            * len(EVALUATED_TOGETHER),
        params:
            launch=get_eval_launcher,
            task=run_task_arg(FAMILY_RUN),
            name=FAMILY_RUN,
            runs=get_family_eval_dirs,
            device=lookup(dpath="device", within=config),
            dtype=lookup(dpath="model/dtype", within=config, default="float32"),
            char_level=get_char_level_flag,
            bf16_inference=get_bf16_inference_flag,
            batch_size=lookup(dpath="evaluate/batch_size", within=config, default=16),
            max_rows=lookup(dpath="evaluate/max_test_rows", within=config, default=0),
            max_new_tokens=lookup(
                dpath="evaluate/max_new_tokens", within=config, default=64
            ),
        shell:
            "{params.launch} evaluate --model {input.model} {params.runs}"
            " --task {params.task} --name {params.name} --test {input.test}"
            " --batch-size {params.batch_size} --max-rows {params.max_rows}"
            " --max-new-tokens {params.max_new_tokens} --device {params.device}"
            " --dtype {params.dtype} --threads {threads} {params.char_level}"
            " {params.bf16_inference} > {log} 2>&1"


rule evaluate_direct:
    input:
        model=get_model_dir(),
        train=get_run_data,
        test=get_run_test,
    output:
        predictions="results/eval/direct_prompting/{run}/predictions.parquet",
        metrics="results/eval/direct_prompting/{run}/metrics.json",
    log:
        "logs/evaluate_direct/{run}.log",
    benchmark:
        "benchmarks/evaluate_direct/{run}.tsv"
    conda:
        MODEL_ENV
    threads: lookup(dpath="threads", within=config, default=2)
    resources:
        gpu=lookup(dpath="resources/eval_gpu", within=config, default=0),
        mem_mb=lookup(dpath="resources/mem_mb", within=config, default=8000),
        runtime=lookup(dpath="resources/runtime", within=config, default=120),
    params:
        launch=get_eval_launcher,
        task=get_run_task,
        device=lookup(dpath="device", within=config),
        dtype=lookup(dpath="model/dtype", within=config, default="float32"),
        char_level=get_char_level_flag,
        bf16_inference=get_bf16_inference_flag,
        batch_size=lookup(dpath="evaluate/batch_size", within=config, default=16),
        max_rows=lookup(dpath="evaluate/max_test_rows", within=config, default=0),
        max_new_tokens=lookup(
            dpath="evaluate/max_new_tokens", within=config, default=64
        ),
    shell:
        "{params.launch} evaluate --model {input.model} --method direct_prompting"
        " --task {params.task} --name {wildcards.run} --train {input.train} --test {input.test}"
        " --batch-size {params.batch_size} --max-rows {params.max_rows}"
        " --max-new-tokens {params.max_new_tokens} --device {params.device}"
        " --dtype {params.dtype} --threads {threads} {params.char_level} {params.bf16_inference}"
        " --out-dir results/eval/direct_prompting/{wildcards.run} > {log} 2>&1"


rule evaluate_model_free:
    input:
        train=get_run_data,
        test=get_run_test,
    output:
        predictions="results/eval/{method}/{run}/predictions.parquet",
        metrics="results/eval/{method}/{run}/metrics.json",
    log:
        "logs/evaluate_model_free/{method}_{run}.log",
    wildcard_constraints:
        method="train_mean|nearest_neighbour|copy_source",
    conda:
        "../../envs/tagllm.yaml"
    params:
        command=get_model_free_command,
        task=get_run_task,
        max_rows=lookup(dpath="evaluate/max_test_rows", within=config, default=0),
    shell:
        "python -m tagllm {params.command} --task {params.task} --name {wildcards.run}"
        " --train {input.train} --test {input.test} --max-rows {params.max_rows}"
        " --out-dir results/eval/{wildcards.method}/{wildcards.run} > {log} 2>&1"
