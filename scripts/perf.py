"""`make perf`: pod-to-pod latency and throughput on the live cluster, measured by netperf.

    venv/bin/python scripts/perf.py run [--stack dev] [--duration 10]  # default: selected stack
    venv/bin/python scripts/perf.py compare reports/BEFORE.json reports/AFTER.json

run: the netperf runs of Cilium's own benchmark (`cilium connectivity perf`, cilium-cli
connectivity/perf/benchmarks/netperf NetperfCmd): its image, pinned by digest, and its
command, `netperf -H <server> -l <s> -t <test> -- -R 1 -o <9 selectors>`. A netserver Pod
on one node, a client Pod on the same node and one on another (same AZ when there is
one), each running TCP_RR (latency: p50/p90/p99) and TCP_STREAM (throughput), in a
namespace of its own that is deleted afterwards. With network.vpcEndpoints the nodes pull
through the stack's ECR cache (the registry the Cilium DaemonSet's image names): the image
is imported by tag first, as components/image_cache.py does for the chart's images. Prints
a table and writes reports/<stack>-<datapath mode>-<UTC time>.json, the stack's datapath
settings (the cilium-config ConfigMap) and the nodes beside the numbers.

compare: two reports side by side (before and after a change, veth and netkit), each
number's change in per cent, and the settings that differ.

Imports scripts/day2.py (the stack's kubeconfig, kubectl, the tools),
scripts/pulumi_session.py (how the selected stack is asked) and, for the image
import, the AWS API helper (components/aws_api.py); nothing of the program's components.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from scripts import day2, pulumi_session  # noqa: E402  (the stack's kubeconfig, kubectl, the tools)

PREFIX = "perf:"
REPORTS = ROOT / "reports"
NAMESPACE = "cilium-eks-perf"
# cilium-cli's ConnectivityCheckImagesPerf (cilium-cli/defaults/defaults.go): netperf 2.7.
IMAGE_PATH = (
    "cilium/network-perf:3.21-1782913202-88c270c"
    "@sha256:c115a00b80bbf4ff49857dd545f0c40025f226d79051b2c8fdab3e8b938c7f92"
)
UPSTREAM = "quay.io"
# NetperfCmd's output selectors, in its order (parseNetperfResult reads them by position).
SELECTORS = (
    "MIN_LATENCY,MEAN_LATENCY,MAX_LATENCY,P50_LATENCY,P90_LATENCY,P99_LATENCY,"
    "TRANSACTION_RATE,THROUGHPUT,THROUGHPUT_UNITS"
)
TESTS = ("TCP_RR", "TCP_STREAM")
SCENARIOS = ("same-node", "other-node")
# The settings a report keeps, as cilium-config names them.
SETTINGS = (
    "datapath-mode", "routing-mode", "enable-host-legacy-routing", "kube-proxy-replacement",
    "enable-bandwidth-manager", "enable-bbr", "bpf-lb-algorithm", "bpf-distributed-lru",
    "bpf-map-dynamic-size-ratio", "enable-wireguard", "enable-ipv4-big-tcp",
)  # fmt: skip
# (metric, unit, lower is better) in the table's and the comparison's order.
METRICS = (
    ("p50_us", "µs", True),
    ("p90_us", "µs", True),
    ("p99_us", "µs", True),
    ("transactions_per_s", "/s", False),
    ("throughput_mbps", "Mbit/s", False),
)
ECR = re.compile(r"^(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/(.+)$")
# The pods end by themselves if this script is stopped before it deletes them.
POD_DEADLINE_SECONDS = 1800
CONTROL_ATTEMPTS = 3
CONTROL_RETRY_SECONDS = 2


class PerfError(Exception):
    """A reason to stop, in words for the person who ran the command."""


def netperf_command(server_ip: str, test: str, seconds: int) -> list[str]:
    return ["netperf", "-H", server_ip, "-l", str(seconds), "-t", test,
            "--", "-R", "1", "-o", SELECTORS]  # fmt: skip


def parse_netperf(output: str, test: str) -> dict[str, float]:
    """One netperf run's numbers: latency percentiles and transaction rate for TCP_RR,
    throughput for TCP_STREAM. Result lines start with a digit (NetperfCmd); anything
    else netperf printed is its own message, shown when there is no result."""
    lines = [line for line in output.splitlines() if line[:1].isdigit()]
    if len(lines) != 1:
        raise PerfError(f"netperf {test} gave no result: {output.strip()[:400]}")
    values = lines[0].split(",")
    if len(values) != len(SELECTORS.split(",")):
        raise PerfError(f"netperf {test}: expected {SELECTORS}, got {lines[0]!r}")
    if test.endswith("_STREAM"):
        if values[8] != "10^6bits/s":
            raise PerfError(f"netperf {test}: throughput in {values[8]!r}, not 10^6bits/s")
        return {"throughput_mbps": float(values[7])}
    return {
        "mean_us": float(values[1]),
        "p50_us": float(values[3]),
        "p90_us": float(values[4]),
        "p99_us": float(values[5]),
        "transactions_per_s": float(values[6]),
    }


def pick_nodes(nodes: Sequence[Mapping[str, Any]]) -> tuple[dict[str, str], dict[str, str] | None]:
    """Two Ready, schedulable nodes (the second in the first's AZ when there is one), as
    {name, zone, instanceType, kernel}; None for the second on a one-node cluster."""
    usable = []
    for node in sorted(nodes, key=lambda n: n["metadata"]["name"]):
        ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                    for c in node.get("status", {}).get("conditions", []))  # fmt: skip
        if ready and not node.get("spec", {}).get("unschedulable"):
            labels = node["metadata"].get("labels", {})
            usable.append({
                "name": node["metadata"]["name"],
                "zone": labels.get("topology.kubernetes.io/zone", "?"),
                "instanceType": labels.get("node.kubernetes.io/instance-type", "?"),
                "kernel": node.get("status", {}).get("nodeInfo", {}).get("kernelVersion", "?"),
            })  # fmt: skip
    if not usable:
        raise PerfError("no Ready node to run netperf on: `make up` first")
    first, others = usable[0], usable[1:]
    same_zone = [n for n in others if n["zone"] == first["zone"]]
    return first, (same_zone or others or [None])[0]


def registry_of(cilium_image: str) -> str:
    """What stands for quay.io in the cluster: the Cilium DaemonSet's image names it."""
    if cilium_image.startswith(f"{UPSTREAM}/"):
        return UPSTREAM
    registry, sep, _ = cilium_image.partition("/cilium/cilium")
    if not sep:
        raise PerfError(f"cannot tell the registry from the Cilium image {cilium_image!r}")
    return registry


def warm_cache(registry: str) -> None:
    """Import the netperf image into the stack's ECR pull-through cache by tag, before a
    node pulls it by digest (which fails for an image not cached yet: components/
    image_cache.py), with the same call the stack's warm-up makes."""
    match = ECR.match(registry)
    if not match:
        return
    import components.aws_api as aws_api

    account, region, prefix = match.groups()
    path, _, tag = IMAGE_PATH.split("@", 1)[0].rpartition(":")
    try:
        aws_api.warm(aws_api.aws_client("ecr", region), account, prefix, [(path, tag)])
    except RuntimeError as err:
        raise PerfError(str(err)) from err


def manifests(image: str, server: str, clients: Mapping[str, str]) -> list[dict[str, Any]]:
    """The namespace, the netserver Pod and one client Pod per scenario, each pinned to its
    node (nodeName) and ending by itself after POD_DEADLINE_SECONDS."""

    def pod(name: str, node: str, command: list[str]) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"app": name}},
            "spec": {
                "nodeName": node,
                "restartPolicy": "Never",
                "activeDeadlineSeconds": POD_DEADLINE_SECONDS,
                "terminationGracePeriodSeconds": 1,
                "containers": [
                    {
                        "name": "netperf",
                        "image": image,
                        "command": command,
                        "securityContext": {
                            "allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"]},
                        },
                    }
                ],
            },
        }

    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
    objects = [namespace, pod("netserver", server, ["netserver", "-D"])]
    # the clients idle until netperf is run in them, as cilium-cli's client pods do
    objects += [pod(f"client-{s}", node, ["sleep", str(POD_DEADLINE_SECONDS)])
                for s, node in clients.items()]  # fmt: skip
    return objects


