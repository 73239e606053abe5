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

## Set everything up (venv, packages, .env, database, admin user) and serve on http://127.0.0.1:8000/admin/
run: $(STAMP)
	$(PYTHON) scripts/make_env.py
	$(PY) manage.py migrate --noinput -v 0
	$(PY) manage.py ensure_admin
	@echo "Open http://127.0.0.1:8000/admin/"
	$(PY) manage.py runserver 127.0.0.1:8000

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
