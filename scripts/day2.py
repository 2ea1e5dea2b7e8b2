"""Day-2 commands on the live cluster: `make verify` and `make hubble`.

    venv/bin/python scripts/day2.py verify [--stack dev]
    venv/bin/python scripts/day2.py hubble [--stack dev]

Without --stack, the stack Pulumi has selected. Both first check what the preflight
checks of the session (scripts/pulumi_session.py: the Pulumi CLI, a backend, the
passphrase) and the tools, naming each that is missing; then reach the cluster with the
stack's own kubeconfig (its secret output, written to a private temporary file and
removed afterwards) and kubectl; the kubeconfig runs `aws eks get-token` with the ambient
AWS credentials. A Pulumi error past that is shown as Pulumi printed it.

verify: reads every Cilium agent's datapath (scripts/datapath.py), then runs the
in-cluster checks again, now (after a node replacement, after an
incident): a Job from each suspended CronJob the stack declares (label
app.kubernetes.io/part-of=cilium-eks-checks, in any namespace: the demo's, the mesh's),
all at once; then, as each ends, its PASS/FAIL/SKIP lines, and the Job is deleted. Exits
1 if one failed, naming it.

hubble: Hubble UI on http://localhost:12000 until Ctrl-C (a port-forward to the
hubble-ui Service; the UI reaches the relay over TLS itself).

Imports scripts/pulumi_session.py and scripts/datapath.py, nothing of the program's
components: it reaches the stack through the Pulumi CLI and its outputs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts import datapath, pulumi_session  # noqa: E402  (every node's datapath, for verify)

PREFIX = "day2:"
PART_OF = "app.kubernetes.io/part-of=cilium-eks-checks"
HUBBLE_UI = ["-n", "kube-system", "port-forward", "svc/hubble-ui", "12000:80"]
# How `pulumi stack output NAME` says the stack has no such output (pkg/cmd/pulumi/stack/
# stack_output.go): not deployed, or a first `make up` that failed before the end.
NO_OUTPUT = "does not have output property"
# Past a Job's own deadline, how long to wait for Kubernetes to mark it failed.
GRACE_SECONDS = 60
POLL_SECONDS = 5
# What a check prints that a person reads (the script's other lines are progress).
VERDICTS = ("PASS ", "FAIL ", "SKIP ", "OK: ", "verifying: ")
# Besides Pulumi (pulumi_session): what reaches the cluster.
INSTALL = {
    "kubectl": "https://kubernetes.io/docs/tasks/tools/",
    "aws": "https://docs.aws.amazon.com/cli/latest/userguide/getting-started-install.html",
}


class Day2Error(Exception):
    """A reason to stop, in words for the person who ran the command."""


def run(env: Mapping[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    tool = shutil.which(args[0], path=env.get("PATH")) or args[0]
    proc = subprocess.run(
        [tool, *args[1:]], capture_output=True, text=True, check=False, env=dict(env)
    )
    if check and proc.returncode != 0:
        raise Day2Error(f"`{' '.join(args[:4])} ...` failed: {proc.stderr.strip()[:500]}")
    return proc


def missing(env: Mapping[str, str]) -> list[str]:
    """Every missing piece, with its fix: the Pulumi session as the preflight judges it
    (after `make up`, a stack lives on a backend: none is a problem here), and the tools."""
    tools = [
        f"{tool} is not installed: see {url}"
        for tool, url in INSTALL.items()
        if not shutil.which(tool, path=env.get("PATH"))
    ]
    return [*pulumi_session.problems(env, first_run=False), *tools]


@contextlib.contextmanager
def kubeconfig(env: Mapping[str, str], stack: str | None) -> Iterator[dict[str, str]]:
    """The environment with KUBECONFIG naming the stack's kubeconfig, for the duration.

    Not where make's question for the selected stack failed (STACK_LOOKUP): its fallback,
    dev, may be another stack than the one selected (on Pulumi Cloud, dev in the user's
    default org), and its cluster would be taken for the user's."""
    if said := pulumi_session.lookup_failure(env):
        raise Day2Error(
            f"could not tell which stack Pulumi has selected, so {stack} (make's choice where "
            "none is) is not read: run the command again, or name the stack (make ... "
            f"STACK=<name>). Pulumi said:\n{said}"
        )
    which = ["--stack", stack] if stack else []
    proc = run(env, "pulumi", "stack", "output", "kubeconfig", "--show-secrets", *which,
               check=False)  # fmt: skip
    named = f"stack {stack}" if stack else "the selected stack"
    if proc.returncode != 0 and NO_OUTPUT not in proc.stderr:
        raise Day2Error(f"could not read the kubeconfig of {named}; Pulumi says:\n"
                        + (proc.stderr.strip() or f"exit status {proc.returncode}"))  # fmt: skip
    if proc.returncode != 0 or not proc.stdout.strip():
        raise Day2Error(
            f"{named} has no kubeconfig output (not deployed yet, or its last `make up` "
            "failed before the end): run `make up` first"
            + (f"; Pulumi says:\n{proc.stderr.strip()}" if proc.stderr.strip() else "")
        )
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder, "kubeconfig.json")
        path.write_text(proc.stdout)
        path.chmod(0o600)
        yield {**env, "KUBECONFIG": str(path)}


