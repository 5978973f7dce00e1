# Stage 1 (domain tags) and stages 2-3 (function tags + regression heads), chained through files.


rule train_domain_tag:
    input:
        model=get_model_dir(),
        data=get_domain_tag_data,
    output:
        tags="results/tags/stage1/{tag}/seed{seed}/tags.safetensors",
        meta="results/tags/stage1/{tag}/seed{seed}/tags.json",
        metrics="results/tags/stage1/{tag}/seed{seed}/metrics.json",
    log:
        "logs/train_domain_tag/{tag}_seed{seed}.log",
    benchmark:
        "benchmarks/train_domain_tag/{tag}_seed{seed}.tsv"
    # The critical path (stage 1, then the Tag-LLM runs) first: the baselines fill the gaps.
    priority: 20
    conda:
        MODEL_ENV
    threads: lookup(dpath="threads", within=config, default=2)
    resources:
        gpu=lookup(dpath="resources/gpu", within=config, default=0),
        mem_mb=lookup(dpath="resources/mem_mb", within=config, default=8000),
        runtime=lookup(dpath="resources/runtime", within=config, default=120),
    params:
        launch=get_launcher,
        column=get_domain_tag_column,
        tag=get_domain_tag_arg,
        tag_length=lookup(dpath="tag_length", within=config),
        device=lookup(dpath="device", within=config),
        dtype=lookup(dpath="model/dtype", within=config, default="float32"),
        char_level=get_char_level_flag,
        bf16_inference=get_bf16_inference_flag,
        flags=get_stage1_flags,
    shell:
        "{params.launch} train-domain-tag --model {input.model} --data {input.data}"
        " --column {params.column} --tag {params.tag} --tag-length {params.tag_length}"
        " --device {params.device} --dtype {params.dtype} --threads {threads}"
        " {params.char_level} {params.bf16_inference} {params.flags}"
        " --out-dir results/tags/stage1/{wildcards.tag}/seed{wildcards.seed} > {log} 2>&1"


if TAGS_TOGETHER:

    ruleorder: train_domain_tags_together > train_domain_tag

    # Stage-1 tags with the same settings (the language tags) in one job: one model load.
    rule train_domain_tags_together:
        input:
            model=get_model_dir(),
            data=get_tags_together_data,
        output:
            tags=expand(
                "results/tags/stage1/{tag}/seed{{seed}}/tags.safetensors",
                tag=TAGS_TOGETHER,
            ),
            meta=expand(
                "results/tags/stage1/{tag}/seed{{seed}}/tags.json", tag=TAGS_TOGETHER
            ),
            metrics=expand(
                "results/tags/stage1/{tag}/seed{{seed}}/metrics.json",
                tag=TAGS_TOGETHER,
            ),
        log:
            "logs/train_domain_tags_together/seed{seed}.log",
        benchmark:
            "benchmarks/train_domain_tags_together/seed{seed}.tsv"
        priority: 20
        conda:
            MODEL_ENV
        threads: lookup(dpath="threads", within=config, default=2)
        resources:
            gpu=lookup(dpath="resources/gpu", within=config, default=0),
            mem_mb=lookup(dpath="resources/mem_mb", within=config, default=8000),
            # One tag's time limit for each tag of the job.
            runtime=lookup(dpath="resources/runtime", within=config, default=120)
            * len(TAGS_TOGETHER),
        params:
            launch=get_launcher,
            tags=get_tags_together_args,
            tag_length=lookup(dpath="tag_length", within=config),
            device=lookup(dpath="device", within=config),
            dtype=lookup(dpath="model/dtype", within=config, default="float32"),
            char_level=get_char_level_flag,
            bf16_inference=get_bf16_inference_flag,
            flags=get_tags_together_flags,
        shell:
            "{params.launch} train-domain-tag --model {input.model} {params.tags}"
            " --tag-length {params.tag_length} --device {params.device} --dtype {params.dtype}"
            " --threads {threads} {params.char_level} {params.bf16_inference} {params.flags}"
            " > {log} 2>&1"


