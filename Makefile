# The two commands of the README: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | sha1sum | cut -c1-12)

.PHONY: run test setup sandbox lint benchmark e2e

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) requirements.txt requirements-dev.txt
	$(PIP) install -q --disable-pip-version-check -r requirements-dev.txt
	rm -f $(VENV)/.installed-* && touch $@

## Set everything up (venv, packages, .env, database, admin user), serve on http://127.0.0.1:8000/admin/ and keep
## the Jira connections alive: the web server and the refresher (Procfile.dev, run by honcho; Ctrl-C stops both)
run: $(STAMP)
	$(PYTHON) scripts/make_env.py
	$(PY) manage.py migrate --noinput -v 0
	$(PY) manage.py ensure_admin
	@echo "Open http://127.0.0.1:8000/admin/"
# Procfile.dev's `python` is the venv's. Django reads .env itself: honcho must not (-e /dev/null), its parser
# rewrites values with spaces or quotes. PYTHONUNBUFFERED: each line shows up as it is written.
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" PYTHONUNBUFFERED=1 $(PY) -m honcho start -e /dev/null -f Procfile.dev

## Run the whole test suite (browser tests need Debian's chromium: apt-get install chromium)
test: $(STAMP)
	bash scripts/ensure_chromium.sh
	$(PY) -m ruff check .
	$(PY) -m pytest $(PYTEST_ARGS)

## The local Jira stand-in on http://127.0.0.1:8090/ (see README)
sandbox: $(STAMP)
	$(PY) jira_sandbox/manage.py sandbox_setup
	$(PY) jira_sandbox/manage.py runserver 127.0.0.1:8090

lint: $(STAMP)
	$(PY) -m ruff check .

benchmark: $(STAMP)
	$(PY) benchmarks/refresh_benchmark.py $(BENCH_ARGS)
