"""policy/: each CrossGuard policy against compliant and violating resources in every
spelling a user might write, and the whole pack against the graph the program really
declares.

Properties go through pulumi_policy's unknown-checking proxy, as in the analyzer: rules
see Mappings and Sequences (not dicts and lists), and reading an unknown raises."""

from __future__ import annotations

import copy
import importlib.util
import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
from pulumi_policy import (
    PolicyProviderResource,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
)
from pulumi_policy.proxy import (
    UNKNOWN_ARRAY_VALUE,
    UNKNOWN_NUMBER_VALUE,
    UNKNOWN_STRING_VALUE,
    UnknownValueError,
    unknown_checking_proxy,
)

from tests.harness import ROOT, Graph, mock_id

# The pack's package, by its path (policy/ is no package of the program): as the analyzer
# imports it, without putting policy/ on this process's sys.path.
PACK = ROOT / "policy" / "policies"
_spec = importlib.util.spec_from_file_location(
    "policies", PACK / "__init__.py", submodule_search_locations=[str(PACK)]
)
assert _spec and _spec.loader
policies = importlib.util.module_from_spec(_spec)
sys.modules["policies"] = policies  # for its modules' relative imports
_spec.loader.exec_module(policies)

MANAGED_GROUPS = ["eks:index:ManagedNodeGroup", "aws:eks/nodeGroup:NodeGroup"]
EKS_NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
SELF_MANAGED_GROUPS = ["eks:index:NodeGroupV2", "eks:index:NodeGroup"]
HELM_TYPES = ["kubernetes:helm.sh/v3:Release", "kubernetes:helm.sh/v4:Chart"]
RELEASE = "kubernetes:helm.sh/v3:Release"
PATCH = "kubernetes:apps/v1:DaemonSetPatch"
DAEMONSET = "kubernetes:apps/v1:DaemonSet"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
LAUNCH_CONFIGURATION = "aws:ec2/launchConfiguration:LaunchConfiguration"
CLUSTERS = ["eks:index:Cluster", "aws:eks/cluster:Cluster"]
DIGEST = "sha256:" + "0123456789abcdef" * 4


def options() -> PolicyResourceOptions:
    return PolicyResourceOptions(
        protect=False, ignore_changes=[], delete_before_replace=None, aliases=[],
        additional_secret_outputs=[], custom_timeouts=None,
    )  # fmt: skip


def violations_of(validate, resource_type: str, props: dict[str, Any]) -> list[str]:
    found: list[str] = []
    args = ResourceValidationArgs(
        resource_type, unknown_checking_proxy(props), "urn:x", "x", options(), None
    )
    validate(args, lambda message, urn=None: found.append(message))
    return found


def k8s_provider(namespace: str | None) -> PolicyProviderResource:
    props = {"namespace": namespace} if namespace else {}
    return PolicyProviderResource(
        "pulumi:providers:kubernetes", unknown_checking_proxy(props), "urn:k8s", "k8s"
    )


def resource(
    resource_type: str,
    name: str,
    props: dict[str, Any],
    provider: PolicyProviderResource | None = None,
    **deps: list[PolicyResource],
) -> PolicyResource:
    return PolicyResource(
        resource_type, unknown_checking_proxy(props), f"urn:{name}", name, options(), provider,
        None, [], dict(deps),
    )  # fmt: skip


def stack_violations(validate, resources: list[PolicyResource]) -> list[tuple[str, str | None]]:
    found: list[tuple[str, str | None]] = []
    validate(StackValidationArgs(resources), lambda m, urn=None: found.append((m, urn)))
    return found


def assert_reports(found: list[str], fragments: list[str]) -> None:
    """One violation per fragment, each fragment in one of them."""
    assert len(found) == len(fragments), found
    for fragment in fragments:
        assert any(fragment in v for v in found), (fragment, found)


# --- node-groups-carry-cilium-taint ---------------------------------------------------

TAINT = {"key": "node.cilium.io/agent-not-ready", "value": "true", "effect": "NO_EXECUTE"}
SELF_TAINT = {"node.cilium.io/agent-not-ready": {"value": "true", "effect": "NoExecute"}}

# (taints, violates) for managed groups: EKS's list, effect in the EKS enum's spelling
MANAGED_TAINTS = [
    ([TAINT], False),
    ([{"key": "dedicated", "value": "infra", "effect": "NO_SCHEDULE"}, TAINT], False),
    (None, True),
    ([], True),
    ([{**TAINT, "effect": "NO_SCHEDULE"}], True),
    ([{**TAINT, "effect": "NoExecute"}], True),  # kubelet's spelling: EKS's API refuses it
    ([{**TAINT, "value": "false"}], True),
    ([{**TAINT, "key": "node.cilium.io/agent-ready"}], True),
    (SELF_TAINT, True),  # the self-managed map is not a managed group's shape
    ("node.cilium.io/agent-not-ready=true:NoExecute", True),  # kubelet's flag, not a list
]
# (taints, violates) for pulumi-eks's self-managed groups: a map, kubelet's spelling
SELF_MANAGED_TAINTS = [
    (SELF_TAINT, False),
    ({"dedicated": {"value": "infra", "effect": "NoSchedule"}, **SELF_TAINT}, False),
    (None, True),
    ({}, True),
    ({"node.cilium.io/agent-not-ready": {"value": "true", "effect": "NO_EXECUTE"}}, True),
    ({"node.cilium.io/agent-not-ready": {"value": "true", "effect": "NoSchedule"}}, True),
    ({"node.cilium.io/agent-not-ready": {"value": "false", "effect": "NoExecute"}}, True),
    ({"node.cilium.io/agent-not-ready": {"effect": "NoExecute"}}, True),
    ([TAINT], True),  # the managed list is not a self-managed group's shape
]


