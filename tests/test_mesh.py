"""ClusterMesh across stacks (components/mesh.py): two stacks simulated under mocks.

Each stack is a run of the real program with a stack name of its own, handed the other's
outputs as `StackReference` outputs, in the documented bring-up order: A (cluster 1, no
peers yet), then B (cluster 2, peer A), then A again (peer B). What only AWS or Cilium
decides is encoded with its source: the link against moto's EC2, the chart's rules by
rendering the real chart.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import boto3
import jsonschema
import pytest
import yaml
from moto import mock_aws

from components import mesh as mesh_module
from components import mesh_link as mesh_link_module
from components.config import mesh_problems
from components.mesh import native_routing_cidr
from components.mesh_link import MeshLinkProvider, find_peering, link, unlink
from scripts import check_config
from tests.harness import ROOT, Graph, Resource, run_ok, run_program
from tests.test_cilium_chart import (
    ACCEPTED,
    RELEASE,
    blocking_hooks,
    chart_dir,
    find,
    render,
    unknown_keys,
)

ORG = "organization"  # the organization of a local (DIY) backend
A, B, C, D = (f"{ORG}/cilium-eks/{s}" for s in ("a", "b", "c", "d"))
SERVICE = "kubernetes:core/v1:Service"
SECRET_PATCH = "kubernetes:core/v1:SecretPatch"
JOB, CRONJOB = "kubernetes:batch/v1:Job", "kubernetes:batch/v1:CronJob"
LINK = "pulumi-python:dynamic:MeshLink"
CNP = "kubernetes:cilium.io/v2:CiliumNetworkPolicy"
ROUTE_TABLE = "aws:ec2/routeTable:RouteTable"
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
CA_CERT = (ROOT / "tests" / "fixtures" / "mesh-ca.crt").read_text()

STACK_A = {"clusterName": "cilium-eks-a", "network.cidr": "10.0.0.0/16"}
STACK_B = {
    "clusterName": "cilium-eks-b",
    "network.cidr": "10.1.0.0/16",
    "aws:region": "us-east-1",  # another region: a cross-region link
    "demo.policy": "l3l4",
}


def stack_outputs(graph: Graph) -> dict[str, Any]:
    """A stack's outputs as another stack's StackReference reads them."""
    assert graph.error is None, graph.error["traceback"]
    return {
        "outputs": {k: v["value"] for k, v in graph.outputs.items()},
        "secretOutputNames": [k for k, v in graph.outputs.items() if v["secret"]],
    }


def up(stack: str, overrides: dict[str, Any], peers: dict[str, Graph] | None = None) -> Graph:
    """`pulumi up` of stack `org/cilium-eks/<stack>`, its peers deployed as `peers` left them."""
    world = {
        "stack": stack,
        "organization": ORG,
        "stacks": {name: stack_outputs(g) for name, g in (peers or {}).items()},
    }
    return run_ok(overrides, world=world)


@pytest.fixture(scope="module")
def a1() -> Graph:
    """A, mesh-ready: cluster 1, no peers yet."""
    return up("a", {**STACK_A, "mesh": {"clusterId": 1}})


@pytest.fixture(scope="module")
def b1(a1) -> Graph:
    """B joins with A as its peer."""
    return up("b", {**STACK_B, "mesh": {"clusterId": 2, "peers": [A]}}, {A: a1})


@pytest.fixture(scope="module")
def a2(b1) -> Graph:
    """A again, now with B as its peer: the mesh is mutual."""
    return up("a", {**STACK_A, "mesh": {"clusterId": 1, "peers": [B]}}, {B: b1})


def values(graph: Graph) -> dict[str, Any]:
    return graph.one(RELEASE, "cilium").inputs["values"]


def ca_secret(graph: Graph) -> Resource:
    """The mesh CA's cilium-ca Secret (components/cilium.py mesh_ca_secret)."""
    return graph.one(SECRET_PATCH, "mesh-ca")


def env_of(res: Resource) -> dict[str, str]:
    spec = res.inputs["spec"]
    pod = spec["jobTemplate"]["spec"]["template"] if res.type == CRONJOB else spec["template"]
    (container,) = pod["spec"]["containers"]
    return {e["name"]: e["value"] for e in container["env"]}


def mesh_jobs(graph: Graph, type_: str = JOB) -> dict[str, Resource]:
    return {r.inputs["metadata"]["name"]: r for r in graph.of_type(type_) if "mesh" in r.name}


# --- the rules a peer is held to -------------------------------------------------------------

OWN = {"cluster_name": "cilium-eks-b", "cluster_id": 2, "vpc_cidr": "10.1.0.0/16"}


def facts(cluster_id: Any = 1, cidr: str = "10.0.0.0/16", name: str = "cilium-eks-a", **more):
    return {"clusterId": cluster_id, "vpcCidr": cidr, "clusterName": name, "ca": "ca-1", **more}


@pytest.mark.parametrize(
    ("peers", "account", "fragment"),
    [
        ({A: facts()}, "1", None),
        ({A: facts(cluster_id=1.0)}, "1", None),  # stack outputs' numbers are floats
        ({A: facts(2)}, "1", "mesh.clusterId: 2 is also the cluster ID of organization/"),
        ({A: facts(), C: facts(1, "10.2.0.0/16", "c")}, "1", "have the same cluster ID 1"),
        # the peers against each other: this cluster meets both
        (
            {A: facts(), C: facts(3, "10.2.0.0/16", "cilium-eks-a")}, "1",
            f"mesh.peers: {A} and {C} have the same cluster name cilium-eks-a",
        ),
        (
            {A: facts(), C: facts(3, "10.0.128.0/17", "c")}, "1",
            f"mesh.peers: {A} and {C} have overlapping VPCs (10.0.0.0/16 and 10.0.128.0/17)",
        ),
        ({A: facts(name="cilium-eks-b")}, "1", "clusterName: cilium-eks-b is also the cluster"),
        ({A: facts(cidr="10.1.128.0/17")}, "1", "network.cidr: 10.1.0.0/16 overlaps"),
        ({A: facts(cidr="10.0.0.0/8")}, "1", "need disjoint VPCs"),
        ({A: None}, "1", "has no `mesh` output"),
        ({A: facts(accountId="2")}, "1", "is in AWS account 2, this stack in 1"),
        ({A: facts(accountId="2")}, None, None),  # the program cannot tell: the preflight can
        # the same account, read from two sources (a stack output, the caller's identity):
        # equal, though not the same string object
        ({A: facts(accountId=str(123456789012))}, "123456789012", None),
        # the CA: from cluster 1, else from any peer, and then they must agree
        ({C: facts(3, "10.2.0.0/16", "c", ca=None)}, "1", "none of them shares the mesh's CA"),
        ({C: facts(3, "10.2.0.0/16", "c")}, "1", None),  # cluster 1 gone: C has its CA
        ({A: facts(ca="new"), C: facts(3, "10.2.0.0/16", "c")}, "1", None),  # C follows A
        (
            {C: facts(3, "10.2.0.0/16", "c"), D: facts(4, "10.3.0.0/16", "d", ca="other")},
            "1",
            "they trust different CAs",
        ),
    ],
)  # fmt: skip
def test_peers_are_held_to_the_meshs_rules(peers, account, fragment):
    found = mesh_problems(**OWN, account=account, peers=peers)
    if fragment is None:
        assert found == []
    else:
        assert len(found) == 1 and fragment in found[0], found


