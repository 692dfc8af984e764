# satmachineadmin: an LNbits extension. On a machine with only Python 3.10-3.12,
# `make run` and `make test` set everything up themselves (see `make venv`).

.DEFAULT_GOAL := help
SHELL := /bin/bash

# The first of these that runs and is 3.10 to 3.12 (LNbits 1.6 supports those).
PYTHON ?= $(shell for p in python3.12 python3.11 python3.10 python3 python; do \
	if $$p -c 'import sys; sys.exit(not ((3, 10) <= sys.version_info[:2] <= (3, 12)))' >/dev/null 2>&1; \
	then echo $$p; break; fi; done)

VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# Runtime (as in pyproject.toml) and dev tools (pyproject.toml's dev group, plus
# schemathesis and playwright). Keep in step with pyproject.toml.
RUNTIME_DEPS := "lnbits==1.6.2" "bitstring<5"
DEV_DEPS := "pytest>=8" "pytest-asyncio>=1.0" "hypothesis>=6.100" "ruff>=0.6" \
	"mypy>=1.10" "schemathesis==4.32.5" "playwright==1.65.2"

# The local Nostr relay the telemetry tests run (a TEST dependency). It needs
# pydantic 2 and SQLAlchemy 2, which LNbits 1.6 cannot share a virtualenv
# with: it gets its own (pyproject.toml's "relay" group).
RELAY_VENV := .run/nostr-relay-venv
RELAY_DEPS := "nostr-relay==1.14"

PG_URL ?= postgres://postgres@127.0.0.1:5432
# pytest reads tests/pytest.ini when it is given tests/ (rootdir tests/: the
# repository root is the extension package and must not be imported as one).
TESTS ?= tests
PYTEST_ARGS ?=
RUN_ARGS ?=
SIM_ARGS ?=

.PHONY: help venv relay-venv demo run test test-pg test-all pytest lint checkruff checkformat mypy format check bench clean-run soak simulate release upgrade-report

help:
	@echo "make run       set up .venv and run LNbits + this extension on 127.0.0.1:5000"
	@echo "make demo      the same on a fresh .run/demo, with a demo fleet selling live"
	@echo "make test      run the tests on SQLite (as shards, JOBS=$(JOBS) at a time)"
	@echo "make test-pg   run the tests on PostgreSQL (PG_URL=$(PG_URL))"
	@echo "make test-all  both databases (what CI runs)"
	@echo "make pytest    plain pytest on TESTS=$(TESTS) (one file, one test)"
	@echo "make lint      checkruff + checkformat + mypy"
	@echo "make format    ruff format and ruff check --fix"
	@echo "make check     lint + test"
	@echo "make bench     run the benchmarks (bench/__main__.py)"
	@echo "make soak      SIGKILL LNbits during payouts, many times (SOAK_ARGS, both databases)"
	@echo "make simulate  a simulated month of a fleet, reconciled to the sat (SIM_ARGS=--help)"
	@echo "make venv      create .venv and install LNbits and the dev tools"
	@echo "make release   dist/satmachineadmin-<version>.zip + dist/manifest.json (RELEASE_BASE_URL=<url>)"
	@echo "make upgrade-report  what an upgrade over v1 would carry (DATA=<folder> or DATABASE_URL=postgres://...)"

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@if [ ! -x $(PY) ]; then \
		if [ -z "$(PYTHON)" ]; then \
			echo "error: no Python 3.10, 3.11 or 3.12 found (tried python3.12, python3.11, python3.10, python3, python); set PYTHON=/path/to/python" >&2; \
			exit 1; \
		fi; \
		echo "Creating $(VENV) with $(PYTHON) ($$($(PYTHON) --version 2>&1))"; \
		$(PYTHON) -m venv $(VENV); \
	fi
	@$(PY) -c 'import sys; sys.exit(not ((3, 10) <= sys.version_info[:2] <= (3, 12)))' || { \
		echo "error: $(VENV) uses Python $$($(PY) --version 2>&1); LNbits 1.6 needs 3.10-3.12. Remove $(VENV) and retry." >&2; \
		exit 1; }
	$(PY) -m pip install --disable-pip-version-check --quiet --upgrade pip
	$(PY) -m pip install --disable-pip-version-check --quiet $(RUNTIME_DEPS) $(DEV_DEPS)
	@touch $(STAMP)

run: $(STAMP)
	$(PY) scripts/run_lnbits.py $(RUN_ARGS)

relay-venv: $(RELAY_VENV)/bin/nostr-relay

