# Two commands for a fresh machine: `make demo` (the main job) and `make test` (the suite).
# Both create or refresh .venv and install exactly the versions in constraints.txt.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# The project's copy of Fashion-MNIST when there is one; else nbtune uses keras's cache or download.
export NBTUNE_DATA_DIR ?= $(if $(wildcard ../shared/data/fashion-mnist),$(abspath ../shared/data/fashion-mnist))

.PHONY: venv test lint typecheck pytest demo java lock clean labextension labcheck

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "nbtune needs Python 3.10+"'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip uv
	$(VENV)/bin/uv pip install --quiet --python $(PY) -c constraints.txt -e '.[test]'
	@touch $(STAMP)

venv: $(STAMP)

java:
	@bash scripts/check_java.sh

# Debian's chromium for the browser tests (Playwright drives it; Playwright's own download does not work here).
CHROMIUM ?= /usr/bin/chromium
SUDO     := $(if $(filter 0,$(shell id -u)),,sudo)
.PHONY: chromium
chromium:
	@test -x $(CHROMIUM) || { echo "installing chromium with apt-get"; $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

pytest: chromium

lint: venv
	$(VENV)/bin/ruff check .

typecheck: venv
	$(VENV)/bin/mypy

pytest: venv java labextension
	$(VENV)/bin/pytest $(PYTEST_ARGS)

test: lint typecheck labcheck pytest

# The JupyterLab extension (labextension/, TypeScript): npm packages exactly as in the lockfile,
# a development build into nbtune/labextension, copied where the venv's JupyterLab looks for
# prebuilt extensions, as a wheel installs it (a copy, not a link: uninstalling removes it).
LABEXT      := labextension
LAB_DEPS    := $(LABEXT)/node_modules/.package-lock.json
LAB_BUILT   := nbtune/labextension/static/style.js
LAB_SOURCES := $(wildcard $(LABEXT)/src/*.ts $(LABEXT)/style/*) $(LABEXT)/package.json $(LABEXT)/tsconfig.json
LAB_COPY    := $(VENV)/share/jupyter/labextensions/nbtune

# `npm install` keeps to the committed lockfile; `npm ci` refuses it because the lockfile lacks
# @rspack/binding builds for other platforms, which this machine's npm registry does not have.
$(LAB_DEPS): $(LABEXT)/package.json $(LABEXT)/package-lock.json
	cd $(LABEXT) && npm install --no-audit --no-fund
	@touch $@

$(LAB_BUILT): $(LAB_DEPS) $(LAB_SOURCES)
	cd $(LABEXT) && npm run build
	@touch $@

$(LAB_COPY)/package.json: $(STAMP) $(LAB_BUILT)
	rm -rf $(LAB_COPY) && mkdir -p $(dir $(LAB_COPY)) && cp -R nbtune/labextension $(LAB_COPY)

labextension: venv $(LAB_COPY)/package.json

# TypeScript lint (Prettier, ESLint) and unit tests (vitest, sharing tests/annotation_cases.json).
labcheck: $(LAB_DEPS)
	cd $(LABEXT) && npm run lint:check && npm test

demo: venv java
	$(PY) scripts/demo.py

# Refresh constraints.txt from the environment that the tests passed in.
lock: venv
	$(VENV)/bin/uv pip freeze --python $(PY) --exclude-editable > constraints.txt

clean:
	rm -rf $(VENV) demo_output .pytest_cache .mypy_cache .ruff_cache
	rm -rf $(LABEXT)/node_modules $(LABEXT)/lib $(LABEXT)/tsconfig.tsbuildinfo nbtune/labextension
