"""The EKS control plane, with no nodes, and the Kubernetes provider built from it.

Nodes come later (components/nodes.py), once the AWS VPC CNI is switched off and Cilium
is applied: a node that boots before that would get its pod IPs from aws-node.

Two things here are decided by what already exists in AWS, looked up at every run (read
only), because EKS's own rules make the declared value alone wrong for a live stack:
- The control plane's subnets. EKS keeps the AZs a cluster was created with: "All subnets
  that you add must be in the same set of AZs as originally provided" (EKS user guide,
  "VPC and subnet requirements"). So a cluster that exists keeps exactly its subnets, and
  a new one gets the /28 control-plane subnets of every AZ; more AZs later are for nodes
  and pods only.
- The control-plane log group. EKS creates `/aws/eks/<name>/cluster` itself (without
  retention) whenever logging is on and the group is missing, e.g. when a stack is
  re-created; creating it again fails with ResourceAlreadyExistsException
  (terraform-aws-eks #920, #2763). So an existing group is imported, and the group is
  retained on destroy, with its retention: nothing unbounded is left behind.

Imports no other module of the program; the components after it use its helpers.
"""

from __future__ import annotations

import hashlib
import json
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_eks as eks
import pulumi_kubernetes as k8s

# Control plane logs sent to CloudWatch: who called the API, what they did, and how
# they authenticated. controllerManager and scheduler are left off (noisy, rarely read).
CONTROL_PLANE_LOG_TYPES = ("api", "audit", "authenticator")

# How long control-plane logs are kept. EKS would create the log group itself with no
# expiry; here it has a bound, also after `pulumi destroy`, which keeps the group (and the
# last 30 days of the API and audit logs) for the next stack of the same name to adopt.
LOG_RETENTION_DAYS = 30

# WireGuard's port (Cilium: pkg/wireguard/types ListenPort): the nodes' tunnel to each other.
WIREGUARD_PORT = 51871

# EKS access policies (EKS docs, "Review access policy permissions"): full cluster admin,
# and for the viewers (the CI preview role) AmazonEKSViewPolicy: get, list and watch on most
# objects, the Kubernetes `view` role's set, WITHOUT Secrets. AmazonEKSAdminViewPolicy
# would grant get/list/watch on every resource ("*"), Secrets included: every token and
# key in the cluster, the mesh's CA among them. A preview needs no Secret: pulumi-kubernetes
# previews from the stack's state, falling back to a client-side diff where a server-side
# dry run is forbidden (pulumi/pulumi-kubernetes #2419), and a Helm release's preview reads
# nothing in the cluster (docs/operations.md).
CLUSTER_ADMIN_POLICY = "arn:{partition}:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
CLUSTER_VIEWER_POLICY = "arn:{partition}:eks::aws:cluster-access-policy/AmazonEKSViewPolicy"

# EKS's upgrade policy. EXTENDED (the default of EKS and pulumi-eks) keeps a version past
# standard support at $0.60 per hour instead of $0.10; STANDARD has EKS upgrade the
# control plane to the next version when standard support ends.
UPGRADE_SUPPORT_TYPE = "STANDARD"


