# Thin wrappers over the nblib command. Every target sets itself up: a .venv with the
# pinned dependencies, and the offline data sets.
VENV   ?= .venv
PYTHON ?= python3
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
LAB_ARGS ?=
# chapters side by side in `make book`: 1.29x faster at quick on 2 cores (benchmarks/jobs.md)
JOBS ?= 2
# JupyterLab refuses to start as root (containers, CI) unless told it may
LAB_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root)

.PHONY: setup data book test lab bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# pynndescent (umap's) compiles ~40 numba functions at its first import and caches them
	# beside its code: 15 s once, here, not in the first chapter or test that draws a UMAP
	$(BIN)/python -c "import umap"
	touch $(STAMP)

data: $(STAMP)
	bash ci/system-packages.sh
	$(BIN)/nblib data

setup: $(STAMP) data

book: setup
	$(BIN)/nblib run --profile quick --jobs $(JOBS)
	$(BIN)/nblib book

test: setup
	$(BIN)/python -m pytest

lab: setup
	$(BIN)/jupyter lab notebooks/ $(LAB_ROOT) $(LAB_ARGS)

bench: setup
	$(BIN)/python benchmarks/bench_fit.py
	$(BIN)/python benchmarks/bench_attacks.py
	$(BIN)/python benchmarks/bench_saliency.py
	$(BIN)/python benchmarks/bench_latency.py

clean:
	$(BIN)/nblib clean