@pytest.mark.parametrize(
    ("rtype", "taints", "violates"),
    [(t, taints, v) for t in MANAGED_GROUPS for taints, v in MANAGED_TAINTS]
    + [(t, taints, v) for t in SELF_MANAGED_GROUPS for taints, v in SELF_MANAGED_TAINTS],
)
def test_taint_policy(rtype, taints, violates):
    # some other input, so a component shows its inputs (an empty one is left to its children)
    props = {"instanceTypes": ["t3.medium"], **({} if taints is None else {"taints": taints})}
    found = violations_of(policies.node_groups_carry_the_cilium_taint, rtype, props)
    assert bool(found) == violates
    if violates:
        effect = "NoExecute" if rtype in SELF_MANAGED_GROUPS else "NO_EXECUTE"
        assert f"effect {effect}" in found[0]


def test_taint_policy_leaves_other_resources_alone():
    for rtype in ("aws:ec2/subnet:Subnet", "karpenter.sh/v1:NodePool"):
        assert not violations_of(policies.node_groups_carry_the_cilium_taint, rtype, {})


# --- cilium-eni-native-pinned ---------------------------------------------------------

VALUES = {"eni": {"enabled": True}, "ipam": {"mode": "eni"}, "routingMode": "native"}
GOOD_RELEASE = {"chart": "cilium", "version": "1.19.6", "values": VALUES}
CILIUM_OCI = "oci://quay.io/cilium/charts/cilium"

# (chart reference, chart name, version the reference carries)
CHART_REFERENCES = [
    ("cilium", "cilium", None),
    ("cilium/cilium", "cilium", None),
    ("internal-mirror/cilium", "cilium", None),
    ("./install/kubernetes/cilium/", "cilium", None),
    ("charts\\cilium", "cilium", None),
    ("charts\\cilium\\", "cilium", None),  # a Windows path with a trailing separator
    (CILIUM_OCI, "cilium", None),
    (f"{CILIUM_OCI}:1.19.6", "cilium", "1.19.6"),
    (f"{CILIUM_OCI}@{DIGEST}", "cilium", None),
    (f"{CILIUM_OCI}:1.19.6@{DIGEST}", "cilium", "1.19.6"),
    ("oci://registry.internal:5000/charts/cilium", "cilium", None),
    ("oci://registry.internal:5000/charts/cilium:1.19.6", "cilium", "1.19.6"),
    ("cilium-1.19.6.tgz", "cilium", "1.19.6"),
    ("./charts/cilium-1.19.6.tgz", "cilium", "1.19.6"),
    ("https://helm.cilium.io/cilium-1.19.6.tgz", "cilium", "1.19.6"),
    ("https://charts.example.com/cilium-1.19.6.tgz?token=x#top", "cilium", "1.19.6"),
    ("file:///srv/charts/cilium-1.19.6.tar.gz", "cilium", "1.19.6"),
    ("cilium-1.19.0-rc.1.tgz", "cilium", "1.19.0-rc.1"),
    ("./charts/cilium.tgz", "cilium", None),
    ("cilium-enterprise-1.2.3.tgz", "cilium-enterprise", "1.2.3"),
    ("cilium/tetragon", "tetragon", None),
    ("oci://quay.io/cilium/charts/tetragon:1.2.0", "tetragon", "1.2.0"),
]


@pytest.mark.parametrize(("chart", "name", "version"), CHART_REFERENCES)
def test_chart_reference_names_the_chart_and_the_version_it_carries(chart, name, version):
    assert policies.cilium.chart_reference(chart) == (name, version)


# Releases of the CNI's chart, however spelled (version pinned where the reference has none)
CILIUM_RELEASES = [
    {"chart": chart, **({} if version else {"version": "1.19.6"})}
    for chart, name, version in CHART_REFERENCES
    if name == "cilium" and (version is None or policies.cilium.EXACT_VERSION.match(version))
] + [
    {"chart": "Cilium", "version": "1.19.6"},  # a directory's name may be capitalised
    {"chart": "cilium", "version": "1.19.6", "repositoryOpts": {"repo": "https://mirror.example"}},
]
# Charts that are not the CNI, even where Cilium's project ships them
OTHER_RELEASES = [
    {"chart": "tetragon", "repositoryOpts": {"repo": "https://helm.cilium.io"}},
    {"chart": "cilium/tetragon"},
    {"chart": "oci://quay.io/cilium/charts/tetragon:1.2.0"},
    {"chart": "cilium-enterprise", "repositoryOpts": {"repo": "https://helm.cilium.io/"}},
    {"chart": "cilium-policies"},
    {"chart": "./charts/my-cilium"},
    {"chart": "ingress-nginx"},
    {},
]


