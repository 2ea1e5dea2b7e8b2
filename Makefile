# Two commands do all set-up: `make up` (deploy the dev stack) and `make test` (offline
# suite). See README.md. Every Python package comes from uv.lock (exact versions, hashes);
# the only thing installed outside it is uv itself, pinned with hashes in requirements-uv.txt.
SHELL := /bin/bash
# The machine's python3, found before PATH gains .tools/bin below (whose python3 has no pip).
BOOT_PYTHON := $(shell command -v python3)
VENV := venv
PY := $(VENV)/bin/python
TOOLS := .tools
UV := $(TOOLS)/bin/uv
# The stack: STACK=<name> (or <org>/<name>, <org>/<project>/<name>), else the one Pulumi has
# selected (`pulumi stack select`, `pulumi stack init` and `make up` select one), as a bare
# `pulumi config set` or `pulumi up` uses; else dev. Asked once, and only by the targets
# that work on a stack, fully qualified (scripts/pulumi_session.py selected_stack: on
# Pulumi Cloud a bare name means that name in the user's default org). A DIY backend
# prints organization/<project>/<stack>; a legacy DIY one (no projects) the bare name,
# which is unambiguous there. SELECTED_STACK tells the preflight that the stack exists: it
# selects it and never creates one.
# Where make falls back to dev, STACK_LOOKUP says why: `none` (Pulumi says no stack is
# selected, or there is no CLI yet), or `failed <what Pulumi said>` (not logged in, a
# Pulumi Cloud error, a network blip: a stack may well be selected). `make check` reads
# Pulumi.dev.yaml either way, offline; the preflight asks Pulumi again after its login and
# creates dev only where none is selected; verify, hubble and perf stop on `failed`.
STACK_TARGETS := check preview up destroy verify hubble perf
SELECTED_STACK :=
STACK_LOOKUP :=
ifeq ($(origin STACK),undefined)
ifneq ($(filter $(STACK_TARGETS),$(MAKECMDGOALS)),)
LOOKUP := $(if $(BOOT_PYTHON),$(shell $(BOOT_PYTHON) scripts/pulumi_session.py),failed \
  no python3 on PATH, which make asks Pulumi through)
SELECTED_STACK := $(if $(filter selected,$(firstword $(LOOKUP))),$(word 2,$(LOOKUP)))
STACK := $(or $(SELECTED_STACK),dev)
STACK_LOOKUP := $(if $(SELECTED_STACK),,$(or $(LOOKUP),failed scripts/pulumi_session.py gave no answer))
endif
endif
# In the environment, not on a command line: Pulumi's words may hold quotes and backticks.
export STACK_LOOKUP
# Extra flags for pulumi, e.g. make up PULUMI_FLAGS=--yes
PULUMI_FLAGS ?=
# uv installs into ./venv (the virtualenv Pulumi.yaml names), and `pulumi` finds this uv
# on PATH when it syncs the same lock itself (Pulumi.yaml: toolchain uv).
export UV_PROJECT_ENVIRONMENT := $(CURDIR)/$(VENV)
export PATH := $(CURDIR)/$(TOOLS)/bin:$(PATH)
# uv installs no bytecode; Python writes it on first import unless this is set (as on CI
# machines), and then every test worker and mock run would compile pulumi_aws again.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: runtime venv reference test lint check preview up destroy verify hubble lock upgrade clean

# uv itself, into a bootstrap venv of its own: all a machine needs beforehand is python3.
# The system's pip installs it into a venv without pip (2 s faster than ensurepip); with no
# pip (or one older than 22.3, without --python), the venv gets its own.
PIP_UV := install --quiet --disable-pip-version-check --require-hashes -r requirements-uv.txt
$(UV): requirements-uv.txt
	$(BOOT_PYTHON) -m venv --without-pip $(TOOLS)
	$(BOOT_PYTHON) -m pip --python $(TOOLS)/bin/python $(PIP_UV) 2>/dev/null \
	  || { $(BOOT_PYTHON) -m venv $(TOOLS) && $(TOOLS)/bin/pip $(PIP_UV); }
	touch $@

