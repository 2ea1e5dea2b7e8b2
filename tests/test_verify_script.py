"""components/starwars_verify.sh as code: its decisions against a scripted cluster.

Fakes on PATH play the cluster: `curl` answers the API server (a scripted sequence of
documents or HTTP statuses per object: the cilium, cilium-envoy and kube-proxy
DaemonSets, the cilium-operator Deployment, the CiliumNode list, a NodePool) and the
deathstar (a cluster that
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from components.checks import VERIFY_SCRIPT

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


def operator_deploy(
    *,
    generation: int = 5,
    observed: int = 5,
    replicas: int = 2,
    updated: int = 2,
    available: int = 2,
    total: int | None = None,
    image: str = f"quay.io/cilium/operator-aws:v{VERSION}{DIGEST}",
) -> dict[str, Any]:
    """The cilium-operator Deployment as the API server returns it (zero counts omitted)."""
    status = {"replicas": replicas if total is None else total}
    for key, value in (
        ("observedGeneration", observed),
        ("updatedReplicas", updated),
        ("availableReplicas", available),
    ):
        if value:
            status[key] = value
    return {
        "kind": "Deployment",
        "metadata": {
            "name": "cilium-operator",
            "namespace": "kube-system",
            "generation": generation,
        },
        "spec": {
            "replicas": replicas,
            "template": {"spec": {"containers": [{"name": "cilium-operator", "image": image}]}},
        },
        "status": status,
    }


def envoy_ds(**counts: int) -> dict[str, Any]:
    """cilium-envoy: tagged with Envoy's version, never Cilium's."""
    image = "quay.io/cilium/cilium-envoy:v1.36.9-1782267392-edeb3f2a" + DIGEST
    doc = cilium_ds(containers=[{"name": "cilium-envoy", "image": image}], **counts)
    doc["metadata"]["name"] = "cilium-envoy"
    return doc


WG_KEY = "network.cilium.io/wg-pub-key"


def cilium_nodes(*keys: str | None) -> dict[str, Any]:
    """A CiliumNodeList: one node per key (None: the node has published none)."""
    items = []
    for i, key in enumerate(keys):
        annotations = {} if key is None else {WG_KEY: key}
        items.append({"metadata": {"name": f"ip-10-0-{i}-1", "annotations": annotations}})
    return {"kind": "CiliumNodeList", "apiVersion": "cilium.io/v2", "items": items}


def nodepool(ready: str | None, message: str = "") -> dict[str, Any]:
    conditions = [] if ready is None else [{"type": "Ready", "status": ready, "message": message}]
    return {
        "kind": "NodePool",
        "metadata": {"name": "default"},
        "status": {"conditions": conditions},
    }


ROLLED_OUT = cilium_ds()
OPERATOR_ROLLED_OUT = operator_deploy()
ENVOY_ROLLED_OUT = envoy_ds()
KEYS_ON_EVERY_NODE = cilium_nodes("k1=", "k2=")
NO_KUBE_PROXY_POD = kube_proxy_ds(0, 0, 0)  # a nodeSelector that matches no node
KUBE_PROXY_RUNNING = kube_proxy_ds(2, 2, 2)
CURL_CANNOT_CONNECT = ["curl", 7]  # an API answer: curl fails, no HTTP status

# The fakes are POSIX sh over answer files that _run() writes per scenario (a Python fake
# would cost more to start than the script's own work). $FAKE_WORLD is that folder:
#   api/NAME/N          the Nth answer for object NAME (the last one repeats), one of
#                       N.json (a 200 with that body), N.code (an HTTP status, a Status
#                       body) or N.curl (curl's exit code: no HTTP answer at all)
#   sequence/N          N.rc and N.body: the Nth call to the deathstar, if scripted
#   deathstar/M_PATH    .rc and .body: the answer to method M on PATH (/ as _), otherwise
#   dns/N               the Nth lookup's answer: an address, NONE (not found), HANG (no
#                       answer: the script's bound must cut it short), or empty
#   cluster_ip, dns_works   where the deathstar's Service is; whether curl's own lookup works
FAKE_CURL = """#!/bin/sh
# curl as the script calls it, against $FAKE_WORLD; every call is logged as a JSON line.
out="" fmt="" max_time="" cacert="" auth="" method="" resolve="" url=""
while [ $# -gt 0 ]; do
  case "$1" in
    -o) out=$2; shift ;;
    -w) fmt=$2; shift ;;
    --max-time) max_time=$2; shift ;;
    --cacert) cacert=$2; shift ;;
    -H) auth=$2; shift ;;
    -X) method=$2; shift ;;
    --resolve) resolve=$2; shift ;;
    -*) ;;
    *) url=$1 ;;
  esac
  shift
