# Two commands do all set-up: `make up` (deploy the dev stack) and `make test` (offline
# suite). See README.md.
SHELL := /bin/bash
VENV := venv
PY := $(VENV)/bin/python
STACK ?= dev
# Extra flags for pulumi, e.g. make up PULUMI_FLAGS=--yes
PULUMI_FLAGS ?=

.PHONY: venv test lint preview up destroy clean

# The venv is (re)built whenever a requirements file changes.
$(VENV)/.installed: requirements.txt requirements-dev.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed

test: venv
	$(PY) -m pytest

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/pyright

preview: venv
	@STACK=$(STACK) scripts/pulumi-preflight.sh
	pulumi preview --stack $(STACK) --policy-pack policy $(PULUMI_FLAGS)

up: venv
	@STACK=$(STACK) scripts/pulumi-preflight.sh
	pulumi up --stack $(STACK) --policy-pack policy $(PULUMI_FLAGS)

destroy: venv
	@STACK=$(STACK) scripts/pulumi-preflight.sh
	pulumi destroy --stack $(STACK) $(PULUMI_FLAGS)

clean:
	rm -rf $(VENV) policy/venv .pytest_cache .ruff_cache