def check_templates(env: Mapping[str, str]) -> list[tuple[str, str]]:
    """(namespace, name) of every check CronJob the stack declared."""
    found = json.loads(
        run(env, "kubectl", "get", "cronjobs", "-A", "-l", PART_OF, "-o", "json").stdout
    )
    return sorted(
        (item["metadata"]["namespace"], item["metadata"]["name"]) for item in found["items"]
    )


def job_state(job: Mapping[str, Any]) -> str | None:
    """ "Complete" or "Failed" once the Job has ended, else None."""
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("status") == "True" and condition.get("type") in ("Complete", "Failed"):
            return condition["type"]
    return None


def verify(env: Mapping[str, str]) -> int:
    datapath_ok = datapath.check_nodes(env, run)  # each agent's status against cilium-config
    templates = check_templates(env)
    if not templates:
        raise Day2Error(
            "no check CronJob in the cluster: the checks come with the demo (demo.enabled: "
            "true); `make up` first"
        )
    stamp = time.strftime("%m%d%H%M%S", time.gmtime())
    jobs = []
    for namespace, cronjob in templates:
        name = f"{cronjob[:40]}-{stamp}"
        run(env, "kubectl", "-n", namespace, "create", "job", name, f"--from=cronjob/{cronjob}")
        jobs.append((namespace, name))
    print(f"{PREFIX} running {len(jobs)} check(s): {', '.join(n for _, n in jobs)}")
    failed = []
    pending = dict.fromkeys(jobs, time.monotonic())
    try:
        while pending:
            for namespace, name in list(pending):
                job = json.loads(
                    run(env, "kubectl", "-n", namespace, "get", "job", name, "-o", "json").stdout
                )
                state = job_state(job)
                deadline = (job.get("spec") or {}).get("activeDeadlineSeconds") or 0
                started = pending[(namespace, name)]
                if state is None and time.monotonic() - started < deadline + GRACE_SECONDS:
                    continue
                del pending[(namespace, name)]
                logs = run(env, "kubectl", "-n", namespace, "logs", f"job/{name}", check=False)
                print(f"--- {namespace}/{name}: {state or 'did not end in time'}")
                for line in logs.stdout.splitlines():
                    if line.startswith(VERDICTS):
                        print(f"    {line}")
                if state != "Complete":
                    failed.append(f"{namespace}/{name}")
            if pending:
                time.sleep(POLL_SECONDS)
    finally:
        for namespace, name in jobs:
            run(env, "kubectl", "-n", namespace, "delete", "job", name, "--wait=false", check=False)
    if failed:
        print(f"{PREFIX} FAILED: {', '.join(failed)} (its logs above)")
        return 1
    if not datapath_ok:
        print(f"{PREFIX} FAILED: a node's datapath differs from the config (datapath: above)")
        return 1
    print(f"{PREFIX} every check passed")
    return 0


def hubble(env: Mapping[str, str]) -> int:
    print(f"{PREFIX} Hubble UI on http://localhost:12000 (Ctrl-C to stop)", flush=True)
    tool = shutil.which("kubectl", path=env.get("PATH")) or "kubectl"
    return subprocess.call([tool, *HUBBLE_UI], env=dict(env))


# Each command, on the environment whose KUBECONFIG is the stack's.
COMMANDS = {"verify": verify, "hubble": hubble}


def main(argv: list[str], env: Mapping[str, str]) -> int:
    parser = argparse.ArgumentParser(description="Day-2 commands on the live cluster.")
    parser.add_argument("command", choices=sorted(COMMANDS))
    parser.add_argument("--stack", help="default: the stack Pulumi has selected")
    args = parser.parse_args(argv)
    problems = missing(env)
    if problems:
        print(f"{PREFIX} {len(problems)} prerequisite(s) missing:", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    try:
        with kubeconfig(env, args.stack) as cluster:
            return COMMANDS[args.command](cluster)
    except Day2Error as err:
        print(f"{PREFIX} {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], os.environ))