@pytest.mark.parametrize(
    ("theirs", "problem"),
    [
        ("wireguard", None),
        ("none", f"cilium.encryption: wireguard here, none in {A}"),
        # deployed before the mode was published: passes until its next `pulumi up`
        # publishes it (refusing it would have each side wait for the other's upgrade)
        (None, None),
    ],
)
def test_every_cluster_of_a_mesh_encrypts_alike(theirs, problem):
    # Cilium's WireGuard docs, Limitations: "The mixed mode of WireGuard encryption is not
    # supported in a ClusterMesh"
    peer = facts() if theirs is None else facts(encryption=theirs)
    found = mesh_problems(**OWN, account="1", peers={A: peer}, encryption="wireguard")
    assert found == ([] if problem is None else [found[0]])
    if problem:
        assert found[0].startswith(problem) and "mixed encryption" in found[0]
    assert mesh_module.unpublished_encryption({A: peer}) == ([A] if theirs is None else [])


# What a run declares before the mesh's checks pass: the stack, the Stack component, the
# mesh (and cluster 1's CA, which lives in the stack's state alone: no AWS, no cluster).
BEFORE_THE_CHECKS = {"pulumi:pulumi:Stack", "cilium-eks:index:Stack", "cilium-eks:index:Mesh"}


@pytest.mark.parametrize(
    ("peer", "fragment"),
    [
        ({"mesh": facts(2, "10.0.0.0/16")}, "mesh.clusterId: 2 is also the cluster ID"),
        ({"mesh": facts(1, "10.1.0.0/16")}, "network.cidr: 10.1.0.0/16 overlaps"),
        ({}, "has no `mesh` output"),
    ],
)
def test_a_bad_peer_stops_the_program_before_any_resource(peer, fragment):
    # A's outputs as given here, not as a run of the program made them
    graph = run_program(
        {**STACK_B, "mesh": {"clusterId": 2, "peers": [A]}},
        world={"stack": "b", "stacks": {A: {"outputs": peer}}},
    )
    assert graph.error and fragment in graph.error["message"]
    assert "nodes.instanceTypes" not in graph.error["message"]  # where it surfaces
    # the AWS provider waits for the peers' checks: nothing is declared but the mesh
    assert {r.type for r in graph.resources} == BEFORE_THE_CHECKS


def refused(graph: Graph) -> str:
    """A run the mesh's checks stopped: its message, with nothing declared but the mesh
    (and cluster 1's CA, which lives in the stack's state alone: no AWS, no cluster)."""
    assert graph.error, "the run was not refused"
    ca = {"tls:index/privateKey:PrivateKey", "tls:index/selfSignedCert:SelfSignedCert"}
    declared = {r.type for r in graph.resources} - ca
    assert declared == BEFORE_THE_CHECKS, declared
    return graph.error["message"]


STACK_C = {**STACK_B, "clusterName": "cilium-eks-c", "aws:region": "eu-west-1"}


@pytest.mark.parametrize(
    ("c", "collides"),
    [
        # B's CIDR: A would route 10.1.0.0/16 to two peerings, and EC2 refuses the second
        # route (RouteAlreadyExists) once both peerings exist, halfway through `up`
        ({}, f"{B} and {C} have overlapping VPCs (10.1.0.0/16 and 10.1.0.0/16)"),
        (
            {"clusterName": "cilium-eks-b", "network.cidr": "10.2.0.0/16"},
            f"{B} and {C} have the same cluster name cilium-eks-b",
        ),
    ],
)
def test_three_stacks_two_peers_that_collide_are_refused_before_any_resource(a1, b1, c, collides):
    # B and C each join A alone, and each passes A's checks...
    joined = up("c", {**STACK_C, **c, "mesh": {"clusterId": 3, "peers": [A]}}, {A: a1})
    # ...but A meets both: its next up refuses the pair, naming both and what collides
    world = {"stack": "a", "organization": ORG,
             "stacks": {B: stack_outputs(b1), C: stack_outputs(joined)}}  # fmt: skip
    graph = run_program({**STACK_A, "mesh": {"clusterId": 1, "peers": [B, C]}}, world=world)
    assert f"mesh.peers: {collides}" in refused(graph)


def test_a_peer_that_encrypts_otherwise_is_refused_naming_cilium_encryption(a1):
    # A encrypts with WireGuard; B would not
    world = {"stack": "b", "organization": ORG, "stacks": {A: stack_outputs(a1)}}
    graph = run_program(
        {**STACK_B, "cilium.encryption": "none", "mesh": {"clusterId": 2, "peers": [A]}},
        world=world,
    )
    assert f"cilium.encryption: none here, wireguard in {A}" in refused(graph)


def without_encryption(graph: Graph) -> dict[str, Any]:
    """A stack's outputs as the program made them before it published its encryption."""
    outputs = copy.deepcopy(stack_outputs(graph))
    del outputs["outputs"]["mesh"]["encryption"]
    return outputs


@pytest.mark.parametrize("b_encrypts", ["wireguard", "none"])
def test_a_mesh_deployed_before_the_check_upgrades_one_stack_at_a_time(a1, b_encrypts):
    # B upgrades first: A, as deployed before, publishes no mode; B comes up (a refusal
    # here would deadlock the mesh: A's upgrade would be refused by the same rule)
    world = {"stack": "b", "organization": ORG, "stacks": {A: without_encryption(a1)}}
    config = {**STACK_B, "cilium.encryption": b_encrypts, "mesh": {"clusterId": 2, "peers": [A]}}
    b = run_ok(config, world=world)
    assert b.output("mesh")["encryption"] == b_encrypts
    # then A's upgrade reads B's mode, and checks it
    world = {"stack": "a", "organization": ORG, "stacks": {B: stack_outputs(b)}}
    a = run_program({**STACK_A, "mesh": {"clusterId": 1, "peers": [B]}}, world=world)
    if b_encrypts == "wireguard":
        assert a.error is None, a.error["traceback"]
    else:
        assert f"cilium.encryption: wireguard here, none in {B}" in refused(a)


# --- cluster 1: mesh-ready -------------------------------------------------------------------


def test_cluster_1_makes_the_meshs_ca_once_and_shares_it_as_a_secret(a1, a2):
    key = a1.one("tls:index/privateKey:PrivateKey")
    cert = a1.one("tls:index/selfSignedCert:SelfSignedCert")
    assert cert.inputs["isCaCertificate"] is True
    assert "cert_signing" in cert.inputs["allowedUses"]
    # certgen refuses leaves that outlive their CA (1.20): Cilium's last up to three years
    assert cert.inputs["validityPeriodHours"] >= 3 * 365 * 24
    assert a1.outputs["meshCa"]["secret"] is True
    assert a1.output("meshCa") == {"cert": CA_CERT, "key": mesh_ca_key()}
    # made once: the next run declares the same CA, which Pulumi then leaves alone
    for made in (key, cert):
        again = a2.one(made.type)
        assert (again.urn, again.inputs) == (made.urn, made.inputs)


