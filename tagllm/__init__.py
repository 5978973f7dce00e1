"""tagllm: learned domain and function tags that repurpose a frozen causal LM (Tag-LLM, ICML 2024)."""

__version__ = "0.1.0"
