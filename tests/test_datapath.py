"""scripts/datapath.py: every node's `cilium-dbg status --verbose`, compared with what the
stack asked for (the cilium-config ConfigMap), failing by node name. The status samples
are in tests/fixtures/cilium-status: outputs captured from live agents and published
upstream, and samples built from Cilium's formatting code (its README gives the sources
and says which is which); the ConfigMaps are the real charts' renders of the program's
values (tests/test_cilium_chart.py)."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from scripts import datapath, day2
from tests.test_cilium_chart import chart_values, cilium_config

FIXTURES = Path(__file__).parent / "fixtures" / "cilium-status"


def sample(name: str) -> str:
    return (FIXTURES / name).read_text()


@pytest.fixture(scope="module")
def configs(reference) -> dict[str, dict[str, str]]:
    """cilium-config as the charts render the program's values, by case."""
    return {
        "veth": cilium_config(reference, "1.19.6", chart_values("veth")),
        "netkit": cilium_config(reference, "1.20.0", chart_values("netkit")),
        "kpr-off": cilium_config(
            reference, "1.20.0", chart_values("veth", {"kubeProxyReplacement": False})
        ),
    }


# --- reading the status -----------------------------------------------------------------------


def test_the_lines_are_read_as_a_person_reads_them():
    fields = datapath.parse_status(sample("1.19.6-veth-tuned.txt"))
    # the words, whatever the tabwriter's padding
    assert fields["Routing"] == "Network: Native Host: BPF"
    assert fields["BandwidthManager"] == "EDT with BPF [BBR] [ens5, ens6]"
    assert fields["Device Mode"] == "veth"
    assert fields["Masquerading"] == "Disabled"
    assert fields["KubeProxyReplacement"].startswith("True [ens5 10.0.17.42")
    assert fields["KubeProxyReplacement Details/Backend Selection"] == "Maglev (Table Size: 16381)"
    assert fields["Encryption"].endswith("Port: 51871, Peers: 1)]")
    # sub-lines of other sections (allocated addresses, maps, controllers) are not fields
    assert "10.0.17.101 (router)" not in fields and "Name" not in fields


def test_a_remote_cluster_s_nodes_are_counted():
    assert datapath.remote_nodes(sample("1.19.6-mesh.txt")) == 2
    assert datapath.remote_nodes(sample("1.19.6-veth-tuned.txt")) == 0


# --- against the rendered config ------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "case", "agents"),
    [
        ("1.19.6-veth-tuned.txt", "veth", 2),
        ("1.20.0-netkit-tuned.txt", "netkit", 3),
        ("1.20.0-kpr-off.txt", "kpr-off", 2),
        ("1.19.6-mesh.txt", "veth", 2),  # 1 local peer + 2 remote nodes = 3 peers
    ],
)
def test_a_node_as_configured_passes(configs, status, case, agents):
    assert datapath.differences(sample(status), configs[case], agents) == []


def test_a_node_that_fell_back_to_legacy_routing_fails_on_each_line(configs):
    found = datapath.differences(sample("1.19.6-legacy-fallback.txt"), configs["veth"], 2)
    assert [line.split(":")[0] for line in found] == [
        "host routing",
        "bandwidth manager",
        "masquerading",
    ]
    assert (
        "`Routing: Network: Native Host: Legacy`, expected Network: Native Host: BPF" in (found[0])
    )


def test_veth_where_netkit_was_asked_fails_on_the_device_mode(configs):
    found = datapath.differences(sample("1.19.6-veth-tuned.txt"), configs["netkit"], 2)
    assert found == ["device mode: `Device Mode: veth`, expected netkit"]


def test_a_missing_wireguard_peer_fails(configs):
    # three agents, but the node has one peer: a node is outside the mesh of tunnels
    found = datapath.differences(sample("1.19.6-veth-tuned.txt"), configs["veth"], 3)
    assert len(found) == 1 and found[0].startswith("WireGuard: `Encryption: Wireguard [")
    assert "Peers: 2" in found[0]


def test_the_tuned_node_is_not_what_kpr_off_asks_for(configs):
    # kube-proxy replacement off asks for legacy routing and no bandwidth manager
    found = datapath.differences(sample("1.19.6-veth-tuned.txt"), configs["kpr-off"], 2)
    assert {line.split(":")[0] for line in found} == {
        "host routing",
        "kube-proxy replacement",
        "bandwidth manager",
    }


