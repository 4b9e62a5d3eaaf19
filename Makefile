# Two commands do everything on a fresh machine with Python 3.11+ and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DATABASE_URL ?= sqlite:///var/farthing.db
HOST ?= 127.0.0.1
PORT ?= 8420

.PHONY: serve test lint typecheck bench crash fuzz audit-deps clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/activate
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/activate
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(VENV)/.installed $@

serve: $(VENV)/.installed
	$(BIN)/farthing init --database-url $(DATABASE_URL)
	@echo "test API key: $$($(BIN)/farthing keys create --database-url $(DATABASE_URL) --mode test)"
	$(BIN)/farthing serve --database-url $(DATABASE_URL) --host $(HOST) --port $(PORT)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests tools
	$(BIN)/ruff format --check src tests tools

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/pytest

# Longer campaigns (documented in README): not part of make test.
crash: $(VENV)/.installed-dev
	FARTHING_CRASH_ROUNDS=$${FARTHING_CRASH_ROUNDS:-200} $(BIN)/pytest tests/ledger_service/test_crash.py

# schemathesis against every operation: 500 examples each plus the coverage phase, on SQLite and
# PostgreSQL (set FARTHING_TEST_POSTGRES_URL); make test runs 10 examples each on SQLite.
fuzz: $(VENV)/.installed-dev
	FARTHING_FUZZ_EXAMPLES=$${FARTHING_FUZZ_EXAMPLES:-500} $(BIN)/pytest tests/security/test_fuzz.py

# Known vulnerabilities in the installed dependencies (needs the PyPI/OSV advisory service).
audit-deps: $(VENV)/.installed-dev
	$(BIN)/pip-audit --skip-editable --strict

bench: $(VENV)/.installed
	$(BIN)/farthing bench ledger --database-url sqlite:///var/bench.db

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache .hypothesis
