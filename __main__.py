"""cilium-eks: the runbook as one graph.

config -> Network -> Cluster -> Teardown -> AwsNodeOff -> Cilium -> NodeGroup -> StarWarsDemo,
with the optional ImageCache (network.vpcEndpoints), Karpenter (karpenter.enabled) and
ClusterMesh (mesh: Mesh before the network, MeshEndpoint after the nodes).
Each component's docstring says what it waits for and why.

Imports the config and every component; nothing imports it.
"""

import pulumi

from components.aws_node import AwsNodeOff, AwsNodeOffArgs
from components.cilium import Cilium, CiliumArgs, hubble_commands, operator_replicas
from components.cluster import Cluster, ClusterArgs
from components.config import load, pulumi_eks_architecture, with_instance_facts
from components.image_cache import ImageCache, ImageCacheArgs
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
    StarWarsDemoArgs,  # fmt: skip
    budget,
    manual_checks,
    proof_env,
)
from components.teardown import Teardown, TeardownArgs

cfg = load()  # every key, offline rules: raises on bad config before any resource
# ClusterMesh peers' facts (their stack outputs) and the mesh's CA, before anything else.
mesh = Mesh("mesh", MeshArgs(
    config=cfg.mesh, cluster_name=cfg.cluster_name, region=cfg.region,
    dns_suffix=cfg.dns_suffix, vpc_cidr=cfg.network.cidr,
    demo_policy=cfg.demo.policy if cfg.demo.enabled else None,
    encryption=cfg.cilium.encryption,
)) if cfg.mesh else None  # fmt: skip
# Every AWS call and resource below uses this provider (region, derived tags); it waits
# for the peers' facts to pass their checks, so a bad peer fails the run before it.
provider = aws_provider(cfg, pulumi.get_stack(), after=mesh.checked if mesh else None)
cfg = with_instance_facts(cfg, provider)  # EC2's facts (read-only): raises on a bad type
on_aws = pulumi.ResourceOptions(providers=[provider])
network = Network("network", NetworkArgs(
    config=cfg.network, name_prefix=cfg.cluster_name, region=cfg.region,
    private_subnet_tags={DISCOVERY_TAG: cfg.cluster_name} if cfg.karpenter.enabled else {},
    peers=mesh.peers if mesh else [],
), opts=on_aws)  # fmt: skip
# With VPC endpoints, quay.io's images come through an ECR cache: no NAT needed to start.
cache = ImageCache("image-cache", ImageCacheArgs(
    cluster_name=cfg.cluster_name, region=cfg.region, partition=cfg.partition,
    cilium_version=cfg.cilium.version, images=[DEATHSTAR_IMAGE, SHIP_IMAGE],
), opts=on_aws) if cfg.network.vpc_endpoints else None  # fmt: skip
cluster = Cluster("cluster", ClusterArgs(
    name=cfg.cluster_name, kubernetes_version=cfg.kubernetes_version, vpc_id=network.vpc_id,
    control_plane_subnet_ids=network.control_plane_subnet_ids, subnet_ids=network.subnet_ids,
    admin_principal_arns=cfg.access.admin_principal_arns,
    viewer_principal_arns=cfg.access.viewer_principal_arns,
    public_access_cidrs=cfg.access.public_access_cidrs, partition=cfg.partition,
    kube_proxy_addon=not cfg.cilium.kube_proxy_replacement,
    wireguard=cfg.cilium.encryption == "wireguard",
    peer_cidrs={p.key: p.fact("vpcCidr") for p in mesh.peers} if mesh else {},
    permissions_boundary=cfg.access.permissions_boundary_arn,
), opts=on_aws)  # fmt: skip
teardown = Teardown("teardown", TeardownArgs(
    region=cfg.region, vpc_id=network.vpc_id, cluster_name=cluster.cluster_name,
    subnet_ids=network.private_subnet_ids,
))  # fmt: skip
bootstrap = AwsNodeOff("aws-node-off", AwsNodeOffArgs(
    provider=cluster.provider, kube_proxy=cfg.cilium.kube_proxy_replacement,
))  # fmt: skip
cilium = Cilium("cilium", CiliumArgs(
    cluster_name=cfg.cluster_name, config=cfg.cilium, partition=cfg.partition,
    oidc_provider_arn=cluster.oidc_provider_arn,
    oidc_issuer=cluster.oidc_issuer, pod_subnet_ids=network.private_subnet_ids,
    operator_replicas=operator_replicas(cfg.nodes.min_size),
    api_server_host=cluster.api_server_host, provider=cluster.provider,
    bootstrap_patches=bootstrap.patches, eni_sweeper=teardown.sweeper,
    eni_tags=stack_tags(cfg, pulumi.get_stack()),
    image_repositories=cache.chart_values() if cache else None,
    mesh=mesh.values if mesh else None,
    permissions_boundary=cfg.access.permissions_boundary_arn,
), opts=on_aws)  # fmt: skip
nodes = NodeGroup("nodes", NodeGroupArgs(
    cluster=cluster.eks_cluster, cluster_name=cfg.cluster_name, config=cfg.nodes,
    kubernetes_version=cfg.kubernetes_version, prefix_delegation=cfg.cilium.prefix_delegation,
    subnet_ids=network.private_subnet_ids, partition=cfg.partition, cni_release=cilium.release,
    egress=[*network.egress, *(cache.ready if cache else [])], eni_sweeper=teardown.sweeper,
    node_policies={"image-cache": cache.node_policy} if cache else {},
    permissions_boundary=cfg.access.permissions_boundary_arn,
), opts=on_aws)  # fmt: skip
karpenter = Karpenter("karpenter", KarpenterArgs(
    config=cfg.karpenter, cluster_name=cfg.cluster_name, region=cfg.region,
    partition=cfg.partition, architecture=pulumi_eks_architecture(cfg.nodes.instance_types[0]),
    prefix_delegation=cfg.cilium.prefix_delegation,
    replicas=operator_replicas(cfg.nodes.min_size), tags=stack_tags(cfg, pulumi.get_stack()),
    oidc_provider_arn=cluster.oidc_provider_arn, oidc_issuer=cluster.oidc_issuer,
    provider=cluster.provider, cni_release=cilium.release, node_group=nodes.node_group,
    eni_sweeper=teardown.sweeper,
    node_policies={"image-cache": cache.node_policy} if cache else {},
    permissions_boundary=cfg.access.permissions_boundary_arn,
), opts=on_aws) if cfg.karpenter.enabled else None  # fmt: skip
demo_mesh = None
if mesh:
    endpoint = MeshEndpoint("mesh-endpoint", MeshEndpointArgs(
        provider=cluster.provider, cni_release=cilium.release, node_group=nodes.node_group,
        source_ranges=mesh.source_ranges,
    ))  # fmt: skip
    pulumi.export("mesh", mesh.outputs(
        network.vpc_id, network.account_id, endpoint.host, network.links,
    ))  # fmt: skip
    pulumi.export("meshCa", mesh.ca)  # secret: the CA the other clusters' stacks read
    demo_mesh = DemoMesh(cluster_name=cfg.cluster_name, peers=mesh.peers, waiting={
        p.key: mesh.waiting(p, endpoint.host, network.links[p.key]) for p in mesh.peers
    })  # fmt: skip
