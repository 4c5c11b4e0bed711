# The two set-up commands: `make demo` runs the whole system, `make test` runs the test suite.
# Both install what is missing first (Debian packages, a virtualenv with the package and extras).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: deps system-deps python-deps test lint demo clean

deps: system-deps python-deps

system-deps:
	@bash scripts/install-system-deps.sh

python-deps: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

lint: python-deps
	$(PY) -m ruff check .

test: deps lint
	$(PY) -m pytest

demo: deps
	$(VENV)/bin/fieldops up

clean:
	rm -rf $(VENV) tests/artifacts
