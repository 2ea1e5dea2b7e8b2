"""components/network.py: the VPC layout and what depends on NAT."""

from __future__ import annotations

import ipaddress
import itertools

import pytest

from components.network import subnet_plan
from tests.harness import Graph, mock_id, run_ok

SUBNET = "aws:ec2/subnet:Subnet"
NAT = "aws:ec2/natGateway:NatGateway"
ROUTE_TABLE = "aws:ec2/routeTable:RouteTable"
ASSOCIATION = "aws:ec2/routeTableAssociation:RouteTableAssociation"


@pytest.mark.parametrize(
    ("cidr", "az_count"), [("10.0.0.0/16", 6), ("10.0.0.0/17", 6), ("172.16.0.0/16", 2)]
)
def test_subnet_plan_fits_the_vpc_without_overlap_and_private_subnets_are_large(cidr, az_count):
    vpc = ipaddress.ip_network(cidr)
    plan = subnet_plan(cidr, az_count)
    assert len(plan) == az_count
    nets = [ipaddress.ip_network(c) for triple in plan for c in triple]
    assert all(n.subnet_of(vpc) for n in nets)
    assert not any(a.overlaps(b) for a, b in itertools.combinations(nets, 2))
    for public, private, control_plane in plan:
        assert ipaddress.ip_network(private).prefixlen <= 20  # pod IPs live here
        assert ipaddress.ip_network(public).prefixlen <= 25  # NAT + load balancers
        # EKS's ENIs: at least 6 free addresses, 16 recommended (AWS keeps 5 per subnet)
        assert ipaddress.ip_network(control_plane).num_addresses == 16


def test_subnet_plan_keeps_existing_subnets_when_azs_are_added():
    assert subnet_plan("10.0.0.0/16", 6)[:3] == subnet_plan("10.0.0.0/16", 3)


def test_vpc_has_dns_support_and_hostnames(dev):
    vpc = dev.one("aws:ec2/vpc:Vpc")
    assert vpc.inputs["cidrBlock"] == "10.0.0.0/16"
    assert vpc.inputs["enableDnsSupport"] is True and vpc.inputs["enableDnsHostnames"] is True


def test_one_public_one_private_and_one_control_plane_subnet_per_az(dev):
    subnets = dev.of_type(SUBNET)
    public = [s for s in subnets if s.inputs["tags"].get("kubernetes.io/role/elb") == "1"]
    private = [s for s in subnets if s.inputs["tags"].get("kubernetes.io/role/internal-elb") == "1"]
    control_plane = [s for s in subnets if s.name.startswith("control-plane-")]
    assert len(public) == len(private) == len(control_plane) == 3 and len(subnets) == 9
    # no load balancer role: nothing but EKS's ENIs goes there, and no route out
    assert not any("kubernetes.io/role" in k for s in control_plane for k in s.inputs["tags"])
    assert not [a for a in dev.of_type(ASSOCIATION)
                if a.inputs["subnetId"] in {mock_id(s) for s in control_plane}]  # fmt: skip
    azs = ["ap-northeast-2a", "ap-northeast-2b", "ap-northeast-2c"]
    assert sorted(s.inputs["availabilityZone"] for s in public) == azs
    assert sorted(s.inputs["availabilityZone"] for s in private) == azs
    for s in subnets:  # public ones hold only NAT gateways and load balancers
        assert s.inputs["mapPublicIpOnLaunch"] is False
    for s in private:  # pod IPs live here
        assert ipaddress.ip_network(s.inputs["cidrBlock"]).prefixlen <= 20


def default_route(graph: Graph, subnet_id: str) -> dict:
    """The 0.0.0.0/0 route of the route table associated with a subnet."""
    (assoc,) = [a for a in graph.of_type(ASSOCIATION) if a.inputs["subnetId"] == subnet_id]
    (table,) = [t for t in graph.of_type(ROUTE_TABLE) if mock_id(t) == assoc.inputs["routeTableId"]]
    (route,) = [r for r in table.inputs["routes"] if r["cidrBlock"] == "0.0.0.0/0"]
    return route


def test_private_subnets_route_to_nat_and_public_to_the_internet_gateway(dev):
    igw = dev.one("aws:ec2/internetGateway:InternetGateway")
    nat = dev.one(NAT)  # natGateways: single
    for subnet_id in dev.subnet_ids("public"):
        assert default_route(dev, subnet_id).get("gatewayId") == mock_id(igw)
    for subnet_id in dev.subnet_ids("private"):
        assert default_route(dev, subnet_id).get("natGatewayId") == mock_id(nat)
    assert dev.waits_for(nat, igw)
    assert nat.inputs["subnetId"] in dev.subnet_ids("public")


