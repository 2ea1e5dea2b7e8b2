"""The EKS control plane, with no nodes, and the Kubernetes provider built from it.

Nodes come later (components/nodes.py), once the AWS VPC CNI is switched off and Cilium
is applied: a node that boots before that would get its pod IPs from aws-node.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_eks as eks
import pulumi_kubernetes as k8s

# Control plane logs sent to CloudWatch: who called the API, what they did, and how
# they authenticated. controllerManager and scheduler are left off (noisy, rarely read).
CONTROL_PLANE_LOG_TYPES = ("api", "audit", "authenticator")

# How long control-plane logs are kept. EKS would create the log group itself with no
# expiry, and leave it behind on `pulumi destroy`; created here, it has a bound and goes.
LOG_RETENTION_DAYS = 30

# EKS access policies (EKS docs, "Review access policy permissions"): full cluster admin,
# and read-only access to every object, Secrets included (a `pulumi preview` reads the Helm
# release's Secret; AmazonEKSViewPolicy would not show it).
CLUSTER_ADMIN_POLICY = "arn:{partition}:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
CLUSTER_VIEWER_POLICY = "arn:{partition}:eks::aws:cluster-access-policy/AmazonEKSAdminViewPolicy"

# EKS's upgrade policy. EXTENDED (the default of EKS and pulumi-eks) keeps a version past
# standard support at $0.60 per hour instead of $0.10; STANDARD has EKS upgrade the
# control plane to the next version when standard support ends.
UPGRADE_SUPPORT_TYPE = "STANDARD"


def access_entry_key(arn: str) -> str:
    """A stable key for an admin principal's access entry, derived from its ARN.

    Keys name resources inside pulumi-eks, so they must not shift when the list is
    reordered: `arn:aws:iam::123456789012:role/ci/deployer` -> `role-ci-deployer`.
    """
    kind_and_path = arn.split(":", 5)[5]
    return re.sub(r"[^A-Za-z0-9-]+", "-", kind_and_path).strip("-")


@dataclass
class ClusterArgs:
    name: str  # the EKS cluster's name, also Cilium's cluster.name
    kubernetes_version: str
    vpc_id: pulumi.Input[str]
    public_subnet_ids: Sequence[pulumi.Input[str]]
    private_subnet_ids: Sequence[pulumi.Input[str]]
    admin_principal_arns: Sequence[str]
    viewer_principal_arns: Sequence[str]  # read-only: the CI preview role
    public_access_cidrs: Sequence[str]  # who may reach the public API endpoint
    partition: str
    # kube-proxy as an EKS add-on (pulumi-eks), or switched off for Cilium's replacement
    kube_proxy_addon: bool


class Cluster(pulumi.ComponentResource):
    """EKS (pulumi-eks) with API authentication, IRSA, KMS-encrypted Secrets and logs.

    Who is cluster admin: the IAM principal that *creates* the cluster (pulumi-eks hard-codes
    `bootstrapClusterCreatorAdminPermissions: true`) and `admin_principal_arns`; the viewers
    may read everything. Nobody else, including a CI role that did not create the stack.

    - `skip_default_node_group`: nodes are a separate, later step.
    - `skip_default_security_groups`: pulumi-eks's node and cluster security groups would
      be carried by nothing (managed nodes and Cilium's ENIs use EKS's cluster security
      group); an existing stack updates the cluster's VPC config in place and deletes them.
    - STANDARD upgrade policy (see UPGRADE_SUPPORT_TYPE).
    - `use_default_vpc_cni=True`: pulumi-eks must not install or manage the vpc-cni
      add-on; it would fight Cilium. The self-managed aws-node DaemonSet that EKS
      bootstraps is switched off by components/aws_node.py instead.
    - pulumi-eks's CoreDNS add-on is off: with no nodes at creation it would sit in
      DEGRADED until the add-on create times out. The stack makes CoreDNS an EKS add-on
      once the nodes are Ready (components/nodes.py).
    - kube-proxy: an EKS add-on only when Cilium does not replace it; otherwise the
      DaemonSet EKS bootstraps is switched off by components/aws_node.py.
    - Only subnets, the KMS key and the log group feed the cluster, so it does not wait
      for NAT.

    `api_server_host` is the API endpoint's host name, without scheme: Cilium's agents use
    it to reach the API server without kube-proxy. A name, not an IP (those change).
    """

    eks_cluster: eks.Cluster
    provider: k8s.Provider
    kubeconfig: pulumi.Output[str]
    oidc_provider_arn: pulumi.Output[str]
    oidc_issuer: pulumi.Output[str]
    api_server_host: pulumi.Output[str]
    cluster_name: pulumi.Output[str]  # the name, once the cluster is built

    def __init__(
        self, name: str, args: ClusterArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("cilium-eks:index:Cluster", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        secrets_key = aws.kms.Key(
            "secrets",
            description=f"Envelope encryption of Kubernetes Secrets in EKS cluster {args.name}",
            enable_key_rotation=True,
            # `pulumi destroy` schedules the key's deletion; 7 days is the shortest wait.
            deletion_window_in_days=7,
            opts=child,
        )

        logs = aws.cloudwatch.LogGroup(
            "control-plane-logs",
            name=f"/aws/eks/{args.name}/cluster",  # the name EKS writes to
            retention_in_days=LOG_RETENTION_DAYS,
            opts=child,
        )

        admin_policy = CLUSTER_ADMIN_POLICY.format(partition=args.partition)
        viewer_policy = CLUSTER_VIEWER_POLICY.format(partition=args.partition)
        self.eks_cluster = eks.Cluster(
            "eks",
            # The name flows through the log group, so the group exists before EKS would
            # create its own (a component's depends_on would not reach pulumi-eks's
            # children; a property dependency does).
            name=logs.name.apply(lambda _: args.name),
            version=args.kubernetes_version,
            vpc_id=args.vpc_id,
            public_subnet_ids=args.public_subnet_ids,
            private_subnet_ids=args.private_subnet_ids,
            endpoint_private_access=True,  # nodes reach the API without leaving the VPC
            endpoint_public_access=True,  # `pulumi up` and kubectl from outside the VPC
            public_access_cidrs=list(args.public_access_cidrs),
            authentication_mode=eks.AuthenticationMode.API,
            access_entries={
                **access_entries(args.admin_principal_arns, "cluster-admin", admin_policy),
                **access_entries(args.viewer_principal_arns, "cluster-viewer", viewer_policy),
            },
            create_oidc_provider=True,  # IRSA for cilium-operator
            encryption_config_key_arn=secrets_key.arn,
            enabled_cluster_log_types=list(CONTROL_PLANE_LOG_TYPES),
            skip_default_node_group=True,
            skip_default_security_groups=True,
            upgrade_policy=aws.eks.ClusterUpgradePolicyArgs(support_type=UPGRADE_SUPPORT_TYPE),
            # EKS installs aws-node, kube-proxy and CoreDNS as plain workloads: aws-node (and
            # kube-proxy, when Cilium replaces it) is then patched off; CoreDNS becomes an
            # EKS add-on once there are nodes (components/nodes.py).
            bootstrap_self_managed_addons=True,
            use_default_vpc_cni=True,
            coredns_addon_options=eks.CoreDnsAddonOptionsArgs(enabled=False),
            kube_proxy_addon_options=eks.KubeProxyAddonOptionsArgs(enabled=args.kube_proxy_addon),
            opts=child,
        )

        # Every Kubernetes resource in this program uses this provider, never the ambient
        # kubeconfig: its credentials come from `aws eks get-token` for this cluster.
        self.provider = k8s.Provider(
            "k8s",
            kubeconfig=self.eks_cluster.kubeconfig_json,
            enable_server_side_apply=True,  # required by DaemonSetPatch
            opts=child,
        )
        self.kubeconfig = pulumi.Output.secret(self.eks_cluster.kubeconfig_json)
        self.oidc_provider_arn = self.eks_cluster.oidc_provider_arn
        self.oidc_issuer = self.eks_cluster.oidc_issuer
        self.api_server_host = self.eks_cluster.core.apply(lambda core: host_of(core.endpoint))
        self.cluster_name = self.eks_cluster.core.apply(lambda _: args.name)
        self.register_outputs({"name": args.name, "kubeconfig": self.kubeconfig})


def access_entries(
    principal_arns: Sequence[str], association: str, policy_arn: str
) -> dict[str, eks.AccessEntryArgs]:
    """One access entry per principal, with one cluster-wide access policy."""
    return {
        access_entry_key(arn): eks.AccessEntryArgs(
            principal_arn=arn,
            access_policies={
                association: eks.AccessPolicyAssociationArgs(
                    policy_arn=policy_arn,
                    access_scope=aws.eks.AccessPolicyAssociationAccessScopeArgs(type="cluster"),
                )
            },
        )
        for arn in principal_arns
    }


def host_of(endpoint: str) -> str:
    """`https://ABC.gr7.eu-west-1.eks.amazonaws.com` -> `ABC.gr7.eu-west-1.eks.amazonaws.com`.

    Cilium's k8sServiceHost takes a bare host: a scheme in it is a common cause of agents
    that cannot reach the API server (cilium/cilium #22039).
    """
    parts = urllib.parse.urlsplit(endpoint)
    host = parts.netloc.rsplit(":", 1)[0] if parts.port else parts.netloc
    if parts.scheme != "https" or not host or host.replace(".", "").isdigit():
        raise ValueError(f"EKS endpoint {endpoint!r} is not https://<DNS name>")
    return host
