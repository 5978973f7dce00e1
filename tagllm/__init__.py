"""tagllm: learned domain and function tags that repurpose a frozen causal LM (Tag-LLM, ICML 2024)."""

__version__ = "0.1.0"


def load_run(path, model_dir=None, device="cpu", dtype="float32", cpu_bf16_inference="auto"):
    """A trained run folder loaded on its base model: `load_run(path).predict(rows)` (see
    `tagllm.predict`). Imported on first use, so `import tagllm` stays light."""
    from tagllm.predict import load_run as _load_run

    return _load_run(path, model_dir, device, dtype, cpu_bf16_inference)
