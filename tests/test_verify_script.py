"""components/starwars_verify.sh as code: its decisions against a scripted cluster.

Fakes on PATH play the cluster: `curl` answers the API server (a scripted sequence of
DaemonSet documents or HTTP statuses per DaemonSet) and the deathstar (a cluster that
enforces some policy mode, or none, the way the runbook describes Cilium's demo), and
`getent` plays cluster DNS, and `date +%s` is a clock that moves one second per reading.
The real `node` (which parses the DaemonSets) and `timeout` run. Every fake call is logged
in order, so a test can tell what the script did before what.

The expectations below (the runbook's verdicts, what "rolled out" means, which names and
ports curl must be pinned to) are written here independently of the script, so a wrong
rule in the script fails a test.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from components.starwars import VERIFY_SCRIPT

ORG = {"tiefighter": "empire", "xwing": "alliance"}
HOST = "deathstar.starwars.svc.cluster.local"
DEATHSTAR = f"http://{HOST}"
CLUSTER_IP = "10.100.12.3"
VERSION = "1.19.6"
TOKEN = "eyJfake.service-account.token"
DIGEST = "@sha256:" + "ab" * 32

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


def cilium_ds(
    *,
    generation: int = 3,
    observed: int = 3,
    desired: int = 2,
    updated: int = 2,
    available: int = 2,
    image: str = f"quay.io/cilium/cilium:v{VERSION}{DIGEST}",
    containers: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    """A DaemonSet as the API server returns it: counts tagged omitempty in the API
    (observedGeneration, updatedNumberScheduled, numberAvailable) are left out when 0."""
    status: dict[str, int] = {
        "currentNumberScheduled": desired,
        "desiredNumberScheduled": desired,
        "numberMisscheduled": 0,
        "numberReady": available,
    }
    for key, value in (
        ("observedGeneration", observed),
        ("updatedNumberScheduled", updated),
        ("numberAvailable", available),
    ):
        if value:
            status[key] = value
    if containers is None:
        containers = [{"name": "cilium-agent", "image": image}]
    return {
        "kind": "DaemonSet",
        "apiVersion": "apps/v1",
        "metadata": {"name": "cilium", "namespace": "kube-system", "generation": generation},
        "spec": {"template": {"spec": {"containers": containers}}},
        "status": status,
    }


def kube_proxy_ds(desired: int, current: int, ready: int) -> dict[str, Any]:
    return {
        "kind": "DaemonSet",
        "metadata": {"name": "kube-proxy", "namespace": "kube-system", "generation": 1},
        "status": {
            "currentNumberScheduled": current,
            "desiredNumberScheduled": desired,
            "numberMisscheduled": 0,
            "numberReady": ready,
            "observedGeneration": 1,
        },
    }


ROLLED_OUT = cilium_ds()
NO_KUBE_PROXY_POD = kube_proxy_ds(0, 0, 0)  # a nodeSelector that matches no node
KUBE_PROXY_RUNNING = kube_proxy_ds(2, 2, 2)
CURL_CANNOT_CONNECT = ["curl", 7]  # an API answer: curl fails, no HTTP status

FAKE_CURL = """#!{python} -S
# curl as the script calls it, against the world in $FAKE_WORLD; every call is logged.
import json, os, sys

args = sys.argv[1:]
env = os.environ


def opt(name):
    return args[args.index(name) + 1] if name in args else None


def log(entry):
    with open(env["FAKE_LOG"], "a") as f:
        f.write(json.dumps(entry) + "\\n")


def earlier(**match):
    if not os.path.exists(env["FAKE_LOG"]):
        return 0
    entries = [json.loads(line) for line in open(env["FAKE_LOG"])]
    return sum(all(e.get(k) == v for k, v in match.items()) for e in entries)


world = json.load(open(env["FAKE_WORLD"]))
url = args[-1]
max_time = opt("--max-time")
bounded = max_time is not None and float(max_time) > 0
api = "https://{{}}:{{}}/apis/apps/v1/namespaces/kube-system/daemonsets/".format(
    env["KUBERNETES_SERVICE_HOST"], env["KUBERNETES_SERVICE_PORT"]
)