if cfg.demo.enabled:
    demo = StarWarsDemo("starwars", StarWarsDemoArgs(
        config=cfg.demo, provider=cluster.provider, cni_release=cilium.release,
        node_group=nodes.node_group, dns=nodes.coredns, proof_env=proof_env(cfg),
        budget=budget(cfg), registry=cache.mirror if cache else UPSTREAM_REGISTRY,
        checked=[karpenter.node_pool] if karpenter else [],
        mesh=demo_mesh,
    ))  # fmt: skip
    pulumi.export("demo", {"namespace": demo.namespace, "policy": cfg.demo.policy,
                           **manual_checks(cfg.demo.policy,
                                           cfg.cluster_name if mesh else None)})  # fmt: skip

pulumi.export("clusterName", cfg.cluster_name)
pulumi.export("region", cfg.region)
pulumi.export("vpcId", network.vpc_id)
pulumi.export("kubeconfig", cluster.kubeconfig)  # secret
pulumi.export("ciliumVersion", cfg.cilium.version)
pulumi.export("commands", {
    "kubeconfig": "pulumi stack output kubeconfig --show-secrets > kubeconfig.json"
                  " && export KUBECONFIG=$PWD/kubeconfig.json",
    "ciliumStatus": "cilium status --wait",
    **hubble_commands(),
    **({"clustermeshStatus": "cilium clustermesh status --wait"} if mesh else {}),
})  # fmt: skip
