"""The ordering rules that make a real `pulumi up` succeed, and `pulumi destroy` in reverse.

cluster -> aws-node and kube-proxy off -> Cilium release (applied, not awaited) -> node
group -> CoreDNS -> checks; NAT and VPC endpoints only before nodes; the ENI sweeper
between the cluster and everything that runs Cilium. Every rule is checked on the
transitive dependency graph, so it holds however the edges are spelled.
"""

from __future__ import annotations

import pytest

from tests.harness import Graph, run_ok

CLUSTER = "eks:index:Cluster"
PATCH = "kubernetes:apps/v1:DaemonSetPatch"
RELEASE = "kubernetes:helm.sh/v3:Release"
NODE_GROUP = "eks:index:ManagedNodeGroup"
SWEEPER = "pulumi-python:dynamic:EniSweeper"
ADDON = "aws:eks/addon:Addon"
JOB = "kubernetes:batch/v1:Job"
ENDPOINT = "aws:ec2/vpcEndpoint:VpcEndpoint"


@pytest.mark.parametrize("daemonset", ["aws-node", "kube-proxy"])
def test_bootstrap_daemonsets_are_off_before_cilium_and_before_any_node(dev, daemonset):
    patch = dev.one(PATCH, daemonset)
    assert dev.waits_for(patch, dev.one(CLUSTER))
    # a node that boots before kube-proxy is off would depend on it to reach the API
    # server (cilium/cilium #28807); one that boots before aws-node is off gets its IPs
    assert dev.waits_for(dev.one(RELEASE), patch)
    assert dev.waits_for(dev.one(NODE_GROUP), patch)


def test_cilium_release_waits_for_the_operators_permissions(dev):
    release = dev.one(RELEASE)
    assert dev.waits_for(release, dev.one("aws:iam/rolePolicy:RolePolicy", "operator-eni"))


def test_node_group_waits_for_the_cilium_release(dev):
    assert dev.waits_for(dev.one(NODE_GROUP), dev.one(RELEASE))


def test_node_group_waits_for_nat_egress(dev):
    ng = dev.one(NODE_GROUP)
    assert dev.waits_for(ng, dev.one("aws:ec2/natGateway:NatGateway"))
    for assoc in dev.of_type("aws:ec2/routeTableAssociation:RouteTableAssociation"):
        assert dev.waits_for(ng, assoc)


def test_node_group_waits_for_the_vpc_endpoints_it_resolves_to():
    graph = run_ok({"network.vpcEndpoints": True})
    endpoints = graph.of_type(ENDPOINT)
    assert endpoints
    for endpoint in endpoints:
        assert graph.waits_for(graph.one(NODE_GROUP), endpoint)
        # and the control plane does not wait for them (minutes each)
        assert not graph.waits_for(graph.one(CLUSTER), endpoint)


def test_no_deadlock_between_release_and_nodes(dev):
    release, ng = dev.one(RELEASE), dev.one(NODE_GROUP)
    # Nodes become Ready only with a CNI: the release must neither wait for nodes nor
    # for its own pods (which need nodes).
    assert not dev.waits_for(release, ng)
    assert release.inputs["skipAwait"] is True
    for patch in dev.of_type(PATCH):
        assert not dev.waits_for(patch, ng)


def test_coredns_is_an_addon_after_the_nodes_and_before_the_checks(dev):
    coredns = dev.one(ADDON, "coredns")
    assert dev.waits_for(coredns, dev.one(NODE_GROUP))  # with no node it sits DEGRADED
    for job in dev.of_type(JOB):
        assert dev.waits_for(job, coredns)


def test_the_eni_sweep_runs_on_destroy_after_cilium_and_the_nodes_and_before_the_network(dev):
    # Destroy deletes a resource only after everything that depends on it: so the node
    # group and the release go first, then the sweeper (its delete is the sweep), then
    # the cluster, the private subnets and the VPC it depends on.
    sweeper = dev.one(SWEEPER)
    assert dev.waits_for(dev.one(NODE_GROUP), sweeper)
    assert dev.waits_for(dev.one(RELEASE), sweeper)
    assert dev.waits_for(sweeper, dev.one(CLUSTER))
    assert dev.waits_for(sweeper, dev.one("aws:ec2/vpc:Vpc"))
    private = [
        s
        for s in dev.of_type("aws:ec2/subnet:Subnet")
        if s.inputs["tags"].get("kubernetes.io/role/internal-elb") == "1"
    ]
    assert private and all(dev.waits_for(sweeper, s) for s in private)
    # and it records what its delete needs: where to sweep, and whose ENIs
    inputs = sweeper.inputs
    assert (inputs["region"], inputs["vpc_id"], inputs["cluster_name"]) == (
        "ap-northeast-2",
        "vpc-id",
        "cilium-eks-dev",
    )
    assert sorted(inputs["subnet_ids"]) == dev.subnet_ids("private")


NAT_PATH = {
    "aws:ec2/natGateway:NatGateway",
    "aws:ec2/eip:Eip",
    "aws:ec2/internetGateway:InternetGateway",
    "aws:ec2/routeTable:RouteTable",
    "aws:ec2/routeTableAssociation:RouteTableAssociation",
    ENDPOINT,
}


def test_nothing_before_the_nodes_waits_for_nat_routes_or_endpoints():
    # NAT gateways and endpoints take minutes; only nodes (pulling images, joining) need them.
    graph = run_ok({"network.vpcEndpoints": True})
    slow = {r.urn for r in graph.resources if r.type in NAT_PATH}
    before_nodes = [graph.one(CLUSTER), *graph.of_type(PATCH), graph.one(RELEASE)]
    for res in [*before_nodes, graph.one(SWEEPER)]:
        assert not graph.upstream(res) & slow, res.type


# --- the critical path of `pulumi up` ----------------------------------------------------

# Rough minutes each step takes on a real `pulumi up` (EKS control plane ~10, a managed
# node group ~4 with Cilium starting on it, a NAT gateway ~2, ...); everything unlisted
# takes seconds. The model is for comparisons, not predictions.
MINUTES = {
    CLUSTER: 10.0,
    NODE_GROUP: 4.0,
    "aws:ec2/natGateway:NatGateway": 2.0,
    ENDPOINT: 2.0,
    ADDON: 1.0,
    JOB: 2.0,
    RELEASE: 0.5,
}


def critical_path(graph: Graph) -> tuple[float, list[str]]:
    """The longest chain of waits to the end of `pulumi up`, and its resources' types."""
    finish: dict[str, tuple[float, list[str]]] = {}

    def done(urn: str) -> tuple[float, list[str]]:
        if urn not in finish:
            res = graph.by_urn[urn]
            start, chain = max(
                (done(dep) for dep in graph.direct(res) if dep in graph.by_urn),
                default=(0.0, []),
            )
            custom = res.custom or res.remote
            finish[urn] = (
                start + MINUTES.get(res.type, 0.05 if custom else 0.0),
                [*chain, res.type],
            )
        return finish[urn]

    return max(done(r.urn) for r in graph.resources)


def test_the_critical_path_runs_cluster_cilium_nodes_dns_checks(dev):
    minutes, chain = critical_path(dev)
    on_path = [t for t in chain if t in MINUTES]
    assert on_path == [CLUSTER, RELEASE, NODE_GROUP, ADDON, JOB]
    assert minutes < 20


def test_kube_proxy_replacement_and_prefix_delegation_do_not_lengthen_pulumi_up(dev):
    off = run_ok({"cilium.kubeProxyReplacement": False, "cilium.prefixDelegation": False})
    assert critical_path(dev)[0] == pytest.approx(critical_path(off)[0])
