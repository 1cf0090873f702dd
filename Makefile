# The project's two front doors:
#   make demo  - set up .venv (the default install, from locks/default.txt), train the MoE classifier on the
#                embedded digits with its defaults, then analyse that run's history
#   make test  - set up .venv with the test extras (locks/test.txt) and run the whole test suite
# Setup installs exactly the lock files in locks/ (every package pinned, with hashes; `make lock` regenerates
# them), checks that .venv equals them and records which lock it holds (.venv/nlab-lock.json, copied into every
# run's manifest). It is idempotent: .venv is rebuilt only when a lock, constraints.txt or pyproject.toml change.
# torch is installed first from constraints.txt (the CPU wheel here; pass TORCH_PIP_ARGS='--index-url ...' for
# another build), so no CUDA package is pulled.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
PIPQ   := $(PY) -m pip install --quiet --disable-pip-version-check
LOCKED := $(PIPQ) --no-deps --require-hashes
TORCH_PIP_ARGS ?=
SHARED_DATA := $(abspath ../shared/data)
ifneq ($(wildcard $(SHARED_DATA)),)
export NLAB_DATA_DIR ?= $(SHARED_DATA)
endif

# llama-cpp-python (the real OpenAI-compatible server of the eval tests) is built once from its locked source
# with portable flags: AVX2/FMA/F16C and no -march=native, so the wheel runs on any x86-64 machine with AVX2,
# whichever CPU built it (a native build from an AVX-512/AMX machine segfaults elsewhere, and the reverse).
# It is kept in .wheels/ under a key of its locks and flags: a rebuilt .venv reuses it, and no wheel built with
# other flags (pip's cache keys wheels by version alone) is ever picked up.
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF
LLAMA_KEY := $(shell { cat locks/llamacpp-source.txt locks/build-llamacpp.txt; echo '$(LLAMA_CMAKE_ARGS)'; } | sha256sum | cut -c1-12)
LLAMA_DIR := .wheels/llama-cpp-portable-$(LLAMA_KEY)
LATEST := .venv-latest

.PHONY: setup setup-test demo test lock test-latest bench clean

setup: $(VENV)/.stamp-default
setup-test: $(VENV)/.stamp-test

$(VENV)/.stamp-default: locks/default.txt locks/test.txt constraints.txt pyproject.toml
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(PIPQ) --constraint constraints.txt $(TORCH_PIP_ARGS) torch
	$(LOCKED) -r locks/default.txt
	$(PIPQ) --no-deps --no-build-isolation -e .
	$(PY) -m phases.core.provenance record locks/default.txt
	touch $@

$(VENV)/.stamp-test: $(VENV)/.stamp-default $(LLAMA_DIR)/.built
	$(LOCKED) -r locks/test.txt
	$(PIPQ) --no-deps --no-index $(LLAMA_DIR)/*.whl
	$(PY) -m phases.core.provenance record locks/test.txt locks/llamacpp-source.txt
	touch $@

$(LLAMA_DIR)/.built: locks/llamacpp-source.txt locks/build-llamacpp.txt
	rm -rf $(LLAMA_DIR) && mkdir -p $(LLAMA_DIR)
	$(PYTHON) -m venv $(LLAMA_DIR)/build-env
	$(LLAMA_DIR)/build-env/bin/python -m pip install --quiet --no-deps --require-hashes -r locks/build-llamacpp.txt
	PATH="$(abspath $(LLAMA_DIR))/build-env/bin:$$PATH" CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" \
	  $(LLAMA_DIR)/build-env/bin/python -m pip wheel --quiet --no-deps --no-build-isolation --no-cache-dir \
	  --no-binary llama-cpp-python --require-hashes -r locks/llamacpp-source.txt -w $(LLAMA_DIR)
	rm -rf $(LLAMA_DIR)/build-env
	touch $@

demo: setup
	$(BIN)/nlab train-moe --json | $(BIN)/nlab analyze-history -

# One pytest-xdist worker per core (at most 4: each may hold a few GB of model), each test file whole on one worker
# (its module fixtures load the model once);
# tests/conftest.py divides the cores' threads between the workers.
test: setup-test
	$(PY) -m pytest -q -n auto --maxprocesses 4 --dist loadfile

# Regenerate locks/ from pyproject.toml with uv (pinned here). Existing pins are kept where pyproject.toml still
# admits them (a new dependency moves nothing else); `make lock UPGRADE=1` resolves the newest releases instead.
lock:
	test -x $(VENV)/bin/uv || $(PIPQ) uv==0.13.9
	UV=$(abspath $(VENV))/bin/uv UPGRADE=$(UPGRADE) bash locks/lock.sh

# Drift check (not part of CI): a throwaway environment of the newest releases pyproject.toml admits, the
# packages that differ from the lock, then the whole suite there.
test-latest: $(LLAMA_DIR)/.built
	rm -rf $(LATEST)
	$(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install --quiet --constraint constraints.txt $(TORCH_PIP_ARGS) torch
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(LATEST)/bin/python -m pip install --quiet --upgrade \
	  --upgrade-strategy eager --constraint constraints.txt --find-links $(LLAMA_DIR) -e '.[test,distributed,llamacpp]'
	$(LATEST)/bin/python -m phases.core.provenance diff locks/test.txt locks/llamacpp-source.txt
	$(LATEST)/bin/python -m pytest -q -p no:cacheprovider

bench: setup-test
	for b in benchmarks/*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) $(LATEST) build *.egg-info
