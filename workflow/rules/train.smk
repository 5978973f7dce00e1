# Stage 1 (domain tags) and stage 2 (function tags + regression heads), chained through files.


rule train_domain_tag:
    input:
        model=get_model_dir(),
        data=get_domain_tag_data,
    output:
        tags="results/tags/stage1/{tag}/tags.safetensors",
        meta="results/tags/stage1/{tag}/tags.json",
        metrics="results/tags/stage1/{tag}/metrics.json",
    log:
        "logs/train_domain_tag/{tag}.log",
    benchmark:
        "benchmarks/train_domain_tag/{tag}.tsv"
    conda:
        "../../envs/tagllm.yaml"
    threads: 2
    params:
        column=get_domain_tag_column,
        tag_length=lookup(dpath="tag_length", within=config),
        device=lookup(dpath="device", within=config),
        dtype=lookup(dpath="model/dtype", within=config, default="float32"),
        char_level=get_char_level_flag,
        flags=get_stage1_flags,
    shell:
        "python -m tagllm train-domain-tag --model {input.model} --data {input.data}"
        " --column {params.column} --tag {wildcards.tag} --tag-length {params.tag_length}"
        " --device {params.device} --dtype {params.dtype} --threads {threads} {params.char_level} {params.flags}"
        " --out-dir results/tags/stage1/{wildcards.tag} > {log} 2>&1"


rule train_function_tag:
    input:
        model=get_model_dir(),
        data="results/data/{task}/train.parquet",
        domain_tags=get_domain_tag_files,
    output:
        tags="results/runs/tagllm/{task}/tags.safetensors",
        meta="results/runs/tagllm/{task}/tags.json",
        head="results/runs/tagllm/{task}/head.safetensors",
        metrics="results/runs/tagllm/{task}/metrics.json",
    log:
        "logs/train_function_tag/{task}.log",
    benchmark:
        "benchmarks/train_function_tag/{task}.tsv"
    conda:
        "../../envs/tagllm.yaml"
    threads: 2
    params:
        domain_tag_dirs=get_domain_tag_dirs,
        tag_length=lookup(dpath="tag_length", within=config),
        device=lookup(dpath="device", within=config),
        dtype=lookup(dpath="model/dtype", within=config, default="float32"),
        char_level=get_char_level_flag,
        flags=get_stage2_flags,
    shell:
        "python -m tagllm train-function-tag --model {input.model} --task {wildcards.task}"
        " --data {input.data} --domain-tags {params.domain_tag_dirs}"
        " --tag-length {params.tag_length} --device {params.device} --dtype {params.dtype}"
        " --threads {threads} {params.char_level} {params.flags} --out-dir results/runs/tagllm/{wildcards.task}"
        " > {log} 2>&1"
