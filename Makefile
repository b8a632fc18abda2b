# meshprov: the two quick-start commands are `make demo` and `make test`. Both bootstrap what they need
# (.venv/, node_modules/) on first use and are idempotent afterwards.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
PY_STAMP := $(VENV)/.meshprov-installed
NODE_STAMP := node_modules/.meshprov-installed
SYS_STAMP := .venv/.meshprov-system-packages
FORGE := node_modules/@foundry-rs/forge-linux-amd64/bin/forge

.PHONY: help setup demo test lint typecheck pytest contracts contracts-test gas-check gas-snapshot artifacts bench bugs bugs-quick clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(SYS_STAMP):
	@mkdir -p $(VENV)
	@# Debian packages the tests and the demo need; installed only when missing.
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v docker-compose >/dev/null || missing="$$missing docker-compose"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi
	@touch $@

$(NODE_STAMP): package.json package-lock.json
	@# `npm ci` installs exactly what package-lock.json pins and never writes it, so setup leaves the clone as it
	@# was checked out. The lock file is committed as npm 11 writes it: with every platform's optional Foundry
	@# binary listed, which `npm ci` needs on any platform. After changing package.json run `npm install` once
	@# and commit the lock file it writes.
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

$(PY_STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	@# torch first, pinned: this exact release is a local CPU build; any other spec downloads gigabytes.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[all]'
	@touch $@

setup: $(SYS_STAMP) $(NODE_STAMP) $(PY_STAMP)  ## install everything into .venv/ and node_modules/

demo: setup  ## run a whole consortium on embedded defaults
	$(BIN)/meshprov demo

lint: setup  ## ruff lint + format check, mypy strict
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	@# the examples are recipes, not packages of meshprov: checked as files, just as strictly
	$(BIN)/mypy examples/cnn_batchnorm examples/transformer_lm

contracts: setup  ## build the contracts and export ABI + bytecode into ledger/artifacts
	$(BIN)/python -m ledger.dev.build

contracts-test: setup  ## forge unit, fuzz and invariant tests
	@if [ -d contracts/src ] && ls contracts/src/*.sol >/dev/null 2>&1; then cd contracts && ../$(FORGE) test; fi

# Gas of the unit tests against the committed contracts/.gas-snapshot, with a tolerance of 1 (percent): the gas
# is deterministic for given sources, compiler and seed, so a contract change that costs more than 1% in any
# test fails here, while the few gas of test-harness overhead (cheatcodes, calldata) a Foundry release may
# shift do not. After a deliberate change, `make gas-snapshot` rewrites the file: review and commit it.
GAS_TOLERANCE := 1
gas-check: setup  ## compare the unit tests' gas with contracts/.gas-snapshot (GAS_TOLERANCE percent)
	cd contracts && ../$(FORGE) snapshot --match-path 'test/unit/*' --check --tolerance $(GAS_TOLERANCE)

gas-snapshot: setup  ## rewrite contracts/.gas-snapshot after a deliberate gas change
	cd contracts && ../$(FORGE) snapshot --match-path 'test/unit/*'

bugs: setup  ## show that the invariant suite catches each planted bug in contracts/bugs/
	@if ls contracts/bugs/*.patch >/dev/null 2>&1; then bash contracts/bugs/check.sh; fi

bugs-quick: setup  ## the same verdict, invariant suite only (what `make test` runs)
	@if ls contracts/bugs/*.patch >/dev/null 2>&1; then bash contracts/bugs/check.sh --quick; fi

# pytest runs on one worker per core (at most 4), a test file per worker at a time (--dist loadfile): a file's
# module fixtures (a consortium's history, a demo's record) are built once, and most tests wait on processes.
PYTEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); [ $$n -gt 4 ] && n=4; echo $$n)
pytest: setup
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile

# `make test` runs the planted-bug check beside the other stages, at the lowest CPU priority: pytest leaves about a
# fifth of two cores idle (its tests wait on processes), which the check's compiles fill, and what is left of it runs
# after pytest. Its report is printed at the end; a failing stage stops it. Ctrl-C stops it too: it runs in a session
# of its own, so one signal reaches every compiler it started. A new session is a new scheduler autogroup on Linux,
# which would get half the CPU whatever its nice value: the group itself is given nice 19.
test: setup  ## everything: lint, types, forge tests, gas, planted bugs, pytest
	@bugs=""; bugs_log=$$(mktemp); \
	stop_bugs() { if [ -n "$$bugs" ]; then kill -TERM -- "-$$bugs" 2>/dev/null; wait "$$bugs" 2>/dev/null; fi; bugs=""; }; \
	trap 'stop_bugs; rm -f "$$bugs_log"' EXIT; trap 'exit 130' INT TERM; \
	if ls contracts/bugs/*.patch >/dev/null 2>&1; then \
	  setsid bash -c 'echo 19 > /proc/self/autogroup 2>/dev/null; exec nice -n 19 bash contracts/bugs/check.sh --quick' \
	    > "$$bugs_log" 2>&1 & bugs=$$!; \
	fi; \
	$(MAKE) --no-print-directory lint contracts-test gas-check pytest || exit $$?; \
	if [ -n "$$bugs" ]; then \
	  echo "== planted bugs (contracts/bugs/check.sh --quick, run beside the stages above)"; \
	  status=0; wait "$$bugs" || status=$$?; bugs=""; cat "$$bugs_log"; exit $$status; \
	fi

BENCH_VENV := .venv-bench
$(BENCH_VENV)/.installed:
	@# Flower (the aggregation baseline) pins typer/fastapi releases meshprov cannot share: its own venv.
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install -q 'flwr>=1.13,<2' 'safetensors>=0.4.5,<1' 'numpy>=1.26,<3'
	@touch $@

bench: setup $(BENCH_VENV)/.installed  ## run every benchmark (prints tables and compares to baselines)
	@for b in benchmarks/*.py; do \
	  case $$b in */meshnet.py) continue ;; esac; \
	  echo "== $$b"; FLOWER_PYTHON=$(BENCH_VENV)/bin/python $(BIN)/python $$b || exit 1; done

clean:  ## remove build output (keeps .venv and node_modules)
	rm -rf contracts/out contracts/cache .pytest_cache .mypy_cache .ruff_cache