# The EKS cluster's IAM role, made by the program and handed to pulumi-eks (`service_role`),
# because pulumi-eks's own has no permissions-boundary option. What pulumi-eks 4.x makes
# when it is handed none, read from its source (pulumi/pulumi-eks nodejs/eks, commit
# 7bf0c1b1, the newest snapshot; these lines are unchanged since v4.3.0):
# - cluster/cluster.ts 513-546 ("Create the EKS service role"): a ServiceRole component
#   `${name}-eksRole` (eks:index:ServiceRole, child of the eks:index:Cluster), service
#   eks.amazonaws.com, description "Allows EKS to manage clusters on your behalf.", managed
#   policies ["AmazonEKSClusterPolicy"] (the other four only with EKS Auto Mode), each
#   `{id: arn:aws:iam::aws:policy/<P>, arn: arn:<partition>:iam::aws:policy/<P>}`, and
#   assumeRoleActions ["sts:AssumeRole", "sts:TagSession"];
# - servicerole.ts 75-111: the role `${name}-role` with that trust policy (JSON.stringify:
#   Version, then Statement [{Action, Effect, Principal: {Service: [service]}}]), and one
#   RolePolicyAttachment `${name}-${sha1hash(policy.id)}` per policy, sha1hash being the
#   first 8 hex digits of the SHA-1 of the id (servicerole.ts 20-25).
# A live stack's role is adopted through aliases on those URNs (`pulumi_eks_service_role`):
# same role, same name and ARN (an EKS cluster's roleArn cannot change without replacing
# the cluster), updated in place if at all. The attachment is aliased too: as a new
# resource its create would find the policy attached already, and the old one's delete,
# which runs last, would detach it from the role the cluster uses.
SERVICE_ROLE_POLICIES = ("AmazonEKSClusterPolicy",)
SERVICE_ROLE_DESCRIPTION = "Allows EKS to manage clusters on your behalf."
SERVICE_ROLE_TRUST = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Action": ["sts:AssumeRole", "sts:TagSession"],
                "Effect": "Allow",
                "Principal": {"Service": ["eks.amazonaws.com"]},
            }
        ],
    },
    separators=(",", ":"),
)
ROLE = "aws:iam/role:Role"
ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"


def pulumi_eks_service_role(
    eks_name: str, parent_urn: pulumi.Input[str]
) -> tuple[pulumi.Output[str], dict[str, pulumi.Output[str]]]:
    """The URNs pulumi-eks gives the service role it makes for its Cluster `eks_name`
    (a child of `parent_urn`), and each policy's attachment, by policy name."""
    cluster = pulumi.create_urn(eks_name, "eks:index:Cluster", parent=parent_urn)
    component = pulumi.create_urn(f"{eks_name}-eksRole", "eks:index:ServiceRole", parent=cluster)

    def attachment(policy: str) -> pulumi.Output[str]:
        digest = hashlib.sha1(f"arn:aws:iam::aws:policy/{policy}".encode()).hexdigest()[:8]
        return pulumi.create_urn(f"{eks_name}-eksRole-{digest}", ATTACHMENT, parent=component)

    role = pulumi.create_urn(f"{eks_name}-eksRole-role", ROLE, parent=component)
    return role, {policy: attachment(policy) for policy in SERVICE_ROLE_POLICIES}


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
    control_plane_subnet_ids: Sequence[pulumi.Input[str]]  # the /28s, one per AZ
    # every subnet of the VPC: the cluster is deleted before any of them on destroy
    subnet_ids: Sequence[pulumi.Input[str]]
    admin_principal_arns: Sequence[str]
    viewer_principal_arns: Sequence[str]  # read-only: the CI preview role
    public_access_cidrs: Sequence[str]  # who may reach the public API endpoint
    partition: str
    # kube-proxy as an EKS add-on (pulumi-eks), or switched off for Cilium's replacement
    kube_proxy_addon: bool
    wireguard: bool  # nodes accept each other's WireGuard traffic (cilium.encryption)
    # ClusterMesh peers' VPC CIDRs by peer key (components/mesh.py): the nodes accept them
    peer_cidrs: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    # access.permissionsBoundaryArn: on the cluster's service role (None: no boundary)
    permissions_boundary: str | None = None


