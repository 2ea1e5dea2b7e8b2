# Two commands do all set-up: `make up` (deploy) and `make test` (offline suite).
SHELL := /bin/bash
VENV := venv
PY := $(VENV)/bin/python

.PHONY: venv test

# The venv is (re)built whenever a requirements file changes.
$(VENV)/.installed: requirements.txt requirements-dev.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed

test: venv
	$(PY) -m pytest
