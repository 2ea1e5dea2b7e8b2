"""What node groups must be: registered with Cilium's taint (node-groups-carry-cilium-taint),
and in subnets that map no public IP (node-subnets-private).

Imports pulumi_policy and this package's reading helpers only (never components/).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pulumi_policy import (
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    StackValidationArgs,
)

from .reading import get, linked, shows_no_inputs

# The taint Cilium's agent removes from a node once it runs there (Cilium docs,
# "Installation on EKS"): until then no pod gets an address from anything but Cilium.
CILIUM_TAINT_KEY = "node.cilium.io/agent-not-ready"
CILIUM_TAINT_VALUE = "true"
# What pulumi-eks's ManagedNodeGroup creates: the EKS node group itself.
AWS_NODE_GROUP_TYPE = "aws:eks/nodeGroup:NodeGroup"
# Managed node groups take EKS API taints, a list of {key, value, effect}, the effect in
# the EKS enum's spelling.
MANAGED_NODE_GROUP_TYPES = ("eks:index:ManagedNodeGroup", AWS_NODE_GROUP_TYPE)
EKS_NO_EXECUTE = "NO_EXECUTE"
# pulumi-eks's self-managed node groups take a map {key: {value, effect}} and pass it to
# kubelet's --register-with-taints, so the effect is Kubernetes' spelling.
SELF_MANAGED_NODE_GROUP_TYPES = ("eks:index:NodeGroupV2", "eks:index:NodeGroup")
KUBELET_NO_EXECUTE = "NoExecute"

SUBNET_TYPE = "aws:ec2/subnet:Subnet"


def carries_the_cilium_taint(resource_type: str, taints: Any) -> bool:
    """Whether a node group's `taints` hold Cilium's, in that resource type's own shape.

    Only the `taints` property counts. A self-managed group's kubelet flags
    (`kubeletExtraArgs: "--register-with-taints=..."`) are not read: a flag inside a
    free-form string is easily mistyped, and pulumi-eks adds its own --register-with-taints
    from `taints` after the user's flags, so which one holds is up to kubelet's parsing.
    """
    if resource_type in SELF_MANAGED_NODE_GROUP_TYPES:
        taint = get(taints, CILIUM_TAINT_KEY)
        return get(taint, "value") == CILIUM_TAINT_VALUE and (
            get(taint, "effect") == KUBELET_NO_EXECUTE
        )
    if isinstance(taints, (str, Mapping)) or not isinstance(taints, Iterable):
        return False
    wanted = {"key": CILIUM_TAINT_KEY, "value": CILIUM_TAINT_VALUE, "effect": EKS_NO_EXECUTE}
    return any(
        isinstance(t, Mapping) and all(t.get(k) == v for k, v in wanted.items()) for t in taints
    )


def node_groups_carry_the_cilium_taint(args: ResourceValidationArgs, report: ReportViolation):
    """Every node group, managed or self-managed, registers its nodes with Cilium's taint,
    so no pod starts on a node before Cilium runs there. (Karpenter is out of scope.)"""
    if args.resource_type not in MANAGED_NODE_GROUP_TYPES + SELF_MANAGED_NODE_GROUP_TYPES:
        return
    if shows_no_inputs(args):
        return
    if not carries_the_cilium_taint(args.resource_type, args.props.get("taints")):
        self_managed = args.resource_type in SELF_MANAGED_NODE_GROUP_TYPES
        effect = KUBELET_NO_EXECUTE if self_managed else EKS_NO_EXECUTE
        report(
            f"node groups must carry the taint {CILIUM_TAINT_KEY}={CILIUM_TAINT_VALUE} with "
            f"effect {effect}, so no pod starts before Cilium runs on the node"
        )


def _node_subnets(group: PolicyResource, subnets: list[PolicyResource]) -> list[PolicyResource]:
    """The subnets a node group's nodes land in, by dependency or by subnet id."""
    return linked(
        group, "subnetIds", SUBNET_TYPE, subnets, lambda ids, s: s.props.get("id") in (ids or [])
    )


def node_subnets_do_not_map_public_ips(args: StackValidationArgs, report: ReportViolation):
    subnets = [r for r in args.resources if r.resource_type == SUBNET_TYPE]
    for group in (r for r in args.resources if r.resource_type in MANAGED_NODE_GROUP_TYPES):
        for subnet in _node_subnets(group, subnets):
            if subnet.props.get("mapPublicIpOnLaunch"):
                report(
                    f"subnet {subnet.name} holds nodes of {group.name} and maps public IPs "
                    "on launch; nodes belong in private subnets",
                    subnet.urn,
                )
