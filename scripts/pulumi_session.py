"""The Pulumi session every command on a stack needs: the CLI, a backend, the passphrase.

Shared by the preflight (`make preview|up|destroy`) and scripts/day2.py (`make verify|
hubble`), so that a new shell missing PULUMI_CONFIG_PASSPHRASE or PULUMI_BACKEND_URL is
told so by either, the same way, instead of a later Pulumi call failing for a reason
that reads like something else.

Imports nothing of the program.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Mapping

PULUMI_INSTALL = "https://www.pulumi.com/docs/install/ (curl -fsSL https://get.pulumi.com | sh)"
# Adopting an existing control-plane log group whose settings differ from the declared ones
# (components/cluster.py) is an import followed by an update from Pulumi 3.174 on
# (pulumi/pulumi #19339); older CLIs refuse such an import.
MIN_PULUMI = (3, 174, 0)
# Backends that keep secrets with the passphrase secrets provider unless told otherwise
# (Pulumi Cloud keeps them itself).
SELF_MANAGED_BACKENDS = ("file://", "s3://", "gs://", "azblob://", "postgres://")
LOCAL_STATE = "local state (~/.pulumi, what `make up` logs in to by default)"


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
    backend = env.get("PULUMI_BACKEND_URL") or (logged_in_backend(env) if installed else None)
    if backend is None and installed and not first_run:
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


def logged_in_backend(env: Mapping[str, str]) -> str | None:
    """The backend `pulumi login` chose, or None when not logged in."""
    proc = run(env, "pulumi", "whoami", "--verbose")
    if proc.returncode != 0:
        return None
    found = re.search(r"^Backend URL:\s*(\S+)", proc.stdout, re.M)
    return found.group(1) if found else None
