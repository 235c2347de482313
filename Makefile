# fractal-lba developer entry points. CI calls `make test` verbatim (see .ci/run).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint format bench

install: $(STAMP)

# Reinstall when the project metadata changes.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The embedded default: 127.0.0.1:8080, SQLite dedup store, WAL + audit under ./data.
run: $(STAMP)
	$(BIN)/flk serve

# The one test command: lint, types, tests.
test: $(STAMP) lint
	$(BIN)/mypy
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

format: $(STAMP)
	$(BIN)/ruff format src tests
	$(BIN)/ruff check --fix src tests

# Benchmark the live verifier (wrk closed loop + open loop, every backend); writes
# bench/RESULTS.md in ~10 min. `make bench BENCH_ARGS=--quick` takes ~4 min.
bench: $(STAMP)
	$(BIN)/python -m bench.run $(BENCH_ARGS)