def test_nat_per_az_gives_each_private_subnet_its_own_nat():
    graph = run_ok({"network.natGateways": "perAz"})
    nats = graph.of_type(NAT)
    assert len(nats) == 3 and len(graph.of_type("aws:ec2/eip:Eip")) == 3
    routes = [default_route(graph, s)["natGatewayId"] for s in graph.subnet_ids("private")]
    assert sorted(routes) == sorted(mock_id(n) for n in nats)  # one each, none shared
    # and each NAT sits in the public subnet of its private subnet's AZ
    az_of = {mock_id(s): s.inputs["availabilityZone"] for s in graph.of_type(SUBNET)}
    nat_az = {mock_id(n): az_of[n.inputs["subnetId"]] for n in nats}
    for subnet_id, nat_id in zip(graph.subnet_ids("private"), routes, strict=True):
        assert nat_az[nat_id] == az_of[subnet_id]


def test_subnets_avoid_opt_in_zones_and_the_gateway_is_the_vpcs(dev):
    # Local and Wavelength zones are opt-in; EKS does not run its control plane there
    zones = {s.inputs["availabilityZone"] for s in dev.of_type(SUBNET)}
    assert zones == {"ap-northeast-2a", "ap-northeast-2b", "ap-northeast-2c"}
    graph = run_ok({"network.vpcEndpoints": True})
    vpc = graph.one("aws:ec2/vpc:Vpc")
    in_a_vpc = {
        SUBNET, ROUTE_TABLE, "aws:ec2/internetGateway:InternetGateway",
        "aws:ec2/securityGroup:SecurityGroup", "aws:ec2/vpcEndpoint:VpcEndpoint",
    }  # fmt: skip
    found = [r for r in graph.resources if r.type in in_a_vpc]
    assert {r.type for r in found} == in_a_vpc
    for res in found:  # in this VPC, not the account's default one
        assert res.inputs.get("vpcId") == mock_id(vpc), res.name
    assert graph.one("aws:ec2/eip:Eip").inputs["domain"] == "vpc"  # a NAT gateway's address


def test_az_count_sets_the_number_of_subnets():
    assert (
        len(run_ok({"network.azCount": 2}).of_type(SUBNET)) == 6
    )  # public, private, control plane


# --- network.vpcEndpoints -----------------------------------------------------------------

ENDPOINT = "aws:ec2/vpcEndpoint:VpcEndpoint"


def test_no_endpoints_unless_asked(dev):
    assert not dev.of_type(ENDPOINT)
    assert not dev.of_type("aws:ec2/securityGroup:SecurityGroup")


def test_endpoints_give_private_paths_to_the_apis_the_cluster_needs():
    graph = run_ok({"network.vpcEndpoints": True})
    endpoints = {e.inputs["serviceName"]: e.inputs for e in graph.of_type(ENDPOINT)}
    region = "ap-northeast-2"
    interface = {f"com.amazonaws.{region}.{s}" for s in ("sts", "ec2", "ecr.api", "ecr.dkr")}
    assert set(endpoints) == interface | {f"com.amazonaws.{region}.s3"}
    (group,) = graph.of_type("aws:ec2/securityGroup:SecurityGroup")
    for name in interface:
        endpoint = endpoints[name]
        assert endpoint["vpcEndpointType"] == "Interface"
        assert endpoint["privateDnsEnabled"] is True  # the SDKs' default names resolve to it
        assert sorted(endpoint["subnetIds"]) == graph.subnet_ids("private")
        assert endpoint["securityGroupIds"] == [mock_id(group)]
    s3 = endpoints[f"com.amazonaws.{region}.s3"]
    assert s3["vpcEndpointType"] == "Gateway"
    private_tables = {
        assoc.inputs["routeTableId"]
        for assoc in graph.of_type(ASSOCIATION)
        if assoc.inputs["subnetId"] in graph.subnet_ids("private")
    }
    assert set(s3["routeTableIds"]) == private_tables
    # HTTPS from the VPC (nodes, and pods: ENI mode gives them VPC addresses), nothing else
    (rule,) = group.inputs["ingress"]
    assert (rule["protocol"], rule["fromPort"], rule["toPort"]) == ("tcp", 443, 443)
    assert rule["cidrBlocks"] == ["10.0.0.0/16"]
    assert not group.inputs.get("egress")


def test_the_networks_resources_are_named_for_the_cluster():
    # in the EC2 console, a resource's Name tag is how a person finds its cluster
    graph = run_ok({"network.vpcEndpoints": True})
    (network,) = graph.of_type("cilium-eks:index:Network")
    named = [r for r in graph.children(network) if "tags" in r.inputs or r.type in TAGGABLE]
    assert {r.type for r in named} == TAGGABLE
    assert all(r.inputs["tags"]["Name"].startswith("cilium-eks-dev-") for r in named)


TAGGABLE = {
    "aws:ec2/vpc:Vpc",
    "aws:ec2/subnet:Subnet",
    "aws:ec2/internetGateway:InternetGateway",
    "aws:ec2/routeTable:RouteTable",
    "aws:ec2/eip:Eip",
    NAT,
    "aws:ec2/securityGroup:SecurityGroup",
    "aws:ec2/vpcEndpoint:VpcEndpoint",
}
