"""The guardrails, as plain validation functions over resource properties.

They state the platform's invariants independently of the program's code (no imports
from components/), so a change that breaks an invariant is stopped in the PR's preview
even when the program and its tests were changed together.

Properties are the engine's (camelCase). During a preview some are unknown; reading one
raises inside pulumi_policy, which then reports that the check cannot run in this
preview instead of guessing. The stack-level subnet check reads the node group's
property dependencies first, which are known even when the subnet ids are not.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from pulumi_policy import (
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

CILIUM_TAINT = {"key": "node.cilium.io/agent-not-ready", "value": "true", "effect": "NO_EXECUTE"}
NODE_GROUP_TYPES = ("eks:index:ManagedNodeGroup", "aws:eks/nodeGroup:NodeGroup")
RELEASE_TYPE = "kubernetes:helm.sh/v3:Release"
PATCH_TYPE = "kubernetes:apps/v1:DaemonSetPatch"
SUBNET_TYPE = "aws:ec2/subnet:Subnet"
AWS_NODE_SELECTOR = ("io.cilium/aws-node-enabled", "true")
# IAM resources whose property holds a policy document, and that property.
IAM_POLICY_PROPS = {
    "aws:iam/policy:Policy": "policy",
    "aws:iam/rolePolicy:RolePolicy": "policy",
    "aws:iam/userPolicy:UserPolicy": "policy",
    "aws:iam/groupPolicy:GroupPolicy": "policy",
}
EXACT_VERSION = re.compile(r"^\d+\.\d+\.\d+$")


def _get(props: Mapping[str, Any], *path: str) -> Any:
    node: Any = props
    for key in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(key)
    return node


def is_cilium_release(props: Mapping[str, Any]) -> bool:
    chart = props.get("chart") or ""
    return chart == "cilium" or chart.endswith("/cilium")


def node_groups_carry_the_cilium_taint(args: ResourceValidationArgs, report: ReportViolation):
    if args.resource_type not in NODE_GROUP_TYPES:
        return
    taints = args.props.get("taints") or []
    if not any(
        isinstance(t, Mapping) and all(t.get(k) == v for k, v in CILIUM_TAINT.items())
        for t in taints
    ):
        report(
            "node groups must carry the taint node.cilium.io/agent-not-ready=true:NoExecute, "
            "so no pod starts before Cilium runs on the node"
        )


def cilium_release_uses_eni_ipam_native_routing_and_a_pinned_version(
    args: ResourceValidationArgs, report: ReportViolation
):
    if args.resource_type != RELEASE_TYPE or not is_cilium_release(args.props):
        return
    version = args.props.get("version")
    if not isinstance(version, str) or not EXACT_VERSION.match(version):
        report(f"the Cilium chart version must be pinned to X.Y.Z, not {version!r}")
    values = args.props.get("values") or {}
    expected = {("eni", "enabled"): True, ("ipam", "mode"): "eni", ("routingMode",): "native"}
    for path, want in expected.items():
        if _get(values, *path) != want:
            report(f"Cilium values: {'.'.join(path)} must be {want!r} (ENI IPAM, native routing)")


def _statements(document: Any) -> Iterable[Mapping[str, Any]]:
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except ValueError:
            return []
    if not isinstance(document, Mapping):
        return []
    statements = document.get("Statement", [])
    return [statements] if isinstance(statements, Mapping) else statements


def wildcard_actions(document: Any) -> list[str]:
    """Allowed actions with a wildcard (or NotAction, which allows all but a list)."""
    found = []
    for stmt in _statements(document):
        if stmt.get("Effect") != "Allow":
            continue
        if "NotAction" in stmt:
            found.append("NotAction")
        actions = stmt.get("Action", [])
        for action in [actions] if isinstance(actions, str) else actions:
            if "*" in action:
                found.append(action)
    return found


def no_iam_wildcard_actions(args: ResourceValidationArgs, report: ReportViolation):
    documents = []
    if args.resource_type in IAM_POLICY_PROPS:
        documents.append(args.props.get(IAM_POLICY_PROPS[args.resource_type]))
    if args.resource_type == "aws:iam/role:Role":
        documents += [p.get("policy") for p in args.props.get("inlinePolicies") or []]
    for document in documents:
        for action in wildcard_actions(document):
            report(f"IAM policies must not allow wildcard actions; found {action!r}")


def _node_subnets(group: PolicyResource, subnets: list[PolicyResource]) -> list[PolicyResource]:
    """The subnets a node group's nodes land in: from its property dependencies (known in
    a preview too), else by matching subnet ids (a group given literal ids)."""
    by_dependency = [
        s
        for s in group.property_dependencies.get("subnetIds", [])
        if s.resource_type == SUBNET_TYPE
    ]
    if by_dependency:
        return by_dependency
    ids = group.props.get("subnetIds") or []
    return [s for s in subnets if s.props.get("id") in ids]


def node_subnets_do_not_map_public_ips(args: StackValidationArgs, report: ReportViolation):
    subnets = [r for r in args.resources if r.resource_type == SUBNET_TYPE]
    for group in (r for r in args.resources if r.resource_type in NODE_GROUP_TYPES):
        for subnet in _node_subnets(group, subnets):
            if subnet.props.get("mapPublicIpOnLaunch"):
                report(
                    f"subnet {subnet.name} holds nodes of {group.name} and maps public IPs "
                    "on launch; nodes belong in private subnets",
                    subnet.urn,
                )


def aws_node_is_off_wherever_cilium_is_installed(
    args: StackValidationArgs, report: ReportViolation
):
    releases = [
        r for r in args.resources if r.resource_type == RELEASE_TYPE and is_cilium_release(r.props)
    ]
    if not releases:
        return
    key, value = AWS_NODE_SELECTOR
    patched = any(
        r.resource_type == PATCH_TYPE
        and _get(r.props, "metadata", "name") == "aws-node"
        and _get(r.props, "metadata", "namespace") == "kube-system"
        and _get(r.props, "spec", "template", "spec", "nodeSelector", key) == value
        for r in args.resources
    )
    if not patched:
        for release in releases:
            report(
                "a Cilium release needs the kube-system/aws-node DaemonSetPatch with nodeSelector "
                f"{key}={value}: two CNIs would hand out pod IPs",
                release.urn,
            )


POLICIES = [
    ResourceValidationPolicy(
        name="node-groups-carry-cilium-taint",
        description="Node groups carry node.cilium.io/agent-not-ready=true:NoExecute.",
        validate=node_groups_carry_the_cilium_taint,
    ),
    ResourceValidationPolicy(
        name="cilium-eni-native-pinned",
        description="The Cilium release uses ENI IPAM, native routing and a pinned version.",
        validate=cilium_release_uses_eni_ipam_native_routing_and_a_pinned_version,
    ),
    ResourceValidationPolicy(
        name="no-iam-wildcard-actions",
        description="No IAM policy allows wildcard actions.",
        validate=no_iam_wildcard_actions,
    ),
    StackValidationPolicy(
        name="node-subnets-private",
        description="No subnet holding nodes maps public IPs on launch.",
        validate=node_subnets_do_not_map_public_ips,
    ),
    StackValidationPolicy(
        name="aws-node-off-with-cilium",
        description="The aws-node patch exists whenever a Cilium release does.",
        validate=aws_node_is_off_wherever_cilium_is_installed,
    ),
]