def mesh_ca_key() -> str:
    return (ROOT / "tests" / "fixtures" / "mesh-ca.key").read_text()


def test_cluster_1_exports_what_its_peers_read_and_no_secret_in_it(a1):
    exported = a1.outputs["mesh"]
    assert exported["secret"] is False
    service = a1.one(SERVICE, "clustermesh-apiserver")
    assert exported["value"] == {
        "clusterName": "cilium-eks-a",
        "clusterId": 1,
        "region": "ap-northeast-2",
        "accountId": "123456789012",  # the VPC's owner, as the mocks make it
        "vpcId": "vpc-a",
        "vpcCidr": "10.0.0.0/16",
        # the internal NLB's host name, as the load balancer controller reports it
        "endpoint": f"{service.name}-0123456789abcdef.elb.ap-northeast-2.amazonaws.com",
        "ca": hashlib.sha256(CA_CERT.encode()).hexdigest(),
        "peers": [],
        "seen": {},
        "demoPolicy": "l7",
        "encryption": "wireguard",  # cilium.encryption: the same on every cluster
    }


def test_a_mesh_ready_cluster_links_nothing_yet(a1):
    assert not a1.of_type(LINK) and not a1.reads
    assert not [r for r in a1.of_type(INGRESS) if r.name.startswith("from-")]
    mesh = values(a1)["clustermesh"]
    assert mesh["config"]["clusters"] == []
    assert values(a1)["cluster"]["id"] == 1


# --- cluster 2 joins -------------------------------------------------------------------------


def test_the_peers_facts_come_from_its_stack_not_from_config(b1):
    (read,) = b1.reads
    assert read["type"] == "pulumi:pulumi:StackReference" and read["id"] == A


def test_the_joining_stack_links_the_vpcs_across_regions(b1):
    (mesh_link,) = b1.of_type(LINK)
    assert mesh_link.inputs["region"] == "us-east-1"  # B's: B requests, and accepts in A's
    assert mesh_link.inputs["peer_region"] == "ap-northeast-2"
    assert mesh_link.inputs["peer_vpc_id"] == "vpc-a"  # A's, from its outputs
    assert mesh_link.inputs["vpc_id"] == "vpc-b"
    assert mesh_link.inputs.get("peer_link") is None  # A does not list B yet
    assert b1.waits_for(mesh_link, b1.one("aws:ec2/vpc:Vpc"))


def test_every_private_route_table_routes_the_peer_through_the_link(b1):
    (mesh_link,) = b1.of_type(LINK)
    private = [t for t in b1.of_type(ROUTE_TABLE) if t.name.startswith("private-")]
    assert len(private) == 3
    for table in private:
        # in the table's own routes, beside the NAT route: a separate Route resource and
        # inline routes overwrite each other (pulumi-aws RouteTable docs)
        route = {"cidrBlock": "10.0.0.0/16", "vpcPeeringConnectionId": "pcx-vpc-a-vpc-b"}
        assert route in table.inputs["routes"]
        assert b1.waits_for(table, mesh_link)
    public = b1.one(ROUTE_TABLE, "public")
    assert [r["cidrBlock"] for r in public.inputs["routes"]] == ["0.0.0.0/0"]


def test_the_nodes_accept_the_peers_vpc_on_every_port(b1):
    (rule,) = [r for r in b1.of_type(INGRESS) if r.name.startswith("from-")]
    assert rule.inputs["securityGroupId"] == "sg-cluster"  # nodes' and Cilium's ENIs' group
    assert rule.inputs["cidrIpv4"] == "10.0.0.0/16"
    assert rule.inputs["ipProtocol"] == "-1"


def test_the_joining_cluster_trusts_cluster_1s_ca_and_makes_none(a1, b1):
    assert not b1.of_type("tls:index/privateKey:PrivateKey")
    # and shares it in turn, so that the mesh outlives cluster 1
    assert b1.outputs["meshCa"] == a1.outputs["meshCa"]
    assert b1.output("mesh")["ca"] == a1.output("mesh")["ca"]
    ca = ca_secret(b1).inputs["data"]
    assert base64.b64decode(ca["ca.crt"]).decode() == CA_CERT
    assert base64.b64decode(ca["ca.key"]).decode() == mesh_ca_key()


def test_cilium_joins_with_its_id_and_every_peers_endpoint(a1, b1):
    mine = values(b1)
    assert mine["cluster"] == {"name": "cilium-eks-b", "id": 2}
    mesh = mine["clustermesh"]
    assert mesh["useAPIServer"] is True
    assert mesh["apiserver"]["kvstoremesh"]["enabled"] is True
    assert mesh["policyDefaultLocalCluster"] is True
    assert mesh["config"] == {
        "enabled": True,
        "clusters": [
            {"name": "cilium-eks-a", "address": a1.output("mesh")["endpoint"], "port": 2379}
        ],
    }
    # native routing covers both clusters' pods (ClusterMesh setup)
    assert mine["ipv4NativeRoutingCIDR"] == "10.0.0.0/15"


@pytest.mark.parametrize(
    ("cidrs", "covering"),
    [
        (["10.0.0.0/16"], "10.0.0.0/16"),
        (["10.0.0.0/16", "10.1.0.0/16"], "10.0.0.0/15"),
        (["10.0.0.0/16", "10.3.0.0/17"], "10.0.0.0/14"),
        (["10.8.0.0/16", "10.0.0.0/16", "10.4.0.0/16"], "10.0.0.0/12"),
    ],
)
def test_the_native_routing_cidr_is_the_smallest_covering_every_vpc(cidrs, covering):
    assert native_routing_cidr(cidrs) == covering


def test_the_endpoint_is_an_internal_nlb_that_waits_for_the_apiserver(b1):
    service = b1.one(SERVICE, "clustermesh-apiserver")
    notes = service.inputs["metadata"]["annotations"]
    assert notes["service.beta.kubernetes.io/aws-load-balancer-type"] == "nlb"
    assert notes["service.beta.kubernetes.io/aws-load-balancer-internal"] == "true"
    assert notes["service.beta.kubernetes.io/aws-load-balancer-scheme"] == "internal"
    assert service.inputs["spec"]["type"] == "LoadBalancer"
    # one apiserver replica per peer: each replica runs its own etcd (chart: HAOnly)
    assert service.inputs["spec"]["sessionAffinity"] == "ClientIP"
    assert service.provider == b1.one("pulumi:providers:kubernetes").urn
    for needed in (b1.one(RELEASE, "cilium"), b1.one("eks:index:ManagedNodeGroup")):
        assert b1.waits_for(service, needed)


