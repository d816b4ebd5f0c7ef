# Two commands for a fresh machine: `make demo` (the main job) and `make test` (the suite).
# Both create or refresh .venv and install exactly the versions in constraints.txt.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# The project's copy of Fashion-MNIST when there is one; else nbtune uses keras's cache or download.
export NBTUNE_DATA_DIR ?= $(if $(wildcard ../shared/data/fashion-mnist),$(abspath ../shared/data/fashion-mnist))

.PHONY: venv test lint typecheck pytest demo java lock clean

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

pytest: venv java
	$(VENV)/bin/pytest $(PYTEST_ARGS)

test: lint typecheck pytest

demo: venv java
	$(PY) scripts/demo.py

# Refresh constraints.txt from the environment that the tests passed in.
lock: venv
	$(VENV)/bin/uv pip freeze --python $(PY) --exclude-editable > constraints.txt

clean:
	rm -rf $(VENV) demo_output .pytest_cache .mypy_cache .ruff_cache