@pytest.mark.parametrize(
    ("line", "replacement", "what"),
    [
        ("Host: BPF", "Host: Legacy", "host routing"),
        ("[BBR]", "[CUBIC]", "bandwidth manager"),
        ("Device Mode:            veth", "Device Mode:            netkit", "device mode"),
        ("Masquerading:           Disabled", "Masquerading:           BPF", "masquerading"),
        ("KubeProxyReplacement:   True", "KubeProxyReplacement:   False", "kube-proxy replacement"),
        ("Peers: 1)", "Peers: 0)", "WireGuard"),
        ("Maglev (Table Size: 16381)", "Random", "Maglev"),
        ("IPv4 BIG TCP:           Disabled", "IPv4 BIG TCP:           Enabled", "BIG TCP off"),
        ("Routing:                Network", "Routing (old):          Network", "host routing"),
    ],
)
def test_each_line_that_differs_is_named(configs, line, replacement, what):
    text = sample("1.19.6-veth-tuned.txt")
    assert line in text
    found = datapath.differences(text.replace(line, replacement, 1), configs["veth"], 2)
    assert [f.split(":")[0] for f in found] == [what]


def test_without_wireguard_encryption_must_read_disabled():
    config = {"enable-wireguard": "false", "kube-proxy-replacement": "true"}
    [wanted] = [e for e in datapath.expectations(config, 1) if e.key == "Encryption"]
    assert wanted.pattern == "Disabled"


def test_ipv6_masquerading_counts_only_with_ipv6():
    # the chart writes enable-ipv6-masquerade "true" by default; the agent ignores it
    # without IPv6 (pkg/option config.go Populate)
    config = {"enable-ipv4-masquerade": "false", "enable-ipv6-masquerade": "true"}
    [wanted] = [e for e in datapath.expectations(config, 1) if e.key == "Masquerading"]
    assert wanted.pattern == "Disabled"
    config["enable-ipv6"] = "true"
    [wanted] = [e for e in datapath.expectations(config, 1) if e.key == "Masquerading"]
    assert wanted.shown == "IPTables ..."


# --- every node, through kubectl --------------------------------------------------------------