@pytest.mark.parametrize("rtype", HELM_TYPES)
@pytest.mark.parametrize("release", CILIUM_RELEASES, ids=lambda r: r["chart"])
def test_release_policy_holds_every_spelling_of_the_cilium_chart(rtype, release):
    check = policies.cilium_release_uses_eni_ipam_native_routing_and_a_pinned_version
    assert policies.cilium.is_cilium_release(unknown_checking_proxy(release))
    assert not violations_of(check, rtype, {**release, "values": VALUES})
    tunnel = {**release, "values": {**VALUES, "routingMode": "tunnel"}}
    assert_reports(violations_of(check, rtype, tunnel), ["routingMode"])


@pytest.mark.parametrize("rtype", HELM_TYPES)
@pytest.mark.parametrize("release", OTHER_RELEASES, ids=lambda r: r.get("chart", "none"))
def test_release_policy_leaves_other_charts_alone(rtype, release):
    check = policies.cilium_release_uses_eni_ipam_native_routing_and_a_pinned_version
    assert not policies.cilium.is_cilium_release(unknown_checking_proxy(release))
    assert not violations_of(check, rtype, {**release, "version": "latest", "values": {}})


# (chart, version, fragments of the violations): the version is pinned to X.Y.Z by
# `version` or by the reference, and the two agree where both give one
VERSIONS = [
    ("cilium", "1.19.6", []),
    ("cilium", None, ["none is given"]),
    ("cilium", "", ["none is given"]),
    ("cilium", "1.19", ["pinned to X.Y.Z, not '1.19'"]),
    ("cilium", "~1.19.0", ["pinned"]),
    ("cilium", ">=1.19.0", ["pinned"]),
    ("cilium", "v1.19.6", ["pinned"]),
    ("cilium", "latest", ["pinned"]),
    (f"{CILIUM_OCI}:1.19.6", None, []),
    (f"{CILIUM_OCI}:1.19.6", "1.19.6", []),
    (f"{CILIUM_OCI}:1.19.6", "1.19.7", ["differ"]),
    (f"{CILIUM_OCI}:1.19.6@{DIGEST}", None, []),
    (f"{CILIUM_OCI}@{DIGEST}", None, ["none is given"]),  # a digest names no version
    (f"{CILIUM_OCI}@{DIGEST}", "1.19.6", []),
    (f"{CILIUM_OCI}:latest", None, ["pinned"]),
    (f"{CILIUM_OCI}:1.19", "1.19", ["pinned", "pinned"]),
    ("cilium-1.19.6.tgz", None, []),
    ("https://helm.cilium.io/cilium-1.19.6.tgz", "1.19.5", ["differ"]),
    ("./charts/cilium-1.19.0-rc.1.tgz", None, ["pinned"]),
    ("./install/kubernetes/cilium", None, ["none is given"]),
]


@pytest.mark.parametrize("rtype", HELM_TYPES)
@pytest.mark.parametrize(("chart", "version", "fragments"), VERSIONS)
def test_release_policy_version(rtype, chart, version, fragments):
    check = policies.cilium_release_uses_eni_ipam_native_routing_and_a_pinned_version
    props = {"chart": chart, "values": VALUES, **({"version": version} if version else {})}
    assert_reports(violations_of(check, rtype, props), fragments)


@pytest.mark.parametrize("rtype", HELM_TYPES)
@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        ({**VALUES, "ipam": {"mode": "cluster-pool"}}, "ipam.mode"),
        ({**VALUES, "routingMode": "tunnel"}, "routingMode"),
        ({"ipam": {"mode": "eni"}, "routingMode": "native"}, "eni.enabled"),
        ({**VALUES, "eni": {"enabled": "true"}}, "eni.enabled"),  # a string is not true
    ],
)
def test_release_policy_values(rtype, values, fragment):
    check = policies.cilium_release_uses_eni_ipam_native_routing_and_a_pinned_version
    assert not violations_of(check, rtype, GOOD_RELEASE)
    assert_reports(violations_of(check, rtype, {**GOOD_RELEASE, "values": values}), [fragment])
    assert len(violations_of(check, rtype, {**GOOD_RELEASE, "values": {}})) == 3


# --- no-iam-wildcard-actions ----------------------------------------------------------


def doc(*actions: Any, effect: str | None = "Allow", key: str = "Action", **dumps) -> str:
    statement = {key: list(actions), "Resource": "*"}
    if effect is not None:
        statement["Effect"] = effect
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]}, **dumps)


def single(action: str, effect: str = "Allow", key: str = "Action") -> dict[str, Any]:
    """A document object with one statement and one action, neither in a list."""
    return {"Statement": {"Effect": effect, key: action, "Resource": "*"}}


