"""The managed node group: AL2023 nodes in the private subnets, tainted until Cilium is
ready, on a launch template of the stack's own; and CoreDNS, which needs those nodes.

Imports the config and nothing else of the program.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws
import pulumi_eks as eks

from components.config import InstanceType, NodesConfig

# Cilium's agent removes this taint from a node once it runs there (Cilium docs,
# "Installation on EKS"); until then no pod that tolerates nothing is started, so
# none gets an address from anything but Cilium.
CILIUM_AGENT_NOT_READY_TAINT = aws.eks.NodeGroupTaintArgs(
    key="node.cilium.io/agent-not-ready", value="true", effect="NO_EXECUTE"
)

# AWS-managed policies a managed node's role needs (EKS docs, "Amazon EKS node IAM
# role"). Not AmazonEKS_CNI_Policy: the VPC CNI is off, and cilium-operator has its own
# role (components/cilium.py).
NODE_POLICIES = ("AmazonEKSWorkerNodePolicy", "AmazonEC2ContainerRegistryReadOnly")

# IMDSv2 only, and a hop limit of 1 (EKS best practices, "Restrict access to the instance
# profile assigned to the worker node"): a response to a pod's request, one hop further
# than the host, is dropped, so pods cannot take the node role's credentials. Cilium's
# agent and operator run on the host network and still reach IMDS.
IMDS_OPTIONS = aws.ec2.LaunchTemplateMetadataOptionsArgs(
    http_endpoint="enabled", http_tokens="required", http_put_response_hop_limit=1
)

# kubelet's max pods under ENI prefix delegation, AWS's max-pods calculator
# (amazon-vpc-cni-k8s, scripts/max-pods-calculator.sh, --cni-prefix-delegation-enabled):
# ENIs x (IPv4 addresses per ENI - 1) x 16 addresses per /28 prefix + 2 host-network pods,
# capped by what kubelet sustains: 110 below 30 vCPUs, 250 from 30.
PREFIX_ADDRESSES = 16
MAX_PODS_BELOW_30_VCPUS = 110
MAX_PODS_FROM_30_VCPUS = 250


def max_pods_with_prefix_delegation(types: Sequence[InstanceType]) -> int:
    """The max pods every one of the node group's instance types can honour."""

    def one(t: InstanceType) -> int:
        addresses = t.max_enis * (t.ipv4_per_eni - 1) * PREFIX_ADDRESSES + 2
        return min(addresses, MAX_PODS_FROM_30_VCPUS if t.vcpus >= 30 else MAX_PODS_BELOW_30_VCPUS)

    return min(one(t) for t in types)


def node_user_data(max_pods: int) -> str:
    """AL2023 user data (base64): a nodeadm NodeConfig part setting kubelet's max pods.

    EKS merges it with its own NodeConfig (cluster name, endpoint, CA) because the launch
    template names no AMI (EKS docs, "Customizing managed nodes with launch templates").
    """
    node_config = {
        "apiVersion": "node.eks.aws/v1alpha1",
        "kind": "NodeConfig",
        "spec": {"kubelet": {"config": {"maxPods": max_pods}}},
    }
    mime = (
        "MIME-Version: 1.0\n"
        'Content-Type: multipart/mixed; boundary="//"\n'
        "\n"
        "--//\n"
        "Content-Type: application/node.eks.aws\n"
        "\n"
        f"{json.dumps(node_config, indent=2)}\n"
        "\n"
        "--//--\n"
    )
    return base64.b64encode(mime.encode()).decode()


def node_role(
    description: str,
    partition: str,
    node_policies: Mapping[str, pulumi.Input[str]],
    parent: pulumi.Resource,
    permissions_boundary: str | None = None,
) -> tuple[aws.iam.Role, list[pulumi.Resource]]:
    """A role EC2 instances assume as EKS nodes: AWS's NODE_POLICIES, plus `node_policies`
    (inline, by name: the image cache's), within `permissions_boundary` if given
    (access.permissionsBoundaryArn). The nodes wait for the role and all of these."""
    child = pulumi.ResourceOptions(parent=parent)
    role = aws.iam.Role(
        "node",
        description=description,
        assume_role_policy=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "ec2.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
        ),
        permissions_boundary=permissions_boundary,
        opts=child,
    )
    attached: list[pulumi.Resource] = [
        aws.iam.RolePolicyAttachment(
            f"node-{policy}",
            role=role.name,
            policy_arn=f"arn:{partition}:iam::aws:policy/{policy}",
            opts=child,
        )
        for policy in NODE_POLICIES
    ]
    attached += [
        aws.iam.RolePolicy(f"node-{name}", role=role.id, policy=document, opts=child)
        for name, document in node_policies.items()
    ]
    return role, attached