def test_the_endpoint_admits_the_meshs_vpcs_only(a1, b1, a2):
    def source_ranges(graph: Graph) -> list[str]:
        return graph.one(SERVICE, "clustermesh-apiserver").inputs["spec"][
            "loadBalancerSourceRanges"
        ]

    # without source ranges the in-tree controller opens the node port to 0.0.0.0/0 on
    # the cluster security group (cloud-provider-aws EnsureLoadBalancer, NLB); an empty
    # list means the same, so a mesh-ready cluster lists its own VPC
    assert source_ranges(a1) == ["10.0.0.0/16"]
    assert source_ranges(b1) == ["10.1.0.0/16", "10.0.0.0/16"]
    assert source_ranges(a2) == ["10.0.0.0/16", "10.1.0.0/16"]


def test_the_demo_goes_global_with_a_service_per_cluster(b1):
    def service(name: str) -> dict[str, Any]:
        (found,) = [r for r in b1.of_type(SERVICE) if r.inputs["metadata"]["name"] == name]
        return found.inputs

    shared, own, peer = (
        service("deathstar"),
        service("deathstar-cilium-eks-b"),
        service("deathstar-cilium-eks-a"),
    )
    for svc in (shared, own, peer):
        assert svc["metadata"]["annotations"] == {"service.cilium.io/global": "true"}
    # the shared one and this cluster's own are served here; the peer's only there
    assert (
        shared["spec"]["selector"]
        == own["spec"]["selector"]
        == {
            "org": "empire",
            "class": "deathstar",
        }
    )
    assert "selector" not in peer["spec"]
    namespace = b1.one("kubernetes:core/v1:Namespace").inputs["metadata"]
    assert namespace["annotations"] == {"clustermesh.cilium.io/global": "true"}


def test_rule1_admits_the_empire_of_every_cluster_of_the_mesh(b1):
    spec = b1.one(CNP).inputs["spec"]
    (rule,) = spec["ingress"]
    assert rule["fromEndpoints"] == [
        {
            "matchLabels": {"org": "empire"},
            # 1.19's policy-default-local-cluster: unnamed, only local pods would match
            "matchExpressions": [
                {
                    "key": "io.cilium.k8s.policy.cluster",
                    "operator": "In",
                    "values": ["cilium-eks-b", "cilium-eks-a"],
                }
            ],
        }
    ]


def test_rule1_with_clusters_is_valid_against_the_crd_schema(reference, b1):
    schema = json.loads((reference / "crds" / "ciliumnetworkpolicy_v2.json").read_text())
    policy = b1.one(CNP).inputs
    assert not [e.message for e in jsonschema.Draft7Validator(schema).iter_errors(policy)]


# --- the proof -------------------------------------------------------------------------------


def test_mesh_checks_wait_while_the_peer_does_not_list_this_stack(b1):
    jobs = mesh_jobs(b1)
    assert set(jobs) == {"mesh-tiefighter-cilium-eks-a", "mesh-xwing-cilium-eks-a"}
    for job in jobs.values():
        waiting = env_of(job)["MESH_WAITING"]
        assert f"{A} does not list this stack in mesh.peers yet" in waiting


def test_the_local_checks_prove_this_clusters_own_deathstar(b1):
    # the global deathstar may answer from a peer, under the peer's policy (and l7's
    # exhaust-port call must never reach a peer that does not deny it)
    own = "http://deathstar-cilium-eks-b.starwars.svc.cluster.local"
    (own_service,) = [
        r for r in b1.of_type(SERVICE) if r.inputs["metadata"]["name"] == "deathstar-cilium-eks-b"
    ]
    for job in (r for r in b1.of_type(JOB) if r.name.startswith("verify-")):
        assert env_of(job)["DEATHSTAR"] == own
        assert b1.waits_for(job, own_service)
    for check in b1.output("demo")["checks"].values():
        assert " deathstar-cilium-eks-b.starwars.svc.cluster.local/" in check["command"]


def test_the_peer_adopts_the_link_the_first_side_made(b1, a2):
    (theirs,) = b1.of_type(LINK)
    (mine,) = a2.of_type(LINK)
    # A's MeshLink is told of B's peering: the same one, so it is adopted, not replaced
    assert mine.inputs["peer_link"] == "pcx-vpc-a-vpc-b"
    assert b1.output("mesh")["seen"][A]["link"] == "pcx-vpc-a-vpc-b"
    diff = MeshLinkProvider().diff(
        "x", {**mine.inputs, "peering_id": "pcx-vpc-a-vpc-b"}, mine.inputs
    )
    assert not diff.changes and theirs.inputs["vpc_id"] == mine.inputs["peer_vpc_id"]


@pytest.fixture
def here(monkeypatch):
    monkeypatch.setattr(mesh_module, "stack_path", lambda: A)


OWN_VIEW = {"endpoint": "nlb-a", "link": "pcx-1", "ca": "ca-1"}
SEEN = {"endpoint": "nlb-a", "link": "pcx-1"}


@pytest.mark.parametrize(
    ("peer", "reason"),
    [
        ({"peers": [A], "seen": {A: SEEN}, "ca": "ca-1", "demoPolicy": "l7"}, ""),
        ({"peers": [], "ca": "ca-1", "demoPolicy": "l7"}, "does not list this stack"),
        # the peer's last up knew A as it was: A's NLB, link or CA has changed since
        ({"peers": [A], "seen": {A: {**SEEN, "endpoint": "old"}}, "ca": "ca-1",
          "demoPolicy": "l7"}, "an older endpoint"),
        ({"peers": [A], "seen": {A: {**SEEN, "link": "pcx-0"}}, "ca": "ca-1",
          "demoPolicy": "l7"}, "an older link"),
        ({"peers": [A], "seen": {A: SEEN}, "ca": "ca-0", "demoPolicy": "l7"}, "an older CA"),
        ({"peers": [A], "seen": {A: SEEN}, "ca": "ca-1", "demoPolicy": None}, "runs no Star Wars"),
    ],
)  # fmt: skip
def test_a_peer_is_checked_only_once_it_knows_this_cluster_as_it_is(here, peer, reason):
    found = mesh_module.waiting_reason(B, peer, OWN_VIEW)
    assert (found == "") if not reason else (reason in found and found.startswith(B))


def test_the_up_that_makes_the_mesh_mutual_proves_the_peer_from_here(a2):
    jobs = mesh_jobs(a2)
    tiefighter, xwing = jobs["mesh-tiefighter-cilium-eks-b"], jobs["mesh-xwing-cilium-eks-b"]
    for ship, job in (("tiefighter", tiefighter), ("xwing", xwing)):
        env = env_of(job)
        assert env["MESH_WAITING"] == ""
        assert env["SHIP"] == ship
        # B's deathstar alone, through the global Service, under B's policy mode
        assert env["DEATHSTAR"] == "http://deathstar-cilium-eks-b.starwars.svc.cluster.local"
        assert env["POLICY"] == "l3l4"
        labels = job.inputs["spec"]["template"]["metadata"]["labels"]
        assert labels["org"] == {"tiefighter": "empire", "xwing": "alliance"}[ship]
    # xwing's refusal means a drop only once the tiefighter has reached B's deathstar
    assert a2.waits_for(xwing, tiefighter)
    assert a2.waits_for(tiefighter, a2.one(SERVICE, "deathstar-organization-b"))


