# Two commands for a fresh machine: `make demo` (whole pipeline, offline demo config) and
# `make test` (lint + unit + end-to-end tests). Both create .venv with the pinned versions first.
# `make check` is the everyday tier: lint, unit tests and one tiny end-to-end run.

PYTHON ?= python3
VENV ?= .venv
CORES ?= all
BIN := $(VENV)/bin
CONFIG ?= config/config.yaml
BENCH ?= local
# pytest-xdist workers; a module's tests stay on one worker, the longest modules first. One more
# worker than the 2 cores CI has: the Slurm tests' worker mostly waits on Slurm's status checks.
TEST_WORKERS ?= 3
PYTEST := HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

.PHONY: venv demo run test check lint clean slurm-start slurm-stop pull record dvc-yaml bench

# Bytecode is compiled on every core after the install (pip compiles one file at a time), for
# the venv and for src/ too: with PYTHONDONTWRITEBYTECODE set, every job would otherwise compile
# segpipe's modules again. Like pip, files that do not compile on this Python (torch's tests of
# newer syntax) are left out quietly.
COMPILE := $(BIN)/python -c 'import compileall, sys; [compileall.compile_dir(d, quiet=2, workers=0) for d in sys.argv[1:]]'

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --no-compile -r requirements.txt -r requirements-dev.txt
	$(BIN)/pip install --quiet --no-compile --no-deps -e .
	$(COMPILE) $(VENV)/lib src
	touch $@

venv: $(VENV)/.installed

demo: venv  ## two runs side by side on synthetic data, offline, CPU, a few minutes
	HF_HUB_OFFLINE=1 $(BIN)/snakemake --configfile config/demo.yaml --cores $(CORES)
	@$(BIN)/python -m segpipe.workflow.experiments --reports config/config.yaml config/demo.yaml

run: venv  ## the pipeline on $(CONFIG) (default: the real Oxford-IIIT Pet config)
	$(BIN)/python -m segpipe.workflow.config $(CONFIG)  # names the file and line of a YAML error
	$(BIN)/snakemake --configfile $(CONFIG) --cores $(CORES)

test: venv  ## lint + all tests, as CI runs them
	$(PYTEST)

check: venv  ## everyday tier, a few minutes: lint, unit tests and one tiny end-to-end run
	$(PYTEST) -m "not slow or check"

pull: venv  ## fetch recorded results (dvc pull) and re-stamp them so Snakemake sees them up to date
	$(BIN)/python -m segpipe.workflow.dvc pull

record: venv  ## store the current results' hashes in dvc.lock (when a run wasn't recorded)
	$(BIN)/python -m segpipe.workflow.dvc record

dvc-yaml: venv  ## regenerate dvc.yaml from the Snakemake DAG
	$(BIN)/python -m segpipe.workflow.dvc generate

bench: venv  ## training-speed benchmark on this machine -> tools/bench/results/$(BENCH).json
	HF_HUB_OFFLINE=1 $(BIN)/python tools/bench/bench_train.py --out tools/bench/results/$(BENCH).json

slurm-start:  ## single-node Slurm on localhost to try `snakemake --profile profiles/slurm` (root, Debian)
	tools/slurm/local-slurm.sh start

slurm-stop:  ## stop the daemons that slurm-start started
	tools/slurm/local-slurm.sh stop

lint: venv
	$(BIN)/snakefmt --check Snakefile rules/
	$(BIN)/snakemake --lint
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m mypy
	$(BIN)/shellcheck .ci/run tools/*/*.sh
	$(BIN)/shfmt --diff .ci/run tools/*/*.sh

clean:  ## remove pipeline outputs (keeps .venv)
	rm -rf results logs benchmarks .snakemake