# (resource type, props, wildcard actions found)
IAM_CASES = [
    ("aws:iam/rolePolicy:RolePolicy", {"policy": doc("ec2:DescribeVpcs")}, []),
    ("aws:iam/rolePolicy:RolePolicy", {"policy": doc("ec2:*")}, ["ec2:*"]),
    ("aws:iam/policy:Policy", {"policy": doc("*")}, ["*"]),
    ("aws:iam/policy:Policy", {"policy": json.dumps(single("*"))}, ["*"]),
    ("aws:iam/policy:Policy", {"policy": json.dumps(single("ec2:*"))}, ["ec2:*"]),
    ("aws:iam/policy:Policy", {"policy": single("ec2:*")}, ["ec2:*"]),  # an object
    ("aws:iam/policy:Policy", {"policy": doc("ec2:Describe*", indent=4)}, ["ec2:Describe*"]),
    ("aws:iam/policy:Policy", {"policy": "\n  " + doc("s3:*", indent="\t")}, ["s3:*"]),
    ("aws:iam/policy:Policy", {"policy": doc("iam:GetUse?")}, ["iam:GetUse?"]),
    ("aws:iam/policy:Policy", {"policy": doc("ec2:A", "ec2:B*", "s3:*")}, ["ec2:B*", "s3:*"]),
    ("aws:iam/policy:Policy", {"policy": doc("s3:GetObject", key="NotAction")}, ["NotAction"]),
    ("aws:iam/policy:Policy", {"policy": single("s3:GetObject", key="NotAction")}, ["NotAction"]),
    ("aws:iam/policy:Policy", {"policy": doc("*", effect="Deny")}, []),
    ("aws:iam/policy:Policy", {"policy": doc("s3:Get", effect="Deny", key="NotAction")}, []),
    # IAM accepts only Allow and Deny (case-sensitive); anything but Deny is judged
    ("aws:iam/policy:Policy", {"policy": doc("*", effect="allow")}, ["*"]),
    ("aws:iam/policy:Policy", {"policy": doc("*", effect="deny")}, ["*"]),
    ("aws:iam/policy:Policy", {"policy": doc("*", effect=None)}, ["*"]),
    ("aws:iam/userPolicy:UserPolicy", {"policy": doc("iam:*")}, ["iam:*"]),
    ("aws:iam/groupPolicy:GroupPolicy", {"policy": doc("*")}, ["*"]),
    (
        "aws:iam/role:Role",
        {
            "inlinePolicies": [
                {"name": "read", "policy": doc("ec2:DescribeVpcs")},
                {"name": "all", "policy": doc("iam:*")},
            ]
        },
        ["iam:*"],
    ),
    ("aws:iam/role:Role", {"inlinePolicies": [{"name": "empty"}]}, []),
    ("aws:iam/role:Role", {"assumeRolePolicy": doc("sts:AssumeRole")}, []),
    ("aws:iam/rolePolicy:RolePolicy", {}, []),  # no document: nothing to judge
    ("aws:iam/rolePolicy:RolePolicy", {"policy": "not json"}, []),  # IAM refuses it
    ("aws:s3/bucketPolicy:BucketPolicy", {"policy": doc("s3:*")}, []),  # not an identity policy
]


@pytest.mark.parametrize(("rtype", "props", "actions"), IAM_CASES)
def test_iam_wildcard_policy(rtype, props, actions):
    found = violations_of(policies.no_iam_wildcard_actions, rtype, props)
    assert found == [f"IAM policies must not allow wildcard actions; found {a!r}" for a in actions]


# --- launch-templates-imdsv2-hop-limit-1 ----------------------------------------------

GOOD_IMDS = {"httpTokens": "required", "httpPutResponseHopLimit": 1, "httpEndpoint": "enabled"}
# pulumi-eks's own template for a managed group with enableIMDSv2
EKS_IMDS = {"httpTokens": "required", "httpPutResponseHopLimit": 2, "httpEndpoint": "enabled"}

# (metadataOptions, fragments of the violations)
IMDS_CASES = [
    (GOOD_IMDS, []),
    ({"httpTokens": "required", "httpPutResponseHopLimit": 1}, []),  # endpoint unset is on
    ({**GOOD_IMDS, "httpPutResponseHopLimit": 1.0}, []),  # the analyzer's numbers are doubles
    (None, ["metadataOptions must be set"]),
    ({}, ["httpTokens", "httpPutResponseHopLimit"]),
    (EKS_IMDS, ["httpPutResponseHopLimit must be 1"]),
    ({**GOOD_IMDS, "httpPutResponseHopLimit": 0}, ["httpPutResponseHopLimit"]),
    ({**GOOD_IMDS, "httpTokens": "optional"}, ["httpTokens must be 'required'"]),
    ({"httpPutResponseHopLimit": 1, "httpEndpoint": "enabled"}, ["httpTokens"]),
    ({"httpTokens": "required", "httpEndpoint": "enabled"}, ["httpPutResponseHopLimit"]),
    ({**GOOD_IMDS, "httpEndpoint": "disabled"}, ["httpEndpoint must be 'enabled'"]),
]


@pytest.mark.parametrize("rtype", [LAUNCH_TEMPLATE, LAUNCH_CONFIGURATION])
@pytest.mark.parametrize(("metadata_options", "fragments"), IMDS_CASES)
def test_launch_template_policy(rtype, metadata_options, fragments):
    props = {} if metadata_options is None else {"metadataOptions": metadata_options}
    found = violations_of(policies.launch_templates_require_imdsv2_with_hop_limit_1, rtype, props)
    assert_reports(found, fragments)