if url.startswith(api):
    name = url[len(api):]
    answers = world["api"].get(name, [404])
    answer = answers[min(earlier(kind="api", name=name), len(answers) - 1)]
    log(dict(kind="api", name=name, bounded=bounded, max_time=max_time, cacert=opt("--cacert"),
             auth=opt("-H")))
    if isinstance(answer, list):  # ["curl", exit code]: no HTTP answer at all
        sys.stderr.write("curl: ({{}}) Failed to connect to the API server\\n".format(answer[1]))
        sys.stdout.write((opt("-w") or "").replace("%{{http_code}}", "000"))
        sys.exit(answer[1])
    if isinstance(answer, dict):
        code, body = 200, json.dumps(answer)
    elif isinstance(answer, str):  # a 200 that is not JSON (a proxy's page, say)
        code, body = 200, answer
    else:
        code = answer
        message = "fake API says " + str(code)
        body = json.dumps({{"kind": "Status", "code": code, "message": message}})
    if opt("-o"):
        open(opt("-o"), "w").write(body)
    else:
        sys.stdout.write(body)
    sys.stdout.write((opt("-w") or "").replace("%{{http_code}}", str(code)))
    sys.exit(0)

assert url.startswith(env["DEATHSTAR"]), url
method, path = opt("-X"), url[len(env["DEATHSTAR"]):]
resolve = opt("--resolve")
log(dict(kind="deathstar", method=method, path=path, resolve=resolve, bounded=bounded,
         max_time=max_time))
# Where the name leads. --resolve for this host and port pins it: curl does no lookup.
# Otherwise curl looks the name up itself and, with DNS broken, that lookup times out:
# exit 28, the same as a dropped packet.
host_port = url.split("://", 1)[1].split("/", 1)[0]
host, port = (host_port.rsplit(":", 1) + ["80"])[:2] if ":" in host_port else (host_port, "80")
if resolve and resolve.split(":", 2)[:2] == [host, port]:
    address = resolve.split(":", 2)[2]
elif world["dns_works"]:
    address = world["cluster_ip"]
else:
    sys.exit(28)
if address != world["cluster_ip"]:
    sys.exit(28)  # nothing answers there
# A scripted sequence of answers (for propagation delays), else the world's answer.
sequence = world["sequence"]
calls = earlier(kind="deathstar")
if calls <= len(sequence):
    code, body = sequence[calls - 1]
else:
    code, body = world["deathstar"][method + " " + path]
sys.stdout.write(body)
sys.exit(code)
"""

FAKE_GETENT = """#!{python} -S
# getent hosts NAME, as cluster DNS answers in $FAKE_WORLD: an address, None (not
# found) or "hang" (no answer: the script's bound must cut it short).
import json, os, sys, time

env = os.environ
assert sys.argv[1] == "hosts", sys.argv
name = sys.argv[2]
with open(env["FAKE_LOG"], "a+") as f:
    f.seek(0)
    calls = sum(1 for line in f if json.loads(line)["kind"] == "dns")
    f.write(json.dumps(dict(kind="dns", name=name)) + "\\n")
answers = json.load(open(env["FAKE_WORLD"]))["dns"]
answer = answers[min(calls, len(answers) - 1)]
if answer == "hang":
    time.sleep(30)
if answer is None:
    sys.exit(2)
