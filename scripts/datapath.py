"""Which datapath every node runs, read from each Cilium agent (part of `make verify`).

Cilium chooses some of its datapath at start and says so only in a log line: without
kube-proxy replacement, or with iptables masquerading, it routes the legacy way
(pkg/kpr/initializer FinishKubeProxyReplacementInit); a kernel too old for BBR stops it.
So the proof is each agent's own `cilium-dbg status --verbose`, compared line by line with
what the stack asked for: the cilium-config ConfigMap the chart rendered from the
program's values (components/cilium_values.py helm_values), not a copy typed here. A line that
differs fails the check, naming the node.

The status text is Cilium's: pkg/client/client.go FormatStatusResponse writes each line as
`Key:\\tvalue\\tvalue`, and cilium-dbg/cmd/status.go pads the cells with spaces
(tabwriter.NewWriter(os.Stdout, 2, 0, 3, ' ', 0)), so runs of whitespace are compared as
one space: `Routing:  Network: Native   Host: BPF` is "Network: Native Host: BPF". The lines
read here are formatted alike by 1.19 and 1.20; 1.20 adds the configured mode to
`Device Mode` only when it differs from the one in use, i.e. with `auto`, which this stack
never sets (cilium/cilium #43062). tests/test_datapath.py reads sample status text.

Imports nothing of the program: what the stack asked for is read from the cluster (the
ConfigMap the chart rendered), not from the program's values.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass

NAMESPACE = "kube-system"
AGENT_SELECTOR = "k8s-app=cilium"
AGENT_CONTAINER = "cilium-agent"
CONFIG_MAP = "cilium-config"
STATUS = ("cilium-dbg", "status", "--verbose")
# The sub-lines of `KubeProxyReplacement Details:` (FormatStatusResponse, with --verbose)
# are kept as "KubeProxyReplacement Details/<name>".
DETAILS = "KubeProxyReplacement Details"
# cilium-dbg status --verbose lists each ClusterMesh peer as "   <name>: ready, N nodes, ..."
# (FormatStatusResponseRemoteClusters): their nodes are WireGuard peers too.
REMOTE_CLUSTER = re.compile(r"^ {3}\S+: (?:ready|not-ready), (\d+) nodes, ")
PEERS = re.compile(r"Peers: (\d+)\)")

Run = Callable[..., subprocess.CompletedProcess[str]]


def parse_status(text: str) -> dict[str, str]:
    """`Key:  value` lines as {key: value}, whitespace runs as one space. Lines indented
    under `KubeProxyReplacement Details:` are kept as "KubeProxyReplacement Details/key"."""
    fields: dict[str, str] = {}
    section = ""
    for line in text.splitlines():
        if not line.strip():
            continue
        indented = line[0].isspace()
        key, sep, value = line.strip().partition(":")
        if not sep:
            continue
        key, value = key.lstrip("- ").strip(), " ".join(value.split())
        if not indented:
            section = key
            fields.setdefault(key, value)
        elif section == DETAILS:
            fields.setdefault(f"{DETAILS}/{key}", value)
    return fields


def remote_nodes(text: str) -> int:
    """Nodes of the ClusterMesh peers the status lists (0 without a mesh)."""
    return sum(int(m.group(1)) for line in text.splitlines() if (m := REMOTE_CLUSTER.match(line)))


@dataclass(frozen=True)
class Expected:
    """One status line as the stack asked for it: `pattern` must match the whole value."""

    what: str  # in the report's words
    key: str
    pattern: str
    shown: str  # the expected value, for a person


def _on(config: Mapping[str, str], key: str, default: str = "false") -> bool:
    return config.get(key, default).strip().lower() == "true"


def expectations(config: Mapping[str, str], wireguard_peers: int) -> list[Expected]:
    """The status lines a node must show, from the cilium-config ConfigMap's data."""
    kpr = "True" if _on(config, "kube-proxy-replacement") else "False"
    host = "Legacy" if _on(config, "enable-host-legacy-routing") else "BPF"
    # this stack routes natively (ENI mode); a tunnel's line names its protocol
    native = config.get("routing-mode", "native") == "native"
    network = "Native" if native else "Tunnel [protocol]"
    network_pattern = "Native" if native else r"Tunnel \[\w+\]"
    expected = [
        Expected(
            "host routing",
            "Routing",
            f"Network: {network_pattern} Host: {host}",
            f"Network: {network} Host: {host}",
        ),
        Expected("kube-proxy replacement", "KubeProxyReplacement", rf"{kpr}(\s.*)?", f"{kpr} ..."),
    ]
    if _on(config, "enable-bandwidth-manager"):
        congestion = "BBR" if _on(config, "enable-bbr") else "CUBIC"
        expected.append(
            Expected(
                "bandwidth manager",
                "BandwidthManager",
                rf"EDT with BPF \[{congestion}\] \[.+\]",
                f"EDT with BPF [{congestion}] [devices]",
            )
        )
    else:
        expected.append(Expected("bandwidth manager", "BandwidthManager", "Disabled", "Disabled"))
    # an address family's masquerading counts only where the family is on (pkg/option
    # config.go Populate: EnableIPv6Masquerade = ... && EnableIPv6); the chart writes
    # enable-ipv6-masquerade "true" by default, IPv6 or not
    masquerading = [
        _on(config, f"enable-{family}-masquerade") and _on(config, f"enable-{family}", default)
        for family, default in (("ipv4", "true"), ("ipv6", "false"))
    ]
    if any(masquerading):
        mode = "BPF" if _on(config, "enable-bpf-masquerade") else "IPTables"
        expected.append(Expected("masquerading", "Masquerading", rf"{mode}\b.*", f"{mode} ..."))
    else:
        expected.append(Expected("masquerading", "Masquerading", "Disabled", "Disabled"))
    mode = config.get("datapath-mode", "veth")
    # 1.20 appends the configured mode when it differs (auto): the first word is the one used
    expected.append(Expected("device mode", "Device Mode", rf"{re.escape(mode)}(\s.*)?", mode))
    if _on(config, "enable-wireguard"):
        expected.append(
            Expected(
                "WireGuard",
                "Encryption",
                r"Wireguard \[NodeEncryption: \w+, cilium_wg0 \(Pubkey: \S+, Port: \d+, "
                rf"Peers: {wireguard_peers}\)\]",
                f"Wireguard [..., cilium_wg0 (..., Peers: {wireguard_peers})]",
            )
        )
    else:
        expected.append(Expected("encryption", "Encryption", "Disabled", "Disabled"))
    # cilium.loadBalancerAlgorithm: FormatStatusResponse prints the API model's Maglev (with
    # its table size) or Random
    if kpr == "True" and config.get("bpf-lb-algorithm") == "maglev":
        expected.append(
            Expected(
                "Maglev",
                f"{DETAILS}/Backend Selection",
                r"Maglev \(Table Size: \d+\)",
                "Maglev (Table Size: N)",
            )
        )
    elif kpr == "True" and config.get("bpf-lb-algorithm") == "random":
        expected.append(Expected("random", f"{DETAILS}/Backend Selection", "Random", "Random"))
    # cilium.mapDynamicSizeRatio, as FormatStatusResponse prints it (Go's %f)
    if "bpf-map-dynamic-size-ratio" in config:
        ratio = f"on (ratio: {float(config['bpf-map-dynamic-size-ratio']):f})"
        expected.append(
            Expected("map sizing", "BPF Maps", re.escape(f"dynamic sizing: {ratio}"), ratio)
        )
    if not _on(config, "enable-ipv4-big-tcp"):
        expected.append(Expected("BIG TCP off", "IPv4 BIG TCP", "Disabled", "Disabled"))
    return expected