def test_launch_template_policy_leaves_other_resources_alone():
    check = policies.launch_templates_require_imdsv2_with_hop_limit_1
    assert not violations_of(check, "aws:ec2/instance:Instance", {})


# --- node-groups-imdsv2-launch-template -----------------------------------------------


def template(
    resource_name: str, metadata_options: dict[str, Any] | None, /, **props
) -> PolicyResource:
    """A launch template of the stack, its id lt-<resource name>; props: e.g. its `name`."""
    imds = {} if metadata_options is None else {"metadataOptions": metadata_options}
    return resource(LAUNCH_TEMPLATE, resource_name, {"id": f"lt-{resource_name}", **imds, **props})


def test_node_group_launch_template_policy_by_dependency():
    """The shape of a preview: the template's id is unknown, the dependency is known."""
    check = policies.node_groups_use_an_imdsv2_hop_limit_1_launch_template
    unknown = {"launchTemplate": {"id": UNKNOWN_STRING_VALUE, "version": UNKNOWN_STRING_VALUE}}
    good, hop2 = template("nodes", GOOD_IMDS), template("wide", EKS_IMDS)
    group = resource(EKS_NODE_GROUP, "ng", unknown, launchTemplate=[good])
    assert not stack_violations(check, [good, hop2, group])
    group = resource(EKS_NODE_GROUP, "ng", unknown, launchTemplate=[hop2])
    found = stack_violations(check, [good, hop2, group])
    assert [urn for _, urn in found] == ["urn:ng"]
    assert "node group ng uses launch template wide" in found[0][0]
    assert "httpPutResponseHopLimit must be 1" in found[0][0]


@pytest.mark.parametrize(
    ("spec", "violates"),
    [
        ({"id": "lt-nodes", "version": "1"}, False),
        ({"name": "nodes-lt", "version": "$Latest"}, False),
        ({"id": "lt-wide", "version": "1"}, True),  # the hop-2 template
        ({"id": "lt-elsewhere", "version": "1"}, True),  # not in this stack
        ({"name": "elsewhere", "version": "1"}, True),
        ({"version": "1"}, True),
    ],
)
def test_node_group_launch_template_policy_by_id_or_name(spec, violates):
    """A group given literal ids or names (or a stack read back without dependencies)."""
    check = policies.node_groups_use_an_imdsv2_hop_limit_1_launch_template
    good = template("nodes", GOOD_IMDS, name="nodes-lt")
    hop2 = template("wide", EKS_IMDS, name="wide-lt")
    group = resource(EKS_NODE_GROUP, "ng", {"launchTemplate": spec})
    found = stack_violations(check, [good, hop2, group])
    assert bool(found) == violates
    assert all(urn == "urn:ng" and "node group ng" in m for m, urn in found)


def test_node_group_launch_template_policy_falls_back_to_ids_past_other_dependencies():
    check = policies.node_groups_use_an_imdsv2_hop_limit_1_launch_template
    good, version = template("nodes", GOOD_IMDS), resource("random:index:RandomId", "v", {})
    group = resource(
        EKS_NODE_GROUP, "ng", {"launchTemplate": {"id": "lt-nodes"}},
        launchTemplate=[version],
    )  # fmt: skip
    assert not stack_violations(check, [good, version, group])


@pytest.mark.parametrize(
    "props", [{"enableIMDSv2": True}, {}, {"launchTemplate": None}], ids=["imdsv2", "none", "null"]
)
def test_node_group_launch_template_policy_without_a_template(props):
    check = policies.node_groups_use_an_imdsv2_hop_limit_1_launch_template
    found = stack_violations(
        check, [template("nodes", GOOD_IMDS), resource(EKS_NODE_GROUP, "ng", props)]
    )
    assert [urn for _, urn in found] == ["urn:ng"]
    assert "node group ng must use a launch template of this stack" in found[0][0]


def test_a_preview_of_pulumi_eks_s_imdsv2_template_fails_on_every_resource_that_shows_it():
    """What a real preview shows for `ManagedNodeGroup(enable_imd_sv2=True)`: the
    component, pulumi-eks's hop-2 template and the aws NodeGroup that uses it."""
    eks_template = template("ng-launchTemplate", EKS_IMDS)
    component = resource("eks:index:ManagedNodeGroup", "ng", {"enableIMDSv2": True})
    child = resource(
        EKS_NODE_GROUP, "ng-child", {"launchTemplate": {"id": "lt-x"}},
        launchTemplate=[eks_template],
    )  # fmt: skip
    found = stack_violations(
        policies.node_groups_use_an_imdsv2_hop_limit_1_launch_template,
        [component, eks_template, child],
    )
    # the component outputs no launch template: the EKS node group it creates is judged
    assert [str(urn) for _, urn in found] == ["urn:ng-child"]
    check = policies.launch_templates_require_imdsv2_with_hop_limit_1
    assert violations_of(check, LAUNCH_TEMPLATE, {"metadataOptions": EKS_IMDS})


