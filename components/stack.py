"""The whole stack as one component, `Stack`: what `pulumi up` of this program builds, and
what another Pulumi program, in any language, gets from the cilium-eks package
(components/package.py). __main__.py only hands it the stack's config and exports its
outputs, so a consumer runs exactly what this repository tests.

No `from __future__ import annotations`: Pulumi's analyzer reads the component's output
annotations and its input type as objects (pulumi/provider/experimental/analyzer.py).

Imports the config, the generated input types and every component.
"""

from typing import Any

import pulumi

from components.cilium import (
    WAS_AT_THE_ROOT,
    Cilium,
    CiliumArgs,
    hubble_commands,
    operator_replicas,
)
from components.cluster import Cluster, ClusterArgs
from components.config import (
    from_stack_inputs,
    parse,
    pulumi_eks_architecture,
    with_instance_facts,
)
from components.image_cache import ImageCache, ImageCacheArgs
from components.inputs import StackArgs
from components.karpenter import DISCOVERY_TAG, Karpenter, KarpenterArgs
from components.mesh import Mesh, MeshArgs, MeshEndpoint, MeshEndpointArgs
from components.network import Network, NetworkArgs
from components.nodes import NodeGroup, NodeGroupArgs
from components.provider import aws_provider, stack_tags
from components.starwars import (
    DEATHSTAR_IMAGE,
    SHIP_IMAGE,
    UPSTREAM_REGISTRY,
    DemoMesh,
    StarWarsDemo,
    StarWarsDemoArgs,
    budget,
    manual_checks,
    proof_env,
)

# The program's stacks before the package (0.2.0) had every component and the AWS provider
# at the stack's root. Under the Stack an alias to that place (WAS_AT_THE_ROOT, the root
# of this project's stack) keeps each one's identity, and its children's, which the
# engine derives from their parent's (pulumi/pulumi pkg/resource/deploy/step_generator.go
# generateAliases): a live stack updates in place rather than replacing its cluster. Only
# this repository's program asks for them (`adopt_program_urns`, which the package's
# schema does not show): a consumer's program whose project is named cilium-eks too (as
# mesh peers' must be) holds its own resources at that root, e.g. its aws.Provider("aws"),
# which an alias would claim, or the engine refuse as a duplicate. tests/test_identity.py
# holds every old URN, and a consumer's stack in either project.


