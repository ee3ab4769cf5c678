# Two commands for a fresh machine: `make demo` (whole pipeline, offline demo config) and
# `make test` (lint + unit + end-to-end tests). Both create .venv with the pinned versions first.

PYTHON ?= python3
VENV ?= .venv
CORES ?= all
BIN := $(VENV)/bin
CONFIG ?= config/config.yaml

.PHONY: venv demo run test lint report clean slurm-start slurm-stop

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

venv: $(VENV)/.installed

demo: venv  ## the whole pipeline on synthetic data, offline, CPU, a few minutes
	HF_HUB_OFFLINE=1 $(BIN)/snakemake --configfile config/demo.yaml --cores $(CORES)
	@echo "Report: results/report/report.html"

run: venv  ## the pipeline on $(CONFIG) (default: the real Oxford-IIIT Pet config)
	$(BIN)/snakemake --configfile $(CONFIG) --cores $(CORES)

test: venv  ## lint + all tests, as CI runs them
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest

slurm-start:  ## single-node Slurm on localhost to try `snakemake --profile slurm` (root, Debian)
	tools/slurm/local-slurm.sh start

slurm-stop:  ## stop the daemons that slurm-start started
	tools/slurm/local-slurm.sh stop

lint: venv
	$(BIN)/snakefmt --check Snakefile rules/
	$(BIN)/snakemake --lint
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:  ## remove pipeline outputs (keeps .venv)
	rm -rf results logs .snakemake
	find benchmarks -mindepth 1 -maxdepth 1 -type d ! -name results -exec rm -rf {} + 2>/dev/null || true
