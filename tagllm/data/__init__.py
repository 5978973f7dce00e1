"""Datasets: sources, validation (nothing dropped silently), labels and splits."""
