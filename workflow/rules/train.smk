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
        " --device {params.device} --dtype {params.dtype} --threads {threads}"
        " {params.char_level} {params.flags}"
        " --out-dir results/tags/stage1/{wildcards.tag}/seed{wildcards.seed} > {log} 2>&1"


rule train_function_tag:
    input:
        model=get_model_dir(),
        data=get_run_data,
        domain_tags=get_run_domain_tags,
    output:
        tags="results/runs/tagllm/{run}/seed{seed}/tags.safetensors",
        meta="results/runs/tagllm/{run}/seed{seed}/tags.json",
        metrics="results/runs/tagllm/{run}/seed{seed}/metrics.json",
    log:
        "logs/train_function_tag/{run}_seed{seed}.log",
    benchmark:
        "benchmarks/train_function_tag/{run}_seed{seed}.tsv"
    conda:
        "../../envs/tagllm.yaml"
    threads: 2
    params:
        task=get_run_task,
        domain_tag_dirs=get_run_domain_tag_dirs,
        enrich_data=get_run_enrich_data,
        tag_length=lookup(dpath="tag_length", within=config),
        device=lookup(dpath="device", within=config),
        dtype=lookup(dpath="model/dtype", within=config, default="float32"),
        char_level=get_char_level_flag,
        flags=get_run_flags,
    shell:
        "python -m tagllm train-function-tag --model {input.model} --task {params.task}"
        " --data {input.data} --domain-tags {params.domain_tag_dirs} {params.enrich_data}"
        " --tag-length {params.tag_length} --device {params.device} --dtype {params.dtype}"
        " --threads {threads} {params.char_level} {params.flags}"
        " --out-dir results/runs/tagllm/{wildcards.run}/seed{wildcards.seed} > {log} 2>&1"
