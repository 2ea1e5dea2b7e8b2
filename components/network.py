"""The VPC: per AZ a public, a private and a control-plane subnet, an internet gateway and
NAT egress.

In ENI IPAM mode every pod takes a VPC address from the private subnet of its node's AZ,
so the private subnets are large (/19 in a /16 VPC, /20 in a /17) and the public ones,
which hold only NAT gateways and load balancers, are small. The control-plane subnets are
/28s for the ENIs EKS puts in the VPC (EKS user guide: at least 6 free addresses, 16
recommended; small dedicated subnets, so pods never exhaust them).

Imports the config and the mesh's peers and link; components/stack.py uses it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from components.config import ConfigError, NetworkConfig
from components.mesh import Peer
from components.mesh_link import MeshLink

# Subnet role tags read by the AWS Load Balancer Controller and the in-tree service
# controller (EKS docs, "Subnet requirements and considerations").
PUBLIC_SUBNET_TAGS = {"kubernetes.io/role/elb": "1"}
PRIVATE_SUBNET_TAGS = {"kubernetes.io/role/internal-elb": "1"}

# With network.vpcEndpoints: the AWS APIs the cluster cannot work without, reached from the
# private subnets without the NAT gateway: cilium-operator calls EC2 (ENIs, IPs) and STS
# (IRSA), nodes pull images from ECR (API and registry: EKS's own, and Cilium's and the
# demo's through the stack's cache of quay.io, components/image_cache.py). S3 holds ECR's
# image layers and is a gateway endpoint (no hourly cost) on the private route tables.
INTERFACE_ENDPOINT_SERVICES = ("sts", "ec2", "ecr.api", "ecr.dkr")
GATEWAY_ENDPOINT_SERVICES = ("s3",)


# The size of a control-plane subnet: 16 addresses, 11 usable (AWS keeps 5 per subnet).
CONTROL_PLANE_PREFIX = 28


def subnet_plan(cidr: str, az_count: int) -> list[tuple[str, str, str]]:
    """(public, private, control-plane) CIDRs, one triple per AZ.

    The VPC is cut in eight: blocks 0-5 are the private subnets (one per AZ, up to six),
    block 6 holds the /28 control-plane subnets, block 7 is cut again into /(prefix+8)
    public subnets. Fixed positions keep a subnet's CIDR unchanged when azCount grows, so
    adding an AZ never replaces an existing subnet.
    """
    vpc = ipaddress.ip_network(cidr)
    eighths = list(vpc.subnets(prefixlen_diff=3))
    public_blocks = list(eighths[7].subnets(prefixlen_diff=5))
    control_plane = eighths[6].subnets(new_prefix=CONTROL_PLANE_PREFIX)
    return [
        (str(public_blocks[i]), str(eighths[i]), str(next(control_plane))) for i in range(az_count)
    ]


@dataclass
class NetworkArgs:
    config: NetworkConfig
    name_prefix: str  # prefix of the Name tags, e.g. the cluster name
    region: str  # the VPC's: where its links to ClusterMesh peers are requested from
    # more tags for the private subnets, e.g. what Karpenter's EC2NodeClass selects them by
    private_subnet_tags: Mapping[str, str] = field(default_factory=dict)
    # ClusterMesh peers (components/mesh.py): linked, and routed from the private subnets
    peers: Sequence[Peer] = ()


class Network(pulumi.ComponentResource):
    """VPC, subnets, internet gateway, NAT gateway(s) and routes.

    Outputs for the rest of the graph:
    - `vpc_id`, `control_plane_subnet_ids`, `subnet_ids` (every subnet): what the cluster
      needs. The cluster depends on these only, so the NAT gateways (a few minutes each)
      are built while the EKS control plane (about ten minutes) is.
    - `private_subnet_ids`: where nodes and, in ENI mode, pods live.
    - `egress`: the route table associations that make the private subnets reach the
      internet, and the VPC endpoints when they are on. Nodes need them to pull images and
      join; nothing before the nodes does.

    With ClusterMesh peers, the VPC is peered with each peer's (MeshLink) and the private
    route tables route each peer's CIDR through its link. Those routes are in the tables'
    own `routes`, next to the NAT route: a table's inline routes and separate Route
    resources overwrite each other (pulumi-aws RouteTable docs), and the first `pulumi up
    --refresh` would drop the peers' routes.
    """

    vpc_id: pulumi.Output[str]
    account_id: pulumi.Output[str]  # the VPC's owner
    cidr: str
    public_subnet_ids: list[pulumi.Output[str]]
    private_subnet_ids: list[pulumi.Output[str]]
    control_plane_subnet_ids: list[pulumi.Output[str]]
    subnet_ids: list[pulumi.Output[str]]  # all of the above
    private_route_table_ids: list[pulumi.Output[str]]
    egress: list[pulumi.Resource]

    def __init__(
        self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("cilium-eks:index:Network", name, None, opts)
        cfg = args.config
        child = pulumi.ResourceOptions(parent=self)

        zones = aws.get_availability_zones(
            state="available",
            # Local and Wavelength zones are opt-in; EKS control planes do not use them.
            filters=[{"name": "opt-in-status", "values": ["opt-in-not-required"]}],
            opts=pulumi.InvokeOptions(parent=self),
        )
        az_names = sorted(zones.names)
        if len(az_names) < cfg.az_count:
            raise ConfigError(
                f"network.azCount: {cfg.az_count} but the region has only {len(az_names)} "
                f"available zones ({', '.join(az_names)}); allowed: 2 to {len(az_names)}"
            )

        def tags(name: str, extra: dict[str, str] | None = None) -> dict[str, str]:
            return {"Name": f"{args.name_prefix}-{name}", **(extra or {})}

        vpc = aws.ec2.Vpc(
            "vpc",
            cidr_block=cfg.cidr,
            enable_dns_support=True,
            enable_dns_hostnames=True,  # EKS private endpoint resolution needs both
            tags=tags("vpc"),
            opts=child,
        )
        igw = aws.ec2.InternetGateway("igw", vpc_id=vpc.id, tags=tags("igw"), opts=child)
        public_rt = aws.ec2.RouteTable(
            "public",
            vpc_id=vpc.id,
            routes=[{"cidr_block": "0.0.0.0/0", "gateway_id": igw.id}],
            tags=tags("public"),
            opts=child,
        )

        self.links: dict[str, pulumi.Output[str]] = {}  # the peering id, by peer key
        peer_routes = []
        for peer in args.peers:
            link = MeshLink(
                f"link-{peer.key}",
                region=args.region,
                vpc_id=vpc.id,
                peer_region=peer.fact("region"),
                peer_vpc_id=peer.fact("vpcId"),
                peer_link=peer.its_link,
                tag=peer.fact("clusterName").apply(lambda name: f"{args.name_prefix}-{name}"),
                opts=child,
            )
            self.links[peer.key] = link.peering_id
            peer_routes.append(
                {"cidr_block": peer.fact("vpcCidr"), "vpc_peering_connection_id": link.peering_id}
            )

        public: list[aws.ec2.Subnet] = []
        private: list[aws.ec2.Subnet] = []
        control_plane: list[aws.ec2.Subnet] = []
        egress: list[pulumi.Resource] = []
        nat_ids: list[pulumi.Output[str]] = []
        private_tables: list[aws.ec2.RouteTable] = []
        for i, (az, (public_cidr, private_cidr, control_plane_cidr)) in enumerate(
            zip(az_names[: cfg.az_count], subnet_plan(cfg.cidr, cfg.az_count), strict=True)
        ):
            pub = aws.ec2.Subnet(
                f"public-{i}",
                vpc_id=vpc.id,
                cidr_block=public_cidr,
                availability_zone=az,
                map_public_ip_on_launch=False,  # only NAT gateways and load balancers live here
                tags=tags(f"public-{az}", PUBLIC_SUBNET_TAGS),
                opts=child,
            )
            priv = aws.ec2.Subnet(
                f"private-{i}",
                vpc_id=vpc.id,
                cidr_block=private_cidr,
                availability_zone=az,
                map_public_ip_on_launch=False,
                tags=tags(f"private-{az}", {**PRIVATE_SUBNET_TAGS, **args.private_subnet_tags}),
                opts=child,
            )
            # No route table of its own: the VPC's main table (local routes only) is all
            # that EKS's ENIs need; they answer the nodes and reach nothing outside.
            control_plane.append(
                aws.ec2.Subnet(
                    f"control-plane-{i}",
                    vpc_id=vpc.id,
                    cidr_block=control_plane_cidr,
                    availability_zone=az,
                    map_public_ip_on_launch=False,
                    tags=tags(f"control-plane-{az}"),
                    opts=child,
                )
            )
            public.append(pub)
            private.append(priv)
            egress.append(
                aws.ec2.RouteTableAssociation(
                    f"public-{i}", subnet_id=pub.id, route_table_id=public_rt.id, opts=child
                )
            )
            if i == 0 or cfg.nat_gateways == "perAz":
                eip = aws.ec2.Eip(f"nat-{i}", domain="vpc", tags=tags(f"nat-{az}"), opts=child)
                nat = aws.ec2.NatGateway(
                    f"nat-{i}",
                    subnet_id=pub.id,
                    allocation_id=eip.id,
                    tags=tags(f"nat-{az}"),
                    # A NAT gateway needs the VPC's internet gateway to reach anything.
                    opts=pulumi.ResourceOptions(parent=self, depends_on=[igw]),
                )
                nat_ids.append(nat.id)
            private_rt = aws.ec2.RouteTable(
                f"private-{i}",
                vpc_id=vpc.id,
                routes=[{"cidr_block": "0.0.0.0/0", "nat_gateway_id": nat_ids[-1]}, *peer_routes],
                tags=tags(f"private-{az}"),
                opts=child,
            )
            private_tables.append(private_rt)
            egress.append(
                aws.ec2.RouteTableAssociation(
                    f"private-{i}", subnet_id=priv.id, route_table_id=private_rt.id, opts=child
                )
            )
        if cfg.vpc_endpoints:
            egress += vpc_endpoints(self, vpc, private, private_tables, tags)

        self.vpc_id = vpc.id
        self.account_id = vpc.owner_id
        self.cidr = cfg.cidr
        self.public_subnet_ids = [s.id for s in public]
        self.private_subnet_ids = [s.id for s in private]
        self.control_plane_subnet_ids = [s.id for s in control_plane]
        self.subnet_ids = [s.id for s in [*public, *private, *control_plane]]
        self.private_route_table_ids = [t.id for t in private_tables]
        self.egress = egress
        self.register_outputs(
            {
                "vpcId": self.vpc_id,
                "publicSubnetIds": self.public_subnet_ids,
                "privateSubnetIds": self.private_subnet_ids,
                "controlPlaneSubnetIds": self.control_plane_subnet_ids,
            }
        )


def vpc_endpoints(
    parent: pulumi.Resource,
    vpc: aws.ec2.Vpc,
    subnets: list[aws.ec2.Subnet],
    route_tables: list[aws.ec2.RouteTable],
    tags: Callable[[str], dict[str, str]],
) -> list[pulumi.Resource]:
    """Interface endpoints with private DNS in the private subnets, and the S3 gateway.

    Their security group admits HTTPS from the VPC only (nodes and, in ENI mode, pods have
    VPC addresses) and has no egress rule: an endpoint only answers.
    """
    child = pulumi.ResourceOptions(parent=parent)
    invoke = pulumi.InvokeOptions(parent=parent)
    group = aws.ec2.SecurityGroup(
        "endpoints",
        description="HTTPS from the VPC to its AWS API endpoints",
        vpc_id=vpc.id,
        ingress=[
            aws.ec2.SecurityGroupIngressArgs(
                protocol="tcp", from_port=443, to_port=443, cidr_blocks=[vpc.cidr_block]
            )
        ],
        tags=tags("endpoints"),
        opts=child,
    )
    endpoints: list[pulumi.Resource] = []
    kinds = {service: "Interface" for service in INTERFACE_ENDPOINT_SERVICES}
    kinds.update({service: "Gateway" for service in GATEWAY_ENDPOINT_SERVICES})
    for service, kind in kinds.items():
        # The service name differs by partition (cn.com.amazonaws... in China): ask AWS.
        found = aws.ec2.get_vpc_endpoint_service(service=service, service_type=kind, opts=invoke)
        placement: dict[str, Any] = (
            {
                "private_dns_enabled": True,
                "subnet_ids": [s.id for s in subnets],
                "security_group_ids": [group.id],
            }
            if kind == "Interface"
            else {"route_table_ids": [t.id for t in route_tables]}
        )
        endpoints.append(
            aws.ec2.VpcEndpoint(
                service,
                vpc_id=vpc.id,
                service_name=found.service_name,
                vpc_endpoint_type=kind,
                tags=tags(f"endpoint-{service}"),
                opts=child,
                **placement,
            )
        )
    return endpoints
