# The two set-up commands of the README: `make run` (the main job) and `make test` (the suite).
# Each creates .venv and installs what it needs on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.codekiln-installed
DEV_STAMP := $(VENV)/.codekiln-dev-installed
SYSTEM_STAMP := $(VENV)/.codekiln-system-installed

.PHONY: setup run test test-fast lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# The CPU build of PyTorch first: an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e .
	touch $(STAMP)

# The test tools, and Ray for the test that runs the curate stage on a local Ray instance.
# evalplus is the reference HumanEval+ judge the tests compare with; without its dependencies
# (its generators' clients, and `datasets`, which would send MultiPL-E tasks to the Hub).
# text-generation (the serve tests' TGI client) pins huggingface-hub<1.0, which
# transformers 5 outgrew; it works with hub 2.x, so it goes in without its pins (its other
# dependency, aiohttp, is in the dev extra).
# llama-cpp-python (the `llama` extra: the GGUF parity tests and bench/generate.py's llama.cpp
# rows) has no CPU wheel on PyPI: pip compiles llama.cpp from source, 5-10 minutes on 2 cores
# (it needs cmake and a C++ compiler); pinned so that a fresh venv builds the version tested.
# On x86 the build names this CPU's instruction sets itself instead of -march=native, leaving
# out AMX: where the CPU has AMX, a native build of 0.3.36 runs q8_0 matrix products through
# its AMX kernels, which die with SIGILL (illegal instruction) on our 2-core machines.
# --no-cache-dir: pip's wheel cache does not tell builds with other CMAKE_ARGS apart.
has_cpu_flag = $(shell grep -m1 -ow $(1) /proc/cpuinfo 2>/dev/null)
LLAMA_CMAKE_ARGS := $(if $(filter x86_64,$(shell uname -m)),-DGGML_NATIVE=OFF -DGGML_AVX=ON \
	-DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
	$(if $(call has_cpu_flag,avx_vnni),-DGGML_AVX_VNNI=ON) \
	$(if $(call has_cpu_flag,avx512f),-DGGML_AVX512=ON) \
	$(if $(call has_cpu_flag,avx512_vnni),-DGGML_AVX512_VNNI=ON) \
	$(if $(call has_cpu_flag,avx512_bf16),-DGGML_AVX512_BF16=ON))

$(DEV_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,ray]'
	$(BIN)/python -m pip install --quiet --no-deps evalplus==0.3.1
	$(BIN)/python -m pip install --quiet --no-deps text-generation==0.7.0
	CMAKE_BUILD_PARALLEL_LEVEL=2 CMAKE_ARGS="$(strip $(LLAMA_CMAKE_ARGS))" \
		$(BIN)/python -m pip install --quiet --no-cache-dir llama-cpp-python==0.3.36
	touch $(DEV_STAMP)

# bubblewrap, Chromium, Neovim and the evaluation toolchains, where this machine allows it.
$(SYSTEM_STAMP): scripts/install-system.sh scripts/install-toolchains.sh | $(STAMP)
	scripts/install-system.sh
	touch $(SYSTEM_STAMP)

setup: $(STAMP)

run: $(STAMP)
	scripts/install-system.sh --sandbox-only
	$(BIN)/codekiln run -w workspace --allow-code-execution

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Two tiers. `make test` runs every test (what CI runs). `make test-fast` is the edit loop: it
# leaves out the tests marked `@pytest.mark.slow` (multi-process runs, training runs, servers,
# sandboxed toolchains, measured memory) and runs in under 3 minutes on 2 cores. A new test
# that takes more than ~2 s gets the mark.
test: lint $(SYSTEM_STAMP)
	$(BIN)/python -m pytest -q

test-fast: $(DEV_STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

bench: $(DEV_STAMP)
	$(BIN)/python bench/curate.py
	$(BIN)/python bench/dedup.py
	$(BIN)/python bench/pack.py
	$(BIN)/python bench/train.py
	$(BIN)/python bench/finetune.py
	$(BIN)/python bench/generate.py
	$(BIN)/python bench/batching.py
	$(BIN)/python bench/serve.py
	$(BIN)/python bench/execute.py
	$(BIN)/python bench/attribution.py
	$(BIN)/python bench/scale.py

clean:
	rm -rf $(VENV) workspace bench/out .pytest_cache .ruff_cache