print("{{:<15}} {{}}".format(answer, name))
"""


# `date +%s` on a fake clock that moves one second per call, so that ROLLOUT_TIMEOUT
# counts looks (the script reads the clock once before the first look, and after each):
# exact, and instant, whatever the machine's load. Anything else goes to the real date.
FAKE_DATE = """#!/bin/sh
[ "$*" = +%s ] || exec {date} "$@"
now=$(cat "$FAKE_CLOCK" 2>/dev/null || echo 1700000000)
echo $((now + 1)) >"$FAKE_CLOCK"
echo "$now"
"""


@pytest.fixture(scope="module")
def fake_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fakes, and the ServiceAccount mount the script reads: shared by the module's
    tests (each run logs to a folder of its own)."""
    root = tmp_path_factory.mktemp("verify")
    bin_dir = root / "bin"
    bin_dir.mkdir()
    fakes = {"curl": FAKE_CURL, "getent": FAKE_GETENT, "date": FAKE_DATE}
    for name, source in fakes.items():
        fake = bin_dir / name
        fake.write_text(source.format(python=sys.executable, date=shutil.which("date")))
        fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    sa_dir = root / "serviceaccount"
    sa_dir.mkdir()
    (sa_dir / "token").write_text(TOKEN)
    (sa_dir / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\nfake\n")
    return bin_dir


@dataclass
class Run:
    proc: subprocess.CompletedProcess[str]
    log: list[dict[str, Any]]  # every fake call, in order
    message: str  # the termination message

    @property
    def out(self) -> str:
        return self.proc.stdout

    @property
    def lines(self) -> list[str]:
        return self.proc.stdout.splitlines()

    def starting(self, prefix: str) -> list[str]:
        return [line for line in self.lines if line.startswith(prefix)]

    @property
    def calls(self) -> list[tuple[str, str]]:
        return [(e["method"], e["path"]) for e in self.log if e["kind"] == "deathstar"]

    def api(self, name: str) -> list[int]:
        """Positions in the log of the API calls for DaemonSet kube-system/`name`."""
        return [i for i, e in enumerate(self.log) if e["kind"] == "api" and e["name"] == name]

    def positions(self, kind: str) -> list[int]:
        return [i for i, e in enumerate(self.log) if e["kind"] == kind]


_runs = itertools.count()
_memo: dict[str, Run] = {}
PRINTED_ONLY = ("KUBERNETES_VERSION", "INSTANCE_TYPES", "PREFIX_DELEGATION")


def run_script(
    fake_bin: Path,
    ship: str,
    policy: str,
    enforced: str | None = None,
    sequence: list[tuple[int, str]] | None = None,
    *,
    cilium: list[Any] | None = None,
    kube_proxy: list[Any] | None = None,
    dns: list[str | None] | None = None,
    **env: str | None,
) -> Run:
    """Run the script as `ship` with `policy` declared, in a cluster enforcing `enforced`
    (default: what was declared), whose API server answers `cilium` and `kube_proxy` in
    turn (the last answer repeats) and whose DNS answers `dns` in turn; `env` overrides
    the script's environment (None: unset). The same scenario runs once per module."""
    args = (fake_bin, ship, policy, enforced or policy, sequence, cilium, kube_proxy, dns, env)
    key = json.dumps([str(fake_bin), *args[1:]], sort_keys=True)
    if key not in _memo:
        _memo[key] = _run(*args)
    return _memo[key]


def _run(fake_bin, ship, policy, enforced, sequence, cilium, kube_proxy, dns, overrides):
    tmp = fake_bin.parent / f"run-{next(_runs)}"
    tmp.mkdir()
    dns = [CLUSTER_IP] if dns is None else dns
    scenario = {
        "api": {
            "cilium": cilium or [ROLLED_OUT],
            "kube-proxy": kube_proxy or [KUBE_PROXY_RUNNING],
        },
        "dns": dns,
        "dns_works": dns[-1] not in (None, "hang"),
        "cluster_ip": CLUSTER_IP,
        "sequence": sequence or [],
        "deathstar": {
            f"{m} {p}": world(enforced, ORG.get(ship, "?"), m, p)
            for m, p in (("POST", "/v1/request-landing"), ("PUT", "/v1/exhaust-port"))
        },
    }
    (tmp / "world.json").write_text(json.dumps(scenario))
    log, termination = tmp / "calls.log", tmp / "termination"
    env = {k: v for k, v in os.environ.items() if k not in PRINTED_ONLY}
    env.pop("KUBE_PROXY_REPLACEMENT", None)
    env.update(
        {
            "PATH": f"{fake_bin}{os.pathsep}{os.environ['PATH']}",
            "SHIP": ship,
            "POLICY": policy,
            "DEATHSTAR": DEATHSTAR,
            "CILIUM_VERSION": VERSION,
            "ATTEMPTS": "3",
            "DELAY": "0",
            "CURL_TIMEOUT": "5",
            "ROLLOUT_TIMEOUT": "30",  # looks, on the fake clock: more than any test needs
            "ROLLOUT_POLL": "0",
            "SA_DIR": str(fake_bin.parent / "serviceaccount"),
            "KUBERNETES_SERVICE_HOST": "10.100.0.1",
            "KUBERNETES_SERVICE_PORT": "443",
            "TERMINATION_LOG": str(termination),
            "FAKE_WORLD": str(tmp / "world.json"),
            "FAKE_LOG": str(log),
            "FAKE_CLOCK": str(tmp / "clock"),
        }
    )
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    proc = subprocess.run(
        ["sh", str(VERIFY_SCRIPT)], env=env, capture_output=True, text=True, timeout=60
    )
    entries = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    message = termination.read_text() if termination.exists() else ""
    return Run(proc, entries, message)


# --- 4. The policy checks, in a cluster where everything else is in order ---------------------

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
    run = run_script(fake_bin, ship, declared, enforced)
    assert (run.proc.returncode == 0) == passes, run.out + run.proc.stderr
    assert "PASS cilium-rollout" in run.out
    if passes:  # each check says what it saw, for the Job's log, and the last line sums up
        landing = "blocked" if ship == "xwing" and declared != "none" else "landed"
        assert f"PASS {ship}-request-landing: {landing} (try 1)" in run.out
        assert run.lines[-1] == f"OK: {ship} sees policy {declared} enforced on Cilium v{VERSION}"
    else:
        line = f"FAIL {check}: expected {expected}, observed {observed}"
        assert line in run.out
        assert line in run.message  # what `kubectl describe pod` and Pulumi's error show


@pytest.mark.parametrize("declared", ["none", "l3l4"])
def test_the_exhaust_port_is_never_called_without_the_l7_policy(fake_bin, declared):
    for ship in ORG:
        run = run_script(fake_bin, ship, declared)
        assert ("PUT", "/v1/exhaust-port") not in run.calls


def test_l7_checks_the_exhaust_port_from_the_tiefighter_only(fake_bin):
    assert ("PUT", "/v1/exhaust-port") in run_script(fake_bin, "tiefighter", "l7").calls
    assert ("PUT", "/v1/exhaust-port") not in run_script(fake_bin, "xwing", "l7").calls


def test_retries_while_the_policy_propagates(fake_bin):
    # The xwing still lands twice before the policy is in force, then is dropped.
    run = run_script(fake_bin, "xwing", "l3l4", sequence=[LANDED, LANDED])
    assert run.proc.returncode == 0, run.out
    assert len(run.calls) == 3


def test_gives_up_after_the_attempts(fake_bin):
    run = run_script(fake_bin, "xwing", "l7", "none")
    assert run.proc.returncode == 1 and len(run.calls) == 3
    assert "after 3 tries" in run.out


def test_curl_errors_are_reported_not_mistaken_for_a_drop(fake_bin):
    # Connection refused (curl exit 7) is not "blocked": a broken cluster must not pass.
    run = run_script(fake_bin, "xwing", "l7", sequence=[(7, "")] * 3)
    assert run.proc.returncode == 1
    assert "expected blocked, observed curl error 7" in run.message


@pytest.mark.parametrize(("ship", "policy"), [("xwing", "l4"), ("falcon", "l7")])
def test_unknown_ship_or_mode_is_an_error_before_any_call(fake_bin, ship, policy):
    run = run_script(fake_bin, ship, policy)
    assert run.proc.returncode == 2 and not run.log
    assert f"unknown SHIP/POLICY '{ship}/{policy}'" in run.proc.stderr


# --- 5. What is verified, printed first ---------------------------------------------------------

KPR_ON_NO_DAEMONSET = {
    "KUBE_PROXY_REPLACEMENT": "true",
    "KUBERNETES_VERSION": "1.33",
    "INSTANCE_TYPES": "t3.medium,t3.large",
    "PREFIX_DELEGATION": "true",
}


def test_prints_what_is_verified_first(fake_bin):
    run = run_script(fake_bin, "xwing", "l7", kube_proxy=[404], **KPR_ON_NO_DAEMONSET)
    first = run.lines[0]
    for part in (
        "SHIP=xwing",
        "POLICY=l7",
        f"CILIUM_VERSION={VERSION}",
        "KUBE_PROXY_REPLACEMENT=true",
        "KUBERNETES_VERSION=1.33",
        "INSTANCE_TYPES=t3.medium,t3.large",
        "PREFIX_DELEGATION=true",
    ):
        assert part in first, first
    first = run_script(fake_bin, "xwing", "l7").lines[0]  # none of the optional ones set
    assert first.startswith("verifying: ") and "KUBERNETES_VERSION" not in first
    assert "INSTANCE_TYPES" not in first and "PREFIX_DELEGATION" not in first


# --- 1. Cilium's rollout, before any call to the deathstar ------------------------------------


def test_a_complete_rollout_is_seen_first_then_the_checks_run(fake_bin):
    run = run_script(fake_bin, "tiefighter", "l7")
    assert run.proc.returncode == 0, run.out
    assert [e["kind"] for e in run.log] == ["api", "dns", "deathstar", "deathstar"]
    api = run.log[0]
    assert api["name"] == "cilium" and api["bounded"]
    assert api["cacert"] == f"{fake_bin.parent}/serviceaccount/ca.crt"
    assert api["auth"] == f"Authorization: Bearer {TOKEN}"
    assert f"PASS cilium-rollout: DaemonSet kube-system/cilium runs v{VERSION} on 2/2" in run.out


# Each breaks exactly one condition of "rolled out", with the words that must say so in
# the progress line. They are answered in turn, then the rollout completes.
NOT_YET = [
    ("observedGeneration behind", cilium_ds(generation=4, observed=3), "generation 4"),
    ("updated < desired", cilium_ds(updated=1), "1/2 updated"),
    ("numberAvailable < desired", cilium_ds(available=1), "1/2 available"),
    (
        "older image tag",
        cilium_ds(image=f"quay.io/cilium/cilium:v1.19.5{DIGEST}"),
        f"image v1.19.5, want v{VERSION}",
    ),
    ("no node scheduled", cilium_ds(desired=0, updated=0, available=0), "no node"),
    # one node, none updated yet: the API omits updatedNumberScheduled when it is 0
    ("one node, not updated", cilium_ds(desired=1, updated=0, available=1), "0/1 updated"),
]


def test_waits_for_the_rollout_then_checks(fake_bin):
    run = run_script(
        fake_bin, "xwing", "l3l4", cilium=[doc for _, doc, _ in NOT_YET] + [ROLLED_OUT]
    )
    assert run.proc.returncode == 0, run.out
    looks = run.api("cilium")
    assert len(looks) == len(NOT_YET) + 1, run.out  # each state above was not taken as done
    assert min(run.positions("dns")) > looks[-1]  # nothing else before the rollout is seen
    assert min(run.positions("deathstar")) > looks[-1]
    progress = run.starting("waiting for DaemonSet kube-system/cilium: ")
    for (state, _, shown), line in zip(NOT_YET, progress, strict=True):
        assert shown in line, (state, line)


def test_a_rollout_that_never_completes_fails_with_the_last_state_and_no_check(fake_bin):
    older = cilium_ds(image=f"quay.io/cilium/cilium:v1.19.5{DIGEST}")
    run = run_script(
        fake_bin,
        "xwing",
        "l3l4",
        cilium=[older, cilium_ds(updated=1)],
        ROLLOUT_TIMEOUT="3",  # three looks on the fake clock
    )
    assert run.proc.returncode == 1
    assert len(run.api("cilium")) == 3  # it kept looking until the timeout
    assert not run.calls and not run.positions("dns")
    [line] = run.starting("FAIL")
    assert line.startswith(
        f"FAIL cilium-rollout: DaemonSet kube-system/cilium did not roll out v{VERSION}"
        " on every node within 3s (last seen: "
    )
    assert "1/2 updated" in line and "v1.19.5" not in line  # the last state, not the first
    assert line in run.message


AGENT_LAST = [
    {"name": "config", "image": f"quay.io/cilium/cilium:v{VERSION}{DIGEST}"},
    {"name": "cilium-agent", "image": f"quay.io/cilium/cilium:v1.19.5{DIGEST}"},
]
# Agent images that are not v1.19.6, answered in turn before an accepted one.
REJECTED = [
    cilium_ds(image=f"quay.io/cilium/cilium:v{VERSION}0{DIGEST}"),  # v1.19.60
    cilium_ds(image=f"quay.io/cilium/cilium:v1.19{DIGEST}"),
    cilium_ds(containers=AGENT_LAST),  # the right tag, on another container
    cilium_ds(containers=list(reversed(AGENT_LAST))),
]


@pytest.mark.parametrize(
    "accepted",
    [f"quay.io/cilium/cilium:v{VERSION}", f"registry.local:5000/cilium/cilium:v{VERSION}{DIGEST}"],
)
def test_the_agent_image_tag_must_match_exactly(fake_bin, accepted):
    rejected = REJECTED if "registry" in accepted else REJECTED[:1]
    run = run_script(fake_bin, "tiefighter", "none", cilium=[*rejected, cilium_ds(image=accepted)])
    assert run.proc.returncode == 0, run.out
    assert len(run.api("cilium")) == len(rejected) + 1, run.out
    progress = run.starting("waiting for DaemonSet kube-system/cilium: ")
    assert len(progress) == len(rejected), run.out  # a line for each image turned down
    assert all(f"want v{VERSION}" in line for line in progress), progress


def test_a_leading_v_in_the_version_is_accepted(fake_bin):
    run = run_script(fake_bin, "tiefighter", "none", CILIUM_VERSION=f"v{VERSION}")
    assert run.proc.returncode == 0, run.out


def test_api_errors_are_reported_and_retried(fake_bin):
    errors = [401, 403, 404, 503, 409, CURL_CANNOT_CONNECT]
    run = run_script(fake_bin, "tiefighter", "none", cilium=[*errors, ROLLED_OUT])
    assert run.proc.returncode == 0, run.out
    assert len(run.api("cilium")) == 7
    progress = run.starting("waiting for DaemonSet kube-system/cilium: ")
    shown = [
        "HTTP 401 unauthorized", "HTTP 403 forbidden", "HTTP 404 not found: no DaemonSet",
        "HTTP 503: the API server failed", "HTTP 409 from the API server", "curl error 7",
    ]  # fmt: skip
    for line, words in zip(progress, shown, strict=True):
        assert words in line, line
    assert "fake API says 403" in progress[1]  # the API server's own words


def test_forbidden_fails_naming_it(fake_bin):
    run = run_script(fake_bin, "xwing", "l3l4", cilium=[403], ROLLOUT_TIMEOUT="0")
    assert run.proc.returncode == 1
    line = (
        f"FAIL cilium-rollout: DaemonSet kube-system/cilium did not roll out v{VERSION} on"
        " every node within 0s (last seen: HTTP 403 forbidden: the Job's ServiceAccount"
        " cannot read DaemonSets in kube-system)"
    )
    assert line in run.lines
    assert line in run.message
    assert len(run.api("cilium")) == 1  # a timeout of 0: one look
    assert not run.calls


@pytest.mark.parametrize(
    "present", [(), ("token",), ("ca.crt",)], ids=["none", "no-ca", "no-token"]
)
def test_no_service_account_token_or_ca_fails_at_once(fake_bin, present):
    mount = fake_bin.parent / f"mount-{len(present)}-{'-'.join(present)}"
    mount.mkdir()
    for name in present:
        (mount / name).write_text((fake_bin.parent / "serviceaccount" / name).read_text())
    run = run_script(fake_bin, "xwing", "l3l4", SA_DIR=str(mount))
    assert run.proc.returncode == 1 and not run.log
    assert "FAIL cilium-rollout: no ServiceAccount token" in run.message


def test_a_first_look_that_fails_is_retried(fake_bin):
    run = run_script(fake_bin, "tiefighter", "none", cilium=[CURL_CANNOT_CONNECT, ROLLED_OUT])
    assert run.proc.returncode == 0, run.out + run.proc.stderr
    assert len(run.api("cilium")) == 2


# --- 2. No kube-proxy pod with kube-proxy replacement ------------------------------------------


def test_kube_proxy_replacement_waits_until_no_kube_proxy_pod_runs(fake_bin):
    # Each of desired, scheduled and ready alone means a kube-proxy pod is (about to be) there.
    scheduled = [kube_proxy_ds(1, 0, 0), kube_proxy_ds(0, 1, 0), kube_proxy_ds(0, 0, 1)]
    run = run_script(
        fake_bin,
        "xwing",
        "l3l4",
        KUBE_PROXY_REPLACEMENT="true",
        kube_proxy=[*scheduled, NO_KUBE_PROXY_POD],
    )
    assert run.proc.returncode == 0, run.out
    assert len(run.api("kube-proxy")) == 4
    assert run.api("cilium")[-1] < run.api("kube-proxy")[0]  # after Cilium's rollout
    assert max(run.api("kube-proxy")) < min(run.positions("deathstar"))
    [line] = run.starting("PASS kube-proxy-absent: ")
    assert "runs no pod" in line


def test_kube_proxy_running_fails_and_every_failure_reaches_the_termination_message(fake_bin):
    # kube-proxy still runs on every node, and only L3/L4 is enforced where L7 was declared.
    run = run_script(
        fake_bin,
        "tiefighter",
        "l7",
        "l3l4",
        KUBE_PROXY_REPLACEMENT="true",
        kube_proxy=[KUBE_PROXY_RUNNING],
        ROLLOUT_TIMEOUT="0",
    )
    assert run.proc.returncode == 1
    fails = run.starting("FAIL")
    assert [f.split(":")[0] for f in fails] == [
        "FAIL kube-proxy-absent",
        "FAIL tiefighter-exhaust-port",
    ]
    assert "2 desired, 2 scheduled, 2 ready" in fails[0]
    for line in fails:
        assert line in run.message.splitlines()


def test_both_waits_share_one_rollout_budget(fake_bin):
    # Cilium's rollout spends part of the budget; kube-proxy gets what is left, so that the
    # Job's deadline covers ROLLOUT_TIMEOUT once. On the fake clock each look that finds
    # the DaemonSet not yet settled costs one second.
    run = run_script(
        fake_bin,
        "xwing",
        "l3l4",
        cilium=[cilium_ds(updated=1), ROLLED_OUT],
        kube_proxy=[KUBE_PROXY_RUNNING],
        KUBE_PROXY_REPLACEMENT="true",
        ROLLOUT_TIMEOUT="3",
    )
    assert run.proc.returncode == 1
    assert len(run.api("cilium")) == 2
    assert len(run.api("kube-proxy")) == 2  # 3 seconds in all, not 3 more
    [line] = run.starting("FAIL")
    assert line.startswith("FAIL kube-proxy-absent: ") and "within the 3s" in line


def test_kube_proxy_daemonset_absent_passes(fake_bin):
    run = run_script(fake_bin, "xwing", "l7", kube_proxy=[404], **KPR_ON_NO_DAEMONSET)
    assert run.proc.returncode == 0, run.out
    assert len(run.api("kube-proxy")) == 1
    [line] = run.starting("PASS kube-proxy-absent: ")
    assert "no DaemonSet kube-system/kube-proxy" in line


def test_kube_proxy_unreadable_fails_naming_it(fake_bin):
    run = run_script(
        fake_bin,
        "xwing",
        "l7",
        KUBE_PROXY_REPLACEMENT="true",
        kube_proxy=[403],
        ROLLOUT_TIMEOUT="0",
    )
    assert run.proc.returncode == 1
    [line] = run.starting("FAIL")
    assert line.startswith("FAIL kube-proxy-absent: ") and "HTTP 403 forbidden" in line
    assert line in run.message


@pytest.mark.parametrize("setting", [{"KUBE_PROXY_REPLACEMENT": "false"}, {}])
def test_without_kube_proxy_replacement_kube_proxy_is_not_looked_at(fake_bin, setting):
    run = run_script(fake_bin, "xwing", "l3l4", **setting)  # kube-proxy would be running
    assert run.proc.returncode == 0, run.out
    assert not run.api("kube-proxy")
    assert run.starting("SKIP kube-proxy-absent: ")


@pytest.mark.parametrize(
    "setting",
    [{"ATTEMPTS": "x"}, {"ATTEMPTS": "1:2"}, {"ROLLOUT_TIMEOUT": "1.5"}, {"ROLLOUT_TIMEOUT": "-1"}],
)
def test_a_count_that_is_not_a_whole_number_is_an_error_before_any_call(fake_bin, setting):
    run = run_script(fake_bin, "xwing", "l3l4", **setting)
    assert run.proc.returncode == 2 and not run.log
    assert "must be whole numbers" in run.proc.stderr


def test_a_malformed_kube_proxy_replacement_is_an_error(fake_bin):
    run = run_script(fake_bin, "xwing", "l3l4", KUBE_PROXY_REPLACEMENT="yes")
    assert run.proc.returncode == 2 and not run.log


# --- 3. DNS first; then every call pinned to the resolved address ---------------------------


def test_a_dns_failure_fails_and_is_never_taken_for_a_drop(fake_bin):
    # In this world curl's own lookup would time out (exit 28), like a dropped packet: the
    # xwing, which l3l4 must block, would "pass" if the lookup were left to curl.
    run = run_script(fake_bin, "xwing", "l3l4", dns=[None])
    assert run.proc.returncode == 1
    line = (
        f"FAIL dns: cannot resolve {HOST} (CoreDNS or Cilium's DNS path is broken):"
        " not found after 3 tries"
    )
    assert line in run.lines
    assert run.message.splitlines()[1:] == [line]
    assert len(run.positions("dns")) == 3  # retried like the checks
    assert not run.calls
    assert not run.starting("PASS xwing")


def test_a_hanging_lookup_is_cut_short(fake_bin):
    run = run_script(fake_bin, "xwing", "l7", dns=["hang"], ATTEMPTS="1", CURL_TIMEOUT="0.2")
    assert run.proc.returncode == 1
    assert "FAIL dns: " in run.message and "timed out after 0.2s" in run.message
    assert not run.calls


def test_dns_is_retried_until_it_answers(fake_bin):
    run = run_script(fake_bin, "xwing", "l3l4", dns=[None, None, CLUSTER_IP])
    assert run.proc.returncode == 0, run.out
    assert len(run.positions("dns")) == 3
    assert min(run.positions("deathstar")) > max(run.positions("dns"))
    # each failed try says so in the Job's log
    assert [line.split("(try ")[1] for line in run.starting(f"dns: {HOST}: ")] == ["1)", "2)"]


def test_a_deathstar_that_is_not_an_http_url_is_an_error_before_any_call(fake_bin):
    run = run_script(fake_bin, "xwing", "l3l4", DEATHSTAR="deathstar.starwars")
    assert run.proc.returncode == 2 and not run.log
    assert "DEATHSTAR must be an http:// or https:// URL" in run.proc.stderr + run.out


def test_the_script_leaves_no_temporary_files(fake_bin, tmp_path):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    run = run_script(fake_bin, "tiefighter", "l7", TMPDIR=str(scratch))
    assert run.proc.returncode == 0, run.out
    assert not list(scratch.iterdir())


@pytest.mark.parametrize(
    ("url", "pinned"),
    [
        (DEATHSTAR, f"{HOST}:80:{CLUSTER_IP}"),
        (f"http://{HOST}:8080", f"{HOST}:8080:{CLUSTER_IP}"),
    ],
)
def test_every_deathstar_call_is_pinned_to_the_resolved_address(fake_bin, url, pinned):
    env = {} if url == DEATHSTAR else {"DEATHSTAR": url}
    run = run_script(fake_bin, "tiefighter", "l7", **env)
    assert run.proc.returncode == 0, run.out
    calls = [e for e in run.log if e["kind"] == "deathstar"]
    assert len(calls) == 2
    assert all(e["resolve"] == pinned and e["bounded"] for e in calls)
    [line] = run.starting("dns: ")
    assert CLUSTER_IP in line


def test_every_verdict_run_pinned_its_calls(fake_bin):
    # The table's runs, again (the same scenarios run once): all pinned, none lost to DNS.
    for ship, declared, enforced, *_ in CASES:
        run = run_script(fake_bin, ship, declared, enforced)
        resolves = {e["resolve"] for e in run.log if e["kind"] == "deathstar"}
        assert resolves == {f"{HOST}:80:{CLUSTER_IP}"}, (ship, declared, enforced)


def test_a_daemonset_without_the_agent_container_is_never_taken_for_a_rollout(fake_bin):
    # the right image on a container of another name is not Cilium's agent
    renamed = cilium_ds(
        containers=[{"name": "agent", "image": f"quay.io/cilium/cilium:v{VERSION}"}]
    )
    run = run_script(fake_bin, "xwing", "l3l4", cilium=[renamed], ROLLOUT_TIMEOUT="2")
    assert run.proc.returncode == 1 and not run.calls
    [line] = run.starting("FAIL cilium-rollout")
    assert "no container cilium-agent in the pod template" in line


def test_an_answer_that_is_not_json_is_reported_as_such(fake_bin):
    run = run_script(
        fake_bin, "xwing", "l3l4", cilium=["<html>502 Bad Gateway</html>"], ROLLOUT_TIMEOUT="2"
    )
    assert run.proc.returncode == 1 and not run.calls
    [line] = run.starting("FAIL cilium-rollout")
    assert "unreadable answer from the API server (not JSON)" in line


def test_the_defaults_the_job_relies_on(fake_bin, tmp_path):
    # The Job sets only ROLLOUT_TIMEOUT; its deadline is sized on these defaults: 8 tries
    # 2 s apart, calls of at most 5 s, a look at the DaemonSet every 5 s.
    slept = tmp_path / "slept"
    sleeper = tmp_path / "sleeper"
    sleeper.mkdir()
    (sleeper / "sleep").write_text(f'#!/bin/sh\necho "$1" >> {slept}\n')
    (sleeper / "sleep").chmod(0o755)
    not_yet = cilium_ds(updated=1)
    run = run_script(
        fake_bin, "xwing", "l3l4", "none", cilium=[not_yet, ROLLED_OUT],
        PATH=f"{sleeper}{os.pathsep}{fake_bin}{os.pathsep}{os.environ['PATH']}",
        ATTEMPTS=None, DELAY=None, CURL_TIMEOUT=None, ROLLOUT_POLL=None, ROLLOUT_TIMEOUT=None,
    )  # fmt: skip
    [progress] = run.starting("waiting for DaemonSet kube-system/cilium")
    assert progress.endswith("of 600s]")  # ten minutes for Cilium to roll
    assert run.proc.returncode == 1  # xwing lands: the undeclared-policy world
    assert run.calls == [("POST", "/v1/request-landing")] * 8
    assert {e["max_time"] for e in run.log if e["kind"] in ("api", "deathstar")} == {"5"}
    assert slept.read_text().split() == ["5"] + ["2"] * 7
    assert "after 8 tries" in run.out


def test_a_lookup_that_answers_no_address_is_a_dns_failure(fake_bin):
    # getent exits 0 but prints no address: nothing to pin the calls to
    run = run_script(fake_bin, "tiefighter", "l3l4", dns=[""])
    assert run.proc.returncode == 1 and not run.calls
    [line] = run.starting("FAIL dns")
    assert "unexpected answer" in line


@pytest.mark.parametrize("missing", ["KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"])
def test_no_api_server_address_is_an_error_before_any_call(fake_bin, missing):
    run = run_script(fake_bin, "xwing", "l3l4", **{missing: None})
    assert run.proc.returncode == 2 and not run.log
    assert missing in run.proc.stderr


def test_a_reply_with_backslashes_is_reported_as_it_came(fake_bin):
    # dash's echo would act on "\c" (stop output) and "\n": the report must show the reply
    reply = (0, "Panic: C:\\cache\\now\n")
    run = run_script(fake_bin, "tiefighter", "l7", sequence=[LANDED, reply, reply, reply])
    assert run.proc.returncode == 1
    [line] = run.starting("FAIL tiefighter-exhaust-port: ")
    assert "observed response 'Panic: C:\\cache\\now" in line
