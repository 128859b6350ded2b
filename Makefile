# The two set-up commands of the README: `make run` (the main job) and `make test` (the suite).
# Each creates .venv and installs what it needs on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.codekiln-installed
DEV_STAMP := $(VENV)/.codekiln-dev-installed

.PHONY: setup run test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# The CPU build of PyTorch first: an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e .
	touch $(STAMP)

# The test tools, and Ray for the test that runs the curate stage on a local Ray instance.
$(DEV_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,ray]'
	touch $(DEV_STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/codekiln run -w workspace

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest -q

bench: $(DEV_STAMP)
	$(BIN)/python bench/curate.py
	$(BIN)/python bench/dedup.py
	$(BIN)/python bench/pack.py
	$(BIN)/python bench/train.py

clean:
	rm -rf $(VENV) workspace bench/out .pytest_cache .ruff_cache
