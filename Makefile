# fractal-lba developer entry points. CI calls `make test` verbatim (see .ci/run).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SDK := sdk/python
SDK_VENV := .venv-sdk

.PHONY: install run test test-sdk lint format bench chaos

install: $(STAMP)

# Reinstall when the project metadata changes. The verifier depends on the SDK
# (fractal-lba-client, sdk/python), which holds the PCS contract code: both are installed.
$(STAMP): pyproject.toml $(SDK)/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '$(SDK)[ed25519]' -e '.[dev]'
	touch $(STAMP)

# The embedded default: 127.0.0.1:8080, SQLite dedup store, WAL + audit under ./data.
run: $(STAMP)
	$(BIN)/flk serve

# The one test command: lint, types, tests (the project's, then the SDK's alone).
test: $(STAMP) lint
	$(BIN)/mypy
	$(BIN)/pytest
	$(MAKE) test-sdk

# Fault-injection scenarios at full length (make test runs shorter versions of the same tests):
# a 2-minute verifier outage during agent delivery.
chaos: $(STAMP)
	FLK_AGENT_OUTAGE_S=120 $(BIN)/pytest -m chaos -p no:cacheprovider

# The SDK installed alone (not editable) in a fresh venv, without the server package, and
# its own tests run there: proves `pip install ./sdk/python` is enough.
test-sdk:
	rm -rf $(SDK_VENV)
	$(PYTHON) -m venv $(SDK_VENV)
	$(SDK_VENV)/bin/python -m pip install --quiet './$(SDK)[test]'
	cd $(SDK) && FLK_SDK_ALONE=1 ../../$(SDK_VENV)/bin/python -m pytest -q -p no:cacheprovider

lint: $(STAMP)
	$(BIN)/ruff check src tests $(SDK)
	$(BIN)/ruff format --check src tests $(SDK)

format: $(STAMP)
	$(BIN)/ruff format src tests $(SDK)
	$(BIN)/ruff check --fix src tests $(SDK)

# Benchmark the live verifier (wrk closed loop + open loop, every backend); writes
# bench/RESULTS.md in ~10 min. `make bench BENCH_ARGS=--quick` takes ~4 min.
bench: $(STAMP)
	$(BIN)/python -m bench.run $(BENCH_ARGS)
