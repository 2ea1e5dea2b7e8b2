"""The ordering rules that make a real `pulumi up` succeed, and `pulumi destroy` in reverse.

cluster -> aws-node off -> Cilium release (applied, not awaited) -> node group; NAT only
before nodes. Every rule is checked on the transitive dependency graph, so it holds
however the edges are spelled.
"""

from __future__ import annotations

CLUSTER = "eks:index:Cluster"
PATCH = "kubernetes:apps/v1:DaemonSetPatch"
RELEASE = "kubernetes:helm.sh/v3:Release"
NODE_GROUP = "eks:index:ManagedNodeGroup"


def test_aws_node_patch_waits_for_the_cluster(dev):
    assert dev.waits_for(dev.one(PATCH), dev.one(CLUSTER))


def test_cilium_release_waits_for_aws_node_to_be_off(dev):
    assert dev.waits_for(dev.one(RELEASE), dev.one(PATCH))


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


def test_no_deadlock_between_release_and_nodes(dev):
    release, ng = dev.one(RELEASE), dev.one(NODE_GROUP)
    # Nodes become Ready only with a CNI: the release must neither wait for nodes nor
    # for its own pods (which need nodes).
    assert not dev.waits_for(release, ng)
    assert release.inputs["skipAwait"] is True
    assert not dev.waits_for(dev.one(PATCH), ng)


def test_the_graph_has_no_cycle(dev):
    for res in dev.resources:
        assert res.urn not in dev.upstream(res), res.urn


def test_nothing_before_the_nodes_waits_for_nat_or_routes(dev):
    # NAT gateways take minutes; only nodes (pulling images, joining) need egress.
    nat_path = {
        r.urn
        for r in dev.resources
        if r.type
        in {
            "aws:ec2/natGateway:NatGateway",
            "aws:ec2/eip:Eip",
            "aws:ec2/internetGateway:InternetGateway",
            "aws:ec2/routeTable:RouteTable",
            "aws:ec2/routeTableAssociation:RouteTableAssociation",
        }
    }
    for res in (dev.one(CLUSTER), dev.one(PATCH), dev.one(RELEASE)):
        assert not dev.upstream(res) & nat_path, res.type
