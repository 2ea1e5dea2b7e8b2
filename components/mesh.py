"""Cilium ClusterMesh with other stacks of this project (the `mesh` config).

In ENI mode pods have VPC addresses, so once the VPCs are linked, pods reach each other
natively; ClusterMesh adds the shared identities, policies and global services. Each
stack of the mesh (docs/clustermesh.md has the bring-up order):
- reads its peers' facts from their stack outputs (`mesh`, and cluster 1's `meshCa`):
  VPC, CIDR, region, account, cluster name and ID, clustermesh endpoint; never retyped;
- links its VPC to each peer's with a VPC peering connection (cross-region where the
  regions differ), made once: `MeshLink` creates it, or adopts the one the peer already
  made, so the second stack up finds the first one's; whichever stack is destroyed first
  deletes it. Peering rather than a transit gateway: no hourly charge, no hub to own (a
  gateway's owner could not be destroyed first while others are attached), and two or a
  few clusters need no transitive routing;
- routes each peer's CIDR from its private route tables through the link (in the route
  tables themselves, components/network.py: inline routes and separate Route resources
  on one table overwrite each other), and lets the peer's whole VPC reach its nodes
  (components/cluster.py);
- trusts one CA, made once by cluster 1 (pulumi-tls, in its state) and read by the others
  from cluster 1's secret output: every certificate Cilium makes is signed by it;
- serves its clustermesh-apiserver to the peers behind an internal NLB (`MeshEndpoint`).
The chart values this adds are set in components/cilium.py (`mesh_values`); the global
Services, the policy's clusters and the mesh checks are the demo's
(components/starwars.py).
"""

from __future__ import annotations

import base64
import ipaddress
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi.dynamic
import pulumi_kubernetes as k8s
import pulumi_tls as tls

from components.config import MESH_REFUSED, ConfigError, MeshConfig, mesh_problems

# The clustermesh-apiserver's etcd port, where peers' KVStoreMesh connect (chart: 2379).
ENDPOINT_PORT = 2379
NAMESPACE = "kube-system"
ENDPOINT_SERVICE = "clustermesh-apiserver-nlb"
APISERVER_SELECTOR = {"k8s-app": "clustermesh-apiserver"}  # the chart's pod labels
# An internal NLB, for the in-tree AWS load balancer controller EKS runs and for the AWS
# Load Balancer Controller alike (chart values.yaml: "EKS: ...aws-load-balancer-scheme:
# internal"): no public endpoint.
NLB_ANNOTATIONS = {
    "service.beta.kubernetes.io/aws-load-balancer-type": "nlb",
    "service.beta.kubernetes.io/aws-load-balancer-internal": "true",
    "service.beta.kubernetes.io/aws-load-balancer-scheme": "internal",
}
# The mesh's CA: ten years (certgen refuses leaves that outlive their CA; Cilium's leaves
# last 1 or 3 years and are renewed).
CA_VALIDITY_HOURS = 10 * 365 * 24
CA_COMMON_NAME = "Cilium CA"  # certgen's own name for it
# How long MeshLink waits for a peering to turn active once accepted.
ACTIVE_TIMEOUT = 300


def nlb_hosts(region: str, dns_suffix: str) -> str:
    """What every NLB host name in the region matches (one label, then .elb.<region>):
    the clustermesh-apiserver certificate names it, so peers can verify it by the host
    name they dial, which is only known once the NLB exists."""
    return f"*.elb.{region}.{dns_suffix}"


def native_routing_cidr(cidrs: Sequence[str]) -> str:
    """The smallest IPv4 network covering every cluster's VPC: Cilium's native routing
    CIDR must cover the pod ranges of every cluster of the mesh (ClusterMesh setup)."""
    networks = [ipaddress.ip_network(c) for c in cidrs]
    prefix = min(n.prefixlen for n in networks)
    while True:
        candidate = networks[0].supernet(new_prefix=prefix)
        if all(n.subnet_of(candidate) for n in networks):  # type: ignore[arg-type]
            return str(candidate)
        prefix -= 1


# --- the link ---------------------------------------------------------------------------------


def find_peering(ec2: Any, vpc: str, peer_vpc: str) -> dict[str, Any] | None:
    """The live peering connection between two VPCs, whichever side requested it."""
    live = ["pending-acceptance", "provisioning", "active"]
    for requester, accepter in ((vpc, peer_vpc), (peer_vpc, vpc)):
        found = ec2.describe_vpc_peering_connections(
            Filters=[
                {"Name": "requester-vpc-info.vpc-id", "Values": [requester]},
                {"Name": "accepter-vpc-info.vpc-id", "Values": [accepter]},
                {"Name": "status-code", "Values": live},
            ]
        )["VpcPeeringConnections"]
        # the same test again on what came back (an EC2 look-alike may ignore filters)
        for peering in found:
            if (
                peering["RequesterVpcInfo"]["VpcId"] == requester
                and peering["AccepterVpcInfo"]["VpcId"] == accepter
                and peering["Status"]["Code"] in live
            ):
                return peering
    return None


