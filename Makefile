# Lyra — developer and operator entry points. Quick start: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed

.PHONY: setup run init test test-fast bench protos package clean

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] in ((3,11),(3,12)) else "Lyra needs Python 3.11 or 3.12: install python3.11 and run `make PYTHON=python3.11 ...`")'
	@$(PYTHON) -m venv $(VENV) || { echo "python venv module missing: sudo apt-get install -y python3-venv"; exit 1; }
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP)

## run: set up, initialize on first use, and run the appliance on the default configuration
run: setup
	@$(VENV)/bin/lyrad init   # idempotent: creates what is missing, changes nothing else
	$(VENV)/bin/lyrad run

init: setup
	$(VENV)/bin/lyrad init

## test: set up and run the whole test suite (CI calls this)
test: setup
	$(VENV)/bin/pytest -q

test-fast: setup
	$(VENV)/bin/pytest -q -m "not e2e"

bench: setup
	$(PY) -m benchmarks

protos: setup
	$(PY) scripts/gen_protos.py

package: setup
	$(PY) -m pip install --quiet -c constraints.txt -e '.[package]'
	$(VENV)/bin/pyinstaller --noconfirm --clean packaging/lyrad.spec

clean:
	rm -rf $(VENV) build dist .pytest_cache
