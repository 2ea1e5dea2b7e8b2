# Two commands do all set-up: `make up` (deploy the dev stack) and `make test` (offline
# suite). See README.md. Every Python package comes from uv.lock (exact versions, hashes);
# the only thing installed outside it is uv itself, pinned with hashes in requirements-uv.txt.
SHELL := /bin/bash
VENV := venv
PY := $(VENV)/bin/python
TOOLS := .tools
UV := $(TOOLS)/bin/uv
STACK ?= dev
# Extra flags for pulumi, e.g. make up PULUMI_FLAGS=--yes
PULUMI_FLAGS ?=
# uv installs into ./venv (the virtualenv Pulumi.yaml names), and `pulumi` finds this uv
# on PATH when it installs the same lock itself (Pulumi.yaml: toolchain uv).
export UV_PROJECT_ENVIRONMENT := $(CURDIR)/$(VENV)
export PATH := $(CURDIR)/$(TOOLS)/bin:$(PATH)
# uv installs no bytecode; Python writes it on first import unless this is set (as on CI
# machines), and then every test worker and mock run would compile pulumi_aws again.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: venv reference test lint preview up destroy lock upgrade clean

# uv itself, into a bootstrap venv of its own: all a machine needs beforehand is python3.
$(UV): requirements-uv.txt
	python3 -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check --require-hashes -r requirements-uv.txt
	touch $@

# The venv is synced whenever the lock changes; --locked fails if pyproject.toml and
# uv.lock disagree (a hand edit that skipped `make lock`).
$(VENV)/.installed: uv.lock pyproject.toml $(UV)
	$(UV) sync --locked --quiet
	touch $@

venv: $(VENV)/.installed

reference: venv
	$(PY) -m tests.reference

test: venv reference
	$(PY) -m pytest

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/pyright

# scripts/pulumi-preflight.sh: tools, credentials, backend, stack, and on a live cluster
# the caller's access entry and no kube-proxy replacement switch. CI runs it too.
preview: venv
	@STACK=$(STACK) ACTION=preview scripts/pulumi-preflight.sh
	pulumi preview --stack $(STACK) --policy-pack policy $(PULUMI_FLAGS)

up: venv
	@STACK=$(STACK) ACTION=up scripts/pulumi-preflight.sh
	pulumi up --stack $(STACK) --policy-pack policy $(PULUMI_FLAGS)

destroy: venv
	@STACK=$(STACK) ACTION=destroy scripts/pulumi-preflight.sh
	pulumi destroy --stack $(STACK) $(PULUMI_FLAGS)

# Versions move on purpose, in a pull request whose CI preview shows what they change.
# `lock`: after editing pyproject.toml, keeping every other pin. `upgrade`: the newest
# releases the ranges in pyproject.toml allow, uv included. Both export requirements.txt
# for plain pip: what `make up` runs, the program and the policy pack, without the tests.
EXPORT := $(UV) export --quiet --no-dev --group policy --no-emit-project --format requirements-txt -o requirements.txt

lock: $(UV)
	$(UV) lock
	$(EXPORT)

upgrade: $(UV)
	$(UV) lock --upgrade
	$(EXPORT)
	echo uv | $(UV) pip compile - --quiet --upgrade --generate-hashes --universal --no-header -o requirements-uv.txt

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .ruff_cache