$(RELAY_VENV)/bin/nostr-relay:
	@if [ -z "$(PYTHON)" ]; then echo "error: no Python 3.10-3.12 found" >&2; exit 1; fi
	$(PYTHON) -m venv $(RELAY_VENV)
	$(RELAY_VENV)/bin/pip install --disable-pip-version-check --quiet $(RELAY_DEPS)

demo: $(STAMP)
	$(PY) scripts/demo.py $(RUN_ARGS)

# The suite runs as shards, JOBS at a time (tests/shards.py): `make test` on
# SQLite, `make test-pg` on PostgreSQL, `make test-all` on both (what CI runs).
# One file or test, plain pytest: `make pytest TESTS=tests/unit`.
JOBS ?= 4
test: $(STAMP) relay-venv
	$(PY) tests/shards.py --db sqlite --jobs $(JOBS) $(PYTEST_ARGS)

test-pg: $(STAMP) relay-venv
	PG_URL=$(PG_URL) $(PY) tests/shards.py --db postgres --jobs $(JOBS) $(PYTEST_ARGS)

test-all: $(STAMP) relay-venv
	PG_URL=$(PG_URL) $(PY) tests/shards.py --db sqlite,postgres --jobs $(JOBS) $(PYTEST_ARGS)

pytest: $(STAMP) relay-venv
	$(PY) -m pytest $(TESTS) $(PYTEST_ARGS)

lint: checkruff checkformat mypy

checkruff: $(STAMP)
	$(VENV)/bin/ruff check .

checkformat: $(STAMP)
	$(VENV)/bin/ruff format --check .

# mypy checks the extension's modules at the root as the package
# `satmachineadmin` (relative imports need the package name, whatever this
# checkout's folder is called): through a symlink in .run/typecheck.
# tests/ and bench/ are left out, as pyproject.toml's [tool.mypy] says.
mypy: $(STAMP)
	@mkdir -p .run/typecheck
	@ln -sfn "$(CURDIR)" .run/typecheck/satmachineadmin
	cd .run/typecheck && $(CURDIR)/$(VENV)/bin/mypy \
		--config-file $(CURDIR)/pyproject.toml --cache-dir $(CURDIR)/.mypy_cache \
		satmachineadmin/*.py

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

check: lint test

bench: $(STAMP)
	@if [ -f bench/__main__.py ]; then \
		$(PY) -m bench; \
	else \
		echo "No benchmarks yet: bench/__main__.py does not exist."; \
		exit 1; \
	fi

# The long process-death soak (tests/process/soak.py): SQLite, then PostgreSQL
# at PG_URL. SOAK_ARGS e.g. "--seed 7 --rounds 10 --per-round 6".
SOAK_ARGS ?=
soak: $(STAMP)
	$(PY) tests/process/soak.py $(SOAK_ARGS)
	SATMACHINE_TEST_POSTGRES=$(PG_URL) $(PY) tests/process/soak.py $(SOAK_ARGS)

# A month of a fleet against a real LNbits process (bench/simulate.py).
simulate: $(STAMP)
	PG_URL=$(PG_URL) $(PY) -m bench.simulate $(SIM_ARGS)

# Forget the local LNbits of `make run` (its database, users and password).
clean-run:
	rm -rf .run

# The installable release (scripts/release.py, standard library only):
# $(DIST)/satmachineadmin-<version>.zip and $(DIST)/manifest.json, the archive
# at RELEASE_BASE_URL (default: the GitHub release of the version).
# RELEASE_VERSION overrides config.json's version.
DIST ?= dist
RELEASE_BASE_URL ?=
RELEASE_VERSION ?=
release:
	@$(or $(wildcard $(PY)),$(PYTHON)) scripts/release.py --out "$(DIST)" \
		$(if $(RELEASE_BASE_URL),--base-url "$(RELEASE_BASE_URL)") \
		$(if $(RELEASE_VERSION),--version "$(RELEASE_VERSION)")

# Before upgrading over satmachineadmin v1: what would be carried, read-only.
DATA ?=
DATABASE_URL ?=
# Any Python with pydantic and asyncpg: LNbits' own virtualenv, or .venv.
REPORT_PY ?= $(or $(wildcard $(PY)),$(PYTHON))
upgrade-report:
	@if [ -n "$(DATA)" ]; then $(REPORT_PY) scripts/upgrade_report.py --data "$(DATA)" $(REPORT_ARGS); \
	elif [ -n "$(DATABASE_URL)" ]; then $(REPORT_PY) scripts/upgrade_report.py --database-url "$(DATABASE_URL)" $(REPORT_ARGS); \
	else echo "usage: make upgrade-report DATA=<LNbits data folder> | DATABASE_URL=postgres://..." >&2; exit 2; fi
