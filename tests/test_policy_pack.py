"""policy/: each CrossGuard policy against compliant and violating resources, and the
whole pack against the graph the program really declares."""

from __future__ import annotations

import copy
import importlib.util
import json
from typing import Any

import pytest
from pulumi_policy import (
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
)

from tests.harness import ROOT, Graph, mock_id

_spec = importlib.util.spec_from_file_location("policies", ROOT / "policy" / "policies.py")
assert _spec and _spec.loader
policies = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(policies)

TAINT = {"key": "node.cilium.io/agent-not-ready", "value": "true", "effect": "NO_EXECUTE"}


def options() -> PolicyResourceOptions:
    return PolicyResourceOptions(
        protect=False, ignore_changes=[], delete_before_replace=None, aliases=[],
        additional_secret_outputs=[], custom_timeouts=None,
    )  # fmt: skip


def violations_of(validate, resource_type: str, props: dict[str, Any]) -> list[str]:
    found: list[str] = []
    args = ResourceValidationArgs(resource_type, props, "urn:x", "x", options(), None)
    validate(args, lambda message, urn=None: found.append(message))
    return found


def resource(resource_type: str, name: str, props: dict[str, Any], **deps) -> PolicyResource:
    return PolicyResource(
        resource_type, props, f"urn:{name}", name, options(), None, None, [], deps
    )  # fmt: skip


def stack_violations(validate, resources: list[PolicyResource]) -> list[tuple[str, str | None]]:
    found: list[tuple[str, str | None]] = []
    validate(StackValidationArgs(resources), lambda m, urn=None: found.append((m, urn)))
    return found


# --- node-groups-carry-cilium-taint ---------------------------------------------------


@pytest.mark.parametrize("rtype", ["eks:index:ManagedNodeGroup", "aws:eks/nodeGroup:NodeGroup"])
def test_taint_policy(rtype):
    check = policies.node_groups_carry_the_cilium_taint
    assert not violations_of(check, rtype, {"taints": [TAINT]})
    assert violations_of(check, rtype, {})
    assert violations_of(check, rtype, {"taints": [{**TAINT, "effect": "NO_SCHEDULE"}]})
    assert not violations_of(check, "aws:ec2/subnet:Subnet", {})


# --- cilium-eni-native-pinned ---------------------------------------------------------

GOOD_RELEASE = {
    "chart": "cilium",
    "version": "1.19.6",
    "values": {"eni": {"enabled": True}, "ipam": {"mode": "eni"}, "routingMode": "native"},
}


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"version": "1.19"}, "pinned"),
        ({"version": None}, "pinned"),
        ({"values": {**GOOD_RELEASE["values"], "ipam": {"mode": "cluster-pool"}}}, "ipam.mode"),
        ({"values": {**GOOD_RELEASE["values"], "routingMode": "tunnel"}}, "routingMode"),
        ({"values": {"ipam": {"mode": "eni"}, "routingMode": "native"}}, "eni.enabled"),
    ],
)
def test_release_policy(change, fragment):
    check = policies.cilium_release_uses_eni_ipam_native_routing_and_a_pinned_version
    rtype = "kubernetes:helm.sh/v3:Release"
    assert not violations_of(check, rtype, GOOD_RELEASE)
    found = violations_of(check, rtype, {**GOOD_RELEASE, **change})
    assert found and any(fragment in v for v in found)
    # other charts are not its business
    assert not violations_of(check, rtype, {"chart": "ingress-nginx", "version": "latest"})


# --- no-iam-wildcard-actions ----------------------------------------------------------


def doc(*actions: Any, effect: str = "Allow", key: str = "Action") -> str:
    statement = {"Effect": effect, key: list(actions), "Resource": "*"}
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


@pytest.mark.parametrize(
    ("rtype", "props", "violates"),
    [
        ("aws:iam/rolePolicy:RolePolicy", {"policy": doc("ec2:DescribeVpcs")}, False),
        ("aws:iam/rolePolicy:RolePolicy", {"policy": doc("ec2:*")}, True),
        ("aws:iam/policy:Policy", {"policy": doc("*")}, True),
        ("aws:iam/policy:Policy", {"policy": doc("ec2:Describe*")}, True),
        ("aws:iam/policy:Policy", {"policy": doc("s3:GetObject", key="NotAction")}, True),
        ("aws:iam/policy:Policy", {"policy": doc("*", effect="Deny")}, False),
        ("aws:iam/role:Role", {"inlinePolicies": [{"policy": doc("iam:*")}]}, True),
        ("aws:iam/role:Role", {"assumeRolePolicy": doc("sts:AssumeRole")}, False),
        ("aws:iam/rolePolicy:RolePolicy", {}, False),  # no document: nothing to judge
    ],
)
def test_iam_wildcard_policy(rtype, props, violates):
    assert bool(violations_of(policies.no_iam_wildcard_actions, rtype, props)) == violates