done
bounded=false
case "$max_time" in '' | 0 | 0.0) ;; *) bounded=true ;; esac
json_max() { [ -n "$max_time" ] && printf '"%s"' "$max_time" || printf null; }
earlier() {
  count=$(grep -c "$1" "$FAKE_LOG" 2>/dev/null)
  echo "${count:-0}"
}
api="https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT/apis/"
case "$url" in
  "$api"*)
    path=${url#"$api"}
    case "$path" in
      apps/v1/namespaces/kube-system/daemonsets/*) name=${path##*/} ;;
      apps/v1/namespaces/kube-system/deployments/*) name=${path##*/} ;;
      cilium.io/v2/ciliumnodes) name=ciliumnodes ;;
      karpenter.sh/v1/nodepools/*) name=nodepool_${path##*/} ;;
      *) echo "fake curl: unexpected API path $path" >&2; exit 99 ;;
    esac
    n=$(earlier "\\"kind\\": \\"api\\", \\"name\\": \\"$name\\"")
    dir=$FAKE_WORLD/api/$name
    last=$(cat "$dir/last" 2>/dev/null || echo none)
    [ "$last" = none ] && n=none || { [ "$n" -gt "$last" ] && n=$last; }
    printf '{"kind": "api", "name": "%s", "bounded": %s, "max_time": %s, ' "$name" "$bounded" \\
      "$(json_max)" >>"$FAKE_LOG"
    printf '"cacert": "%s", "auth": "%s"}\\n' \\
      "$cacert" "$auth" >>"$FAKE_LOG"
    if [ -f "$dir/$n.curl" ]; then
      rc=$(cat "$dir/$n.curl")
      echo "curl: ($rc) Failed to connect to the API server" >&2
      printf '%s' "$fmt" | sed 's/%{http_code}/000/'
      exit "$rc"
    fi
    if [ -f "$dir/$n.json" ]; then
      code=200 body=$dir/$n.json
    else
      code=$(cat "$dir/$n.code" 2>/dev/null || echo 404)
      body=$FAKE_WORLD/status_$code.json
      printf '{"kind": "Status", "code": %s, "message": "fake API says %s"}' \\
        "$code" "$code" >"$body"
    fi
    if [ -n "$out" ]; then cat "$body" >"$out"; else cat "$body"; fi
    printf '%s' "$fmt" | sed "s/%{http_code}/$code/"
    exit 0
    ;;
esac
case "$url" in "$DEATHSTAR"*) ;; *) echo "fake curl: unexpected URL $url" >&2; exit 99 ;; esac
path=${url#"$DEATHSTAR"}
pinned=null
[ -n "$resolve" ] && pinned="\\"$resolve\\""
printf '{"kind": "deathstar", "method": "%s", "path": "%s", "resolve": %s, ' \\
  "$method" "$path" "$pinned" >>"$FAKE_LOG"
printf '"bounded": %s, "max_time": %s}\\n' "$bounded" "$(json_max)" >>"$FAKE_LOG"
# Where the name leads. --resolve for this host and port pins it: curl does no lookup.
# Otherwise curl looks the name up itself and, with DNS broken, that lookup times out:
# exit 28, the same as a dropped packet.
host_port=${url#*://} host_port=${host_port%%/*}
case "$host_port" in
  *:*) host=${host_port%:*} port=${host_port##*:} ;;
  *) host=$host_port port=80 ;;
esac
cluster_ip=$(cat "$FAKE_WORLD/cluster_ip")
case "$resolve" in
  "$host:$port:"*) address=${resolve#"$host:$port:"} ;;
  *) if [ "$(cat "$FAKE_WORLD/dns_works")" = true ]; then address=$cluster_ip; else exit 28; fi ;;