def link(
    clients: Callable[[str], Any],
    region: str,
    vpc: str,
    peer_region: str,
    peer_vpc: str,
    *,
    name: str = "",
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[str, bool]:
    """(peering id, whether this call made it): the peering between the two VPCs, adopted
    if either side made it already, else requested from `vpc` and accepted in the peer's
    region; active when this returns."""
    ec2, peer_ec2 = clients(region), clients(peer_region)
    existing = find_peering(ec2, vpc, peer_vpc)
    created = existing is None
    if existing is None:
        request: dict[str, Any] = {"VpcId": vpc, "PeerVpcId": peer_vpc}
        if name:
            request["TagSpecifications"] = [
                {"ResourceType": "vpc-peering-connection", "Tags": [{"Key": "Name", "Value": name}]}
            ]
        if peer_region != region:
            request["PeerRegion"] = peer_region
        existing = ec2.create_vpc_peering_connection(**request)["VpcPeeringConnection"]
    peering = existing["VpcPeeringConnectionId"]
    deadline, accepted = clock() + ACTIVE_TIMEOUT, False
    while True:
        (state,) = peer_ec2.describe_vpc_peering_connections(VpcPeeringConnectionIds=[peering])[
            "VpcPeeringConnections"
        ]
        status = state["Status"]["Code"]
        if status == "active":
            return peering, created
        if status == "pending-acceptance" and not accepted:
            accepter = state["AccepterVpcInfo"]["VpcId"]
            (peer_ec2 if accepter == peer_vpc else ec2).accept_vpc_peering_connection(
                VpcPeeringConnectionId=peering
            )
            accepted = True
            continue  # look again at once
        if status not in ("pending-acceptance", "provisioning", "initiating-request"):
            message = state["Status"].get("Message")
            raise RuntimeError(f"VPC peering {peering} is {status}: {message}")
        if clock() >= deadline:
            raise RuntimeError(f"VPC peering {peering} not active after {ACTIVE_TIMEOUT} s")
        sleep(5)


def unlink(clients: Callable[[str], Any], region: str, vpc: str, peer_vpc: str) -> str | None:
    """Delete the peering between the two VPCs, if one is live; its id, or None."""
    ec2 = clients(region)
    found = find_peering(ec2, vpc, peer_vpc)
    if found is None:
        return None
    ec2.delete_vpc_peering_connection(VpcPeeringConnectionId=found["VpcPeeringConnectionId"])
    return found["VpcPeeringConnectionId"]


def _clients(region: str) -> Any:
    import boto3  # here: only a link's create or delete pays its import

    return boto3.client("ec2", region_name=region)


class MeshLinkProvider(pulumi.dynamic.ResourceProvider):
    """The peering between this stack's VPC and a peer's (see `link`, `unlink`). Inputs:
    region, vpc_id, peer_region, peer_vpc_id, and the Name tag of a peering it makes.
    Pickled by reference, like teardown.py's."""

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        peering, created = link(
            _clients,
            props["region"],
            props["vpc_id"],
            props["peer_region"],
            props["peer_vpc_id"],
            name=props.get("name_tag", ""),
        )
        pulumi.log.info(f"VPC peering {peering} {'created' if created else 'adopted'}")
        return pulumi.dynamic.CreateResult(peering, {**props, "peering_id": peering})

    def diff(
        self, _id: str, olds: dict[str, Any], news: dict[str, Any]
    ) -> pulumi.dynamic.DiffResult:
        keys = ("region", "vpc_id", "peer_region", "peer_vpc_id")
        changed = [k for k in keys if olds.get(k) != news.get(k)]
        # another VPC on either side is another link
        return pulumi.dynamic.DiffResult(changes=bool(changed), replaces=changed)

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        gone = unlink(_clients, props["region"], props["vpc_id"], props["peer_vpc_id"])
        pulumi.log.info(f"VPC peering {gone or _id}: {'deleted' if gone else 'already gone'}")


class MeshLink(pulumi.dynamic.Resource, name="MeshLink"):
    peering_id: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        region: pulumi.Input[str],
        vpc_id: pulumi.Input[str],
        peer_region: pulumi.Input[str],
        peer_vpc_id: pulumi.Input[str],
        tag: pulumi.Input[str] = "",
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props = {
            "name_tag": tag,
            "region": region,
            "vpc_id": vpc_id,
            "peer_region": peer_region,
            "peer_vpc_id": peer_vpc_id,
            "peering_id": None,
        }
        super().__init__(MeshLinkProvider(), name, props, opts)


# --- the mesh ---------------------------------------------------------------------------------


def stack_path() -> str:
    """This stack as its peers name it in mesh.peers: org/project/stack."""
    return f"{pulumi.get_organization()}/{pulumi.get_project()}/{pulumi.get_stack()}"


@dataclass
class Peer:
    """A peer stack and its facts (its `mesh` output, checked by config.mesh_problems)."""

    stack: str  # org/cilium-eks/<stack>, as in mesh.peers
    facts: pulumi.Output[dict[str, Any]]

    @property
    def key(self) -> str:
        """The peer in resource names (org-stack; the project is this one): stable whatever
        the order of mesh.peers."""
        org, _project, stack = self.stack.split("/")
        return re.sub(r"[^A-Za-z0-9-]+", "-", f"{org}-{stack}").strip("-").lower()

    def fact(self, name: str) -> pulumi.Output[Any]:
        return self.facts.apply(lambda facts: facts[name])

    @staticmethod
    def lists_this_stack(facts: dict[str, Any]) -> bool:
        """Whether a peer's facts list this stack too: only then do both clusters sync
        each other's identities and route each other's traffic, so only then can a check
        in this cluster reach the peer's pods."""
        return stack_path() in facts.get("peers", [])


@dataclass
class MeshValues:
    """What the Cilium chart needs to join the mesh (components/cilium.py sets it)."""

    cluster_id: int
    clusters: pulumi.Output[list[dict[str, Any]]]  # clustermesh.config.clusters
    ca_cert: pulumi.Output[str]  # base64 PEM, as the chart's tls.ca.cert takes it
    ca_key: pulumi.Output[str]
    native_routing_cidr: pulumi.Output[str]
    endpoint_hosts: str  # nlb_hosts(): what the clustermesh-apiserver's certificate names


@dataclass
class MeshArgs:
    config: MeshConfig
    cluster_name: str
    region: str
    dns_suffix: str  # the partition's, for the NLB host names: amazonaws.com
    vpc_cidr: str
    demo_policy: str | None  # the demo's policy mode, None without the demo: peers check it


class Mesh(pulumi.ComponentResource):
    """The peers' facts, the mesh's CA, and the chart values; declared first of all.

    - `peers`: each peer's facts, for the VPC links and routes (components/network.py),
      the security group rules (components/cluster.py), and the demo's global Services,
      policy and checks (components/starwars.py).
    - `checked`: resolves once every peer's facts pass config.mesh_problems, and fails
      the run otherwise; the AWS provider waits for it, so a bad peer stops the run
      before any AWS resource (and so any other) is touched.
    - `values`: for the Cilium release.
    - `outputs(vpc_id, endpoint)`: this stack's `mesh` output, what its peers read;
      `ca` (cluster 1 only): its secret `meshCa` output.
    """

    peers: list[Peer]
    values: MeshValues
    ca: pulumi.Output[dict[str, str]] | None
    checked: pulumi.Output[list[pulumi.Resource]]

    def __init__(
        self, name: str, args: MeshArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("cilium-eks:index:Mesh", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        cfg = args.config
        self.args = args

        refs = [pulumi.StackReference(peer, opts=child) for peer in cfg.peers]

        def checked(found: list[Any]) -> list[dict[str, Any]]:
            problems = mesh_problems(
                cluster_name=args.cluster_name,
                cluster_id=cfg.cluster_id,
                vpc_cidr=args.vpc_cidr,
                account=None,  # the preflight's (the caller's); the link fails on another
                peers=dict(zip(cfg.peers, found, strict=True)),
            )
            if problems:
                raise ConfigError(MESH_REFUSED + "\n  - " + "\n  - ".join(problems))
            return found

        facts = pulumi.Output.all(*[ref.get_output("mesh") for ref in refs]).apply(checked)
        # Nothing for the AWS provider to wait for, once the peers pass (see __main__.py).
        self.checked = facts.apply(lambda _: [])
        self.peers = [
            Peer(stack, facts.apply(lambda found, i=i: found[i]))
            for i, stack in enumerate(cfg.peers)
        ]

        if cfg.cluster_id == 1:
            key = tls.PrivateKey("ca", algorithm="ECDSA", ecdsa_curve="P256", opts=child)
            cert = tls.SelfSignedCert(
                "ca",
                private_key_pem=key.private_key_pem,
                is_ca_certificate=True,
                validity_period_hours=CA_VALIDITY_HOURS,
                allowed_uses=["cert_signing", "crl_signing", "digital_signature"],
                subject=tls.SelfSignedCertSubjectArgs(
                    common_name=CA_COMMON_NAME, organization=f"cilium-eks {stack_path()}"
                ),
                opts=child,
            )
            ca = pulumi.Output.secret(
                pulumi.Output.all(cert=cert.cert_pem, key=key.private_key_pem)
            )
            self.ca = ca
        else:
            # cluster 1's (mesh_problems made sure that one of the peers is cluster 1)
            def first_cluster_ca(found: list[Any]) -> dict[str, str]:
                peer_facts, cas = found[0], found[1:]
                for stack, peer, ca in zip(cfg.peers, peer_facts, cas, strict=True):
                    if peer["clusterId"] == 1:
                        if not ca:
                            raise ConfigError(
                                f"mesh.peers: {stack} is cluster 1 but has no meshCa output"
                            )
                        return ca
                raise AssertionError("mesh_problems requires cluster 1 among the peers")

            ca = pulumi.Output.all(facts, *[ref.get_output("meshCa") for ref in refs]).apply(
                first_cluster_ca
            )
            self.ca = None

        def b64(text: str) -> str:
            return base64.b64encode(text.encode()).decode()

        self.values = MeshValues(
            cluster_id=cfg.cluster_id,
            clusters=facts.apply(
                lambda found: [
                    {"name": f["clusterName"], "address": f["endpoint"], "port": ENDPOINT_PORT}
                    for f in found
                ]
            ),
            ca_cert=pulumi.Output.secret(ca.apply(lambda c: b64(c["cert"]))),
            ca_key=pulumi.Output.secret(ca.apply(lambda c: b64(c["key"]))),
            native_routing_cidr=facts.apply(
                lambda found: native_routing_cidr([args.vpc_cidr, *(f["vpcCidr"] for f in found)])
            ),
            endpoint_hosts=nlb_hosts(args.region, args.dns_suffix),
        )
        self.register_outputs({"clusterId": cfg.cluster_id, "peers": list(cfg.peers)})

    def outputs(
        self, vpc_id: pulumi.Input[str], account: pulumi.Input[str], endpoint: pulumi.Input[str]
    ) -> dict[str, Any]:
        """This stack's `mesh` output: what its peers read (no secret in it)."""
        return {
            "clusterName": self.args.cluster_name,
            "clusterId": self.args.config.cluster_id,
            "region": self.args.region,
            "accountId": account,
            "vpcId": vpc_id,
            "vpcCidr": self.args.vpc_cidr,
            "endpoint": endpoint,
            "peers": list(self.args.config.peers),
            "demoPolicy": self.args.demo_policy,
        }


@dataclass
class MeshEndpointArgs:
    provider: k8s.Provider
    # the clustermesh-apiserver's pods need nodes: Pulumi waits for the NLB and for them
    cni_release: pulumi.Resource
    node_group: pulumi.Resource


class MeshEndpoint(pulumi.ComponentResource):
    """The internal NLB the peers reach this cluster's clustermesh-apiserver through.

    A Service of the stack's own rather than the chart's (which stays ClusterIP, for the
    local agents): Pulumi waits until the NLB has a host name and the apiserver a ready
    pod, then `host` holds the name, which the stack exports for its peers. They dial it;
    the apiserver's certificate names every NLB host of the region (MeshValues).
    """

    host: pulumi.Output[str]

    def __init__(
        self, name: str, args: MeshEndpointArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("cilium-eks:index:MeshEndpoint", name, None, opts)
        service = k8s.core.v1.Service(
            "clustermesh-apiserver",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=ENDPOINT_SERVICE, namespace=NAMESPACE, annotations=NLB_ANNOTATIONS
            ),
            spec=k8s.core.v1.ServiceSpecArgs(
                type="LoadBalancer",
                selector=APISERVER_SELECTOR,
                ports=[
                    k8s.core.v1.ServicePortArgs(
                        name="etcd", port=ENDPOINT_PORT, target_port="etcd", protocol="TCP"
                    )
                ],
            ),
            opts=pulumi.ResourceOptions(
                parent=self,
                provider=args.provider,
                depends_on=[args.cni_release, args.node_group],
            ),
        )
        self.host = service.status.apply(load_balancer_host)
        self.register_outputs({"host": self.host})


def load_balancer_host(status: Any) -> str:
    """The Service's load balancer host name (Pulumi waits until it has one)."""
    ingress = (status.load_balancer.ingress if status and status.load_balancer else None) or []
    return ingress[0].hostname if ingress and ingress[0].hostname else ""
