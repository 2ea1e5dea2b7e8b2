"""cilium-eks: the runbook as one graph.

config -> Network -> Cluster -> AwsNodeOff -> Cilium -> NodeGroup -> StarWarsDemo -> exports.
Each component's docstring says what it waits for and why.
"""

import pulumi

from components.aws_node import AwsNodeOff, AwsNodeOffArgs
from components.cilium import Cilium, CiliumArgs, operator_replicas
from components.cluster import Cluster, ClusterArgs
from components.config import load
from components.network import Network, NetworkArgs
from components.nodes import NodeGroup, NodeGroupArgs
from components.starwars import StarWarsDemo, StarWarsDemoArgs, manual_checks

cfg = load()  # raises on bad config, before any resource is declared

network = Network("network", NetworkArgs(config=cfg.network, name_prefix=cfg.cluster_name))
cluster = Cluster("cluster", ClusterArgs(
    name=cfg.cluster_name, kubernetes_version=cfg.kubernetes_version, vpc_id=network.vpc_id,
    public_subnet_ids=network.public_subnet_ids, private_subnet_ids=network.private_subnet_ids,
    admin_principal_arns=cfg.access.admin_principal_arns,
    public_access_cidrs=cfg.access.public_access_cidrs, partition=cfg.partition,
))  # fmt: skip
aws_node = AwsNodeOff("aws-node-off", AwsNodeOffArgs(provider=cluster.provider))
cilium = Cilium("cilium", CiliumArgs(
    cluster_name=cfg.cluster_name, config=cfg.cilium, oidc_provider_arn=cluster.oidc_provider_arn,
    oidc_issuer=cluster.oidc_issuer, pod_subnet_ids=network.private_subnet_ids,
    operator_replicas=operator_replicas(cfg.nodes.min_size), provider=cluster.provider,
    aws_node_patch=aws_node.patch,
))  # fmt: skip
nodes = NodeGroup("nodes", NodeGroupArgs(
    cluster=cluster.eks_cluster, config=cfg.nodes, subnet_ids=network.private_subnet_ids,
    partition=cfg.partition, cni_release=cilium.release, egress=network.egress,
))  # fmt: skip
if cfg.demo.enabled:
    demo = StarWarsDemo("starwars", StarWarsDemoArgs(
        config=cfg.demo, cilium_version=cfg.cilium.version, provider=cluster.provider,
        cni_release=cilium.release, node_group=nodes.node_group,
    ))  # fmt: skip
    pulumi.export("demo", {"namespace": demo.namespace, "policy": cfg.demo.policy,
                           **manual_checks(cfg.demo.policy)})  # fmt: skip

pulumi.export("clusterName", cfg.cluster_name)
pulumi.export("region", cfg.region)
pulumi.export("vpcId", network.vpc_id)
pulumi.export("kubeconfig", cluster.kubeconfig)  # secret
pulumi.export("ciliumVersion", cfg.cilium.version)
pulumi.export("commands", {
    "kubeconfig": "pulumi stack output kubeconfig --show-secrets > kubeconfig.json"
                  " && export KUBECONFIG=$PWD/kubeconfig.json",
    "ciliumStatus": "cilium status --wait",
    "hubbleUi": "cilium hubble ui",
    "hubbleUiPortForward": "kubectl -n kube-system port-forward svc/hubble-ui 12000:80",
    "hubbleObserve": "cilium hubble port-forward & hubble observe --follow",
})  # fmt: skip