esac
[ "$address" = "$cluster_ip" ] || exit 28 # nothing answers there
# A scripted sequence of answers (for propagation delays), else the world's answer.
calls=$(earlier '"kind": "deathstar"')
if [ -f "$FAKE_WORLD/sequence/$calls.rc" ]; then
  answer=$FAKE_WORLD/sequence/$calls
else
  answer=$FAKE_WORLD/deathstar/${method}_$(printf '%s' "$path" | tr / _)
fi
cat "$answer.body"
exit "$(cat "$answer.rc")"
"""

FAKE_GETENT = """#!/bin/sh
# getent hosts NAME, as cluster DNS answers in $FAKE_WORLD/dns.
[ "$1" = hosts ] || exit 99
calls=$(grep -c '"kind": "dns"' "$FAKE_LOG" 2>/dev/null)
calls=${calls:-0}
printf '{"kind": "dns", "name": "%s"}\\n' "$2" >>"$FAKE_LOG"
last=$(cat "$FAKE_WORLD/dns/last")
[ "$calls" -gt "$last" ] && calls=$last
answer=$(cat "$FAKE_WORLD/dns/$calls")
case "$answer" in
  HANG) sleep 30 ;;
  NONE) exit 2 ;;
esac
printf '%-15s %s\\n' "$answer" "$2"
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
        fake.write_text(source.replace("{date}", str(shutil.which("date"))))
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
        """Positions in the log of the API calls for the object called `name`."""
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
    api: dict[str, list[Any]] | None = None,
    dns: list[str | None] | None = None,
    **env: str | None,
) -> Run:
    """Run the script as `ship` with `policy` declared, in a cluster enforcing `enforced`
    (default: what was declared), whose API server answers `cilium`, `kube_proxy` and the
    objects in `api` in turn (the last answer repeats; everything else rolled out) and
    whose DNS answers `dns` in turn; `env` overrides the script's environment (None:
    unset). The same scenario runs once per module."""
    answers = {
        "cilium": cilium or [ROLLED_OUT],
        "kube-proxy": kube_proxy or [KUBE_PROXY_RUNNING],
        "cilium-operator": [OPERATOR_ROLLED_OUT],
        "cilium-envoy": [ENVOY_ROLLED_OUT],
        "ciliumnodes": [KEYS_ON_EVERY_NODE],
        **(api or {}),
    }
    args = (fake_bin, ship, policy, enforced or policy, sequence, answers, dns, env)
    key = json.dumps([str(fake_bin), *args[1:]], sort_keys=True)
    if key not in _memo:
        _memo[key] = _run(*args)
    return _memo[key]


