"""The Pulumi session every command on a stack needs: the CLI, a backend, the passphrase.

Shared by the preflight (`make preview|up|destroy`) and scripts/day2.py (`make verify|
hubble`), so that a new shell missing PULUMI_CONFIG_PASSPHRASE or PULUMI_BACKEND_URL is
told so by either, the same way, instead of a later Pulumi call failing for a reason
that reads like something else.

It also answers which stack Pulumi has selected (`selected_stack`), for the Makefile
(run as `python3 scripts/pulumi_session.py`, before any venv exists: it imports only the
standard library), the preflight and scripts/perf.py alike.

Imports nothing of the program.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from typing import NamedTuple

PULUMI_INSTALL = "https://www.pulumi.com/docs/install/ (curl -fsSL https://get.pulumi.com | sh)"
# Adopting an existing control-plane log group whose settings differ from the declared ones
# (components/cluster.py) is an import followed by an update from Pulumi 3.174 on
# (pulumi/pulumi #19339); older CLIs refuse such an import.
MIN_PULUMI = (3, 174, 0)
# Backends that keep secrets with the passphrase secrets provider unless told otherwise
# (Pulumi Cloud keeps them itself).
SELF_MANAGED_BACKENDS = ("file://", "s3://", "gs://", "azblob://", "postgres://")
LOCAL_STATE = "local state (~/.pulumi, what `make up` logs in to by default)"
# Asked fully qualified (pulumi/pulumi #15857, #16453): on Pulumi Cloud a bare name means
# that name in the user's default org, which need not be the selected stack's. Stdout is
# not a terminal, and --non-interactive says so again: the CLI never prompts.
SHOW_SELECTED = ("stack", "--show-name", "--fully-qualify-stack-names", "--non-interactive")
# How the CLI says no stack is selected, non-interactively (pulumi/pulumi
# pkg/cmd/pulumi/stack/io.go ChooseStack: "no stack selected; please use `pulumi stack
# select` or `pulumi stack init` to choose one"; pkg/backend/backenderr/backenderr.go
# NoStackSelectedError: "no stack selected; specify a stack name with --stack"). Any
# other failure (not logged in, a Pulumi Cloud 5xx, an expired token) says nothing about
# which stack is selected.
NO_STACK_SELECTED = "no stack selected"
# How the CLI says it is logged in nowhere, non-interactively: with no stored login it logs
# in to Pulumi Cloud, which needs a token (pulumi/pulumi pkg/backend/httpstate/login.go:
# "%s must be set for login during non-interactive CLI sessions", AccessTokenEnvVar). Any
# other failure of `pulumi whoami` (a Pulumi Cloud 5xx, an expired token) is not "logged in
# nowhere": logging in to local state then would put a new stack beside the user's own.
NOT_LOGGED_IN = "PULUMI_ACCESS_TOKEN must be set for login"


def run(env: Mapping[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """A CLI call with this run's environment (its PATH finds the tools)."""
    tool = shutil.which(args[0], path=env.get("PATH")) or args[0]
    return subprocess.run(
        [tool, *args[1:]], capture_output=True, text=True, check=False, env=dict(env)
    )


