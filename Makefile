# The project's two front doors:
#   make demo  - set up .venv (default install), train the MoE classifier on the embedded digits with its defaults,
#                then analyse that run's history (nlab train-moe --json | nlab analyze-history -)
#   make test  - set up .venv with the test extras and run the whole test suite
# Setup is idempotent: each step leaves a stamp in .venv and is redone only when pyproject.toml or
# constraints.txt change. torch==2.13.0 (the CPU wheel) is installed first and pinned by constraints.txt
# on every pip call, so no CUDA packages are pulled.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip install --quiet --constraint constraints.txt
SHARED_DATA := $(abspath ../shared/data)
ifneq ($(wildcard $(SHARED_DATA)),)
export NLAB_DATA_DIR ?= $(SHARED_DATA)
endif

.PHONY: setup setup-test demo test bench clean

setup: $(VENV)/.stamp-base
setup-test: $(VENV)/.stamp-test

$(VENV)/.stamp-base: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) torch==2.13.0
	$(PIP) -e .
	touch $@

$(VENV)/.stamp-test: $(VENV)/.stamp-base
	$(PIP) -e '.[test,distributed,llamacpp]'
	touch $@

demo: setup
	$(BIN)/nlab train-moe --json | $(BIN)/nlab analyze-history -

test: setup-test
	$(BIN)/python -m pytest -q

bench: setup-test
	for b in benchmarks/*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info