def write_world(folder: Path, scenario: dict[str, Any]) -> None:
    """The scenario as the files the sh fakes read (see FAKE_CURL)."""
    for name, answers in scenario["api"].items():
        objects = folder / "api" / name.replace("/", "_")
        objects.mkdir(parents=True)
        for n, answer in enumerate(answers):
            if isinstance(answer, list):  # ["curl", exit code]: no HTTP answer at all
                (objects / f"{n}.curl").write_text(str(answer[1]))
            elif isinstance(answer, dict):
                (objects / f"{n}.json").write_text(json.dumps(answer))
            elif isinstance(answer, str):  # a 200 that is not JSON (a proxy's page, say)
                (objects / f"{n}.json").write_text(answer)
            else:
                (objects / f"{n}.code").write_text(str(answer))
        (objects / "last").write_text(str(len(answers) - 1))
    for kind in ("sequence", "deathstar", "dns"):
        (folder / kind).mkdir()
    for n, (rc, body) in enumerate(scenario["sequence"], start=1):
        (folder / "sequence" / f"{n}.rc").write_text(str(rc))
        (folder / "sequence" / f"{n}.body").write_text(body)
    for call, (rc, body) in scenario["deathstar"].items():
        method, path = call.split(" ", 1)
        answer = folder / "deathstar" / f"{method}_{path.replace('/', '_')}"
        answer.with_suffix(".rc").write_text(str(rc))
        answer.with_suffix(".body").write_text(body)
    for n, answer in enumerate(scenario["dns"]):
        (folder / "dns" / str(n)).write_text({None: "NONE", "hang": "HANG"}.get(answer, answer))
    (folder / "dns" / "last").write_text(str(len(scenario["dns"]) - 1))
    (folder / "cluster_ip").write_text(scenario["cluster_ip"])
    (folder / "dns_works").write_text("true" if scenario["dns_works"] else "false")


def _run(fake_bin, ship, policy, enforced, sequence, answers, dns, overrides):
    tmp = fake_bin.parent / f"run-{next(_runs)}"
    tmp.mkdir()
    dns = [CLUSTER_IP] if dns is None else dns
    scenario = {
        "api": answers,
        "dns": dns,
        "dns_works": dns[-1] not in (None, "hang"),
        "cluster_ip": CLUSTER_IP,
        "sequence": sequence or [],
        "deathstar": {
            f"{m} {p}": world(enforced, ORG.get(ship, "?"), m, p)
            for m, p in (("POST", "/v1/request-landing"), ("PUT", "/v1/exhaust-port"))
        },
    }
    write_world(tmp / "world", scenario)
    log, termination = tmp / "calls.log", tmp / "termination"
    env = {k: v for k, v in os.environ.items() if k not in PRINTED_ONLY}
    # The Job's node:18-slim has no extra CAs (and its node makes no TLS call); a machine
    # whose environment names some makes each `node` start read them: 100 ms, not 30.
    env.pop("NODE_EXTRA_CA_CERTS", None)
    for optional in ("KUBE_PROXY_REPLACEMENT", "ENCRYPTION", "KARPENTER_NODEPOOL"):
        env.pop(optional, None)
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
            "FAKE_WORLD": str(tmp / "world"),
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
    assert [e["kind"] for e in run.log] == ["api"] * 3 + ["dns", "deathstar", "deathstar"]
    assert [e["name"] for e in run.log[:3]] == ["cilium", "cilium-operator", "cilium-envoy"]
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
        "HTTP 401 unauthorized", "HTTP 403 forbidden",
        "HTTP 404 not found: no DaemonSet kube-system/cilium",
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
        " cannot read DaemonSet kube-system/cilium)"
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


# --- 1. The operator and the L7 proxy roll out too ---------------------------------------


# Each breaks one condition of "the operator rolled out", with the words that must say so.
OPERATOR_NOT_YET = [
    ("generation behind", operator_deploy(generation=6, observed=5), "generation 6"),
    ("one replica updated", operator_deploy(updated=1), "1/2 updated"),
    ("one replica available", operator_deploy(available=1), "1/2 available"),
    ("an old replica left", operator_deploy(total=3), "1 old replica(s) still running"),
    ("older image", operator_deploy(image=f"quay.io/cilium/operator-aws:v1.19.5{DIGEST}"),
     f"image v1.19.5, want v{VERSION}"),
    ("none updated (omitted)", operator_deploy(updated=0), "0/2 updated"),
]  # fmt: skip


