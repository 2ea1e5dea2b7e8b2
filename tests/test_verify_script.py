"""components/starwars_verify.sh as code: its decisions against canned curl outcomes.

A fake `curl` on PATH plays a cluster that enforces some policy mode (or none) the way
the runbook describes Cilium's demo. The table below is the runbook's, written here
independently of the script, so a wrong expectation in the script fails a test.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from components.starwars import VERIFY_SCRIPT

ORG = {"tiefighter": "empire", "xwing": "alliance"}

# What a call observes in a cluster enforcing `enforced`, made from a pod of `org`:
# (exit code, body) of `curl -s`. A dropped packet is curl's timeout, exit code 28.
LANDED = (0, "Ship landed\n")
DENIED = (0, "Access denied\n")
DROPPED = (28, "")
EXPLODED = (0, "Panic: deathstar exploded\n")


def world(enforced: str, org: str, method: str, path: str) -> tuple[int, str]:
    if org == "alliance" and enforced in ("l3l4", "l7"):
        return DROPPED
    if (method, path) == ("POST", "/v1/request-landing"):
        return LANDED
    if (method, path) == ("PUT", "/v1/exhaust-port"):
        return DENIED if enforced == "l7" else EXPLODED
    return (0, "unexpected call\n")


FAKE_CURL = """#!{python}
import json, os, sys
args = sys.argv[1:]
assert "--max-time" in args and float(args[args.index("--max-time") + 1]) > 0, "unbounded call"
method = args[args.index("-X") + 1]
url = args[-1]
path = url.removeprefix(os.environ["DEATHSTAR"])
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps([method, path]) + "\\n")
# A scripted sequence of answers (for propagation delays), else the world's answer.
script = json.loads(os.environ.get("FAKE_SEQUENCE", "[]"))
calls = sum(1 for _ in open(os.environ["FAKE_LOG"]))
if calls <= len(script):
    code, body = script[calls - 1]
else:
    code, body = json.loads(os.environ["FAKE_WORLD"])[method + " " + path]
sys.stdout.write(body)
sys.exit(code)
"""


@pytest.fixture
def fake_bin(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    curl = bin_dir / "curl"
    curl.write_text(FAKE_CURL.format(python=sys.executable))
    curl.chmod(curl.stat().st_mode | stat.S_IEXEC)
    return bin_dir


def run_script(fake_bin: Path, ship: str, policy: str, enforced: str, sequence=None):
    tmp = fake_bin.parent
    answers = {
        f"{m} {p}": world(enforced, ORG[ship], m, p)
        for m, p in (("POST", "/v1/request-landing"), ("PUT", "/v1/exhaust-port"))
    }
    log = tmp / f"calls-{ship}-{policy}-{enforced}.log"
    termination = tmp / f"termination-{ship}-{policy}-{enforced}"
    env = {
        **os.environ,
        "PATH": f"{fake_bin}{os.pathsep}{os.environ['PATH']}",
        "SHIP": ship,
        "POLICY": policy,
        "DEATHSTAR": "http://deathstar.starwars.svc.cluster.local",
        "ATTEMPTS": "3",
        "DELAY": "0",
        "CURL_TIMEOUT": "5",
        "FAKE_WORLD": json.dumps(answers),
        "FAKE_LOG": str(log),
        "FAKE_SEQUENCE": json.dumps(sequence or []),
        "TERMINATION_LOG": str(termination),
    }
    proc = subprocess.run(
        ["sh", str(VERIFY_SCRIPT)], env=env, capture_output=True, text=True, timeout=60
    )
    calls = (
        [tuple(json.loads(line)) for line in log.read_text().splitlines()] if log.exists() else []
    )
    message = termination.read_text() if termination.exists() else ""
    return proc, calls, message


# The runbook's verdicts: does a ship's Job pass when the stack declares `policy` and the
# cluster enforces `enforced`? Enforcing what was declared must pass for both ships.
# Enforcing less than declared must fail the ship that can tell the difference:
#   declared l3l4/l7, nothing enforced   -> xwing landed but should be blocked
#   declared l7, only L3/L4 enforced     -> tiefighter's exhaust-port PUT is not denied
#   declared none, L3/L4 enforced        -> xwing blocked but should land
CASES = [
    # (ship, declared, enforced, passes, failing check, expected, observed)
    ("tiefighter", "none", "none", True, None, None, None),
    ("xwing", "none", "none", True, None, None, None),
    ("tiefighter", "l3l4", "l3l4", True, None, None, None),
    ("xwing", "l3l4", "l3l4", True, None, None, None),
    ("tiefighter", "l7", "l7", True, None, None, None),
    ("xwing", "l7", "l7", True, None, None, None),
    ("xwing", "l3l4", "none", False, "xwing-request-landing", "blocked", "landed"),
    ("xwing", "l7", "none", False, "xwing-request-landing", "blocked", "landed"),
    (
        "tiefighter",
        "l7",
        "l3l4",
        False,
        "tiefighter-exhaust-port",
        "denied",
        "response 'Panic: deathstar exploded",
    ),
    ("xwing", "none", "l3l4", False, "xwing-request-landing", "landed", "blocked"),
]


@pytest.mark.parametrize(
    ("ship", "declared", "enforced", "passes", "check", "expected", "observed"), CASES
)
def test_verdicts(fake_bin, ship, declared, enforced, passes, check, expected, observed):
    proc, _, message = run_script(fake_bin, ship, declared, enforced)
    assert (proc.returncode == 0) == passes, proc.stdout + proc.stderr
    if not passes:
        line = f"FAIL {check}: expected {expected}, observed {observed}"
        assert line in proc.stdout
        assert line in message  # what `kubectl describe pod` and Pulumi's error show


@pytest.mark.parametrize("declared", ["none", "l3l4"])
def test_the_exhaust_port_is_never_called_without_the_l7_policy(fake_bin, declared):
    for ship in ORG:
        _, calls, _ = run_script(fake_bin, ship, declared, declared)
        assert ("PUT", "/v1/exhaust-port") not in calls


def test_l7_checks_the_exhaust_port_from_the_tiefighter_only(fake_bin):
    _, calls, _ = run_script(fake_bin, "tiefighter", "l7", "l7")
    assert ("PUT", "/v1/exhaust-port") in calls
    _, calls, _ = run_script(fake_bin, "xwing", "l7", "l7")
    assert ("PUT", "/v1/exhaust-port") not in calls


def test_retries_while_the_policy_propagates(fake_bin):
    # The xwing still lands twice before the policy is in force, then is dropped.
    proc, calls, _ = run_script(fake_bin, "xwing", "l3l4", "l3l4", sequence=[LANDED, LANDED])
    assert proc.returncode == 0, proc.stdout
    assert len(calls) == 3


def test_gives_up_after_the_attempts(fake_bin):
    proc, calls, _ = run_script(fake_bin, "xwing", "l7", "none")
    assert proc.returncode == 1 and len(calls) == 3
    assert "after 3 tries" in proc.stdout


def test_curl_errors_are_reported_not_mistaken_for_a_drop(fake_bin):
    # DNS failure (curl exit 6) is not "blocked": a broken cluster must not pass as policy.
    proc, _, message = run_script(fake_bin, "xwing", "l7", "l7", sequence=[(6, "")] * 3)
    assert proc.returncode == 1
    assert "expected blocked, observed curl error 6" in message


def test_unknown_mode_is_an_error(fake_bin):
    proc, calls, _ = run_script(fake_bin, "xwing", "l4", "none")
    assert proc.returncode == 2 and not calls