def test_node_group_launch_template_policy_cannot_run_on_an_unknown_id_without_dependencies():
    check = policies.node_groups_use_an_imdsv2_hop_limit_1_launch_template
    group = resource(MANAGED_GROUPS[1], "ng", {"launchTemplate": {"id": UNKNOWN_STRING_VALUE}})
    with pytest.raises(UnknownValueError):
        stack_violations(check, [template("nodes", GOOD_IMDS), group])


# --- clusters-standard-upgrade-policy -------------------------------------------------


@pytest.mark.parametrize("rtype", CLUSTERS)
@pytest.mark.parametrize(
    ("props", "violates"),
    [
        ({"upgradePolicy": {"supportType": "STANDARD"}}, False),
        ({"upgradePolicy": {"supportType": "EXTENDED"}}, True),
        ({"upgradePolicy": {"supportType": "standard"}}, True),  # EKS's enum is upper case
        ({"upgradePolicy": {}}, True),
        ({"upgradePolicy": None}, True),
        ({"version": "1.35"}, True),  # unset: EXTENDED
    ],
)
def test_cluster_upgrade_policy(rtype, props, violates):
    found = violations_of(policies.clusters_use_the_standard_upgrade_policy, rtype, props)
    assert bool(found) == violates
    assert all("upgradePolicy.supportType='STANDARD'" in v for v in found)


def test_cluster_upgrade_policy_leaves_other_resources_alone():
    check = policies.clusters_use_the_standard_upgrade_policy
    assert not violations_of(check, "aws:eks/addon:Addon", {})


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
    by_dep = resource(
        "eks:index:ManagedNodeGroup", "ng", {"subnetIds": [UNKNOWN_STRING_VALUE]},
        subnetIds=[public],
    )  # fmt: skip
    assert [urn for _, urn in stack_violations(check, [public, by_dep])] == ["urn:public"]


# --- aws-node-off-with-cilium ---------------------------------------------------------

OFF = {"io.cilium/aws-node-enabled": "true"}


def daemonset(name="aws-node", namespace: str | None = "kube-system", selector=OFF) -> dict:
    metadata = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"metadata": metadata, "spec": {"template": {"spec": {"nodeSelector": selector}}}}


# (type, props, the provider's namespace, switches aws-node off)
AWS_NODE_CASES = [
    (PATCH, daemonset(), None, True),
    (DAEMONSET, daemonset(), None, True),
    (PATCH, daemonset(namespace="default"), None, False),
    (PATCH, daemonset(name="kube-proxy"), None, False),
    (DAEMONSET, daemonset(name="aws-node-x1"), None, False),  # autonamed
    (PATCH, daemonset(namespace=None), None, False),  # lands in default
    (PATCH, daemonset(namespace=None), "kube-system", True),  # the provider's namespace
    (PATCH, daemonset(), "default", True),  # its own namespace wins
    (PATCH, daemonset(namespace="default"), "kube-system", False),
    (PATCH, daemonset(selector={"io.cilium/aws-node-enabled": "false"}), None, False),
    (PATCH, daemonset(selector={"kubernetes.io/os": "linux"}), None, False),
    ("kubernetes:apps/v1:Deployment", daemonset(), None, False),
]


@pytest.mark.parametrize(("rtype", "props", "provider_namespace", "off"), AWS_NODE_CASES)
def test_aws_node_policy(rtype, props, provider_namespace, off):
    check = policies.aws_node_is_off_wherever_cilium_is_installed
    release = resource(RELEASE, "cilium", GOOD_RELEASE)
    other = resource(rtype, "candidate", props, provider=k8s_provider(provider_namespace))
    found = stack_violations(check, [release, other])
    assert [urn for _, urn in found] == ([] if off else ["urn:cilium"])
    assert not stack_violations(check, [other])  # no Cilium, nothing to require


@pytest.mark.parametrize("rtype", HELM_TYPES)
@pytest.mark.parametrize(
    ("chart", "is_cilium"),
    [(f"{CILIUM_OCI}:1.19.6", True), ("./charts/cilium-1.19.6.tgz", True), ("tetragon", False)],
)
def test_aws_node_policy_follows_every_spelling_of_a_cilium_release(rtype, chart, is_cilium):
    check = policies.aws_node_is_off_wherever_cilium_is_installed
    release = resource(rtype, "cni", {"chart": chart, "values": VALUES})
    kube_proxy = resource(PATCH, "kube-proxy", daemonset(name="kube-proxy"))
    found = stack_violations(check, [release, kube_proxy])
    assert [urn for _, urn in found] == (["urn:cni"] if is_cilium else [])
    aws_node = resource(PATCH, "aws-node", daemonset())
    assert not stack_violations(check, [release, kube_proxy, aws_node])


# --- unknowns -------------------------------------------------------------------------


TAINTS = policies.node_groups_carry_the_cilium_taint
CILIUM = policies.cilium_release_uses_eni_ipam_native_routing_and_a_pinned_version
IAM = policies.no_iam_wildcard_actions
IMDS = policies.launch_templates_require_imdsv2_with_hop_limit_1
UPGRADE = policies.clusters_use_the_standard_upgrade_policy
UNKNOWN_HOP_LIMIT = {**GOOD_IMDS, "httpPutResponseHopLimit": UNKNOWN_NUMBER_VALUE}


