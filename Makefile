# Everything a fresh machine with Python 3.11+ and make needs: `make demo`, `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install test lint typecheck pytest demo diagrams bench bench-full clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstall when the project's metadata changes.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy fsm_session

pytest: $(STAMP)
	$(BIN)/pytest

test: lint typecheck pytest

demo: $(STAMP)
	$(BIN)/fsm-session demo

diagrams: $(STAMP)
	$(BIN)/python -m fsm_session.diagrams

bench: $(STAMP)
	$(BIN)/python benchmarks/core.py --quick
	$(BIN)/python benchmarks/wire.py --quick --json

bench-full: $(STAMP)
	$(BIN)/python benchmarks/core.py --full
	$(BIN)/python benchmarks/wire.py --full --json

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis build dist *.egg-info
