# Quick start: `make demo` (setup + export splade-tiny in fp32/fp16/int8 + encode samples), `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
MODELS := models

.PHONY: setup demo test test-unit test-integration test-e2e lint bench bench-quick clean

setup: $(VENV)/.installed

# torch==2.13.0 first: it is the CPU build on local disk, and it satisfies the `export` extra's
# range, so pip never pulls a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[cpu,export,tiny,server,dev,bench,scipy,triton,ray]"
	touch $@

$(MODELS)/splade-tiny-fp32/splade.json: | setup
	$(BIN)/python -m export --model splade-tiny --output $(MODELS)/splade-tiny-fp32
$(MODELS)/splade-tiny-fp16/splade.json: | setup
	$(BIN)/python -m export --model splade-tiny --fp16 --output $(MODELS)/splade-tiny-fp16
$(MODELS)/splade-tiny-int8/splade.json: | setup
	$(BIN)/python -m export --model splade-tiny --int8 --output $(MODELS)/splade-tiny-int8

demo: $(MODELS)/splade-tiny-fp32/splade.json $(MODELS)/splade-tiny-fp16/splade.json $(MODELS)/splade-tiny-int8/splade.json
	@for p in fp32 fp16 int8; do \
	  echo "== splade-tiny $$p =="; \
	  $(BIN)/python -m runtime encode --model $(MODELS)/splade-tiny-$$p --top-k 8 \
	    "what is splade" "how do sparse retrieval models work" "capital of france" || exit 1; \
	done

# Tiers (tests/unit, tests/integration, tests/e2e); `make test` runs them all and is what CI runs.
test: setup
	$(BIN)/python -m pytest -q tests

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
	rm -rf $(MODELS) .pytest_cache
