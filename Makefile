# Cloakroom. Two commands matter:
#   make demo   the marketplace with demo data at http://127.0.0.1:8000/ (PORT=8123 for another port)
#   make test   lint and the whole test suite against PostgreSQL and Redis
# `make help` lists every target.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
# Targets run one after another, in the order written, even under `make -j`.
.NOTPARALLEL:

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8000
PYTEST_ARGS ?=
# The demo's folder: SQLite database, broker files, encrypted uploads, static files, demo.env.
VAR_DIR := $(or $(CLOAKROOM_VAR_DIR),var)
DEMO_ENV := $(VAR_DIR)/demo.env
# Stamp written after a successful install; requirements newer than it trigger a reinstall.
STAMP := $(VENV)/.requirements-installed

# The test suite runs against these unless DATABASE_URL / REDIS_URL are already set.
TEST_DATABASE_URL := $(or $(DATABASE_URL),postgres://postgres@127.0.0.1:5432/cloakroom)
TEST_REDIS_URL := $(or $(REDIS_URL),redis://127.0.0.1:6379/0)
TEST_ENV := DATABASE_URL='$(TEST_DATABASE_URL)' REDIS_URL='$(TEST_REDIS_URL)'

# Management commands that need the demo's settings read them from demo.env through honcho.
MANAGE := $(BIN)/honcho -e $(DEMO_ENV) run $(BIN)/python manage.py

# gunicorn and celery in the Procfile come from the virtual environment.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: help venv demo demo-init migrate seed password test screenshots services lint mypy fmt clean distclean

help: ## List the targets
	@echo "Cloakroom: make demo (run it with demo data), make test (lint and every test)."
	@echo
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  make %-10s %s\n", $$1, $$2}'
	@echo
	@echo "Variables: PORT=$(PORT) (demo port), CLOAKROOM_VAR_DIR (demo folder, default var/),"
	@echo "           DATABASE_URL / REDIS_URL (tests default to PostgreSQL and Redis on 127.0.0.1),"
	@echo "           PYTEST_ARGS (extra pytest arguments, e.g. PYTEST_ARGS='-k purchase -x')."

venv: $(STAMP) ## Create .venv and install requirements-dev.txt (again only when the requirements change)

$(STAMP): requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
		|| { echo "Cloakroom needs Python 3.11 or newer; $(PYTHON) is $$($(PYTHON) --version 2>&1)." >&2; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) \
		|| { echo "'$(PYTHON) -m venv' failed. On Debian or Ubuntu: apt-get install python3-venv" >&2; exit 1; }
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

demo-init: venv ## Write var/demo.env (secrets for the demo) unless it exists
	@# The settings refuse to load without a SECRET_KEY unless DEBUG is on, and this command is
	@# what writes the key, so it alone runs with DEBUG=true. It only writes the file.
	DEBUG=true $(BIN)/python manage.py demo_init

# make demo writes the file only when it is missing, so a second start spends no process on it.
$(DEMO_ENV): | venv
	DEBUG=true $(BIN)/python manage.py demo_init

migrate: demo-init ## Apply database migrations to the demo database
	$(MANAGE) migrate --noinput

seed: migrate ## Create the demo accounts and datasets (safe to re-run)
	$(MANAGE) seed_demo

password: $(DEMO_ENV) ## Set a new password for a demo account: make password ACCOUNT=demo-buyer
	@test -n '$(ACCOUNT)' || { echo "Name the account: make password ACCOUNT=demo-buyer (or demo-owner, demo-modeller, admin)" >&2; exit 2; }
	$(MANAGE) changepassword '$(ACCOUNT)'

demo: venv $(DEMO_ENV) ## Run the demo (web, worker, beat) on http://127.0.0.1:8000/ or PORT; Ctrl-C stops it
	@# One process migrates, collects the static files when they changed, and seeds: each command run
	@# on its own would import Django and the project again (marketplace/management/commands/demo_setup.py).
	$(MANAGE) demo_setup
	@echo
	@echo "================================================================================"
	@echo " Cloakroom demo: http://127.0.0.1:$(PORT)/"
	@echo " Log in as demo-buyer, demo-owner, demo-modeller or admin with the passwords printed"
	@echo " above by seed_demo. They are shown only on the first run; on later runs reset one with"
	@echo "   $(if $(CLOAKROOM_VAR_DIR),CLOAKROOM_VAR_DIR=$(CLOAKROOM_VAR_DIR) )make password ACCOUNT=demo-buyer"
	@echo " API docs: http://127.0.0.1:$(PORT)/api/docs/    Admin: http://127.0.0.1:$(PORT)/admin/"
	@echo "================================================================================"
	@echo
	@# scripts/demo.sh stops every process on Ctrl-C or SIGTERM and exits 0, so make ends quietly.
	DEMO_PORT=$(PORT) bash scripts/demo.sh $(BIN)/honcho -e $(DEMO_ENV) -f Procfile start -p $(PORT)

services: ## Make sure PostgreSQL and Redis are up and the test user can connect
	$(TEST_ENV) bash scripts/ensure_services.sh

test: services venv ## Lint, then run every test against PostgreSQL and Redis
	bash scripts/ensure_browser.sh
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(MAKE) --no-print-directory mypy
	@# pytest exits 5 when it collected no tests; that is a failure too, and make stops on it.
	$(TEST_ENV) $(BIN)/python -m pytest tests $(PYTEST_ARGS) \
		|| { status=$$?; [ $$status -ne 5 ] || echo "pytest collected no tests" >&2; exit $$status; }

screenshots: services venv ## Take the README's screenshots (docs/screenshots) by a browser tour of the demo's data
	bash scripts/ensure_browser.sh
	$(TEST_ENV) CLOAKROOM_SCREENSHOT_DIR='$(abspath docs/screenshots)' $(BIN)/python -m pytest tests/e2e/test_demo_screenshots.py $(PYTEST_ARGS)

lint: venv ## ruff check, ruff format --check and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(MAKE) --no-print-directory mypy

# The Django plugin imports config.settings, which needs a secret key and a data key to load; these are
# the test suite's throwaway values (pyproject.toml), never used to serve anything.
MYPY_ENV := SECRET_KEY=mypy-only-not-a-secret-0123456789abcdefghijklmnopqrstuvwxyz-0123456789 \
	CLOAKROOM_DATA_KEYS=a2V5LWZvci10ZXN0cy1vbmx5LTAxMjM0NTY3ODlhYmM=

mypy: venv ## Type-check the engines and the shared protocol (files listed in pyproject.toml)
	$(MYPY_ENV) $(BIN)/mypy

fmt: venv ## Format the code and apply ruff's safe fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean: ## Delete var/ (or CLOAKROOM_VAR_DIR): the demo database, its secrets (demo.env) and its stored datasets
	rm -rf -- '$(VAR_DIR)'

distclean: clean ## clean, and delete the virtual environment too
	rm -rf -- '$(VENV)'
