# Migration Lab: `make lab` to learn, `make test` to check everything.
# Both make the virtual environment and install requirements.txt first.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(CURDIR)/$(VENV)/bin
# Reinstall whenever the pinned requirements or the kit's metadata change.
INSTALLED := $(VENV)/.installed
DEV_INSTALLED := $(VENV)/.installed-dev

.PHONY: lab test install up down status nuke bench notebooks

$(INSTALLED): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --progress-bar on -r requirements.txt
	touch $@

$(DEV_INSTALLED): $(INSTALLED) requirements-dev.txt
	$(BIN)/python -m pip install --progress-bar on -r requirements-dev.txt
	touch $@

install: $(INSTALLED)

## lab: install, start the lab database, open JupyterLab (localhost only)
# The venv's bin/ goes first on PATH, so `alembic` works in JupyterLab's terminals.
lab: $(INSTALLED)
	$(BIN)/python -m migration_lab up
	PATH="$(BIN):$$PATH" $(BIN)/jupyter lab --ServerApp.ip=127.0.0.1 --ServerApp.root_dir=$(CURDIR) \
		$(if $(filter 0,$(shell id -u)),--allow-root) notebooks/00-start-here.ipynb

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

## bench: runner vs alembic CLI latency, and reset time, as ratios
bench: $(INSTALLED)
	$(BIN)/python bench/command_latency.py
	$(BIN)/python bench/reset_time.py

## notebooks: re-execute every chapter (throw-away database) and save its outputs
notebooks: $(INSTALLED)
	$(BIN)/python tests/notebook_runs.py