def kubectl_json(env: Mapping[str, str], *args: str) -> Any:
    return json.loads(day2.run(env, "kubectl", *args, "-o", "json").stdout)


def measure(env: Mapping[str, str], stack: str, seconds: int) -> dict[str, Any]:
    """The whole run on the cluster; the namespace is deleted whatever happens."""
    config = kubectl_json(env, "-n", "kube-system", "get", "configmap", "cilium-config")["data"]
    daemonset = kubectl_json(env, "-n", "kube-system", "get", "daemonset", "cilium")
    cilium_image = daemonset["spec"]["template"]["spec"]["containers"][0]["image"]
    first, second = pick_nodes(kubectl_json(env, "get", "nodes")["items"])
    registry = registry_of(cilium_image)
    warm_cache(registry)
    image = f"{registry}/{IMAGE_PATH}"
    clients = {"same-node": first["name"]}
    if second:
        clients["other-node"] = second["name"]
    else:
        print(f"{PREFIX} one node only: no across-nodes numbers")
    report: dict[str, Any] = {
        "stack": stack,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": seconds,
        "image": image,
        "ciliumImage": cilium_image,
        "settings": {key: config[key] for key in SETTINGS if key in config},
        "nodes": {"server": first, **({"other": second} if second else {})},
        "results": [],
    }
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder, "perf.json")
        items = manifests(image, first["name"], clients)
        path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
        try:
            day2.run(env, "kubectl", "apply", "-f", str(path))
            day2.run(env, "kubectl", "-n", NAMESPACE, "wait", "--for=condition=Ready", "pod",
                     "--all", "--timeout=300s")  # fmt: skip
            server_ip = kubectl_json(env, "-n", NAMESPACE, "get", "pod", "netserver")["status"][
                "podIP"
            ]
            for scenario in clients:
                for test in TESTS:
                    print(f"{PREFIX} {scenario} {test} ({seconds} s)", flush=True)
                    result = run_netperf(env, f"client-{scenario}", server_ip, test, seconds)
                    report["results"].append({"scenario": scenario, "test": test, **result})
        finally:
            day2.run(env, "kubectl", "delete", "namespace", NAMESPACE, "--wait=false",
                     "--ignore-not-found", check=False)  # fmt: skip
    return report