class Cluster(pulumi.ComponentResource):
    """EKS (pulumi-eks) with API authentication, IRSA, KMS-encrypted Secrets and logs.

    Who is cluster admin: the IAM principal that *creates* the cluster (pulumi-eks hard-codes
    `bootstrapClusterCreatorAdminPermissions: true`) and `admin_principal_arns`; the viewers
    may read most objects, never Secrets (AmazonEKSViewPolicy). Nobody else, including a CI
    role that did not create the stack.

    - `skip_default_node_group`: nodes are a separate, later step.
    - `skip_default_security_groups`: pulumi-eks's node and cluster security groups would
      be carried by nothing (managed nodes and Cilium's ENIs use EKS's cluster security
      group); an existing stack updates the cluster's VPC config in place and deletes them.
    - STANDARD upgrade policy (see UPGRADE_SUPPORT_TYPE).
    - The cluster's IAM role is the stack's own, with the permissions boundary, adopted
      from pulumi-eks on a live stack (see SERVICE_ROLE_POLICIES); the cluster waits for
      its policy through the role it is handed.
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
    - With WireGuard, the EKS cluster security group (the one managed nodes, Karpenter's
      nodes and Cilium's ENIs carry) accepts UDP 51871 from itself: written down, rather
      than left to EKS's all-traffic self rule, which a hardened account may narrow.
    - With ClusterMesh peers, the same group accepts everything from each peer's VPC.

    `endpoint` is the API endpoint, https://<host>: Cilium's agents reach the API server by
    its host name without kube-proxy (components/cilium.py). A name, not an IP.
    """

    eks_cluster: eks.Cluster
    provider: k8s.Provider
    kubeconfig: pulumi.Output[str]
    oidc_provider_arn: pulumi.Output[str]
    oidc_issuer: pulumi.Output[str]
    endpoint: pulumi.Output[str]
    cluster_name: pulumi.Output[str]  # the name, once the cluster is built
    security_group_id: pulumi.Output[str]  # EKS's cluster security group

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

        log_group = f"/aws/eks/{args.name}/cluster"  # the name EKS writes to
        invoke = pulumi.InvokeOptions(parent=self)
        existing_groups = aws.cloudwatch.get_log_groups(
            log_group_name_prefix=log_group, opts=invoke
        ).log_group_names
        logs = aws.cloudwatch.LogGroup(
            "control-plane-logs",
            name=log_group,
            retention_in_days=LOG_RETENTION_DAYS,
            opts=pulumi.ResourceOptions(
                parent=self,
                # Adopted when it exists (an import followed by an update to this retention,
                # Pulumi 3.174+; ignored once the group is in the state).
                import_=log_group if log_group in (existing_groups or []) else None,
                retain_on_delete=True,
            ),
        )

        eks_name = "eks"  # pulumi-eks names its children after it (see SERVICE_ROLE_POLICIES)
        service_role, its_policies = self._service_role(name, eks_name, args)
        admin_policy = CLUSTER_ADMIN_POLICY.format(partition=args.partition)
        viewer_policy = CLUSTER_VIEWER_POLICY.format(partition=args.partition)
        self.eks_cluster = eks.Cluster(
            eks_name,
            # The name flows through the log group, so the group exists before EKS would
            # create its own (a component's depends_on would not reach pulumi-eks's
            # children; a property dependency does).
            name=logs.name.apply(lambda _: args.name),
            version=args.kubernetes_version,
            vpc_id=args.vpc_id,
            subnet_ids=control_plane_subnets(
                args.name, args.vpc_id, args.control_plane_subnet_ids, args.subnet_ids, invoke
            ),
            endpoint_private_access=True,  # nodes reach the API without leaving the VPC
            endpoint_public_access=True,  # `pulumi up` and kubectl from outside the VPC
            public_access_cidrs=list(args.public_access_cidrs),
            # The role once its policies are attached: pulumi-eks takes the cluster's roleArn
            # from it (cluster.ts 691-693), so EKS gets a role that can already do its job.
            service_role=pulumi.Output.all(service_role.arn, *its_policies).apply(
                lambda _: service_role
            ),
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
        self.endpoint = self.eks_cluster.core.apply(lambda core: core.endpoint)
        self.cluster_name = self.eks_cluster.core.apply(lambda _: args.name)
        self.security_group_id = self.eks_cluster.cluster_security_group_id
        if args.wireguard:
            aws.vpc.SecurityGroupIngressRule(
                "wireguard",
                description="WireGuard between nodes (Cilium transparent encryption)",
                security_group_id=self.security_group_id,
                referenced_security_group_id=self.security_group_id,
                ip_protocol="udp",
                from_port=WIREGUARD_PORT,
                to_port=WIREGUARD_PORT,
                opts=child,
            )
        for key, cidr in args.peer_cidrs.items():
            aws.vpc.SecurityGroupIngressRule(
                f"from-{key}",
                # Pods talk natively across the mesh, on any port (Cilium's policies
                # decide), which covers what Cilium's ClusterMesh docs list: the
                # clustermesh-apiserver (2379/tcp, through the NLB, which keeps the peer's
                # address), cilium-health (4240/tcp), ICMP echo, WireGuard (51871/udp).
                description="ClusterMesh peer's VPC: pods and nodes (Cilium)",
                security_group_id=self.security_group_id,
                cidr_ipv4=cidr,
                ip_protocol="-1",
                opts=child,
            )
        self.register_outputs({"name": args.name, "kubeconfig": self.kubeconfig})

    def _service_role(
        self, name: str, eks_name: str, args: ClusterArgs
    ) -> tuple[aws.iam.Role, list[pulumi.Output[str]]]:
        """The cluster's IAM role and its policies' attachment ids (SERVICE_ROLE_POLICIES),
        under the URNs pulumi-eks gave them in a live stack.

        Only a stack from before the role was the program's own holds pulumi-eks's, and in
        those this component sat at the stack's root (under the Stack component since the
        package, 0.2.0): the aliases are to the URNs they had there. A full URN, since the
        engine derives an alias from a parent's only for the parent's own place; in this
        project's stack, not in a consumer's, whose own resources it must not claim."""
        was = pulumi.create_urn(name, "cilium-eks:index:Cluster", project="cilium-eks")
        old_role, old_attachments = pulumi_eks_service_role(eks_name, was)
        role = aws.iam.Role(
            "service-role",
            description=SERVICE_ROLE_DESCRIPTION,
            assume_role_policy=SERVICE_ROLE_TRUST,
            permissions_boundary=args.permissions_boundary,
            opts=pulumi.ResourceOptions(parent=self, aliases=[old_role]),
        )
        attached = [
            aws.iam.RolePolicyAttachment(
                f"service-role-{policy}",
                role=role.name,
                policy_arn=f"arn:{args.partition}:iam::aws:policy/{policy}",
                opts=pulumi.ResourceOptions(parent=self, aliases=[old_attachments[policy]]),
            ).id
            for policy in SERVICE_ROLE_POLICIES
        ]
        return role, attached


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


def control_plane_subnets(
    name: str,
    vpc_id: pulumi.Input[str],
    new_cluster_subnets: Sequence[pulumi.Input[str]],
    all_subnets: Sequence[pulumi.Input[str]],
    invoke: pulumi.InvokeOptions,
) -> pulumi.Output[list[str]]:
    """The subnets the EKS control plane keeps: those of the cluster named `name` in this
    VPC if it exists (EKS refuses any outside the AZs it was created with), else
    `new_cluster_subnets`. The value depends on every subnet, so that `pulumi destroy`
    deletes the cluster before any of them."""
    names = aws.eks.get_clusters(opts=invoke).names or []
    current = aws.eks.get_cluster(name=name, opts=invoke).vpc_config if name in names else None

    def choose(values: list[Any]) -> list[str]:
        vpc, *ids = values
        if current is not None and current.vpc_id == vpc:
            return sorted(current.subnet_ids)
        return list(ids[: len(new_cluster_subnets)])

    return pulumi.Output.all(vpc_id, *new_cluster_subnets, *all_subnets).apply(choose)


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


def irsa_trust_policy(
    oidc_provider_arn: str, oidc_issuer: str, namespace: str, service_account: str
) -> str:
    """Trust for the cluster's OIDC provider, for one ServiceAccount only (IRSA)."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Federated": oidc_provider_arn},
                    "Action": "sts:AssumeRoleWithWebIdentity",
                    "Condition": {
                        "StringEquals": {
                            f"{oidc_issuer}:sub": (
                                f"system:serviceaccount:{namespace}:{service_account}"
                            ),
                            f"{oidc_issuer}:aud": "sts.amazonaws.com",
                        }
                    },
                }
            ],
        }
    )
