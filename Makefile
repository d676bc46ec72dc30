# The two commands a fresh machine runs: `make run` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOME_DIR ?= $(CURDIR)/.demo-home
PORT ?= 8080

AXE_VERSION := 4.14.1
AXE := .cache/axe-core/axe.min.js

.PHONY: run test lint format bench clean messages chromium

# The venv is rebuilt only when pyproject.toml changes.
$(BIN)/schoolbox: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

run: $(BIN)/schoolbox
	SCHOOLBOX_HOME=$(HOME_DIR) $(BIN)/schoolbox demo --port $(PORT)

test: $(BIN)/schoolbox $(AXE) chromium
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest

# axe-core (the accessibility rules the tests run in Chromium), from the npm registry.
$(AXE):
	mkdir -p .cache/axe-core
	cd .cache && npm pack --silent axe-core@$(AXE_VERSION) >/dev/null
	tar -xzf .cache/axe-core-$(AXE_VERSION).tgz -C .cache/axe-core --strip-components=1 package/axe.min.js
	rm .cache/axe-core-$(AXE_VERSION).tgz

# Headless Chromium for the accessibility test, from Debian's packages.
chromium:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then export DEBIAN_FRONTEND=noninteractive; apt-get install -y -q chromium >/dev/null || { apt-get update -q && apt-get install -y -q chromium; }; \
	  else echo "Chromium is needed for the accessibility test: sudo apt-get install chromium"; exit 1; fi; }

# Extract every string marked for translation into a catalogue for translators.
messages: $(BIN)/schoolbox
	$(BIN)/pybabel extract -F babel.cfg -k _l -o appliance/translations/messages.pot .

format: $(BIN)/schoolbox
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(BIN)/schoolbox
	$(BIN)/python bench/classroom_burst.py

clean:
	rm -rf $(VENV) $(HOME_DIR)
