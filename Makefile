# Two commands do everything on a fresh machine:
#   make demo   set up (venv, llama-cpp-python build, test models) and run a constrained generation
#   make test   set up if needed, then lint and run the test suite (what CI runs)

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Skip llama.cpp's multimodal part: halves the llama-cpp-python build.
CMAKE_ARGS ?= -DLLAVA_BUILD=OFF
export CMAKE_ARGS

.PHONY: setup demo test lint models bench clean

setup: $(VENV)/.installed models/.built

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install -c constraints.txt -e ".[test]"
	touch $@

models/.built: $(VENV)/.installed scripts/build_test_models.py
	$(BIN)/python scripts/build_test_models.py
	touch $@

models: models/.built

demo: setup
	$(BIN)/python scripts/demo.py

lint: $(VENV)/.installed
	$(BIN)/ruff check outlines_gguf tests scripts benchmarks
	$(BIN)/mypy

test: setup lint
	$(BIN)/python -m pytest -q

# The peers, the realistic-shape model, then every benchmark into BENCHMARKS.md and docs/bench/
# (README "Benchmarks"); options go in BENCH_ARGS, e.g. make bench BENCH_ARGS="--quick --vocabs qwen2".
# xgrammar needs torch: 2.13.0 is asked for first because the project's machines hold a CPU build of
# it on disk (any other torch would be a CUDA build of several GB); elsewhere pip picks one.
bench: setup
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install "torch==2.13.0" || true
	$(BIN)/python -m pip install -c constraints.txt -e ".[bench]"
	$(BIN)/python scripts/build_test_models.py --realistic
	$(BIN)/python benchmarks/bench.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) models/.built models/*.gguf models/vocab .cache
