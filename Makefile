# The two commands of the README: `make run` and `make test` (docs/development.md).
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
## the Jira connections alive: the web server and the refresher (Procfile.dev, run by honcho; Ctrl-C stops both).
## Another port: make run PORT=8001 (or PORT=8001 in .env); PUBLIC_BASE_URL and the callback URLs follow it.
run: $(STAMP)
	@$(PYTHON) scripts/make_env.py
# A busy port is one line saying which and how to choose another, before anything starts.
	@port=$$($(PYTHON) scripts/make_env.py --free-port web) || exit 1; \
	$(PY) manage.py migrate --noinput -v 0 && $(PY) manage.py ensure_admin || exit 1; \
	echo "Open http://127.0.0.1:$$port/admin/"; \
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" PYTHONUNBUFFERED=1 exec $(PY) -m honcho start -e /dev/null -f Procfile.dev -p $$port
# Procfile.dev's `python` is the venv's; honcho gives its web process PORT (-p). Django reads .env itself: honcho
# must not (-e /dev/null), its parser rewrites values with spaces or quotes. PYTHONUNBUFFERED: each line shows up
# as it is written.

## Run the whole test suite (browser tests need Debian's chromium and nginx: installed here when run as root)
test: $(STAMP)
	bash scripts/ensure_chromium.sh
	bash scripts/ensure_nginx.sh
	$(PY) -m ruff check .
	$(VENV)/bin/lint-imports --no-logo
	$(PY) -m pytest $(PYTEST_ARGS)

## The local Jira stand-in on http://127.0.0.1:8090/ (docs/sandbox.md). Another port: make sandbox SANDBOX_PORT=8091
## (or SANDBOX_PORT=8091 in .env). Its Jira Cloud app is registered with the callback URL of `make run`'s port.
sandbox: $(STAMP)
	@sport=$$($(PYTHON) scripts/make_env.py --free-port sandbox) || exit 1; \
	export SANDBOX_CLOUD_CALLBACK_URL="$${SANDBOX_CLOUD_CALLBACK_URL:-$$($(PYTHON) scripts/make_env.py --cloud-callback)}"; \
	$(PY) jira_sandbox/manage.py sandbox_setup || exit 1; \
	echo "Jira Cloud from make run: put in .env ATLASSIAN_AUTH_URL=http://127.0.0.1:$$sport/cloud-auth" \
	  "ATLASSIAN_API_URL=http://localhost:$$sport/cloud-api (docs/sandbox.md)"; \
	exec $(PY) jira_sandbox/manage.py runserver 127.0.0.1:$$sport

lint: $(STAMP)
	$(PY) -m ruff check .
	$(VENV)/bin/lint-imports --no-logo

benchmark: $(STAMP)
	$(PY) benchmarks/refresh_benchmark.py $(BENCH_ARGS)
