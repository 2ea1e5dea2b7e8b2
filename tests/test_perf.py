"""scripts/perf.py (`make perf`): netperf between pods, its report and the comparison of two.

The netperf output is real: netperf 2.7.0 (Debian's, the version in Cilium's network-perf
image) on this machine's loopback, run with the command perf.py sends (the fixtures' README
says how). The cluster is a fake `kubectl` that answers as one would."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from scripts import day2, perf

NETPERF = Path(__file__).parent / "fixtures" / "netperf"


def captured(name: str) -> str:
    return (NETPERF / name).read_text()


# --- one netperf run ----------------------------------------------------------------------


def test_tcp_rr_gives_the_latency_percentiles_and_the_transaction_rate():
    assert perf.parse_netperf(captured("tcp_rr.txt"), "TCP_RR") == {
        "mean_us": 20.16,
        "p50_us": 19.0,
        "p90_us": 22.0,
        "p99_us": 33.0,
        "transactions_per_s": 49458.727,
    }


def test_tcp_stream_gives_the_throughput_in_megabits():
    assert perf.parse_netperf(captured("tcp_stream.txt"), "TCP_STREAM") == {
        "throughput_mbps": 9146.13
    }


def test_the_fixtures_were_made_with_the_selectors_perf_sends():
    # netperf names the columns it was asked for, in order, on the line above the result
    header = captured("tcp_rr.txt").splitlines()[1].split(",")
    names = [
        "Minimum Latency",
        "Mean Latency",
        "Maximum Latency",
        "50th Percentile Latency",
        "90th Percentile Latency",
        "99th Percentile Latency",
        "Transaction Rate",
        "Throughput",
        "Throughput Units",
    ]
    assert len(header) == len(perf.SELECTORS.split(",")) == len(names)
    assert all(column.startswith(name) for column, name in zip(header, names, strict=True))
    command = perf.netperf_command("10.0.1.2", "TCP_RR", 10)
    # cilium-cli's NetperfCmd: -R 1 (routing allowed), then -o and its 9 selectors
    assert command[command.index("--") :] == ["--", "-R", "1", "-o", perf.SELECTORS]


def test_no_netserver_is_an_error_that_shows_netperf_s_own_words():
    with pytest.raises(perf.PerfError, match="are you sure there is a netserver listening"):
        perf.parse_netperf(captured("no_netserver.txt"), "TCP_RR")


def test_a_stream_result_in_other_units_is_refused():
    # a request/response line read as a stream: Trans/s is not a throughput in 10^6bits/s
    with pytest.raises(perf.PerfError, match="not 10\\^6bits/s"):
        perf.parse_netperf(captured("tcp_rr.txt"), "TCP_STREAM")


# --- the run on a cluster -------------------------------------------------------------------

CONFIG = {
    "datapath-mode": "veth",
    "enable-host-legacy-routing": "false",
    "enable-bbr": "true",
    "kube-proxy-replacement": "true",
    "cluster-name": "cilium-eks-dev",  # not a datapath setting: not in the report
}
CILIUM = "quay.io/cilium/cilium:v1.19.6@sha256:" + "5ad5e1b3" * 8


def node(name: str, zone: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {"topology.kubernetes.io/zone": zone,
                                              "node.kubernetes.io/instance-type": "t3.medium"}},
        "status": {"conditions": [{"type": "Ready", "status": "True"}],
                   "nodeInfo": {"kernelVersion": "6.12.40-63.114.amzn2023.x86_64"}},
    }  # fmt: skip


class FakeCluster:
    """`day2.run` for perf.py: answers kubectl, keeps the manifests applied and the calls."""

    def __init__(self, cilium_image: str = CILIUM, nodes: list[dict[str, Any]] | None = None):
        self.cilium_image = cilium_image
        self.nodes = nodes or [node("ip-10-0-17-50", "ap-northeast-2b"),
                               node("ip-10-0-17-42", "ap-northeast-2a"),
                               node("ip-10-0-18-7", "ap-northeast-2a")]  # fmt: skip
        self.calls: list[tuple[str, ...]] = []
        self.applied: list[dict[str, Any]] = []
        self.refusals = 0  # control connections refused before netserver listens

    def __call__(self, env, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        self.calls.append(args)
        out: Any = ""
        if args[:2] == ("pulumi", "stack") and "--show-name" in args:
            # the CLI: the selected stack's bare name, org/project/stack with -Q
            out = "acme/cilium-eks/prod" if "--fully-qualify-stack-names" in args else "prod"
        elif "configmap" in args:
            out = {"data": CONFIG}
        elif "daemonset" in args:
            out = {"spec": {"template": {"spec": {"containers": [{"image": self.cilium_image}]}}}}
        elif args[1:3] == ("get", "nodes"):
            out = {"items": self.nodes}
        elif "apply" in args:
            self.applied = json.loads(Path(args[args.index("-f") + 1]).read_text())["items"]
        elif "get" in args and "netserver" in args:
            out = {"status": {"podIP": "10.0.17.200"}}
        elif "exec" in args:
            if self.refusals:
                self.refusals -= 1
                return subprocess.CompletedProcess(args, 255, "", captured("no_netserver.txt"))
            test = args[args.index("-t") + 1].lower()
            other = args[args.index("exec") + 1] == "client-other-node"
            out = captured(f"{test}{'_2' if other else ''}.txt")
        text = out if isinstance(out, str) else json.dumps(out)
        return subprocess.CompletedProcess(args, 0, text, "")


@pytest.fixture
def cluster(monkeypatch, tmp_path):
    fake = FakeCluster()
    monkeypatch.setattr(day2, "run", fake)
    monkeypatch.setattr(day2, "missing", lambda env: [])
    monkeypatch.setattr(day2, "kubeconfig", lambda env, stack: contextlib.nullcontext(env))
    monkeypatch.setattr(perf, "REPORTS", tmp_path / "reports")
    monkeypatch.setattr(perf.time, "sleep", lambda _: None)
    return fake


def run_perf(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = perf.main(list(argv), {})
    return code, out.getvalue(), err.getvalue()


def test_a_run_writes_a_report_with_the_datapath_settings_beside_the_numbers(cluster, tmp_path):
    code, out, err = run_perf("run", "--stack", "dev", "--duration", "3")
    assert code == 0, err
    (path,) = (tmp_path / "reports").glob("dev-veth-*.json")
    report = json.loads(path.read_text())
    assert report["settings"] == {k: v for k, v in CONFIG.items() if k != "cluster-name"}
    assert report["nodes"]["server"] == {"name": "ip-10-0-17-42", "zone": "ap-northeast-2a",
                                         "instanceType": "t3.medium",
                                         "kernel": "6.12.40-63.114.amzn2023.x86_64"}  # fmt: skip
    # across nodes in the same AZ when there is one: cross-AZ latency is the VPC's, not Cilium's
    assert report["nodes"]["other"]["name"] == "ip-10-0-18-7"
    assert perf.numbers(report) == {
        "same-node": {"mean_us": 20.16, "p50_us": 19.0, "p90_us": 22.0, "p99_us": 33.0,
                      "transactions_per_s": 49458.727, "throughput_mbps": 9146.13},
        "other-node": {"mean_us": 22.6, "p50_us": 20.0, "p90_us": 28.0, "p99_us": 44.0,
                       "transactions_per_s": 44112.171, "throughput_mbps": 8601.39},
    }  # fmt: skip
    assert "same-node" in out and "19/22/33" in out and "9146 Mbit/s" in out
    assert out.rstrip().endswith(f"report: {path}")


def test_without_stack_it_measures_the_selected_stack_by_its_qualified_name(
    cluster, monkeypatch, tmp_path
):
    reached = []

    def kubeconfig(env, stack):
        reached.append(stack)
        return contextlib.nullcontext(env)

    monkeypatch.setattr(day2, "kubeconfig", kubeconfig)
    code, _, err = run_perf("run", "--duration", "3")
    assert code == 0, err
    assert reached == ["acme/cilium-eks/prod"]  # not `prod`, which may be another org's
    (path,) = (tmp_path / "reports").glob("*.json")
    assert path.name.startswith("prod-veth-")  # the stack's name, no org/project folders
    assert json.loads(path.read_text())["stack"] == "acme/cilium-eks/prod"


def test_the_pods_run_cilium_s_image_by_digest_on_the_chosen_nodes(cluster):
    run_perf("run")
    pods = {o["metadata"]["name"]: o["spec"] for o in cluster.applied if o["kind"] == "Pod"}
    assert pods["netserver"]["nodeName"] == pods["client-same-node"]["nodeName"] == "ip-10-0-17-42"
    assert pods["client-other-node"]["nodeName"] == "ip-10-0-18-7"
    images = {spec["containers"][0]["image"] for spec in pods.values()}
    assert images == {f"quay.io/{perf.IMAGE_PATH}"} and "@sha256:" in perf.IMAGE_PATH
    # they end by themselves if perf is stopped before it deletes them
    assert all(spec["activeDeadlineSeconds"] for spec in pods.values())
    execs = [c for c in cluster.calls if "exec" in c]
    assert [c[c.index("-t") + 1] for c in execs] == ["TCP_RR", "TCP_STREAM"] * 2
    assert all(c[c.index("-l") + 1] == "10" for c in execs)  # the default duration


def test_the_namespace_is_deleted_even_when_netperf_fails(cluster):
    cluster.refusals = 99  # netserver never listens
    code, _, err = run_perf("run")
    assert code == 1 and "are you sure there is a netserver listening" in err
    assert cluster.calls[-1][:3] == ("kubectl", "delete", "namespace")
    assert len([c for c in cluster.calls if "exec" in c]) == perf.CONTROL_ATTEMPTS


def test_a_netserver_not_listening_yet_is_waited_for(cluster):
    cluster.refusals = 1
    assert run_perf("run")[0] == 0


def test_through_the_image_cache_the_image_is_imported_by_tag_first(cluster, monkeypatch):
    cluster.cilium_image = (
        "123456789012.dkr.ecr.ap-northeast-2.amazonaws.com/cilium-eks-dev-quay/cilium/cilium:"
        "v1.19.6@sha256:5ad5"
    )
    warmed = []

    def warm(ecr, account, prefix, images):
        warmed.append((account, prefix, images))

    monkeypatch.setattr("components.aws_api.warm", warm)
    monkeypatch.setattr("components.aws_api.aws_client", lambda service, region: (service, region))
    assert run_perf("run")[0] == 0
    assert warmed == [("123456789012", "cilium-eks-dev-quay",
                       [("cilium/network-perf", "3.21-1782913202-88c270c")])]  # fmt: skip
    mirror = "123456789012.dkr.ecr.ap-northeast-2.amazonaws.com/cilium-eks-dev-quay"
    pods = [o for o in cluster.applied if o["kind"] == "Pod"]
    assert {p["spec"]["containers"][0]["image"] for p in pods} == {f"{mirror}/{perf.IMAGE_PATH}"}


def test_one_node_gives_same_node_numbers_only(cluster):
    cluster.nodes = cluster.nodes[:1]
    code, out, _ = run_perf("run")
    assert code == 0 and "one node only" in out
    assert not [c for c in cluster.calls if "client-other-node" in c]


# --- comparing two reports ------------------------------------------------------------------


def report(mode: str, rr: str, stream: str) -> dict[str, Any]:
    results = [
        {"scenario": "same-node", "test": "TCP_RR", **perf.parse_netperf(captured(rr), "TCP_RR")},
        {"scenario": "same-node", "test": "TCP_STREAM",
         **perf.parse_netperf(captured(stream), "TCP_STREAM")},
    ]  # fmt: skip
    return {"stack": "dev", "started": "2026-07-21T09:00:00Z", "seconds": 10,
            "settings": {"datapath-mode": mode, "enable-bbr": "true"},
            "nodes": {"server": {"name": "ip-10-0-17-42", "instanceType": "t3.medium"}},
            "results": results}  # fmt: skip


def test_compare_shows_each_change_and_which_way_is_better(tmp_path):
    before = tmp_path / "before.json"
    after = tmp_path / "after.json"
    before.write_text(json.dumps(report("veth", "tcp_rr.txt", "tcp_stream.txt")))
    after.write_text(json.dumps(report("netkit", "tcp_rr_2.txt", "tcp_stream_2.txt")))
    code, out, _ = run_perf("compare", str(before), str(after))
    assert code == 0
    rows = {" ".join(line.split()[:2]): line.split()[2:] for line in out.splitlines()}
    assert rows["same-node p99_us"] == ["(µs)", "33", "44", "+33.3%", "worse"]  # latency up
    assert rows["same-node p50_us"] == ["(µs)", "19", "20", "+5.3%", "worse"]
    assert rows["same-node throughput_mbps"] == ["(Mbit/s)", "9146.13", "8601.39", "-6.0%", "worse"]
    # what the numbers compare: the setting that differs
    assert 'setting datapath-mode: "veth" -> "netkit"' in out
    assert "enable-bbr" not in out


def test_compare_says_better_when_latency_drops(tmp_path):
    before = tmp_path / "a.json"
    after = tmp_path / "b.json"
    before.write_text(json.dumps(report("veth", "tcp_rr_2.txt", "tcp_stream_2.txt")))
    after.write_text(json.dumps(report("veth", "tcp_rr.txt", "tcp_stream.txt")))
    out = run_perf("compare", str(before), str(after))[1]
    assert "-25.0% better" in out  # p99 44 -> 33
    assert "setting" not in out


def test_compare_refuses_a_file_that_is_not_a_report(tmp_path):
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"items": []}))
    code, _, err = run_perf("compare", str(other), str(other))
    assert code == 1 and "not a `make perf` report" in err
