# Quick start: `make demo` (setup + export splade-tiny in fp32/fp16/int8 + encode samples), `make test`.
PYTHON ?= python3
VENV   := .venv
TRITON_VENV := .venv-triton
BIN    := $(VENV)/bin
MODELS := models
# The lowest transformers the `export` extra claims; `make test` runs the export and runtime tests on it too.
OLDEST_TRANSFORMERS ?= 4.48.0
OLD_VENV := .venv-oldest
OLDEST_TESTS := tests/integration/test_export.py tests/integration/test_runtime.py tests/integration/test_architectures.py tests/integration/test_static_query.py

.PHONY: setup demo test test-latest test-oldest test-unit test-integration test-e2e lint bench bench-quick clean

setup: $(VENV)/.installed $(TRITON_VENV)/.installed

# torch==2.13.0 first: it is the CPU build on local disk, and it satisfies the `export` extra's
# range, so pip never pulls a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[cpu,openvino,export,st,tiny,server,dev,bench,scipy,triton,ray]"
	touch $@

# Made on demand: the oldest claimed transformers, without sentence-transformers (its tests skip).
$(OLD_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(OLD_VENV)
	$(OLD_VENV)/bin/pip install -q --upgrade pip
	$(OLD_VENV)/bin/pip install -q torch==2.13.0
	$(OLD_VENV)/bin/pip install -q -e ".[cpu,export,tiny,dev]" "transformers==$(OLDEST_TRANSFORMERS)"
	touch $@

# The real Triton server of the tests and the load comparison (the nvidia-pytriton wheel), in a venv
# of its own: the wheel's Python backend stub needs numpy<2 (its declared pin), the project's has numpy 2.
# The stub imports numpy, tokenizers and onnxruntime from it; the project is installed for its pins.
$(TRITON_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(TRITON_VENV)
	$(TRITON_VENV)/bin/pip install -q --upgrade pip
	$(TRITON_VENV)/bin/pip install -q -e ".[cpu,tritonserver]"
	touch $@

$(MODELS)/splade-tiny-fp32/splade.json: | $(VENV)/.installed
	$(BIN)/python -m export --model splade-tiny --output $(MODELS)/splade-tiny-fp32
$(MODELS)/splade-tiny-fp16/splade.json: | $(VENV)/.installed
	$(BIN)/python -m export --model splade-tiny --fp16 --output $(MODELS)/splade-tiny-fp16
$(MODELS)/splade-tiny-int8/splade.json: | $(VENV)/.installed
	$(BIN)/python -m export --model splade-tiny --int8 --output $(MODELS)/splade-tiny-int8

demo: $(MODELS)/splade-tiny-fp32/splade.json $(MODELS)/splade-tiny-fp16/splade.json $(MODELS)/splade-tiny-int8/splade.json
	@for p in fp32 fp16 int8; do \
	  echo "== splade-tiny $$p =="; \
	  $(BIN)/python -m runtime encode --model $(MODELS)/splade-tiny-$$p --top-k 8 \
	    "what is splade" "how do sparse retrieval models work" "capital of france" || exit 1; \
	done

# Tiers (tests/unit, tests/integration, tests/e2e); `make test` runs them all, then the export and
# runtime tests once more on the oldest transformers claimed. It is what CI runs.
test: test-latest test-oldest

test-latest: setup
	$(BIN)/python -m pytest -q tests

test-oldest: $(OLD_VENV)/.installed
	$(OLD_VENV)/bin/python -m pytest -q $(OLDEST_TESTS)

test-unit: setup
	$(BIN)/python -m pytest -q tests/unit

test-integration: setup
	$(BIN)/python -m pytest -q tests/integration

test-e2e: setup
	$(BIN)/python -m pytest -q tests/e2e

lint: setup
	$(BIN)/ruff check export runtime benchmarks tests
	$(BIN)/mypy

bench-quick: setup
	$(BIN)/python -m benchmarks.compare --quick

bench: setup
	$(BIN)/python -m benchmarks.compare

clean:
	rm -rf $(MODELS) .pytest_cache $(OLD_VENV)
