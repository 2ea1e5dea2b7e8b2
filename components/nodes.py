"""The managed node group: AL2023 nodes in the private subnets, tainted until Cilium is ready."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_eks as eks

from components.config import NodesConfig

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


@dataclass
class NodeGroupArgs:
    cluster: eks.Cluster
    config: NodesConfig
    subnet_ids: Sequence[pulumi.Input[str]]  # the private subnets
    partition: str
    cni_release: pulumi.Resource  # the Cilium release: nodes must boot into Cilium
    egress: Sequence[pulumi.Resource]  # NAT routes: nodes pull images and join through them


class NodeGroup(pulumi.ComponentResource):
    """Node IAM role and a pulumi-eks ManagedNodeGroup.

    Ordering: EKS marks a managed node group ACTIVE only when its nodes are Ready, and a
    node is Ready only once a CNI runs on it. So the group waits for the Cilium release to
    be applied (the release itself does not wait for pods), and for NAT egress, without
    which nodes cannot pull Cilium's images.

    In API authentication mode EKS creates the node role's access entry (type EC2_LINUX)
    itself when the managed node group is created; pulumi-eks adds none.
    """

    node_group: eks.ManagedNodeGroup
    role: aws.iam.Role

    def __init__(
        self, name: str, args: NodeGroupArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("cilium-eks:index:NodeGroup", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        self.role = aws.iam.Role(
            "node",
            description="EKS managed nodes (Cilium ENI mode)",
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
            opts=child,
        )
        attachments = [
            aws.iam.RolePolicyAttachment(
                f"node-{policy}",
                role=self.role.name,
                policy_arn=f"arn:{args.partition}:iam::aws:policy/{policy}",
                opts=child,
            )
            for policy in NODE_POLICIES
        ]

        cfg = args.config
        self.node_group = eks.ManagedNodeGroup(
            "nodes",
            cluster=args.cluster,
            node_role=self.role,
            subnet_ids=args.subnet_ids,
            instance_types=list(cfg.instance_types),
            scaling_config=aws.eks.NodeGroupScalingConfigArgs(
                desired_size=cfg.desired_size, min_size=cfg.min_size, max_size=cfg.max_size
            ),
            # AL2023; pulumi-eks picks the x86_64 or arm64 AMI type from the instance types.
            operating_system=eks.OperatingSystem.AL2023,
            # IMDSv2 only (pulumi-eks makes the launch template: http_tokens=required).
            enable_imd_sv2=True,
            taints=[CILIUM_AGENT_NOT_READY_TAINT],
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[*attachments, args.cni_release, *args.egress]
            ),
        )
        self.register_outputs({})
