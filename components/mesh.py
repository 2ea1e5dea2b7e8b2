"""Cilium ClusterMesh with other stacks of this project (the `mesh` config).

In ENI mode pods have VPC addresses, so once the VPCs are linked, pods reach each other
natively; ClusterMesh adds the shared identities, policies and global services. Each
stack of the mesh (docs/clustermesh.md has the bring-up order):
- reads its peers' facts from their stack outputs (`mesh`, and cluster 1's `meshCa`):
  VPC, CIDR, region, account, cluster name and ID, clustermesh endpoint; never retyped;
- links its VPC to each peer's with a VPC peering connection (cross-region where the
  regions differ), made once: `MeshLink` (components/mesh_link.py) creates it, or adopts
  the one the peer already made, so the second stack up finds the first one's; whichever
  stack is destroyed first deletes it. Peering rather than a transit gateway: no hourly
  charge, no hub to own (a gateway's owner could not be destroyed first while others are
  attached), and two or a few clusters need no transitive routing;
- routes each peer's CIDR from its private route tables through the link (in the route
  tables themselves, components/network.py: inline routes and separate Route resources
  on one table overwrite each other), and lets the peer's whole VPC reach its nodes
  (components/cluster.py);
- trusts one CA, made once by cluster 1 (pulumi-tls, in its state) and read by the others
  from cluster 1's secret output: every certificate Cilium makes is signed by it (the
  cilium-ca Secret, components/cilium.py, never Helm's values);
- serves its clustermesh-apiserver to the peers behind an internal NLB (`MeshEndpoint`),
  which admits the mesh's VPCs only;
- refuses, before any resource, a mesh whose clusters collide: names, IDs, VPC CIDRs,
  encryption (config.mesh_problems), among the peers too.
The chart values this adds are set in components/cilium_values.py (`clustermesh_values`,
from the `ClusterMesh` made here); the global Services, the policy's clusters and the mesh
checks are the demo's (components/starwars.py).

Imports the config, the link (components/mesh_link.py) and the chart values' `ClusterMesh`
and `ca_fingerprint`; the components that use the mesh (network, cluster, stack,
starwars) import it, never the other way round.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumi_tls as tls

from components.cilium_values import ClusterMesh, ca_fingerprint
from components.config import MESH_REFUSED, ConfigError, MeshConfig, mesh_problems

# MeshLinkProvider stays importable from here for the stacks whose state names it by its
# old home, components.mesh.MeshLinkProvider (see components/mesh_link.py).
from components.mesh_link import MeshLinkProvider as MeshLinkProvider

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

    @property
    def its_link(self) -> pulumi.Output[str | None]:
        """The VPC peering the peer's stack last used for this pair, if it lists this one."""
        return self.facts.apply(lambda facts: _seen(facts).get("link"))


def _seen(facts: dict[str, Any]) -> dict[str, Any]:
    """What a peer's stack knew of this one at its last `pulumi up`."""
    return (facts.get("seen") or {}).get(stack_path()) or {}


def waiting_reason(peer: str, facts: dict[str, Any], own: dict[str, Any]) -> str:
    """Why a check in this cluster cannot reach the peer's pods yet ("" when it can).

    The peer must list this stack (only then do both clusters route each other's traffic
    and admit each other's pods), know it as it is now (its endpoint, the live link), and
    trust the same CA; `own` holds this stack's endpoint, link and CA fingerprint. Each is
    settled by the peer's next `pulumi up`.
    """
    if stack_path() not in facts.get("peers", []):
        return (
            f"{peer} does not list this stack in mesh.peers yet, so neither cluster admits "
            "the other's pods; its next `pulumi up` makes the mesh mutual, and this stack's "
            "next one proves it from here"
        )
    seen = _seen(facts)
    stale = [what for what in ("endpoint", "link") if seen.get(what) != own[what]]
    if facts.get("ca") != own["ca"]:
        stale.append("CA")
    if stale:
        return (
            f"{peer} last knew this cluster by an older {' and '.join(stale)}; its next "
            "`pulumi up` catches up, and this stack's next one proves it from here"
        )
    if not facts.get("demoPolicy"):
        return f"{peer} runs no Star Wars demo"
    return ""


@dataclass
class MeshArgs:
    config: MeshConfig
    cluster_name: str
    region: str
    dns_suffix: str  # the partition's, for the NLB host names: amazonaws.com
    vpc_cidr: str
    demo_policy: str | None  # the demo's policy mode, None without the demo: peers check it
    encryption: str  # cilium.encryption: the same on every cluster (config.mesh_problems)