@dataclass
class NodeGroupArgs:
    cluster: eks.Cluster
    cluster_name: str  # for the CoreDNS add-on
    config: NodesConfig
    kubernetes_version: str  # the cluster's: nodes follow it on an upgrade
    prefix_delegation: bool  # raise kubelet's max pods to what prefixes allow
    subnet_ids: Sequence[pulumi.Input[str]]  # the private subnets
    partition: str
    # The Cilium component, i.e. all its children: nodes boot into Cilium (the release, once
    # aws-node is off), and the ENI sweeper is deleted after them on `pulumi destroy`.
    cilium: pulumi.Resource
    egress: Sequence[pulumi.Resource]  # NAT routes (and endpoints): to pull images and join
    # inline policies of the node role beyond NODE_POLICIES, by name (the image cache's)
    node_policies: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    permissions_boundary: str | None = None  # access.permissionsBoundaryArn, on the role


class NodeGroup(pulumi.ComponentResource):
    """Node IAM role, launch template, a pulumi-eks ManagedNodeGroup, and CoreDNS.

    Ordering: EKS marks a managed node group ACTIVE only when its nodes are Ready, and a
    node is Ready only once a CNI runs on it. So the group waits for the Cilium release to
    be applied (the release itself does not wait for pods), and for NAT egress, without
    which nodes cannot pull Cilium's images.

    The launch template is the stack's own (IMDS_OPTIONS, user data). pulumi-eks refuses
    `enableIMDSv2`, `userData`, `kubeletExtraArgs` and `nodeadmExtraOptions` beside a custom
    launch template, and with one it no longer defaults the group's Kubernetes version to
    the cluster's: the version is passed explicitly, or an upgrade would leave the nodes
    behind. A change to the template is a new template version: EKS rolls the nodes.

    CoreDNS is an EKS add-on owned by the stack, created once the nodes are Ready (with
    none it would sit DEGRADED until its create times out). It adopts the Deployment EKS
    bootstrapped (`OVERWRITE`) and follows `kubernetes_version` on an upgrade: EKS leaves
    the bootstrap copy alone, out of the supported version skew.

    In API authentication mode EKS creates the node role's access entry (type EC2_LINUX)
    itself when the managed node group is created; pulumi-eks adds none.
    """

    node_group: eks.ManagedNodeGroup
    role: aws.iam.Role
    coredns: aws.eks.Addon

    def __init__(
        self, name: str, args: NodeGroupArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("cilium-eks:index:NodeGroup", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        self.role, attachments = node_role(
            "EKS managed nodes (Cilium ENI mode)",
            args.partition,
            args.node_policies,
            self,
            args.permissions_boundary,
        )

        cfg = args.config
        launch_template = aws.ec2.LaunchTemplate(
            "nodes",
            description="EKS managed nodes (Cilium ENI mode): IMDSv2, hop limit 1",
            metadata_options=IMDS_OPTIONS,
            # Without prefix delegation EKS computes max pods from the instance type's ENIs.
            user_data=(
                node_user_data(max_pods_with_prefix_delegation(cfg.facts))
                if args.prefix_delegation
                else None
            ),
            opts=child,
        )

        self.node_group = eks.ManagedNodeGroup(
            "nodes",
            cluster=args.cluster,
            node_role=self.role,
            version=args.kubernetes_version,
            subnet_ids=args.subnet_ids,
            instance_types=list(cfg.instance_types),
            scaling_config=aws.eks.NodeGroupScalingConfigArgs(
                desired_size=cfg.desired_size, min_size=cfg.min_size, max_size=cfg.max_size
            ),
            # AL2023; pulumi-eks picks the x86_64 or arm64 AMI type from the instance types.
            operating_system=eks.OperatingSystem.AL2023,
            launch_template=aws.eks.NodeGroupLaunchTemplateArgs(
                id=launch_template.id,
                version=launch_template.latest_version.apply(str),
            ),
            taints=[CILIUM_AGENT_NOT_READY_TAINT],
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[*attachments, args.cilium, *args.egress],
            ),
        )

        self.coredns = aws.eks.Addon(
            "coredns",
            cluster_name=args.cluster_name,
            addon_name="coredns",
            # The version EKS names the default for this Kubernetes version.
            addon_version=aws.eks.get_addon_version_output(
                addon_name="coredns",
                kubernetes_version=args.kubernetes_version,
                most_recent=False,
                opts=pulumi.InvokeOutputOptions(parent=self),
            ).version,
            resolve_conflicts_on_create="OVERWRITE",  # adopt the bootstrap Deployment
            resolve_conflicts_on_update="OVERWRITE",
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.node_group]),
        )
        self.register_outputs({})