def run_netperf(
    env: Mapping[str, str], client: str, server_ip: str, test: str, seconds: int
) -> dict[str, float]:
    """One netperf run in a client Pod. A netserver Pod is Ready when its process starts,
    a moment before it listens: a refused control connection is tried again."""
    for attempt in range(CONTROL_ATTEMPTS):
        proc = day2.run(env, "kubectl", "-n", NAMESPACE, "exec", client, "--",
                        *netperf_command(server_ip, test, seconds), check=False)  # fmt: skip
        output = proc.stdout + proc.stderr
        if "establish control" not in output or attempt == CONTROL_ATTEMPTS - 1:
            return parse_netperf(output, test)
        time.sleep(CONTROL_RETRY_SECONDS)
    raise AssertionError("unreachable")


def numbers(report: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """{scenario: {metric: value}} from a report's results."""
    found: dict[str, dict[str, float]] = {}
    for result in report["results"]:
        values = {k: v for k, v in result.items() if k not in ("scenario", "test")}
        found.setdefault(result["scenario"], {}).update(values)
    return found


def table(report: Mapping[str, Any]) -> str:
    mode = report["settings"].get("datapath-mode", "?")
    lines = [
        f"{report['stack']}, {mode}, {report['nodes']['server']['instanceType']}, "
        f"{report['started']}, {report['seconds']} s a run",
        f"{'scenario':<12}{'TCP_RR p50/p90/p99 (µs)':>26}{'trans/s':>12}{'TCP_STREAM':>18}",
    ]
    for scenario, values in numbers(report).items():
        latency = "/".join(f"{values[k]:g}" for k in ("p50_us", "p90_us", "p99_us"))
        lines.append(f"{scenario:<12}{latency:>26}{values['transactions_per_s']:>12.0f}"
                     f"{values['throughput_mbps']:>11.0f} Mbit/s")  # fmt: skip
    return "\n".join(lines)


def load_report(path: Path) -> dict[str, Any]:
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise PerfError(f"{path}: not a readable report ({err})") from err
    missing = [k for k in ("stack", "settings", "nodes", "results") if k not in report]
    if not isinstance(report, dict) or missing:
        raise PerfError(f"{path}: not a `make perf` report (no {', '.join(missing)})")
    return report


def compare(before: Mapping[str, Any], after: Mapping[str, Any]) -> str:
    """Each number of both reports, its change in per cent, better or worse; then the
    settings and nodes that differ, which are what the numbers compare."""
    a, b = numbers(before), numbers(after)
    lines = [f"{'scenario':<12}{'metric':<20}{'before':>12}{'after':>12}{'change':>10}"]
    for scenario in [s for s in SCENARIOS if s in a and s in b]:
        for metric, unit, lower_is_better in METRICS:
            old, new = a[scenario].get(metric), b[scenario].get(metric)
            if old is None or new is None:
                continue
            change = (new - old) / old * 100 if old else 0.0
            verdict = "" if abs(change) < 1 else (
                "better" if (change < 0) == lower_is_better else "worse")  # fmt: skip
            lines.append(f"{scenario:<12}{metric + ' (' + unit + ')':<20}{old:>12g}{new:>12g}"
                         f"{change:>+9.1f}% {verdict}".rstrip())  # fmt: skip
    for part in ("settings", "nodes"):
        for key in sorted(set(before[part]) | set(after[part])):
            old, new = before[part].get(key), after[part].get(key)
            if old != new:
                lines.append(f"{part[:-1]} {key}: {json.dumps(old)} -> {json.dumps(new)}")
    return "\n".join(lines)


def main(argv: list[str], env: Mapping[str, str]) -> int:
    parser = argparse.ArgumentParser(description="netperf between pods on the live cluster.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run")
    run.add_argument("--stack", help="default: the stack Pulumi has selected")
    run.add_argument("--duration", type=int, default=10, help="seconds a netperf run")
    diff = commands.add_parser("compare")
    diff.add_argument("before", type=Path)
    diff.add_argument("after", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "compare":
            print(compare(load_report(args.before), load_report(args.after)))
            return 0
        problems = day2.missing(env)
        if problems:
            print(f"{PREFIX} {len(problems)} prerequisite(s) missing:", file=sys.stderr)
            for problem in problems:
                print(f"  - {problem}", file=sys.stderr)
            return 1
        # asked as the Makefile asks it: fully qualified (a bare name may resolve to another
        # org's), its name the last line printed; a failure is Pulumi's message (Day2Error)
        stack = args.stack or pulumi_session.stack_name(
            day2.run(env, "pulumi", *pulumi_session.SHOW_SELECTED).stdout
        )
        with day2.kubeconfig(env, stack) as cluster:
            report = measure(cluster, stack, args.duration)
        REPORTS.mkdir(exist_ok=True)
        stamp = report["started"].replace("-", "").replace(":", "")
        mode = report["settings"].get("datapath-mode", "veth")
        path = REPORTS / f"{stack.rsplit('/', 1)[-1]}-{mode}-{stamp}.json"  # org/project/stack
        path.write_text(json.dumps(report, indent=2) + "\n")
        print(table(report))
        print(f"{PREFIX} report: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
        return 0
    except (PerfError, day2.Day2Error) as err:
        print(f"{PREFIX} {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], os.environ))