def test_the_operator_must_run_the_configured_version_on_every_replica(fake_bin):
    answers = [doc for _, doc, _ in OPERATOR_NOT_YET] + [OPERATOR_ROLLED_OUT]
    run = run_script(fake_bin, "xwing", "l3l4", api={"cilium-operator": answers})
    assert run.proc.returncode == 0, run.out
    assert len(run.api("cilium-operator")) == len(OPERATOR_NOT_YET) + 1
    assert run.api("cilium")[-1] < run.api("cilium-operator")[0]
    assert max(run.api("cilium-operator")) < min(run.positions("deathstar"))
    progress = run.starting("waiting for Deployment kube-system/cilium-operator: ")
    for (state, _, shown), line in zip(OPERATOR_NOT_YET, progress, strict=True):
        assert shown in line, (state, line)
    [line] = run.starting("PASS cilium-operator-rollout: ")
    assert f"v{VERSION} on 2/2 replicas" in line


def test_an_operator_that_never_rolls_fails_but_the_policy_is_still_checked(fake_bin):
    old = operator_deploy(image=f"quay.io/cilium/operator-aws:v1.19.5{DIGEST}")
    run = run_script(fake_bin, "xwing", "l3l4", api={"cilium-operator": [old]}, ROLLOUT_TIMEOUT="2")
    assert run.proc.returncode == 1
    [line] = run.starting("FAIL")
    assert line.startswith("FAIL cilium-operator-rollout: Deployment kube-system/cilium-operator")
    assert "image v1.19.5" in line and line in run.message
    assert run.calls  # the policy checks still ran and reported


def test_envoy_must_roll_out_its_template_whatever_its_tag(fake_bin):
    # its image is tagged with Envoy's version, which never equals Cilium's
    not_yet = [envoy_ds(updated=1), envoy_ds(generation=4, observed=3), envoy_ds(available=1)]
    run = run_script(
        fake_bin, "tiefighter", "l7", api={"cilium-envoy": [*not_yet, ENVOY_ROLLED_OUT]}
    )
    assert run.proc.returncode == 0, run.out
    assert len(run.api("cilium-envoy")) == 4
    assert len(run.starting("waiting for DaemonSet kube-system/cilium-envoy: ")) == 3
    [line] = run.starting("PASS cilium-envoy-rollout: ")
    assert "its current pod template on 2/2 nodes" in line


def test_no_envoy_daemonset_is_skipped_not_failed(fake_bin):
    # envoy.enabled false (or upgradeCompatibility < 1.16): the agents embed the proxy
    run = run_script(fake_bin, "tiefighter", "l7", api={"cilium-envoy": [404]})
    assert run.proc.returncode == 0, run.out
    assert run.starting("SKIP cilium-envoy-rollout: no DaemonSet kube-system/cilium-envoy")


def test_an_envoy_that_never_rolls_fails(fake_bin):
    run = run_script(fake_bin, "tiefighter", "l7", api={"cilium-envoy": [envoy_ds(updated=1)]},
                     ROLLOUT_TIMEOUT="1")  # fmt: skip
    assert run.proc.returncode == 1
    [line] = run.starting("FAIL")
    assert line.startswith("FAIL cilium-envoy-rollout: ") and "1/2 updated" in line


# --- 3. WireGuard keys ------------------------------------------------------------------------


def test_wireguard_waits_for_a_key_on_every_node(fake_bin):
    not_yet = [cilium_nodes("k1="), cilium_nodes("k1=", None), cilium_nodes("k1=", "")]
    run = run_script(fake_bin, "xwing", "l7", ENCRYPTION="wireguard",
                     api={"ciliumnodes": [*not_yet, KEYS_ON_EVERY_NODE]})  # fmt: skip
    assert run.proc.returncode == 0, run.out
    progress = run.starting("waiting for CiliumNodes: ")
    assert "1/2 CiliumNodes" in progress[0]  # the agents' count: the cilium DaemonSet's
    assert f"no {WG_KEY} on ip-10-0-1-1" in progress[1] and "ip-10-0-1-1" in progress[2]
    [line] = run.starting("PASS wireguard-keys: ")
    assert f"2 CiliumNodes, each with {WG_KEY}" in line
    assert max(run.api("ciliumnodes")) < min(run.positions("deathstar"))


