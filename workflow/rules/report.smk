# Tables and figures, rebuilt from saved evaluation and training files without retraining.


rule build_tables:
    input:
        metrics=get_eval_metrics(),
        runs=get_run_metrics(),
    output:
        report(
            expand("results/tables/{table}.{ext}", table=TABLES, ext=["csv", "md"]),
            category="Tables",
        ),
    log:
        "logs/build_tables/tables.log",
    conda:
        "../../envs/tagllm.yaml"
    params:
        setting=SETTING,
        tag_length=lookup(dpath="tag_length", within=config),
        ablation_run=lookup(dpath="ablations/run", within=config, default=""),
    shell:
        "python -m tagllm build-tables --metrics {input.metrics} --runs {input.runs}"
        " --out-dir results/tables --setting {params.setting:q}"
        " --tag-length {params.tag_length} --ablation-run '{params.ablation_run}' > {log} 2>&1"


rule plot_figures:
    input:
        summary="results/tables/summary.csv",
        runs=get_run_metrics(),
    output:
        report(
            expand("results/figures/{figure}.png", figure=FIGURES),
            category="Figures",
        ),
    log:
        "logs/plot_figures/figures.log",
    conda:
        "../../envs/tagllm.yaml"
    params:
        setting=SETTING,
        tag_length=lookup(dpath="tag_length", within=config),
        ablation_run=lookup(dpath="ablations/run", within=config, default=""),
    shell:
        "python -m tagllm plot-figures --summary {input.summary} --runs {input.runs}"
        " --ablation-run '{params.ablation_run}' --tag-length {params.tag_length}"
        " --out-dir results/figures"
        " --setting {params.setting:q} > {log} 2>&1"


rule plot_predictions:
    input:
        predictions=expand(
            "results/eval/tagllm/{{run}}/seed{seed}/predictions.parquet", seed=SEEDS[0]
        ),
    output:
        figure=report("results/figures/{run}_predictions.png", category="Figures"),
    log:
        "logs/plot_predictions/{run}.log",
    conda:
        "../../envs/tagllm.yaml"
    params:
        model=MODEL,
        seed=SEEDS[0],
    shell:
        "python -m tagllm plot-predictions --predictions {input.predictions}"
        " --out {output.figure}"
        " --title '{wildcards.run}: Tag-LLM on {params.model}, test split, seed {params.seed}'"
        " > {log} 2>&1"