def test_the_mesh_checks_are_part_of_make_verify(a2):
    cronjobs = mesh_jobs(a2, CRONJOB)
    assert set(cronjobs) == {"mesh-tiefighter-cilium-eks-b", "mesh-xwing-cilium-eks-b"}
    for name, cronjob in cronjobs.items():
        labels = cronjob.inputs["metadata"]["labels"]
        assert labels["app.kubernetes.io/part-of"] == "cilium-eks-checks"
        assert env_of(cronjob) == env_of(mesh_jobs(a2)[name])
        assert len(name) <= 52  # a CronJob's name limit


@pytest.mark.parametrize(
    ("peer_demo", "policy", "waiting"),
    [
        ({"demo.policy": "none"}, "none", ""),
        ({"demo.enabled": False}, "none", f"{B} runs no Star Wars demo"),
    ],
)
def test_the_check_expects_what_the_peers_policy_does(a1, peer_demo, policy, waiting):
    b = up("b", {**STACK_B, **peer_demo, "mesh": {"clusterId": 2, "peers": [A]}}, {A: a1})
    a = up("a", {**STACK_A, "mesh": {"clusterId": 1, "peers": [B]}}, {B: b})
    for job in mesh_jobs(a).values():
        assert (env_of(job)["POLICY"], env_of(job)["MESH_WAITING"]) == (policy, waiting)


def test_the_mesh_outlives_cluster_1_and_follows_it_while_it_lives(a1, b1):
    other = stack_outputs(b1)
    other["outputs"]["meshCa"] = {"cert": "another CA", "key": "its key"}
    other["outputs"]["mesh"] = {**other["outputs"]["mesh"], "ca": "another fingerprint"}
    config = {**STACK_B, "clusterName": "cilium-eks-c", "network.cidr": "10.2.0.0/16"}

    def ca_of(peers: list[str], stacks: dict[str, Any]) -> str:
        graph = run_ok(
            {**config, "mesh": {"clusterId": 3, "peers": peers}},
            world={"stack": "c", "stacks": stacks},
        )
        return base64.b64decode(ca_secret(graph).inputs["data"]["ca.crt"]).decode()

    # cluster 1 gone: B still shares the mesh's CA
    assert ca_of([B], {B: stack_outputs(b1)}) == CA_CERT
    # cluster 1 listed: its CA wins over a peer that lags behind it
    assert ca_of([B, A], {B: other, A: stack_outputs(a1)}) == CA_CERT


def test_the_cilium_values_hold_no_secret_so_previews_show_their_diffs(a1, b1):
    for graph in (a1, b1):
        release = graph.one(RELEASE, "cilium")
        assert not [p for p in release.secret_inputs if p.split(".")[0] == "values"]
        assert "tls" not in values(graph)
        # the CA is secret where it is: the Secret's data
        secret = set(ca_secret(graph).secret_inputs)
        assert "data" in secret or {"data.ca.crt", "data.ca.key"} <= secret


def test_the_meshs_ca_is_applied_before_the_release_and_outlives_helms_copy(b1):
    secret, release = ca_secret(b1), b1.one(RELEASE, "cilium")
    # certgen, which the release runs, reads it: it exists first
    assert b1.waits_for(release, secret)
    assert secret.provider == b1.one("pulumi:providers:kubernetes").urn
    assert secret.parent == b1.one("cilium-eks:index:Cilium").urn
    notes = secret.inputs["metadata"]["annotations"]
    # a stack from before holds a cilium-ca Helm made from tls.ca: the release's upgrade
    # would delete it as gone from the chart, unless the live object says keep (Helm 3,
    # pkg/kube/client.go Update)...
    assert notes["helm.sh/resource-policy"] == "keep"
    # ...and this apply takes over Helm's fields rather than conflict with them
    assert notes["pulumi.com/patchForce"] == "true"
    # a Patch resource: applied server-side, it creates the Secret or takes over Helm's
    # (a plain Secret is created with a client-side create since pulumi-kubernetes 4.29:
    # AlreadyExists on such a stack)
    assert not [r for r in b1.of_type("kubernetes:core/v1:Secret")
                if r.inputs["metadata"].get("name") == "cilium-ca"]  # fmt: skip


def test_the_mesh_components_own_their_resources_and_register_outputs(a1, b1):
    for graph in (a1, b1):
        stack = graph.one("cilium-eks:index:Stack")
        top = [r for r in graph.resources if r.parent == stack.urn]
        assert [r.type for r in top if r.custom or r.remote] == ["pulumi:providers:aws"]
        for component in ("cilium-eks:index:Mesh", "cilium-eks:index:MeshEndpoint"):
            assert graph.one(component).urn in graph.component_outputs, component
    mesh = b1.one("cilium-eks:index:Mesh")
    assert [read["parent"] for read in b1.reads] == [mesh.urn]  # the StackReference
    for made in ("tls:index/privateKey:PrivateKey", "tls:index/selfSignedCert:SelfSignedCert"):
        assert a1.one(made).parent == a1.one("cilium-eks:index:Mesh").urn


def test_a_single_cluster_stack_declares_nothing_of_the_mesh(dev):
    assert not dev.reads
    assert not [r for r in dev.resources if "mesh" in r.type.lower() or "mesh" in r.name]
    assert "clustermesh" not in values(dev) and "id" not in values(dev)["cluster"]
    assert "mesh" not in dev.outputs and "meshCa" not in dev.outputs


# --- the real chart ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def joined(a1) -> dict[str, Graph]:
    """B, joined, on each accepted chart version."""
    return {
        version: up(
            "b",
            {**STACK_B, "cilium.version": version, "mesh": {"clusterId": 2, "peers": [A]}},
            {A: a1},
        )
        for version in ACCEPTED
    }


def rendered_mesh(reference: Path, graph: Graph, version: str):
    return render(reference, version, json.dumps(values(graph)))


@pytest.mark.parametrize("version", ACCEPTED)
def test_the_mesh_values_are_the_charts_own_keys_and_types(reference, joined, version):
    # a key the chart moved (1.20 moved the apiserver's extra DNS names under tls.auto)
    # would only be a deprecated fallback, or ignored: each key must be in values.yaml
    mine = values(joined[version])
    # 1.19 documents the certificates' renewal schedule commented out ("# schedule: ..."),
    # and its template reads it: the CronJob it makes is asserted below
    commented = {"clustermesh.apiserver.tls.auto.schedule"}
    mesh_keys = {k: mine[k] for k in ("clustermesh", "certgen", "MTU")}
    missing = [k for k in unknown_keys(reference, version, mesh_keys) if k not in commented]
    assert not missing
    schema = json.loads((chart_dir(reference, version) / "values.schema.json").read_text())
    assert not list(jsonschema.validators.validator_for(schema)(schema).iter_errors(mine))