def test_a_node_without_a_key_fails_wireguard(fake_bin):
    run = run_script(fake_bin, "xwing", "l7", ENCRYPTION="wireguard", ROLLOUT_TIMEOUT="1",
                     api={"ciliumnodes": [cilium_nodes("k1=", None)]})  # fmt: skip
    assert run.proc.returncode == 1
    [line] = run.starting("FAIL")
    assert line.startswith("FAIL wireguard-keys: ") and "ip-10-0-1-1" in line
    assert line in run.message


def test_the_wireguard_check_needs_only_to_list_ciliumnodes(fake_bin):
    run = run_script(fake_bin, "xwing", "l7", ENCRYPTION="wireguard", ROLLOUT_TIMEOUT="0",
                     api={"ciliumnodes": [403]})  # fmt: skip
    [line] = run.starting("FAIL wireguard-keys")
    assert "HTTP 403 forbidden: the Job's ServiceAccount cannot read CiliumNodes" in line


def test_without_wireguard_no_key_is_looked_for(fake_bin):
    run = run_script(fake_bin, "xwing", "l7", ENCRYPTION="none")
    assert run.proc.returncode == 0 and not run.api("ciliumnodes")
    assert run.starting("SKIP wireguard-keys: ")


def test_an_unknown_encryption_is_an_error_before_any_call(fake_bin):
    run = run_script(fake_bin, "xwing", "l7", ENCRYPTION="ipsec")
    assert run.proc.returncode == 2 and not run.log


# --- 4. Karpenter's NodePool ------------------------------------------------------------------


def test_karpenter_nodepool_must_be_ready(fake_bin):
    states = [nodepool(None), nodepool("False", "NodeClassReady=False"), nodepool("True")]
    run = run_script(fake_bin, "xwing", "l7", KARPENTER_NODEPOOL="default",
                     api={"nodepool_default": states})  # fmt: skip
    assert run.proc.returncode == 0, run.out
    progress = run.starting("waiting for NodePool default: ")
    assert "no Ready condition yet" in progress[0]
    assert "Ready is False (NodeClassReady=False)" in progress[1]
    assert run.starting("PASS karpenter-nodepool: NodePool default is Ready")


def test_a_nodepool_that_never_gets_ready_fails(fake_bin):
    run = run_script(fake_bin, "xwing", "l7", KARPENTER_NODEPOOL="default", ROLLOUT_TIMEOUT="1",
                     api={"nodepool_default": [nodepool("False")]})  # fmt: skip
    assert run.proc.returncode == 1
    [line] = run.starting("FAIL")
    assert line.startswith("FAIL karpenter-nodepool: NodePool default was not Ready")


def test_without_karpenter_no_nodepool_is_looked_at(fake_bin):
    run = run_script(fake_bin, "xwing", "l7")
    assert not [e for e in run.log if e.get("name", "").startswith("nodepool")]


def test_a_mesh_check_that_cannot_run_yet_says_why_and_touches_nothing(fake_bin):
    why = "organization/cilium-eks/b does not list this stack in mesh.peers yet"
    run = run_script(fake_bin, "xwing", "l7", MESH_WAITING=why)
    assert run.proc.returncode == 0
    assert f"SKIP mesh: {why}" in run.lines
    assert not run.log  # no API call, no lookup, no call to the deathstar


def test_an_empty_mesh_waiting_runs_every_check(fake_bin):
    run = run_script(fake_bin, "xwing", "l7", MESH_WAITING="")
    assert run.proc.returncode == 0 and not run.starting("SKIP mesh")
    assert run.calls == run_script(fake_bin, "xwing", "l7").calls != []