class FakeKubectl:
    """`run` for day2/datapath: answers kubectl as a cluster of agents would, and records."""

    def __init__(self, config: dict[str, str], statuses: dict[str, str]):
        self.config, self.statuses, self.calls = config, statuses, []

    def __call__(self, env, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        self.calls.append(args)
        out: Any = ""
        if "configmap" in args:
            out = json.dumps({"data": self.config})
        elif "pods" in args:
            out = json.dumps({"items": [
                {"metadata": {"name": f"cilium-{i}"}, "spec": {"nodeName": node}}
                for i, node in enumerate(self.statuses)
            ]})  # fmt: skip
        elif "exec" in args:
            pod = args[args.index("exec") + 1]
            node = list(self.statuses)[int(pod.split("-")[1])]
            out = self.statuses[node]
        elif args[1:3] == ("get", "cronjobs"):
            out = json.dumps({"items": [{"metadata": {"namespace": "starwars", "name": "c"}}]})
        elif "get" in args and "job" in args:
            out = json.dumps({"status": {"conditions": [{"type": "Complete", "status": "True"}]}})
        elif "logs" in args:
            out = "PASS tiefighter-request-landing: landed"
        return subprocess.CompletedProcess(args, 0, out, "")


def failed_check(kubectl: FakeKubectl) -> list[str]:
    """The lines `make verify`'s datapath check prints, on nodes where it must fail."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert datapath.check_nodes({}, kubectl) is False
    return out.getvalue().splitlines()


def test_every_node_is_read_and_the_one_that_differs_is_named(configs):
    kubectl = FakeKubectl(configs["veth"], {
        "ip-10-0-17-42.ap-northeast-2.compute.internal": sample("1.19.6-veth-tuned.txt"),
        "ip-10-0-33-9.ap-northeast-2.compute.internal": sample("1.19.6-legacy-fallback.txt"),
    })  # fmt: skip
    lines = failed_check(kubectl)
    assert lines[0].startswith("datapath: PASS node ip-10-0-17-42.ap-northeast-2")
    failing = "ip-10-0-33-9.ap-northeast-2.compute.internal"
    assert lines[1] == f"datapath: FAIL node {failing} (cilium-1):"
    assert "host routing" in lines[2]
    execs = [c for c in kubectl.calls if "exec" in c]
    assert [c[c.index("--") + 1 :] for c in execs] == [datapath.STATUS, datapath.STATUS]
    assert all(c[c.index("-c") + 1] == "cilium-agent" for c in execs)


def test_make_verify_fails_on_a_node_s_datapath_even_when_the_checks_pass(configs, monkeypatch):
    kubectl = FakeKubectl(configs["veth"], {
        "node-a": sample("1.19.6-veth-tuned.txt"),
        "node-b": sample("1.19.6-legacy-fallback.txt"),
    })  # fmt: skip
    monkeypatch.setattr(day2, "run", kubectl)
    monkeypatch.setattr(day2.time, "sleep", lambda _: None)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert day2.verify({}) == 1
    assert "datapath: FAIL node node-b" in out.getvalue()
    assert "PASS tiefighter-request-landing" in out.getvalue()  # the checks ran all the same
    assert out.getvalue().rstrip().endswith("differs from the config (datapath: above)")


def test_make_verify_passes_when_every_node_is_as_configured(configs, monkeypatch):
    kubectl = FakeKubectl(configs["veth"], {
        "node-a": sample("1.19.6-veth-tuned.txt"), "node-b": sample("1.19.6-veth-tuned.txt"),
    })  # fmt: skip
    monkeypatch.setattr(day2, "run", kubectl)
    monkeypatch.setattr(day2.time, "sleep", lambda _: None)
    with contextlib.redirect_stdout(io.StringIO()):
        assert day2.verify({}) == 0


def test_an_agent_that_does_not_answer_fails_naming_its_node(configs):
    kubectl = FakeKubectl(configs["veth"], {"node-a": ""})
    (line,) = failed_check(kubectl)
    assert line.startswith(
        "datapath: FAIL node node-a: `cilium-dbg status --verbose` in cilium-0 failed"
    )


# --- captured from live agents (the README names each source) --------------------------------

CAPTURED_NETKIT = "captured-1.18.4-netkit.txt"  # 3 nodes, native, BPF host routing, BPF masq
CAPTURED_EKS = "captured-1.18.2-eks-eni-wireguard.txt"  # 3 EKS nodes in ENI mode, 2 lines


def test_a_captured_status_is_read_as_a_person_reads_it():
    # the values as they stand in the capture, read by eye; 1.18 pads its columns wider
    # ("Ok         1.34", "Ok              Current/Max Flows") than the built samples
    fields = datapath.parse_status(sample(CAPTURED_NETKIT))
    assert fields["Routing"] == "Network: Native Host: BPF"
    assert fields["BandwidthManager"] == "EDT with BPF [BBR] [eth0]"
    assert fields["Device Mode"] == "netkit"
    assert fields["Masquerading"] == "BPF [eth0] 10.100.0.0/16 [IPv4: Enabled, IPv6: Disabled]"
    assert fields["KubeProxyReplacement"] == (
        "True [eth0 192.168.95.210 fe80::be24:11ff:fecd:f514 (Direct Routing)]"
    )
    assert fields["Encryption"] == "Disabled"
    assert fields["IPv4 BIG TCP"] == "Disabled"
    assert fields["Cilium"] == "Ok 1.18.4 (v1.18.4-afda2aa9)"
    # `cilium status` without --verbose: no details section, so no backend selection
    assert not any(key.startswith(datapath.DETAILS) for key in fields)


def test_a_captured_eks_wireguard_line_is_read_whole():
    fields = datapath.parse_status(sample(CAPTURED_EKS))
    assert fields["Encryption"] == (
        "Wireguard [NodeEncryption: Enabled, cilium_wg0 (Pubkey: "
        "Eks3PpUisGSGZtffol0SM9YKqAJcgIww8PpHoQKVXEY=, Port: 51871, Peers: 2)]"
    )
    assert fields["KubeProxyReplacement"].startswith(
        "True [eth0 10.0.18.223 fe80::57:c9ff:fe92:4aa1 (Direct Routing), pod-id-link0 "
    )


def as_captured(config: dict[str, str]) -> dict[str, str]:
    """The rendered netkit config with the settings the captured cluster chose otherwise:
    BPF masquerading, no encryption (it shows `Masquerading: BPF`, `Encryption: Disabled`);
    and without what plain `cilium status` (no --verbose) does not print, so that nothing
    can be held against it: the backend selection and the map sizing."""
    config = {
        **config,
        "enable-ipv4-masquerade": "true",
        "enable-bpf-masquerade": "true",
        "enable-wireguard": "false",
    }
    del config["bpf-lb-algorithm"], config["bpf-map-dynamic-size-ratio"]
    return config


def test_a_captured_node_passes_against_the_config_it_ran(configs):
    config = as_captured(configs["netkit"])
    assert datapath.differences(sample(CAPTURED_NETKIT), config, 3) == []


def test_a_captured_node_fails_against_this_stack_s_config_on_each_line(configs):
    found = datapath.differences(sample(CAPTURED_NETKIT), configs["netkit"], 3)
    # and, without --verbose, the lines it does not print: Maglev's, the map sizing
    expected = ["masquerading", "WireGuard", "Maglev", "map sizing"]
    assert [line.split(":")[0] for line in found] == expected
    assert found[0] == (
        "masquerading: `Masquerading: BPF [eth0] 10.100.0.0/16 [IPv4: Enabled, IPv6: Disabled]`"
        ", expected Disabled"
    )


def test_a_captured_node_is_named_where_it_differs(configs):
    kubectl = FakeKubectl(configs["netkit"], {
        "ip-10-0-17-42.ap-northeast-2.compute.internal": sample("1.20.0-netkit-tuned.txt"),
        "talos-captured": sample(CAPTURED_NETKIT),
        "ip-10-0-49-7.ap-northeast-2.compute.internal": sample("1.20.0-netkit-tuned.txt"),
    })  # fmt: skip
    lines = failed_check(kubectl)
    assert lines[0].startswith("datapath: PASS node ip-10-0-17-42.ap-northeast-2")
    assert lines[1].startswith("datapath: PASS node ip-10-0-49-7.ap-northeast-2")
    assert lines[2] == "datapath: FAIL node talos-captured (cilium-1):"
    assert [line.split(":")[0].strip() for line in lines[3:]] == [
        "masquerading",
        "WireGuard",
        "Maglev",
        "map sizing",
    ]


@pytest.mark.parametrize("agents", [2, 3, 4])
def test_the_captured_eks_wireguard_peers_count_against_the_agents(configs, agents):
    # the capture's cluster ran 3 agents (its `cilium status`: Desired: 3, Ready: 3/3)
    found = datapath.differences(sample(CAPTURED_EKS), configs["veth"], agents)
    checked = [f for f in found if f.startswith(("WireGuard", "kube-proxy replacement"))]
    if agents == 3:
        assert checked == []
    else:
        assert len(checked) == 1 and checked[0].startswith("WireGuard: `Encryption: Wireguard [")
        assert f"Peers: {agents - 1})" in checked[0]


# --- the tuning keys, each off: what `make verify` then expects ---------------------------------

TUNED_STATUS = "1.19.6-veth-tuned.txt"
BANDWIDTH_LINE = "BandwidthManager:       EDT with BPF [BBR] [ens5, ens6]"


@pytest.fixture(scope="module")
def off(reference) -> dict[str, dict[str, str]]:
    """cilium-config as chart 1.19.6 renders the program's values with a tuning key off."""
    keys = {
        "bandwidthManager": {"bandwidthManager": False, "bbr": False},
        "bbr": {"bbr": False},
        "loadBalancerAlgorithm": {"loadBalancerAlgorithm": "random"},
        "mapDynamicSizeRatio": {"mapDynamicSizeRatio": 0.0025},
    }
    return {k: cilium_config(reference, "1.19.6", chart_values("veth", v)) for k, v in keys.items()}


@pytest.mark.parametrize(
    ("key", "line", "as_asked", "expected"),
    [
        # pkg/client FormatStatusResponse: "Disabled" without the bandwidth manager, else
        # "EDT with BPF [<congestion control, upper case>] [<devices>]"
        (
            "bandwidthManager",
            BANDWIDTH_LINE,
            "BandwidthManager:       Disabled",
            "bandwidth manager: `BandwidthManager: EDT with BPF [BBR] [ens5, ens6]`, expected "
            "Disabled",
        ),
        (
            "bbr",
            BANDWIDTH_LINE,
            "BandwidthManager:       EDT with BPF [CUBIC] [ens5, ens6]",
            "bandwidth manager: `BandwidthManager: EDT with BPF [BBR] [ens5, ens6]`, expected "
            "EDT with BPF [CUBIC] [devices]",
        ),
        # the API model's Random (Maglev alone carries its table size)
        (
            "loadBalancerAlgorithm",
            "Maglev (Table Size: 16381)",
            "Random",
            "random: `KubeProxyReplacement Details/Backend Selection: Maglev (Table Size: "
            "16381)`, expected Random",
        ),
        # "on (ratio: %f)"
        (
            "mapDynamicSizeRatio",
            "ratio: 0.080000",
            "ratio: 0.002500",
            "map sizing: `BPF Maps: dynamic sizing: on (ratio: 0.080000)`, expected on (ratio: "
            "0.002500)",
        ),
    ],
)
def test_a_tuning_turned_off_is_expected_off_on_every_node(off, key, line, as_asked, expected):
    tuned = sample(TUNED_STATUS)
    assert line in tuned
    # a node still tuned differs from the config, on that line alone
    assert datapath.differences(tuned, off[key], 2) == [expected]
    # a node as asked passes
    assert datapath.differences(tuned.replace(line, as_asked, 1), off[key], 2) == []


def test_the_tuned_config_expects_the_map_ratio_it_asks_for(configs):
    # the default's 0.08, as every sample shows it; another ratio on a node is named
    text = sample(TUNED_STATUS)
    assert datapath.differences(text, configs["veth"], 2) == []
    found = datapath.differences(
        text.replace("ratio: 0.080000", "ratio: 0.002500"), configs["veth"], 2
    )
    assert [f.split(":")[0] for f in found] == ["map sizing"]