@pytest.mark.parametrize("version", ACCEPTED)
def test_the_chart_renders_a_clustermesh_apiserver_with_no_blocking_hook(
    reference, joined, version
):
    objects = rendered_mesh(reference, joined[version], version)
    apiserver = find(objects, "Deployment", "clustermesh-apiserver")
    assert not blocking_hooks(objects)  # it installs before any node exists
    config = find(objects, "ConfigMap", "cilium-config")["data"]
    assert config["cluster-id"] == "2" and config["cluster-name"] == "cilium-eks-b"
    assert config["policy-default-local-cluster"] == "true"
    assert config["ipv4-native-routing-cidr"] == "10.0.0.0/15"
    # the NLB Service selects the chart's apiserver pods on its etcd port
    pod = apiserver["spec"]["template"]
    service = joined[version].one(SERVICE, "clustermesh-apiserver").inputs["spec"]
    assert service["selector"].items() <= pod["metadata"]["labels"].items()
    ports = {p["name"]: p["containerPort"] for c in pod["spec"]["containers"] for p in c["ports"]}
    (port,) = service["ports"]
    assert ports[port["targetPort"]] == port["port"] == 2379
    # the chart's own Service stays inside the cluster
    assert find(objects, "Service", "clustermesh-apiserver")["spec"]["type"] == "ClusterIP"


@pytest.mark.parametrize("version", ACCEPTED)
def test_kvstoremesh_dials_each_peers_nlb_by_name(reference, joined, version, a1):
    objects = rendered_mesh(reference, joined[version], version)
    secret = find(objects, "Secret", "cilium-kvstoremesh")
    config = base64.b64decode(secret["data"]["cilium-eks-a"]).decode()
    assert f"https://{a1.output('mesh')['endpoint']}:2379" in config


@pytest.mark.parametrize("version", ACCEPTED)
def test_the_apiservers_certificate_names_every_nlb_host_of_the_region(reference, joined, version):
    # peers check the certificate against the NLB host they dial (etcd client TLS)
    objects = rendered_mesh(reference, joined[version], version)
    for kind in ("Job", "CronJob"):
        (certgen,) = [
            o
            for o in objects
            if o["kind"] == kind and o["metadata"]["name"].startswith("clustermesh-apiserver-gen")
        ]
        assert "*.elb.us-east-1.amazonaws.com" in json.dumps(certgen)


def certgen_args(objects) -> dict[str, list[str]]:
    """Each certgen Job's and CronJob's arguments, by kind/name."""
    found = {}
    for o in objects:
        if o["kind"] not in ("Job", "CronJob"):
            continue
        spec = o["spec"]["jobTemplate"]["spec"] if o["kind"] == "CronJob" else o["spec"]
        for container in spec["template"]["spec"]["containers"]:
            if container["command"] == ["/usr/bin/cilium-certgen"]:
                found[f"{o['kind']}/{o['metadata']['name']}"] = container["args"]
    return found


@pytest.mark.parametrize("version", ACCEPTED)
def test_the_meshs_ca_signs_everything_cilium_makes_and_never_passes_through_helm(
    reference, joined, version
):
    objects = rendered_mesh(reference, joined[version], version)
    # the chart renders no CA (cilium-ca-secret.yaml: only from tls.ca, or for certificates
    # made by Helm itself); the stack's own cilium-ca is the one
    assert not [o for o in objects if o["metadata"]["name"] == "cilium-ca"]
    assert "tls" not in values(joined[version])
    args = certgen_args(objects)
    # Hubble's and the clustermesh-apiserver's, each as a Job now and a CronJob later
    assert {name.split("/")[0] for name in args} == {"Job", "CronJob"} and len(args) == 4
    for name, given in args.items():
        # certgen signs with the CA in cilium-ca, and makes none of its own: without the
        # Secret it fails rather than sign with a CA no peer trusts (cilium/certgen
        # cmd/certgen.go generateCertificates)
        assert "--ca-reuse-secret" in given, name
        assert "--ca-secret-name=cilium-ca" in given, name
        assert "--ca-secret-namespace=kube-system" in given, name
        assert "--ca-generate=false" in given, name
    secret = ca_secret(joined[version])
    assert secret.inputs["metadata"]["name"] == "cilium-ca"
    assert secret.inputs["metadata"]["namespace"] == "kube-system"  # the release's
    assert set(secret.inputs["data"]) == {"ca.crt", "ca.key"}  # what certgen reads


def certgen_jobs(objects) -> dict[str, dict[str, Any]]:
    return {
        o["metadata"]["name"].rsplit("-", 1)[0]: o
        for o in objects
        if o["kind"] == "Job" and "generate-certs" in o["metadata"]["name"]
    }


@pytest.mark.parametrize("version", ACCEPTED)
def test_a_new_ca_reissues_every_certificate(reference, joined, version):
    # certgen runs again only when its Job's name (a checksum of its spec) changes, and the
    # CA is not in the spec: the CA's fingerprint, as a pod label, is
    mine = values(joined[version])
    again = json.loads(json.dumps(mine))
    for labels in (again["certgen"]["podLabels"], again["clustermesh"]["apiserver"]["podLabels"]):
        labels["cilium-eks.io/mesh-ca"] = "0123456789abcdef"
    before = certgen_jobs(render(reference, version, json.dumps(mine)))
    after = certgen_jobs(render(reference, version, json.dumps(again)))
    assert (
        set(before)
        == set(after)
        == {
            "hubble-generate-certs",
            "clustermesh-apiserver-generate-certs",
        }
    )
    for name, job in before.items():
        assert job["metadata"]["name"] != after[name]["metadata"]["name"], name
    fingerprint = hashlib.sha256(CA_CERT.encode()).hexdigest()[:16]
    assert mine["certgen"]["podLabels"] == {"cilium-eks.io/mesh-ca": fingerprint}


@pytest.mark.parametrize("version", ACCEPTED)
def test_the_mtu_fits_inter_region_peering(reference, joined, version):
    # inter-region VPC peering carries at most 8500 bytes (EC2 user guide, "Network MTU")
    config = find(rendered_mesh(reference, joined[version], version), "ConfigMap", "cilium-config")
    assert config["data"]["mtu"] == "8500"


@pytest.mark.parametrize("version", ACCEPTED)
def test_the_chart_refuses_cluster_ids_from_128_in_eni_mode(reference, joined, version):
    # why mesh.clusterId stops at 127: validate.yaml, cilium/cilium #21330
    chart_values = json.loads(json.dumps(values(joined[version])))
    chart_values["cluster"]["id"] = 128
    with pytest.raises(Exception, match="cluster ID is 128-255"):
        render(reference, version, json.dumps(chart_values))


# --- the link, against moto's EC2 ------------------------------------------------------------


@pytest.fixture(scope="module")
def aws():
    with pytest.MonkeyPatch.context() as env:
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            env.setenv(key, "testing")
        env.setenv("AWS_DEFAULT_REGION", "eu-west-1")  # neither side's region
        env.delenv("AWS_PROFILE", raising=False)
        # no instance runs here: moto's stock AMIs (0.25 s per region's EC2) are not loaded
        env.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
        with mock_aws():
            yield boto3.Session()


