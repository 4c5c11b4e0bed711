# The two set-up commands: `make demo` runs the whole system, `make test` runs the test suite.
# Both install what is missing first (Debian packages, a virtualenv with the package and extras).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: deps system-deps python-deps web-assets test lint demo clean

deps: system-deps python-deps web-assets

system-deps:
	@bash scripts/install-system-deps.sh

python-deps: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# Front-end libraries come from npm (package.json, package-lock.json) and are copied into the
# static files, so pages never load anything from a CDN at run time.
LEAFLET := web/static/vendor/leaflet/leaflet.js

web-assets: $(LEAFLET)

$(LEAFLET): package.json package-lock.json
	npm ci --no-audit --no-fund --silent
	rm -rf web/static/vendor/leaflet
	mkdir -p web/static/vendor
	cp -r node_modules/leaflet/dist web/static/vendor/leaflet
	@touch $(LEAFLET)

lint: python-deps
	$(PY) -m ruff check .

test: deps lint
	$(PY) -m pytest

demo: deps
	$(VENV)/bin/fieldops up

clean:
	rm -rf $(VENV) tests/artifacts