rule train_function_tag:
    input:
        model=get_model_dir(),
        data=get_run_data,
        domain_tags=get_run_domain_tags,
    output:
        tags="results/runs/{method}/{run}/seed{seed}/tags.safetensors",
        meta="results/runs/{method}/{run}/seed{seed}/tags.json",
        spec="results/runs/{method}/{run}/seed{seed}/run.json",
        metrics="results/runs/{method}/{run}/seed{seed}/metrics.json",
    log:
        "logs/train_function_tag/{method}_{run}_seed{seed}.log",
    benchmark:
        "benchmarks/train_function_tag/{method}_{run}_seed{seed}.tsv"
    wildcard_constraints:
        method="|".join(TAG_METHODS) or "NONE",
    # The critical path (stage 1, then the Tag-LLM runs) first: the baselines fill the gaps.
    priority: 10
    conda:
        MODEL_ENV
    threads: lookup(dpath="threads", within=config, default=2)
    resources:
        gpu=lookup(dpath="resources/gpu", within=config, default=0),
        mem_mb=lookup(dpath="resources/mem_mb", within=config, default=8000),
        runtime=lookup(dpath="resources/runtime", within=config, default=120),
    params:
        launch=get_launcher,
        task=get_run_task,
        domain_tags=get_domain_tags_flag,
        enrich_data=get_run_enrich_data,
        tag_length=lookup(dpath="tag_length", within=config),
        device=lookup(dpath="device", within=config),
        dtype=lookup(dpath="model/dtype", within=config, default="float32"),
        char_level=get_char_level_flag,
        bf16_inference=get_bf16_inference_flag,
        flags=get_run_flags,
    shell:
        "{params.launch} train-function-tag --model {input.model} --method {wildcards.method}"
        " --task {params.task} --data {input.data} {params.domain_tags} {params.enrich_data}"
        " --tag-length {params.tag_length} --device {params.device} --dtype {params.dtype}"
        " --threads {threads} {params.char_level} {params.bf16_inference} {params.flags}"
        " --out-dir results/runs/{wildcards.method}/{wildcards.run}/seed{wildcards.seed}"
        " > {log} 2>&1"


if TRAINED_TOGETHER:

    ruleorder: train_function_tag_family > train_function_tag

    # The tag-length sweep and the tag-training ablations of ablations.run in one job: one model
    # load, the frozen prefixes computed once for all of them (tagllm.train.train_function_tags).
    rule train_function_tag_family:
        input:
            model=get_model_dir(),
            data=f"results/data/{RUNS[FAMILY_RUN].dataset}/train.parquet",
            domain_tags=get_family_domain_tags,
        output:
            tags=expand(
                "results/runs/{method}/{run}/seed{{seed}}/tags.safetensors",
                method=TRAINED_TOGETHER,
                run=FAMILY_RUN,
            ),
            meta=expand(
                "results/runs/{method}/{run}/seed{{seed}}/tags.json",
                method=TRAINED_TOGETHER,
                run=FAMILY_RUN,
            ),
            spec=expand(
                "results/runs/{method}/{run}/seed{{seed}}/run.json",
                method=TRAINED_TOGETHER,
                run=FAMILY_RUN,
            ),
            metrics=expand(
                "results/runs/{method}/{run}/seed{{seed}}/metrics.json",
                method=TRAINED_TOGETHER,
                run=FAMILY_RUN,
            ),
        log:
            f"logs/train_function_tag_family/{FAMILY_RUN}_seed{{seed}}.log",
        benchmark:
            f"benchmarks/train_function_tag_family/{FAMILY_RUN}_seed{{seed}}.tsv"
        priority: 10
        conda:
            MODEL_ENV
        threads: lookup(dpath="threads", within=config, default=2)
        resources:
            gpu=lookup(dpath="resources/gpu", within=config, default=0),
            mem_mb=lookup(dpath="resources/mem_mb", within=config, default=8000),
            # One run's time limit for each run of the job.
            runtime=lookup(dpath="resources/runtime", within=config, default=120)
            * len(TRAINED_TOGETHER),
        params:
            launch=get_launcher,
            task=run_task_arg(FAMILY_RUN),
            methods=" ".join(TRAINED_TOGETHER),
            out_dirs=get_family_run_dirs,
            domain_tags=get_family_domain_tags_flag,
            tag_length=lookup(dpath="tag_length", within=config),
            device=lookup(dpath="device", within=config),
            dtype=lookup(dpath="model/dtype", within=config, default="float32"),
            char_level=get_char_level_flag,
            bf16_inference=get_bf16_inference_flag,
            flags=get_family_flags,
        shell:
            "{params.launch} train-function-tag --model {input.model} --method {params.methods}"
            " --task {params.task} --data {input.data} {params.domain_tags}"
            " --tag-length {params.tag_length} --device {params.device} --dtype {params.dtype}"
            " --threads {threads} {params.char_level} {params.bf16_inference} {params.flags}"
            " --out-dir {params.out_dirs} > {log} 2>&1"