class Stack(pulumi.ComponentResource):
    """The whole stack: a VPC, EKS with Cilium as its only CNI (ENI IPAM, Hubble), the nodes,
    and Cilium's Star Wars demo with its policy, proved during `pulumi up`; optionally VPC
    endpoints with an ECR cache, Karpenter and a ClusterMesh. Its inputs are the stack
    config's keys (docs/configuration.md), validated before anything is declared.

    The runbook, in order (each component's docstring says what it waits for and why):
    config -> Mesh (the peers' facts and checks, before anything else) -> the AWS provider
    (waits for those checks) -> Network -> ImageCache -> Cluster -> Cilium (ENI sweep,
    aws-node off, the operator's role, the release) -> NodeGroup -> Karpenter ->
    MeshEndpoint -> StarWarsDemo, and the outputs a stack of this program exports.
    One Stack per Pulumi stack: its children's names are fixed (the program's stacks
    hold them).
    """

    cluster_name: str
    """The EKS cluster's name, also Cilium's cluster.name."""

    region: str
    """The AWS region the stack is in."""

    vpc_id: pulumi.Output[str]
    """The VPC's id."""

    kubeconfig: pulumi.Output[str]
    """A kubeconfig for the cluster (secret): `aws eks get-token` with the caller's AWS identity."""

    cilium_version: str
    """The Cilium chart version installed."""

    commands: dict[str, str]
    """Commands for the cluster: kubeconfig, cilium status, Hubble's (relay over TLS, UI)."""

    demo: pulumi.Output[dict[str, Any]] | None
    """The demo's namespace and policy mode, and the runbook's manual checks for it."""

    mesh: pulumi.Output[dict[str, Any]] | None
    """With `mesh`: what the mesh's other stacks read of this one; export it as `mesh`."""

    mesh_ca: pulumi.Output[dict[str, str]] | None
    """With `mesh`: the mesh's CA, cert and key (secret), which peers read; export as `meshCa`."""

    def __init__(
        self,
        name: str,
        args: StackArgs,
        opts: pulumi.ResourceOptions | None = None,
        *,
        adopt_program_urns: bool = False,
    ) -> None:
        """`adopt_program_urns`: this repository's program only (__main__.py); its stacks'
        URNs from before the package are aliased (above)."""
        # The same validation as `make check`, before anything is declared: a bad key
        # raises here, naming it and what is allowed.
        cfg = parse(from_stack_inputs(args), stack=pulumi.get_stack())
        super().__init__("cilium-eks:index:Stack", name, None, opts)
        was = [WAS_AT_THE_ROOT] if adopt_program_urns else []
        at_root = pulumi.ResourceOptions(parent=self, aliases=was)
        tags = stack_tags(cfg, pulumi.get_stack())
        # ClusterMesh peers' facts (their stack outputs) and the mesh's CA, first of all.
        mesh = Mesh("mesh", MeshArgs(
            config=cfg.mesh, cluster_name=cfg.cluster_name, region=cfg.region,
            dns_suffix=cfg.dns_suffix, vpc_cidr=cfg.network.cidr,
            demo_policy=cfg.demo.policy if cfg.demo.enabled else None,
            encryption=cfg.cilium.encryption,
        ), opts=at_root) if cfg.mesh else None  # fmt: skip
        # Every AWS call and resource below uses this provider (region, derived tags); it
        # waits for the peers' facts to pass their checks, so a bad peer fails the run first.
        provider = aws_provider(
            cfg, pulumi.get_stack(), after=mesh.checked if mesh else None, opts=at_root
        )
        cfg = with_instance_facts(cfg, provider)  # EC2's facts (read-only): raises on a bad type
        on_aws = pulumi.ResourceOptions(parent=self, providers=[provider], aliases=was)
        network = Network("network", NetworkArgs(
            config=cfg.network, name_prefix=cfg.cluster_name, region=cfg.region,
            private_subnet_tags={DISCOVERY_TAG: cfg.cluster_name} if cfg.karpenter.enabled else {},
            peers=mesh.peers if mesh else [],
        ), opts=on_aws)  # fmt: skip
        # With VPC endpoints, quay.io's images come through an ECR cache: no NAT to start.
        cache = ImageCache("image-cache", ImageCacheArgs(
            cluster_name=cfg.cluster_name, region=cfg.region, partition=cfg.partition,
            cilium_version=cfg.cilium.version, images=[DEATHSTAR_IMAGE, SHIP_IMAGE],
        ), opts=on_aws) if cfg.network.vpc_endpoints else None  # fmt: skip
        cluster = Cluster("cluster", ClusterArgs(
            name=cfg.cluster_name, kubernetes_version=cfg.kubernetes_version,
            vpc_id=network.vpc_id, control_plane_subnet_ids=network.control_plane_subnet_ids,
            subnet_ids=network.subnet_ids, admin_principal_arns=cfg.access.admin_principal_arns,
            viewer_principal_arns=cfg.access.viewer_principal_arns,
            public_access_cidrs=cfg.access.public_access_cidrs, partition=cfg.partition,
            kube_proxy_addon=not cfg.cilium.kube_proxy_replacement,
            wireguard=cfg.cilium.encryption == "wireguard",
            peer_cidrs={p.key: p.fact("vpcCidr") for p in mesh.peers} if mesh else {},
            permissions_boundary=cfg.access.permissions_boundary_arn,
        ), opts=on_aws)  # fmt: skip
        # The package's own Cilium component, as a consumer puts it on its cluster.
        cilium_args = CiliumArgs(
            cluster_name=cluster.cluster_name, oidc_provider_arn=cluster.oidc_provider_arn,
            cluster_endpoint=cluster.endpoint, vpc_id=network.vpc_id,
            pod_subnet_ids=pulumi.Output.all(*network.private_subnet_ids), region=cfg.region,
            operator_replicas=operator_replicas(cfg.nodes.min_size), eni_tags=tags,
        )  # fmt: skip
        if "cilium" in args:
            cilium_args["cilium"] = args["cilium"]  # as given: Cilium validates it the same
        if cache:
            cilium_args["image_registry"] = cache.mirror
        if mesh:
            cilium_args["cluster_mesh"] = mesh.values
        if cfg.access.permissions_boundary_arn:
            cilium_args["permissions_boundary_arn"] = cfg.access.permissions_boundary_arn
        cilium = Cilium("cilium", cilium_args, opts=pulumi.ResourceOptions(
            parent=self, providers=[provider, cluster.provider], aliases=was
        ), adopt_program_urns=adopt_program_urns)  # fmt: skip
        # Everything that runs on nodes waits for the Cilium component, i.e. for all of its
        # children (the Python SDK expands a component into its children: runtime/rpc.py
        # _add_dependency): the release, aws-node off, and the ENI sweeper, so that destroy
        # sweeps only once they are gone.
        nodes = NodeGroup("nodes", NodeGroupArgs(
            cluster=cluster.eks_cluster, cluster_name=cfg.cluster_name, config=cfg.nodes,
            kubernetes_version=cfg.kubernetes_version,
            prefix_delegation=cfg.cilium.prefix_delegation,
            subnet_ids=network.private_subnet_ids, partition=cfg.partition, cilium=cilium,
            egress=[*network.egress, *(cache.ready if cache else [])],
            node_policies={"image-cache": cache.node_policy} if cache else {},
            permissions_boundary=cfg.access.permissions_boundary_arn,
        ), opts=on_aws)  # fmt: skip
        karpenter = Karpenter("karpenter", KarpenterArgs(
            config=cfg.karpenter, cluster_name=cfg.cluster_name, region=cfg.region,
            partition=cfg.partition,
            architecture=pulumi_eks_architecture(cfg.nodes.instance_types[0]),
            prefix_delegation=cfg.cilium.prefix_delegation,
            replicas=operator_replicas(cfg.nodes.min_size), tags=tags,
            oidc_provider_arn=cluster.oidc_provider_arn, oidc_issuer=cluster.oidc_issuer,
            provider=cluster.provider, cilium=cilium, node_group=nodes.node_group,
            node_policies={"image-cache": cache.node_policy} if cache else {},
            permissions_boundary=cfg.access.permissions_boundary_arn,
        ), opts=on_aws) if cfg.karpenter.enabled else None  # fmt: skip
        demo_mesh = None
        self.mesh = self.mesh_ca = None
        if mesh:
            endpoint = MeshEndpoint("mesh-endpoint", MeshEndpointArgs(
                provider=cluster.provider, cilium=cilium, node_group=nodes.node_group,
                source_ranges=mesh.source_ranges,
            ), opts=at_root)  # fmt: skip
            self.mesh = pulumi.Output.from_input(mesh.outputs(
                network.vpc_id, network.account_id, endpoint.host, network.links,
            ))  # fmt: skip
            self.mesh_ca = mesh.ca  # secret: the CA the other clusters' stacks read
            demo_mesh = DemoMesh(cluster_name=cfg.cluster_name, peers=mesh.peers, waiting={
                p.key: mesh.waiting(p, endpoint.host, network.links[p.key]) for p in mesh.peers
            })  # fmt: skip
        self.demo = None
        if cfg.demo.enabled:
            demo = StarWarsDemo("starwars", StarWarsDemoArgs(
                config=cfg.demo, provider=cluster.provider, cilium=cilium,
                node_group=nodes.node_group, dns=nodes.coredns, proof_env=proof_env(cfg),
                budget=budget(cfg), registry=cache.mirror if cache else UPSTREAM_REGISTRY,
                checked=[karpenter.node_pool] if karpenter else [], mesh=demo_mesh,
            ), opts=at_root)  # fmt: skip
            self.demo = pulumi.Output.from_input({
                "namespace": demo.namespace, "policy": cfg.demo.policy,
                **manual_checks(cfg.demo.policy, cfg.cluster_name if mesh else None),
            })  # fmt: skip

        self.cluster_name = cfg.cluster_name
        self.region = cfg.region
        self.vpc_id = network.vpc_id
        self.kubeconfig = cluster.kubeconfig  # secret
        self.cilium_version = cfg.cilium.version
        self.commands = {
            "kubeconfig": "pulumi stack output kubeconfig --show-secrets > kubeconfig.json"
            " && export KUBECONFIG=$PWD/kubeconfig.json",
            "ciliumStatus": "cilium status --wait",
            **hubble_commands(),
            **({"clustermeshStatus": "cilium clustermesh status --wait"} if mesh else {}),
        }
        self.register_outputs({
            "clusterName": self.cluster_name, "region": self.region, "vpcId": self.vpc_id,
            "kubeconfig": self.kubeconfig, "ciliumVersion": self.cilium_version,
            "commands": self.commands, "demo": self.demo, "mesh": self.mesh,
            "meshCa": self.mesh_ca,
        })  # fmt: skip
