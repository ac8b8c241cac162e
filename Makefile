# Pygigo. `make test` and `make dev` work on a fresh machine: they create .venv themselves.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test lint typecheck pytest dev bench services clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $(STAMP)

test: $(STAMP) lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check pygigo tests examples $(wildcard bench)
	$(BIN)/ruff format --check pygigo tests examples $(wildcard bench)

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest -q -rs --durations=20 $(PYTEST_ARGS)

dev: $(STAMP)
	PYGIGO_HOME=$(CURDIR)/var $(BIN)/pygigo dev

bench: $(STAMP)
	$(BIN)/python -m bench.run

services:
	bash infra/services.sh start

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
