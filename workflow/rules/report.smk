# Tables and figures, rebuilt from saved evaluation files without retraining.


rule build_tables:
    input:
        metrics=get_eval_metrics(),
    output:
        csv="results/tables/summary.csv",
        markdown="results/tables/summary.md",
    log:
        "logs/build_tables/summary.log",
    conda:
        "../../envs/tagllm.yaml"
    params:
        caption=f"Test metrics on base model {MODEL}, mean over seeds {SEEDS} (data: see "
        "results/data/*/report.json; *_synthetic rows use synthetic scores). paper_value is "
        "Tag-LLaMA (LLaMA-7B) from paper Table 2.",
    shell:
        "python -m tagllm summarize --metrics {input.metrics} --csv {output.csv}"
        " --markdown {output.markdown} --caption '{params.caption}' > {log} 2>&1"


rule plot_predictions:
    input:
        predictions=expand(
            "results/eval/tagllm/{{run}}/seed{seed}/predictions.parquet", seed=SEEDS[0]
        ),
    output:
        figure="results/figures/{run}_predictions.png",
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