class Mesh(pulumi.ComponentResource):
    """The peers' facts, the mesh's CA, and the chart values; declared first of all.

    - `peers`: each peer's facts, for the VPC links and routes (components/network.py),
      the security group rules (components/cluster.py), and the demo's global Services,
      policy and checks (components/starwars.py).
    - `checked`: resolves once every peer's facts pass config.mesh_problems, and fails
      the run otherwise; the AWS provider waits for it, so a bad peer stops the run
      before any AWS resource (and so any other) is touched.
    - `source_ranges`: every VPC of the mesh, this one's first: the clients the
      clustermesh endpoint admits (MeshEndpoint).
    - `ca`: the mesh's one CA. Cluster 1 makes it (pulumi-tls, kept in its state, so
      made once); every other cluster takes it from a peer's secret `meshCa` output,
      cluster 1's first, so that the others keep a mesh going when cluster 1 is gone.
    - `values`: for the Cilium release.
    - `outputs(...)`: this stack's `mesh` output, what its peers read; `ca` is exported
      as the secret `meshCa`.
    - `waiting(...)`: why a check of a peer cannot run yet (see `waiting_reason`).
    """

    peers: list[Peer]
    values: ClusterMesh
    ca: pulumi.Output[dict[str, str]]
    checked: pulumi.Output[list[pulumi.Resource]]
    source_ranges: pulumi.Output[list[str]]

    def __init__(
        self, name: str, args: MeshArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("cilium-eks:index:Mesh", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        cfg = args.config
        self.args = args

        refs = [pulumi.StackReference(peer, opts=child) for peer in cfg.peers]

        def checked(found: list[Any]) -> list[dict[str, Any]]:
            peers = dict(zip(cfg.peers, found, strict=True))
            problems = mesh_problems(
                cluster_name=args.cluster_name,
                cluster_id=cfg.cluster_id,
                vpc_cidr=args.vpc_cidr,
                account=None,  # the preflight's (the caller's); the link fails on another
                peers=peers,
                encryption=args.encryption,
            )
            if problems:
                raise ConfigError(MESH_REFUSED + "\n  - " + "\n  - ".join(problems))
            for peer in unpublished_encryption(peers):
                pulumi.log.warn(
                    f"mesh.peers: {peer} does not publish its cilium.encryption yet (deployed "
                    "before this check); its next `pulumi up` does, and then both sides "
                    "check it",
                    self,
                )
            return found

        facts = pulumi.Output.all(*[ref.get_output("mesh") for ref in refs]).apply(checked)
        # Nothing for the AWS provider to wait for, once the peers pass (see stack.py).
        self.checked = facts.apply(lambda _: [])
        self.source_ranges = facts.apply(
            lambda found: [args.vpc_cidr, *(f["vpcCidr"] for f in found)]
        )
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
            self.ca = pulumi.Output.secret(
                pulumi.Output.all(cert=cert.cert_pem, key=key.private_key_pem)
            )
        else:

            def shared_ca(found: list[Any]) -> dict[str, str]:
                # cluster 1's, else any peer's (mesh_problems: then they all agree)
                shared = sorted(
                    (facts["clusterId"] != 1, stack, ca)
                    for stack, facts, ca in zip(cfg.peers, found[0], found[1:], strict=True)
                    if ca
                )
                if not shared:
                    raise ConfigError(
                        f"{MESH_REFUSED}\n  - mesh.peers: none of them exports the mesh's CA "
                        "(meshCa): bring cluster 1 up first and list it"
                    )
                return shared[0][2]

            self.ca = pulumi.Output.all(facts, *[ref.get_output("meshCa") for ref in refs]).apply(
                shared_ca
            )

        self.ca_fingerprint = pulumi.Output.unsecret(
            self.ca.apply(lambda c: ca_fingerprint(c["cert"]))
        )
        self.values = ClusterMesh(
            cluster_id=cfg.cluster_id,
            clusters=facts.apply(
                lambda found: [
                    {"name": f["clusterName"], "address": f["endpoint"], "port": ENDPOINT_PORT}
                    for f in found
                ]
            ),
            ca_cert=pulumi.Output.secret(self.ca.apply(lambda c: c["cert"])),
            ca_key=pulumi.Output.secret(self.ca.apply(lambda c: c["key"])),
            native_routing_cidr=facts.apply(
                lambda found: native_routing_cidr([args.vpc_cidr, *(f["vpcCidr"] for f in found)])
            ),
            endpoint_hosts=nlb_hosts(args.region, args.dns_suffix),
        )
        self.register_outputs({"clusterId": cfg.cluster_id, "peers": list(cfg.peers)})

    def outputs(
        self,
        vpc_id: pulumi.Input[str],
        account: pulumi.Input[str],
        endpoint: pulumi.Input[str],
        links: Mapping[str, pulumi.Input[str]],
    ) -> dict[str, Any]:
        """This stack's `mesh` output: what its peers read (no secret in it). `seen` is
        what this stack used of each peer: the endpoint it dials, the link it routes
        through; the peer compares it with itself (waiting_reason)."""
        return {
            "clusterName": self.args.cluster_name,
            "clusterId": self.args.config.cluster_id,
            "region": self.args.region,
            "accountId": account,
            "vpcId": vpc_id,
            "vpcCidr": self.args.vpc_cidr,
            "endpoint": endpoint,
            "ca": self.ca_fingerprint,
            "peers": list(self.args.config.peers),
            "seen": {
                p.stack: {"endpoint": p.fact("endpoint"), "link": links[p.key]} for p in self.peers
            },
            "demoPolicy": self.args.demo_policy,
            "encryption": self.args.encryption,
        }

    def waiting(
        self, peer: Peer, endpoint: pulumi.Input[str], link: pulumi.Input[str]
    ) -> pulumi.Output[str]:
        """waiting_reason for `peer`, against this stack's endpoint, link to it and CA."""
        own = pulumi.Output.all(endpoint=endpoint, link=link, ca=self.ca_fingerprint)
        return pulumi.Output.all(peer.facts, own).apply(
            lambda a: waiting_reason(peer.stack, a[0], a[1])
        )


def unpublished_encryption(peers: Mapping[str, Any]) -> list[str]:
    """The peers whose `mesh` output carries no encryption mode: deployed before it was
    published. Refusing them would deadlock an existing mesh's upgrade (each side waiting
    for the other's `pulumi up`), so they pass, with a warning, until their next up."""
    return [p for p, f in peers.items() if isinstance(f, Mapping) and "encryption" not in f]


@dataclass
class MeshEndpointArgs:
    provider: k8s.Provider
    # the clustermesh-apiserver's pods need nodes: Pulumi waits for the NLB and for them
    cilium: pulumi.Resource  # the Cilium component
    node_group: pulumi.Resource
    # the VPC CIDRs of the whole mesh, this one's included (Mesh.source_ranges)
    source_ranges: pulumi.Input[Sequence[str]]


class MeshEndpoint(pulumi.ComponentResource):
    """The internal NLB the peers reach this cluster's clustermesh-apiserver through.

    A Service of the stack's own rather than the chart's (which stays ClusterIP, for the
    local agents): Pulumi waits until the NLB has a host name and the apiserver a ready
    pod, then `host` holds the name, which the stack exports for its peers. They dial it;
    the apiserver's certificate names every NLB host of the region (MeshValues).

    It admits the mesh's VPCs only (`loadBalancerSourceRanges`). The in-tree AWS load
    balancer controller EKS runs opens an NLB Service's node port on the nodes' security
    group, EKS's cluster security group (shared by the nodes and every pod ENI), to its
    source ranges, and to 0.0.0.0/0 when there are none (cloud-provider-aws
    pkg/providers/v1/aws.go EnsureLoadBalancer, NLB: GetLoadBalancerSourceRanges, whose
    default is 0.0.0.0/0; updateInstanceSecurityGroupsForNLB). Never empty, for the same
    reason: this cluster's own VPC is always in it, and peers' VPCs join as they are
    listed. The health checks come from the NLB's subnets, which the controller admits
    on its own.
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
                # Each apiserver replica runs its own etcd: a peer that switched replicas
                # would sync everything again (the chart's own Service does the same,
                # clustermesh.apiserver.service.enableSessionAffinity: HAOnly).
                session_affinity="ClientIP",
                load_balancer_source_ranges=args.source_ranges,
                ports=[
                    k8s.core.v1.ServicePortArgs(
                        name="etcd", port=ENDPOINT_PORT, target_port="etcd", protocol="TCP"
                    )
                ],
            ),
            opts=pulumi.ResourceOptions(
                parent=self,
                provider=args.provider,
                depends_on=[args.cilium, args.node_group],
            ),
        )
        self.host = service.status.apply(load_balancer_host)
        self.register_outputs({"host": self.host})


def load_balancer_host(status: Any) -> str:
    """The Service's load balancer host name (Pulumi waits until it has one)."""
    ingress = (status.load_balancer.ingress if status and status.load_balancer else None) or []
    return ingress[0].hostname if ingress and ingress[0].hostname else ""
