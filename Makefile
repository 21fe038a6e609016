# Everything a fresh machine with Python 3.11+ and make needs: `make demo`, `make test`,
# `make docs`. Each installs what it needs into .venv, no more: the demo only the package.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
BASE_STAMP := $(VENV)/.installed-base
DOCS_STAMP := $(VENV)/.installed-docs

.PHONY: install test lint typecheck pytest demo docs diagrams bench bench-full mutants clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstall when the project's metadata changes.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# The package and its run-time dependencies only.
$(BASE_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $(BASE_STAMP)

# The package and Sphinx.
$(DOCS_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[docs]'
	touch $(DOCS_STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy fsm_session

pytest: $(STAMP)
	$(BIN)/pytest

test: lint typecheck pytest

demo: $(BASE_STAMP)
	$(BIN)/fsm-session demo

# The API reference from the docstrings, into docs/_build/html; any warning fails the build.
docs: $(DOCS_STAMP)
	$(BIN)/sphinx-build -W --keep-going -q -b html docs docs/_build/html

diagrams: $(STAMP)
	$(BIN)/python -m fsm_session.diagrams

bench: $(STAMP)
	$(BIN)/python benchmarks/core.py --quick
	$(BIN)/python benchmarks/wire.py --quick --json

bench-full: $(STAMP)
	$(BIN)/python benchmarks/core.py --full
	$(BIN)/python benchmarks/wire.py --full --json

# Every mutant of tests/mutants.py against the conformance kit; the detection matrix goes into
# CONFORMANCE.md (about five minutes; `make test` runs a sample).
mutants: $(STAMP)
	$(BIN)/python -m tests.mutants CONFORMANCE.md

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis build dist *.egg-info \
		docs/_build