def clients_of(session):
    made: dict[str, Any] = {}
    return lambda region: made.setdefault(region, session.client("ec2", region_name=region))


def vpc_in(clients, region: str, cidr: str) -> str:
    return clients(region).create_vpc(CidrBlock=cidr)["Vpc"]["VpcId"]


def status(clients, region: str, peering: str) -> str:
    (found,) = clients(region).describe_vpc_peering_connections(VpcPeeringConnectionIds=[peering])[
        "VpcPeeringConnections"
    ]
    return found["Status"]["Code"]


def no_sleep(_seconds: float) -> None:
    raise AssertionError("moto answers at once: no wait expected")


@pytest.mark.parametrize("regions", [("us-east-1", "us-east-1"), ("us-east-1", "ap-northeast-2")])
def test_the_first_side_makes_the_link_the_second_adopts_it(aws, regions):
    clients = clients_of(aws)
    mine, theirs = regions
    vpc_a, vpc_b = vpc_in(clients, mine, "10.0.0.0/16"), vpc_in(clients, theirs, "10.1.0.0/16")
    peering, created = link(clients, mine, vpc_a, theirs, vpc_b, name="a-b", sleep=no_sleep)
    assert created and status(clients, mine, peering) == "active"
    # the other stack's MeshLink finds it, from its own side: one link, not two
    again, created = link(clients, theirs, vpc_b, mine, vpc_a, sleep=no_sleep)
    assert (again, created) == (peering, False)


def test_whichever_side_goes_first_deletes_the_link_and_the_other_finds_it_gone(aws):
    clients = clients_of(aws)
    vpc_a = vpc_in(clients, "us-east-1", "10.0.0.0/16")
    vpc_b = vpc_in(clients, "us-west-2", "10.1.0.0/16")
    peering, _ = link(clients, "us-east-1", vpc_a, "us-west-2", vpc_b, sleep=no_sleep)
    assert unlink(clients, "us-west-2", peering) is True  # B is destroyed first
    assert find_peering(clients("us-east-1"), vpc_a, vpc_b) is None
    assert unlink(clients, "us-east-1", peering) is False  # A's destroy: nothing left
    # and a later bring-up makes a new one
    new, created = link(clients, "us-east-1", vpc_a, "us-west-2", vpc_b, sleep=no_sleep)
    assert created and new != peering


def test_an_old_link_deletes_only_itself_not_the_one_that_replaced_it(aws):
    clients = clients_of(aws)
    vpc_a = vpc_in(clients, "us-east-1", "10.0.0.0/16")
    vpc_b = vpc_in(clients, "us-east-1", "10.1.0.0/16")
    old, _ = link(clients, "us-east-1", vpc_a, "us-east-1", vpc_b, sleep=no_sleep)
    assert unlink(clients, "us-east-1", old)  # A left the mesh...
    new, _ = link(
        clients, "us-east-1", vpc_a, "us-east-1", vpc_b, sleep=no_sleep
    )  # ...and came back
    # B's replacement adopts the new link, then B's old MeshLink is deleted: the new stays
    assert link(clients, "us-east-1", vpc_b, "us-east-1", vpc_a, sleep=no_sleep) == (new, False)
    assert unlink(clients, "us-east-1", old) is False
    assert status(clients, "us-east-1", new) == "active"


def test_a_fresh_cross_region_request_is_accepted_once_the_peer_region_knows_it(aws):
    from botocore.exceptions import ClientError

    clients = clients_of(aws)
    vpc_a = vpc_in(clients, "us-east-1", "10.0.0.0/16")
    vpc_b = vpc_in(clients, "eu-central-1", "10.1.0.0/16")
    peer = clients("eu-central-1")
    real_accept, unknown = peer.accept_vpc_peering_connection, ["not yet"]

    def accept(**kwargs):
        if unknown:  # EC2's eventual consistency: the accepter's region lags a moment
            unknown.pop()
            error = {"Error": {"Code": "InvalidVpcPeeringConnectionID.NotFound"}}
            raise ClientError(error, "AcceptVpcPeeringConnection")
        return real_accept(**kwargs)

    pauses: list[float] = []
    peer.accept_vpc_peering_connection = accept
    peering, created = link(clients, "us-east-1", vpc_a, "eu-central-1", vpc_b, sleep=pauses.append)
    assert created and status(clients, "us-east-1", peering) == "active"
    assert pauses == [5]  # one pause, then accepted


def test_the_link_records_its_peering_for_the_routes_and_its_own_delete(aws, monkeypatch):
    clients = clients_of(aws)
    monkeypatch.setattr(mesh_link_module, "_clients", clients)
    vpc_a = vpc_in(clients, "us-east-1", "10.0.0.0/16")
    vpc_b = vpc_in(clients, "us-west-2", "10.1.0.0/16")
    props = {"region": "us-east-1", "vpc_id": vpc_a, "peer_region": "us-west-2",
             "peer_vpc_id": vpc_b, "name_tag": "a-b"}  # fmt: skip
    made = MeshLinkProvider().create(props)
    # the routes take `peering_id`; `delete` deletes by it
    assert made.outs["peering_id"] == made.id and made.id.startswith("pcx-")
    (tag,) = clients("us-east-1").describe_vpc_peering_connections(
        VpcPeeringConnectionIds=[made.id]
    )["VpcPeeringConnections"][0]["Tags"]
    assert tag == {"Key": "Name", "Value": "a-b"}
    MeshLinkProvider().delete(made.id, made.outs)
    assert find_peering(clients("us-east-1"), vpc_a, vpc_b) is None


def test_a_peering_that_fails_is_reported_with_awss_reason():
    class Rejected:
        def describe_vpc_peering_connections(self, **kwargs):
            if "Filters" in kwargs:
                return {"VpcPeeringConnections": []}
            status = {"Code": "failed", "Message": "VPC vpc-b is in another account"}
            return {"VpcPeeringConnections": [{"Status": status}]}

        def create_vpc_peering_connection(self, **kwargs):
            return {"VpcPeeringConnection": {"VpcPeeringConnectionId": "pcx-1"}}

    with pytest.raises(RuntimeError, match="pcx-1 is failed: VPC vpc-b is in another account"):
        link(lambda _r: Rejected(), "us-east-1", "vpc-a", "us-east-1", "vpc-b", sleep=no_sleep)