@pytest.mark.parametrize(
    ("validate", "rtype", "props"),
    [
        (TAINTS, MANAGED_GROUPS[0], {"taints": UNKNOWN_ARRAY_VALUE}),
        (CILIUM, RELEASE, {"chart": UNKNOWN_STRING_VALUE}),
        (CILIUM, RELEASE, {**GOOD_RELEASE, "version": UNKNOWN_STRING_VALUE}),
        (IAM, "aws:iam/policy:Policy", {"policy": UNKNOWN_STRING_VALUE}),
        (IMDS, LAUNCH_TEMPLATE, {"metadataOptions": UNKNOWN_HOP_LIMIT}),
        (UPGRADE, CLUSTERS[1], {"upgradePolicy": {"supportType": UNKNOWN_STRING_VALUE}}),
    ],
    ids=["taints", "chart", "version", "iam", "hop-limit", "support-type"],
)
def test_an_unknown_is_never_read_as_absent(validate, rtype, props):
    """It raises, and pulumi_policy reports that the check cannot run in this preview."""
    with pytest.raises(UnknownValueError):
        violations_of(validate, rtype, props)


# --- the pack against the program's own graph -----------------------------------------


def with_pulumi_eks_children(graph: Graph) -> Graph:
    """The graph with what pulumi-eks's remote components create, which mocks never show
    and a real preview does: the EKS cluster with the Cluster's upgrade policy, and the
    EKS node group with the ManagedNodeGroup's taints, subnets and launch template
    (nodegroup.ts passes them through; cluster.ts passes upgradePolicy)."""
    graph = copy.deepcopy(graph)
    passed = {
        "eks:index:Cluster": ("aws:eks/cluster:Cluster", ("upgradePolicy",)),
        "eks:index:ManagedNodeGroup": (
            EKS_NODE_GROUP,
            ("taints", "subnetIds", "launchTemplate", "scalingConfig", "instanceTypes"),
        ),
    }
    for component in list(graph.resources):
        if component.type not in passed:
            continue
        child_type, keys = passed[component.type]
        child = copy.deepcopy(component)
        child.type, child.custom, child.remote = child_type, True, False
        child.urn, child.parent = f"{component.urn}$child", component.urn
        child.inputs = {k: v for k, v in component.inputs.items() if k in keys}
        child.property_dependencies = {
            k: v for k, v in component.property_dependencies.items() if k in keys
        }
        graph.resources.append(child)
        graph.by_urn[child.urn] = child
    return graph


def as_policy_resources(graph: Graph) -> list[PolicyResource]:
    """The mock graph as the analyzer would see it: pulumi-eks's children added, ids
    merged into props, props behind the unknown-checking proxy, providers and property
    dependencies linked."""
    graph = with_pulumi_eks_children(graph)
    made = {
        res.urn: PolicyResource(
            res.type, unknown_checking_proxy({**res.inputs, "id": mock_id(res)}), res.urn,
            res.name, options(), None, None, [], {},
        )
        for res in graph.resources
    }  # fmt: skip
    for res in graph.resources:
        made[res.urn].property_dependencies = {
            k: [made[u] for u in urns if u in made] for k, urns in res.property_dependencies.items()
        }
        provider = graph.by_urn.get(res.provider) if res.provider else None
        if provider:
            made[res.urn].provider = PolicyProviderResource(
                provider.type, unknown_checking_proxy(provider.inputs), provider.urn, provider.name
            )
    return list(made.values())


def run_pack(graph: Graph) -> list[str]:
    found: list[str] = []
    resources = as_policy_resources(graph)
    for policy in policies.POLICIES:
        report = lambda m, urn=None, name=policy.name: found.append(f"{name}: {m}")  # noqa: E731
        if isinstance(policy, ResourceValidationPolicy):
            for r in resources:
                args = ResourceValidationArgs(
                    r.resource_type, r.props, r.urn, r.name, options(), r.provider
                )
                policy.validate(args, report)
        else:
            policy.validate(StackValidationArgs(resources), report)
    return found


def test_the_program_passes_its_own_policy_pack(dev):
    assert run_pack(dev) == []


