# Quick start: `make demo` (runs the demo on the embedded PostgreSQL) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-pg15 lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## The demo always runs on the embedded default, whatever DATABASE_URL says.
demo: setup
	env -u DATABASE_URL $(BIN)/pipeline-coverage demo

## The whole suite. TEST_DATABASE_URL picks a server; without it, embedded PostgreSQL 18.
## Unless PYTEST_ARGS names a --basetemp, a run keeps its temporary files (and the
## embedded server's data) in a folder of its own, removed when the run passes: any other
## pytest of the same user on the machine prunes and re-permissions the shared
## /tmp/pytest-of-USER, and the embedded server's data must not vanish under it.
test: setup
	$(if $(findstring --basetemp,$(PYTEST_ARGS)),$(BIN)/python -m pytest $(PYTEST_ARGS),\
	basetemp=$$(mktemp -d /tmp/pipeline-coverage-test.XXXXXX) \
	&& $(BIN)/python -m pytest --basetemp="$$basetemp" $(PYTEST_ARGS) && rm -rf "$$basetemp")

lint: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

bench: setup
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
