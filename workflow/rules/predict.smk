# Trained runs applied to new rows without labels (config `predict:`), one job per entry.


rule predict:
    input:
        model=get_model_dir(),
        run=get_predict_run,
        rows=get_predict_rows,
    output:
        predictions="results/predictions/{name}/predictions.parquet",
        report="results/predictions/{name}/report.json",
    log:
        "logs/predict/{name}.log",
    benchmark:
        "benchmarks/predict/{name}.tsv"
    conda:
        MODEL_ENV
    threads: lookup(dpath="threads", within=config, default=2)
    resources:
        gpu=lookup(dpath="resources/eval_gpu", within=config, default=0),
        mem_mb=lookup(dpath="resources/mem_mb", within=config, default=8000),
        runtime=lookup(dpath="resources/runtime", within=config, default=120),
    params:
        launch=get_eval_launcher,
        run_dir=get_predict_run_dir,
        device=lookup(dpath="device", within=config),
        dtype=lookup(dpath="model/dtype", within=config, default="float32"),
        bf16_inference=get_bf16_inference_flag,
        batch_size=lookup(dpath="evaluate/batch_size", within=config, default=16),
        max_new_tokens=lookup(
            dpath="evaluate/max_new_tokens", within=config, default=64
        ),
    shell:
        "{params.launch} predict --run {params.run_dir} --input {input.rows}"
        " --output {output.predictions} --report {output.report} --model {input.model}"
        " --batch-size {params.batch_size} --max-new-tokens {params.max_new_tokens}"
        " --device {params.device} --dtype {params.dtype} --threads {threads}"
        " {params.bf16_inference} > {log} 2>&1"