def problems(env: Mapping[str, str], *, first_run: bool) -> list[str]:
    """Each missing piece of the session, with its fix; none when Pulumi can run.

    A backend, and the passphrase its secrets need: on a first run (`make up`) no backend
    means local state, which the preflight logs in to; later commands find the stack only
    where it was deployed, so there no backend is a problem of its own."""
    found = []
    installed = shutil.which("pulumi", path=env.get("PATH")) is not None
    if not installed:
        found.append(f"the Pulumi CLI is not installed: see {PULUMI_INSTALL}")
    else:
        version = run(env, "pulumi", "version").stdout.strip()
        number = re.match(r"v?(\d+)\.(\d+)\.(\d+)", version)
        if number and tuple(map(int, number.groups())) < MIN_PULUMI:
            found.append(
                f"Pulumi CLI {version} is too old; {'.'.join(map(str, MIN_PULUMI))} or newer is "
                f"needed (it adopts an existing control-plane log group): see {PULUMI_INSTALL}"
            )
    login = Login(None) if not installed or env.get("PULUMI_BACKEND_URL") else whoami(env)
    backend = env.get("PULUMI_BACKEND_URL") or login.backend
    if login.failure:
        found.append(
            "`pulumi whoami` failed, so the backend is unknown (neither logged in nor logged "
            "out: `make up` logs in to local state only where you are logged in nowhere); "
            f"run it again, or set PULUMI_BACKEND_URL. Pulumi says:\n{login.failure}"
        )
    elif backend is None and installed and not first_run:
        found.append(
            "no Pulumi backend: PULUMI_BACKEND_URL is not set and `pulumi whoami` says you "
            "are not logged in; set PULUMI_BACKEND_URL as when you deployed (e.g. "
            "s3://my-state-bucket), or `pulumi login` to it (`pulumi login --local` for "
            "~/.pulumi, where `make up` keeps state by default)"
        )
    if (backend is None or backend.startswith(SELF_MANAGED_BACKENDS)) and not (
        "PULUMI_CONFIG_PASSPHRASE" in env or env.get("PULUMI_CONFIG_PASSPHRASE_FILE")
    ):
        where = backend or (LOCAL_STATE if first_run else "a self-managed backend")
        found.append(
            f"{where} encrypts secrets (the kubeconfig) with a passphrase: "
            "export PULUMI_CONFIG_PASSPHRASE=... (the one the stack was created with; for a new "
            "stack, one you keep: every later command needs it), or set PULUMI_BACKEND_URL / "
            "`pulumi login` for another backend"
        )
    return found


class Login(NamedTuple):
    """What `pulumi whoami` says: the backend `pulumi login` chose; or None with `failure`
    None (logged in nowhere), or what Pulumi said when it could not tell."""

    backend: str | None
    failure: str | None = None


def whoami(env: Mapping[str, str]) -> Login:
    """Where the CLI is logged in, as `pulumi whoami --verbose` says."""
    proc = run(env, "pulumi", "whoami", "--verbose")
    if proc.returncode != 0:
        said = proc.stderr.strip() or proc.stdout.strip() or f"exit status {proc.returncode}"
        return Login(None, None if NOT_LOGGED_IN in said else said)
    found = re.search(r"^Backend URL:\s*(\S+)", proc.stdout, re.M)
    return Login(found.group(1) if found else None)


class Selected(NamedTuple):
    """The answer to "which stack has Pulumi selected?": its fully qualified name, or
    None with `failure` None (no stack selected, or no CLI), or what Pulumi said when it
    could not tell."""

    name: str | None
    failure: str | None = None


def selected_stack(env: Mapping[str, str]) -> Selected:
    """The stack Pulumi has selected, as a bare `pulumi up` would use it."""
    if shutil.which("pulumi", path=env.get("PATH")) is None:
        return Selected(None)
    proc = run(env, "pulumi", *SHOW_SELECTED)
    if proc.returncode == 0 and (name := stack_name(proc.stdout)):
        return Selected(name)
    said = proc.stderr.strip() or proc.stdout.strip() or f"exit status {proc.returncode}"
    return Selected(None, None if NO_STACK_SELECTED in proc.stderr else said)


def stack_name(stdout: str) -> str:
    """The name `pulumi stack --show-name` printed: its last non-empty line (a line before
    it, such as an update warning, is not part of it)."""
    lines = [line.strip() for line in stdout.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def for_make(selected: Selected) -> str:
    """One line the Makefile splits into words: `selected <name>`, `none` (no stack
    selected, or no CLI), or `failed <what Pulumi said>` (make's $(shell) turns its
    newlines into spaces anyway)."""
    if selected.name:
        return f"selected {selected.name}"
    return f"failed {' '.join(selected.failure.split())}" if selected.failure else "none"


def lookup_failure(env: Mapping[str, str]) -> str | None:
    """What Pulumi said when make could not tell which stack is selected (STACK_LOOKUP,
    `failed <message>`), so that make fell back to dev; None otherwise (a STACK= given, a
    stack found, or none selected)."""
    kind, _, said = env.get("STACK_LOOKUP", "").partition(" ")
    if kind != "failed":
        return None
    return said or "no answer"


if __name__ == "__main__":
    print(for_make(selected_stack(os.environ)))