# What the program and the policy pack need, nothing else: uv's default groups
# (pyproject.toml [tool.uv] default-groups), as Pulumi's own `uv sync --inexact` installs
# them. --locked fails if pyproject.toml and uv.lock disagree (a hand edit that skipped
# `make lock`); --inexact leaves the test tools of an earlier `make test` in place.
runtime: $(UV)
	@$(UV) sync --locked --inexact --quiet

# Everything: the runtime and the test and lint tools (all dependency groups), exactly.
venv: $(UV)
	@$(UV) sync --locked --all-groups --quiet

reference: venv
	$(PY) -m tests.reference

test: venv reference
	$(PY) -m pytest

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/pyright

# The package's input types (components/inputs.py, from the config's models) and its
# schema (schema.json, from the components' annotations), in-process, with no Pulumi CLI
# (scripts/schema.py); the tests fail when either is stale.
.PHONY: schema
schema: venv
	$(PY) scripts/schema.py --write

# The stack's config, offline, in a few seconds: every mistake named by its key.
check: runtime
	@$(PY) scripts/check_config.py $(STACK)

# scripts/preflight.py: tools, credentials, backend, stack, and on a live stack what only
# AWS or Cilium would refuse halfway (access entry, kube-proxy replacement, AZs, CIDR,
# Cilium minors, mesh peers). CI runs it too. Pulumi's own `uv sync` must not re-lock.
preview up destroy: export UV_LOCKED := 1

preview: runtime check
	@STACK=$(STACK) SELECTED_STACK=$(SELECTED_STACK) ACTION=preview $(PY) scripts/preflight.py
	pulumi preview --stack $(STACK) --policy-pack policy $(PULUMI_FLAGS)

up: runtime check
	@STACK=$(STACK) SELECTED_STACK=$(SELECTED_STACK) ACTION=up $(PY) scripts/preflight.py
	pulumi up --stack $(STACK) --policy-pack policy $(PULUMI_FLAGS)

destroy: runtime
	@STACK=$(STACK) SELECTED_STACK=$(SELECTED_STACK) ACTION=destroy $(PY) scripts/preflight.py
	pulumi destroy --stack $(STACK) $(PULUMI_FLAGS)

# The in-cluster checks, again, on the live cluster: each PASS/FAIL (scripts/day2.py).
verify: runtime
	@$(PY) scripts/day2.py verify --stack $(STACK)

# Pod-to-pod latency and throughput by netperf, same node and across nodes, into a report
# under reports/ (scripts/perf.py, docs/performance.md); COMPARE="reports/A.json
# reports/B.json" compares two reports instead. DURATION: seconds per netperf run.
.PHONY: perf
DURATION ?= 10
perf: runtime
	@$(PY) scripts/perf.py $(if $(COMPARE),compare $(COMPARE),run --stack $(STACK) --duration $(DURATION))

# Hubble UI on http://localhost:12000 (until Ctrl-C), through the stack's kubeconfig.
hubble: runtime
	@$(PY) scripts/day2.py hubble --stack $(STACK)

# Mutation testing with cosmic-ray (cosmic-ray.toml, scripts/mutation.py, docs/testing.md),
# in a copy of the checkout: MODULE= a file or folder (default components/), SAMPLE=N random
# mutants (SEED=S repeats a sample), LIST=1 lists them and runs nothing, SURVIVORS=1 runs
# the last run's survivors again. Every mutant of components/ takes hours: sample.
.PHONY: mutate
mutate: venv reference
	@$(PY) scripts/mutation.py $(MODULE) $(if $(SAMPLE),--sample $(SAMPLE)) $(if $(SEED),--seed $(SEED)) $(if $(LIST),--list) $(if $(SURVIVORS),--survivors)

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