def differences(status: str, config: Mapping[str, str], agents: int) -> list[str]:
    """What one agent's status shows differently from the config, one line each. Its
    WireGuard peers are the other nodes of this cluster and of the ClusterMesh peers."""
    fields = parse_status(status)
    peers = agents - 1 + remote_nodes(status)
    found = []
    for want in expectations(config, peers):
        value = fields.get(want.key)
        if value is None:
            found.append(f"{want.what}: no `{want.key}:` line (expected {want.shown})")
        elif not re.fullmatch(want.pattern, value):
            found.append(f"{want.what}: `{want.key}: {value}`, expected {want.shown}")
    return found


def check_nodes(env: Mapping[str, str], run: Run) -> bool:
    """Every agent's datapath against the config; prints a line per node, True if all match."""
    config = json.loads(
        run(env, "kubectl", "-n", NAMESPACE, "get", "configmap", CONFIG_MAP, "-o", "json").stdout
    )["data"]
    pods = json.loads(
        run(
            env, "kubectl", "-n", NAMESPACE, "get", "pods", "-l", AGENT_SELECTOR, "-o", "json"
        ).stdout
    )["items"]
    if not pods:
        print("datapath: FAIL no Cilium agent pod in kube-system")
        return False
    ok = True
    for pod in sorted(pods, key=lambda p: p["spec"].get("nodeName", "")):
        node, name = pod["spec"].get("nodeName", "?"), pod["metadata"]["name"]
        proc = run(env, "kubectl", "-n", NAMESPACE, "exec", name, "-c", AGENT_CONTAINER, "--",
                   *STATUS, check=False)  # fmt: skip
        if proc.returncode != 0 or not proc.stdout.strip():
            print(f"datapath: FAIL node {node}: `{' '.join(STATUS)}` in {name} failed: "
                  f"{proc.stderr.strip()[:300]}")  # fmt: skip
            ok = False
            continue
        problems = differences(proc.stdout, config, len(pods))
        if problems:
            ok = False
            print(f"datapath: FAIL node {node} ({name}):")
            for problem in problems:
                print(f"    {problem}")
        else:
            fields = parse_status(proc.stdout)
            shown = ("Routing", "Device Mode", "BandwidthManager")
            print(f"datapath: PASS node {node}: " + "; ".join(f"{k} {fields[k]}" for k in shown))
    return ok