def test_a_fresh_request_is_waited_for_until_it_can_be_accepted():
    # EC2 answers a cross-region request with initiating-request before pending-acceptance
    statuses = ["initiating-request", "pending-acceptance", "active"]
    accepted: list[str] = []

    class Fresh:
        def describe_vpc_peering_connections(self, **kwargs):
            if "Filters" in kwargs:
                return {"VpcPeeringConnections": []}
            code = statuses[0] if not accepted else statuses[-1]
            if code == "initiating-request":
                statuses.pop(0)
            info = {"AccepterVpcInfo": {"VpcId": "vpc-b"}, "Status": {"Code": code}}
            return {"VpcPeeringConnections": [info]}

        def create_vpc_peering_connection(self, **kwargs):
            return {"VpcPeeringConnection": {"VpcPeeringConnectionId": "pcx-1"}}

        def accept_vpc_peering_connection(self, VpcPeeringConnectionId):  # noqa: N803
            accepted.append(VpcPeeringConnectionId)

    pauses: list[float] = []
    found = link(lambda _r: Fresh(), "r", "vpc-a", "p", "vpc-b", sleep=pauses.append)
    assert found == ("pcx-1", True) and accepted == ["pcx-1"] and pauses == [5]


def test_a_link_that_never_turns_active_times_out():
    class Stuck:
        def describe_vpc_peering_connections(self, **kwargs):
            return {
                "VpcPeeringConnections": [
                    {
                        "VpcPeeringConnectionId": "pcx-1",
                        "RequesterVpcInfo": {"VpcId": "vpc-a"},
                        "AccepterVpcInfo": {"VpcId": "vpc-b"},
                        "Status": {"Code": "provisioning"},
                    }
                ]
            }

    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    with pytest.raises(RuntimeError, match="not active after 300 s"):
        link(lambda _r: Stuck(), "r", "vpc-a", "r", "vpc-b", sleep=sleep, clock=lambda: now[0])


OLDS = {"region": "r", "vpc_id": "v", "peer_region": "p", "peer_vpc_id": "w", "name_tag": "x",
        "peer_link": None, "peering_id": "pcx-1"}  # fmt: skip


@pytest.mark.parametrize("key", ["region", "vpc_id", "peer_region", "peer_vpc_id"])
def test_another_vpc_on_either_side_is_another_link(key):
    diff = MeshLinkProvider().diff("pcx-1", OLDS, {**OLDS, key: "changed"})
    assert diff.changes and diff.replaces == [key]
    assert not MeshLinkProvider().diff("pcx-1", OLDS, {**OLDS, "name_tag": "y"}).changes


@pytest.mark.parametrize(
    ("theirs", "replaced"),
    [(None, False), ("pcx-1", False), ("pcx-2", True)],
)
def test_a_peer_that_reports_another_peering_replaces_this_link(theirs, replaced):
    # the other side deleted this one (it left, or went first) and made pcx-2
    news = {k: v for k, v in OLDS.items() if k != "peering_id"}
    diff = MeshLinkProvider().diff("pcx-1", OLDS, {**news, "peer_link": theirs})
    assert diff.changes is replaced and diff.replaces == (["peer_link"] if replaced else [])


def test_the_link_provider_loads_where_pulumi_runs_it(b1):
    from tests.harness import load_provider_in_fresh_process

    (mesh_link,) = b1.of_type(LINK)
    loaded, boto3_imported, _ = load_provider_in_fresh_process(mesh_link.inputs["__provider"])
    assert loaded == f"{mesh_link_module.__name__} MeshLinkProvider"
    assert not boto3_imported  # only a create or delete pays for boto3


# What every MeshLink made before components/mesh.py was split (commit 74083f6) holds in
# its state, inputs and outputs alike: the provider pickled by reference, as
# components.mesh.MeshLinkProvider. A `pulumi up` leaves it in the outputs (the provider's
# diff ignores __provider, so nothing is updated), and `pulumi destroy` unpickles it.
PROVIDER_IN_OLD_STATE = "gASVKwAAAAAAAACMD2NvbXBvbmVudHMubWVzaJSMEE1lc2hMaW5rUHJvdmlkZXKUk5QpgZQu"


def test_a_link_made_before_the_split_still_finds_its_provider(b1):
    from tests.harness import load_provider_in_fresh_process

    assert b"components.mesh\x94\x8c\x10MeshLinkProvider" in base64.b64decode(PROVIDER_IN_OLD_STATE)
    loaded, boto3_imported, reserialized = load_provider_in_fresh_process(PROVIDER_IN_OLD_STATE)
    assert loaded == f"{mesh_link_module.__name__} MeshLinkProvider"
    assert not boto3_imported
    # the same provider as a new link's: what the next `pulumi up` sends as its input
    (mesh_link,) = b1.of_type(LINK)
    assert reserialized == mesh_link.inputs["__provider"] != PROVIDER_IN_OLD_STATE


def test_a_new_provider_input_alone_changes_no_link():
    # the one difference between an old link's inputs and the next `pulumi up`'s
    news = {**OLDS, "__provider": "components.mesh_link"}
    diff = MeshLinkProvider().diff("pcx-1", {**OLDS, "__provider": "components.mesh"}, news)
    assert not diff.changes and diff.replaces == []


# --- the documented bring-up ------------------------------------------------------------------

DOC = ROOT / "docs" / "clustermesh.md"


def documented_stack(name: str) -> dict[str, Any]:
    """The `config:` of the stack file docs/clustermesh.md shows as Pulumi.<name>.yaml."""
    text = DOC.read_text()
    after = text.index(f"`Pulumi.{name}.yaml`")
    block = text[text.index("```yaml\n", after) + len("```yaml\n") :]
    return yaml.safe_load(block[: block.index("```")])["config"]


def test_the_documented_stack_files_pass_make_check(tmp_path):
    (tmp_path / "Pulumi.yaml").write_text((ROOT / "Pulumi.yaml").read_text())
    for name in ("mesh-a", "mesh-b"):
        (tmp_path / ("Pulumi." + name + ".yaml")).write_text(
            yaml.safe_dump({"config": documented_stack(name)})
        )
        assert check_config.check(name, root=tmp_path) == []


def test_the_documented_bring_up_meshes_the_documented_stacks():
    def overrides(name: str, **more: Any) -> dict[str, Any]:
        config = {k.removeprefix("cilium-eks:"): v for k, v in documented_stack(name).items()}
        # the rest as a user's stack leaves it: the cluster name derived from the stack's
        return {**config, "clusterName": None, **more}

    a = up("mesh-a", overrides("mesh-a"))
    b = up("mesh-b", overrides("mesh-b"), {f"{ORG}/cilium-eks/mesh-a": a})  # step 2
    mesh_b = {"clusterId": 1, "peers": [f"{ORG}/cilium-eks/mesh-b"]}  # step 3's config set
    a = up("mesh-a", overrides("mesh-a", mesh=mesh_b), {f"{ORG}/cilium-eks/mesh-b": b})
    waiting = {name: env_of(job)["MESH_WAITING"] for name, job in mesh_jobs(b).items()}
    assert waiting and all("does not list this stack" in why for why in waiting.values())
    proved = {name: env_of(job)["MESH_WAITING"] for name, job in mesh_jobs(a).items()}
    assert proved == {
        "mesh-tiefighter-cilium-eks-mesh-b": "",
        "mesh-xwing-cilium-eks-mesh-b": "",
    }
    # the page's manual call names the peer's own Service
    assert "deathstar-cilium-eks-mesh-b.starwars.svc.cluster.local" in DOC.read_text()
