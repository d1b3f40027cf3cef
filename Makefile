# Migration Lab: `make lab` to learn, `make test` to check everything.
# Both make the virtual environment and install requirements.txt first.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(CURDIR)/$(VENV)/bin
# uv installs in seconds when it is on PATH (`make install UV=` forces pip).
UV     ?= $(shell command -v uv 2>/dev/null)
# Reinstall whenever the pinned requirements or the kit's metadata change.
INSTALLED := $(VENV)/.installed
DEV_INSTALLED := $(VENV)/.installed-dev
# The install itself is migration_lab/launch/install.py (standard library only), which `python3 -m
# migration_lab lab` also runs by itself where make is missing: one way to make the venv.
INSTALL := $(PYTHON) -m migration_lab.launch.install --venv $(VENV) --uv "$(UV)"
# Arguments for JupyterLab's launcher, e.g. `make lab ARGS="--port 9999 --no-browser"`.
ARGS ?=

.PHONY: lab test install up down status nuke bench notebooks

$(INSTALLED): requirements.txt pyproject.toml
	@$(INSTALL)

$(DEV_INSTALLED): $(INSTALLED) requirements-dev.txt
	@$(INSTALL) --dev

install: $(INSTALLED)

## lab: install, start the lab database, your notebooks (my-notebooks/), JupyterLab on chapter 00 (localhost only)
# Everything is in `python -m migration_lab lab`, which works where make does not; Ctrl-C stops both.
lab: $(INSTALLED)
	@$(BIN)/python -m migration_lab lab $(ARGS)

## test: install (with the test tools), lint and type-check the kit, run every test against a real PostgreSQL
test: $(DEV_INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest

up down status: $(INSTALLED)
	$(BIN)/python -m migration_lab $@

## nuke: drop all lab data (asks first)
nuke: $(INSTALLED)
	$(BIN)/python -m migration_lab nuke

## bench: runner vs alembic CLI latency, reset time, and reading a long answer, as ratios
bench: $(INSTALLED)
	$(BIN)/python bench/command_latency.py
	$(BIN)/python bench/reset_time.py
	$(BIN)/python bench/answer_reading.py

## notebooks: re-execute every chapter (throw-away database) and save its outputs
notebooks: $(INSTALLED)
	$(BIN)/python tests/notebook_runs.py