def test_the_analyzer_runs_the_pack_these_tests_check(tmp_path):
    """policy/__main__.py as the analyzer runs it, from another directory: it finds the
    package's rules, and hands PolicyPack every one of them (PolicyPack itself, which
    serves the engine, is recorded instead)."""
    script = (
        "import runpy, sys, pulumi_policy\n"
        "pulumi_policy.PolicyPack = lambda **pack: print(*(p.name for p in pack['policies']))\n"
        "runpy.run_path(sys.argv[1], run_name='__main__')\n"
    )
    main = str(ROOT / "policy" / "__main__.py")
    proc = subprocess.run(
        [sys.executable, "-c", script, main], cwd=tmp_path, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [p.name for p in policies.POLICIES]
    assert len(policies.POLICIES) == 8


def test_the_program_s_nodes_use_its_own_launch_template_through_a_property_dependency(dev):
    """The link a preview can follow: the node group's launchTemplate depends on the
    template `nodes` of the NodeGroup component, whose id is unknown until it exists."""
    template_ = dev.one(LAUNCH_TEMPLATE, "nodes")
    assert template_.parent == dev.one("cilium-eks:index:NodeGroup").urn
    resources = {r.urn: r for r in as_policy_resources(dev)}
    group = resources[dev.one("eks:index:ManagedNodeGroup").urn + "$child"]
    linked = policies.imds.launch_templates_of(group, [resources[template_.urn]])
    assert [t.urn for t in linked] == [template_.urn]
    assert group.property_dependencies["launchTemplate"] == linked
    assert policies.imds.imds_problems(template_.inputs.get("metadataOptions")) == []
    cluster = dev.one("eks:index:Cluster")
    assert cluster.inputs.get("upgradePolicy") == {"supportType": "STANDARD"}


def _drop(graph: Graph, rtype: str, name: str | None = None) -> None:
    graph.resources = [
        r for r in graph.resources if not (r.type == rtype and name in (None, r.name))
    ]


def _set(graph: Graph, rtype: str, path: str, value: Any) -> None:
    """Set a (dotted) input on every resource of a type."""
    *parents, leaf = path.split(".")
    for res in graph.of_type(rtype):
        node = res.inputs
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value


def _unlink_launch_template(graph: Graph) -> None:
    group = graph.one("eks:index:ManagedNodeGroup")
    group.inputs.pop("launchTemplate", None)
    group.property_dependencies.pop("launchTemplate", None)


BREAKAGES: dict[str, tuple[Callable[[Graph], object], list[str]]] = {
    "no taint": (
        lambda g: _set(g, "eks:index:ManagedNodeGroup", "taints", []),
        ["node-groups-carry-cilium-taint"],
    ),
    "no aws-node patch": (
        lambda g: _drop(g, PATCH, "aws-node"),
        ["aws-node-off-with-cilium"],
    ),
    "aws-node patch in default": (
        lambda g: _set(g, PATCH, "metadata.namespace", "default"),
        ["aws-node-off-with-cilium"],
    ),
    "unpinned OCI chart": (
        lambda g: (_set(g, RELEASE, "chart", CILIUM_OCI), _set(g, RELEASE, "version", None)),
        ["cilium-eni-native-pinned"],
    ),
    "tunnel routing": (
        lambda g: _set(g, RELEASE, "values.routingMode", "tunnel"),
        ["cilium-eni-native-pinned"],
    ),
    "wildcard IAM": (
        lambda g: _set(g, "aws:iam/rolePolicy:RolePolicy", "policy", doc("ec2:*")),
        ["no-iam-wildcard-actions"],
    ),
    "public node subnets": (
        lambda g: _set(g, "aws:ec2/subnet:Subnet", "mapPublicIpOnLaunch", True),
        ["node-subnets-private"],
    ),
    "hop limit 2": (
        lambda g: _set(g, LAUNCH_TEMPLATE, "metadataOptions.httpPutResponseHopLimit", 2),
        ["launch-templates-imdsv2-hop-limit-1", "node-groups-imdsv2-launch-template"],
    ),
    "no launch template": (_unlink_launch_template, ["node-groups-imdsv2-launch-template"]),
    "extended support": (
        lambda g: _set(g, "eks:index:Cluster", "upgradePolicy.supportType", "EXTENDED"),
        ["clusters-standard-upgrade-policy"],
    ),
}


@pytest.mark.parametrize("breakage", BREAKAGES)
def test_the_pack_catches_a_program_that_breaks_an_invariant(dev, breakage):
    broken = copy.deepcopy(dev)
    break_it, expected = BREAKAGES[breakage]
    break_it(broken)
    broken_policies = {v.split(":", 1)[0] for v in run_pack(broken)}
    assert broken_policies == set(expected)  # that invariant's policy, and no other


@pytest.mark.parametrize(
    ("validate", "rtype"),
    [
        (policies.node_groups_carry_the_cilium_taint, "eks:index:ManagedNodeGroup"),
        (policies.node_groups_carry_the_cilium_taint, "eks:index:NodeGroupV2"),
        (policies.node_groups_carry_the_cilium_taint, "eks:index:NodeGroup"),
        (policies.clusters_use_the_standard_upgrade_policy, "eks:index:Cluster"),
    ],
)
def test_a_pulumi_eks_component_that_shows_no_inputs_is_left_to_what_it_creates(validate, rtype):
    # pulumi-eks 4.x's provider registers its components without their inputs in a real
    # preview (see the next test for what is judged instead)
    assert not violations_of(validate, rtype, {})


@pytest.mark.parametrize(
    ("validate", "child"),
    [
        (policies.node_groups_carry_the_cilium_taint, EKS_NODE_GROUP),
        (policies.clusters_use_the_standard_upgrade_policy, "aws:eks/cluster:Cluster"),
    ],
)
def test_what_pulumi_eks_creates_is_judged_even_with_no_inputs_shown(validate, child):
    # the EKS node group a ManagedNodeGroup creates, the EKS cluster a Cluster creates
    assert violations_of(validate, child, {})


def test_the_component_is_not_judged_by_the_stack_rule_the_eks_node_group_is():
    check = policies.node_groups_use_an_imdsv2_hop_limit_1_launch_template
    component = resource("eks:index:ManagedNodeGroup", "ng", {"nodeGroup": "ref"})  # its outputs
    assert not stack_violations(check, [component])
