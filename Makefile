# The two commands a fresh machine runs: `make run` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOME_DIR ?= $(CURDIR)/.demo-home
PORT ?= 8080

.PHONY: run test lint format bench clean

# The venv is rebuilt only when pyproject.toml changes.
$(BIN)/schoolbox: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

run: $(BIN)/schoolbox
	SCHOOLBOX_HOME=$(HOME_DIR) $(BIN)/schoolbox demo --port $(PORT)

test: $(BIN)/schoolbox
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest

format: $(BIN)/schoolbox
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(BIN)/schoolbox
	$(BIN)/python bench/classroom_burst.py

clean:
	rm -rf $(VENV) $(HOME_DIR)
