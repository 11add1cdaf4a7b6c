# Development entry points. See README.md.
#   make run    the whole back office on http://127.0.0.1:8000 (embedded servers if needed)
#   make test   the whole test suite (extra pytest arguments: PYTEST_ARGS="-x -k saga")
#   make lint   ruff check, ruff format --check, mypy, lint-imports (pyproject.toml's contracts)
#   make bench  the benchmarks (python -m bench)
#   make bench-compare REV=<commit>  HEAD and REV benchmarked side by side, taking turns
#               (COMPARE_ARGS="--slices 5 api", "--smoke"; see python -m bench.compare -h)
#   make audit  pip-audit of every pinned dependency (fails on a vulnerability, and when no
#               vulnerability service answers; AUDIT_UNREACHABLE=warn only warns about that)
#   make lab-hosts  workers as separate "hosts" (PID and UTS namespaces, one host name; root)
#               on one PostgreSQL and broker; prints the figures in docs/reliability.md
#   make soak   orders under scheduled faults, then check_invariants (SOAK_ORDERS=40: short)
#   make mutation  mutmut over the core modules with their fast tests; writes docs/mutation.json
#               (MUTATION_MODULES="sagas/engine.py": those alone; the rules and the PostgreSQL
#               store need DATABASE_URL and REDIS_URL set)

SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
VENV_PYTHON := $(VENV)/bin/python
# The interpreter that creates .venv: python3.11, else python3 (it must be 3.11; checked).
BOOT_PYTHON := $(shell command -v python3.11 2>/dev/null || command -v python3 2>/dev/null)
# Once .venv exists, its own Python keeps it installed.
SETUP_PYTHON = $(if $(wildcard $(VENV_PYTHON)),$(VENV_PYTHON),$(BOOT_PYTHON))
PYTEST_ARGS ?=

# Local work runs in debug mode unless the caller set DEBUG (settings need SECRET_KEY otherwise).
run test bench bench-compare lab-hosts: export DEBUG ?= true
# mypy's Django plugin imports the settings, which need server URLs to parse; nothing connects.
lint: export DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/lint-only
lint: export REDIS_URL ?= redis://127.0.0.1:6379/0

.PHONY: help venv venv-dev run test lint bench bench-compare lab-hosts soak audit mutation

help:
	@sed -n 's/^#   //p' Makefile

venv:
	@test -n "$(SETUP_PYTHON)" || { echo "error: python3.11 is not on PATH" >&2; exit 2; }
	@$(SETUP_PYTHON) -m devtools.virtualenv

venv-dev:
	@test -n "$(SETUP_PYTHON)" || { echo "error: python3.11 is not on PATH" >&2; exit 2; }
	@$(SETUP_PYTHON) -m devtools.virtualenv --dev

run: venv
	@$(VENV_PYTHON) -m devtools.run

test: venv-dev
	@$(VENV_PYTHON) -m devtools.with_servers -- $(VENV)/bin/pytest $(PYTEST_ARGS)

lint: venv-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .
	$(VENV)/bin/lint-imports

bench: venv-dev
	@$(VENV_PYTHON) -m devtools.with_servers -- $(VENV_PYTHON) -m bench

# Also part of `make test` (tests/faults); here alone, with its figures printed.
lab-hosts: venv-dev
	@$(VENV_PYTHON) -m devtools.with_servers -- $(VENV)/bin/pytest tests/faults/test_hosts.py -s -q $(PYTEST_ARGS)

# REV is checked out under .local/bench-compare/; both revisions run in this virtualenv.
COMPARE_ARGS ?=
bench-compare: venv-dev
	@test -n "$(REV)" || { echo "usage: make bench-compare REV=<commit> [COMPARE_ARGS=...]" >&2; exit 2; }
	@$(VENV_PYTHON) -m devtools.with_servers -- $(VENV_PYTHON) -m bench.compare $(REV) $(COMPARE_ARGS)

# Outside `make test`: it takes minutes. The modules whose tests need PostgreSQL and Redis (the
# rules, the PostgreSQL store) take DATABASE_URL and REDIS_URL from the caller and stop with an
# error when they are unset; the others get placeholder URLs (their tests connect to neither).
# One test process at a time.
MUTATION_MODULES ?=
mutation: venv-dev
	@$(VENV_PYTHON) -m devtools.mutation $(MUTATION_MODULES)

# The soak starts its own private PostgreSQL and Redis (it kills and restarts them).
soak: venv-dev
	@$(VENV_PYTHON) -m soak

# pip-audit asks PyPI's JSON API (or osv.dev) about each pinned package. Where neither answers
# it reports every package as "not audited" and still exits 0: that counts as a failure here,
# never as a pass, unless AUDIT_UNREACHABLE=warn asks for a loud warning instead.
AUDIT_UNREACHABLE ?= fail
audit: venv-dev
	@out=$$(mktemp); \
	$(VENV)/bin/pip-audit -r requirements-dev.txt --progress-spinner off --desc on >"$$out" 2>&1; rc=$$?; \
	cat "$$out"; \
	skipped=$$(grep -c "could not be audited" "$$out"); rm -f "$$out"; \
	if [ "$$skipped" != "0" ]; then \
	  echo "error: pip-audit could not audit $$skipped packages: no vulnerability service (the PyPI JSON API, osv.dev) answers from this machine." >&2; \
	  if [ "$(AUDIT_UNREACHABLE)" = "warn" ]; then echo "WARNING: DEPENDENCY AUDIT NOT PERFORMED (AUDIT_UNREACHABLE=warn)." >&2; exit 0; fi; \
	  exit 1; \
	fi; \
	exit $$rc