def test_iam_policy_accepts_a_single_statement_and_action_as_strings():
    document = {"Statement": {"Effect": "Allow", "Action": "ec2:*", "Resource": "*"}}
    assert policies.wildcard_actions(document) == ["ec2:*"]


# --- node-subnets-private -------------------------------------------------------------


def test_node_subnet_policy_by_dependency_and_by_id():
    public = resource(
        "aws:ec2/subnet:Subnet", "public", {"id": "subnet-1", "mapPublicIpOnLaunch": True}
    )
    private = resource(
        "aws:ec2/subnet:Subnet", "private", {"id": "subnet-2", "mapPublicIpOnLaunch": False}
    )
    check = policies.node_subnets_do_not_map_public_ips
    good = resource("eks:index:ManagedNodeGroup", "ng", {"subnetIds": ["subnet-2"]})
    assert not stack_violations(check, [public, private, good])
    by_id = resource("aws:eks/nodeGroup:NodeGroup", "ng", {"subnetIds": ["subnet-1"]})
    found = stack_violations(check, [public, private, by_id])
    assert [urn for _, urn in found] == ["urn:public"]
    assert "maps public IPs" in found[0][0]
    # during a preview ids are unknown: the property dependency still names the subnet
    by_dep = resource("eks:index:ManagedNodeGroup", "ng", {}, subnetIds=[public])
    assert [urn for _, urn in stack_violations(check, [public, by_dep])] == ["urn:public"]


# --- aws-node-off-with-cilium ---------------------------------------------------------

PATCH = {
    "metadata": {"name": "aws-node", "namespace": "kube-system"},
    "spec": {"template": {"spec": {"nodeSelector": {"io.cilium/aws-node-enabled": "true"}}}},
}


def test_aws_node_policy():
    check = policies.aws_node_is_off_wherever_cilium_is_installed
    release = resource("kubernetes:helm.sh/v3:Release", "cilium", GOOD_RELEASE)
    patch = resource("kubernetes:apps/v1:DaemonSetPatch", "aws-node", PATCH)
    assert not stack_violations(check, [release, patch])
    assert [urn for _, urn in stack_violations(check, [release])] == ["urn:cilium"]
    wrong = copy.deepcopy(PATCH)
    wrong["spec"]["template"]["spec"]["nodeSelector"] = {"kubernetes.io/os": "linux"}
    other = resource("kubernetes:apps/v1:DaemonSetPatch", "aws-node", wrong)
    assert stack_violations(check, [release, other])
    assert not stack_violations(check, [patch])  # no Cilium, nothing to require


# --- the pack against the program's own graph -----------------------------------------


def as_policy_resources(graph: Graph) -> list[PolicyResource]:
    """The mock graph as the analyzer would see it (ids merged into props)."""
    made = {
        res.urn: PolicyResource(
            res.type, {**res.inputs, "id": mock_id(res)}, res.urn, res.name, options(), None,
            None, [], {},
        )
        for res in graph.resources
    }  # fmt: skip
    for res in graph.resources:
        made[res.urn].property_dependencies = {
            k: [made[u] for u in urns if u in made] for k, urns in res.property_dependencies.items()
        }
    return list(made.values())


def run_pack(graph: Graph) -> list[str]:
    found: list[str] = []
    resources = as_policy_resources(graph)
    for policy in policies.POLICIES:
        report = lambda m, urn=None, name=policy.name: found.append(f"{name}: {m}")  # noqa: E731
        if isinstance(policy, ResourceValidationPolicy):
            for r in resources:
                args = ResourceValidationArgs(
                    r.resource_type, r.props, r.urn, r.name, options(), None
                )
                policy.validate(args, report)
        else:
            policy.validate(StackValidationArgs(resources), report)
    return found


def test_the_program_passes_its_own_policy_pack(dev):
    assert run_pack(dev) == []


def test_the_pack_catches_a_program_that_drops_the_taint_or_the_patch(dev):
    broken = copy.deepcopy(dev)
    broken.one("eks:index:ManagedNodeGroup").inputs["taints"] = []
    broken.resources = [
        r for r in broken.resources if r.type != "kubernetes:apps/v1:DaemonSetPatch"
    ]
    found = run_pack(broken)
    assert any(v.startswith("node-groups-carry-cilium-taint") for v in found)
    assert any(v.startswith("aws-node-off-with-cilium") for v in found)