if SEEDED_RUNS:

    ruleorder: train_tagllm_seeds > train_function_tag

    # Tag-LLM on a headline run, every seed that reads the first seed's stage-1 tags, in one job:
    # one model load, the frozen prefixes computed once for all seeds.
    rule train_tagllm_seeds:
        input:
            model=get_model_dir(),
            data=get_run_data,
            domain_tags=lambda wildcards: stage1_tag_files(wildcards.run, SEEDS[0]),
        output:
            tags=expand(
                "results/runs/tagllm/{{run}}/seed{seed}/tags.safetensors",
                seed=SEEDS_TOGETHER,
            ),
            meta=expand(
                "results/runs/tagllm/{{run}}/seed{seed}/tags.json", seed=SEEDS_TOGETHER
            ),
            spec=expand(
                "results/runs/tagllm/{{run}}/seed{seed}/run.json", seed=SEEDS_TOGETHER
            ),
            metrics=expand(
                "results/runs/tagllm/{{run}}/seed{seed}/metrics.json",
                seed=SEEDS_TOGETHER,
            ),
        log:
            "logs/train_tagllm_seeds/{run}.log",
        benchmark:
            "benchmarks/train_tagllm_seeds/{run}.tsv"
        wildcard_constraints:
            run="|".join(SEEDED_RUNS),
        priority: 10
        conda:
            MODEL_ENV
        threads: lookup(dpath="threads", within=config, default=2)
        resources:
            gpu=lookup(dpath="resources/gpu", within=config, default=0),
            mem_mb=lookup(dpath="resources/mem_mb", within=config, default=8000),
            # One run's time limit for each seed of the job.
            runtime=lookup(dpath="resources/runtime", within=config, default=120)
            * len(SEEDS_TOGETHER),
        params:
            launch=get_launcher,
            task=get_run_task,
            out_dirs=get_seed_run_dirs,
            domain_tags=get_seeds_domain_tags_flag,
            tag_length=lookup(dpath="tag_length", within=config),
            device=lookup(dpath="device", within=config),
            dtype=lookup(dpath="model/dtype", within=config, default="float32"),
            char_level=get_char_level_flag,
            bf16_inference=get_bf16_inference_flag,
            flags=get_seeds_flags,
        shell:
            "{params.launch} train-function-tag --model {input.model} --method tagllm"
            " --task {params.task} --data {input.data} {params.domain_tags}"
            " --tag-length {params.tag_length} --device {params.device} --dtype {params.dtype}"
            " --threads {threads} {params.char_level} {params.bf16_inference} {params.flags}"
            " --out-dir {params.out_dirs} > {log} 2>&1"


rule train_baseline:
    input:
        model=get_model_dir(),
        data=get_run_data,
        domain_tags=get_run_domain_tags,
    output:
        spec="results/runs/{method}/{run}/seed{seed}/run.json",
        metrics="results/runs/{method}/{run}/seed{seed}/metrics.json",
    log:
        "logs/train_baseline/{method}_{run}_seed{seed}.log",
    benchmark:
        "benchmarks/train_baseline/{method}_{run}_seed{seed}.tsv"
    wildcard_constraints:
        method="|".join(BASELINE_METHODS) or "NONE",
    conda:
        MODEL_ENV
    threads: lookup(dpath="threads", within=config, default=2)
    resources:
        gpu=lookup(dpath="resources/gpu", within=config, default=0),
        mem_mb=lookup(dpath="resources/mem_mb", within=config, default=8000),
        runtime=lookup(dpath="resources/runtime", within=config, default=120),
    params:
        launch=get_launcher,
        task=get_run_task,
        domain_tags=get_domain_tags_flag,
        tag_length=lookup(dpath="tag_length", within=config),
        device=lookup(dpath="device", within=config),
        dtype=lookup(dpath="model/dtype", within=config, default="float32"),
        char_level=get_char_level_flag,
        bf16_inference=get_bf16_inference_flag,
        flags=get_run_flags,
    shell:
        "{params.launch} train-baseline --model {input.model} --method {wildcards.method}"
        " --task {params.task} --data {input.data} {params.domain_tags}"
        " --tag-length {params.tag_length} --device {params.device} --dtype {params.dtype}"
        " --threads {threads} {params.char_level} {params.bf16_inference} {params.flags}"
        " --out-dir results/runs/{wildcards.method}/{wildcards.run}/seed{wildcards.seed}"
        " > {log} 2>&1"
