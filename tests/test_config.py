"""components/config/: every rule, every message, and nothing declared before an error."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from components.config import (
    ConfigError,
    InstanceType,
    from_stack_inputs,
    parse,
    parse_cilium,
    stack_config_keys,
)
from components.config.stack_file import StackFileLoader
from scripts.check_config import check
from tests.harness import (
    STACK_FIXTURE,
    dev_config,
    on_the_wire,
    run_program,
    stack_inputs,
    with_overrides,
)

STACK_COMPONENT = "cilium-eks:index:Stack"


def raw(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The dev stack's config as parse() receives it, with `pulumi config set --path`-style
    overrides."""
    return with_overrides(dev_config(), overrides or {})


def declared(graph) -> list[str]:
    """What a run declared besides the stack itself."""
    return [r.type for r in graph.resources if r.type != "pulumi:pulumi:Stack"]


def declared_in_aws(graph) -> list[str]:
    """What a run declared besides the stack, the Stack component and the AWS provider it
    makes (which EC2's facts about the instance types are asked through): none of them
    creates anything."""
    return [t for t in declared(graph) if t not in ("pulumi:providers:aws", STACK_COMPONENT)]


def error_of(overrides: dict[str, Any], stack: str = "dev") -> str:
    with pytest.raises(ConfigError) as err:
        parse(raw(overrides), stack=stack)
    return str(err.value)


def test_dev_config_parses_to_the_documented_values():
    cfg = parse(raw(), stack="dev")
    assert cfg.region == "ap-northeast-2"
    assert cfg.cluster_name == "cilium-eks-dev"
    assert cfg.kubernetes_version == "1.35"
    assert (cfg.network.cidr, cfg.network.az_count, cfg.network.nat_gateways) == (
        "10.0.0.0/16",
        3,
        "single",
    )
    assert cfg.nodes.instance_types == ("t3.medium",)
    assert (cfg.nodes.min_size, cfg.nodes.desired_size, cfg.nodes.max_size) == (2, 2, 4)
    assert cfg.cilium.version == "1.19.6"
    assert cfg.cilium.hubble.relay and cfg.cilium.hubble.ui
    assert cfg.cilium.kube_proxy_replacement and cfg.cilium.prefix_delegation
    assert cfg.network.vpc_endpoints is False
    assert cfg.access.admin_principal_arns == () == cfg.access.viewer_principal_arns
    assert (cfg.demo.enabled, cfg.demo.policy, cfg.demo.verify) == (True, "l7", True)
    assert cfg.partition == "aws"


def test_defaults_apply_when_only_the_region_is_set():
    # the defaults README's configuration table documents
    cfg = parse({"aws:region": "eu-west-1"}, stack="staging")
    assert cfg.cluster_name == "cilium-eks-staging"  # derived from the stack name
    assert cfg.kubernetes_version == "1.35"
    assert cfg.cilium.hubble.relay is True and cfg.cilium.hubble.ui is True
    assert cfg.access.public_access_cidrs == ("0.0.0.0/0",)
    assert cfg.access.admin_principal_arns == () == cfg.access.viewer_principal_arns
    assert cfg.network.cidr == "10.0.0.0/16" and cfg.network.az_count == 3
    assert cfg.network.nat_gateways == "single"
    assert cfg.nodes.instance_types == ("t3.medium",)
    assert (cfg.nodes.desired_size, cfg.nodes.min_size, cfg.nodes.max_size) == (2, 2, 4)
    assert cfg.cilium.version == "1.19.6"
    assert cfg.cilium.kube_proxy_replacement is True and cfg.cilium.prefix_delegation is True
    assert cfg.network.vpc_endpoints is False
    assert cfg.demo.policy == "l7" and cfg.demo.enabled and cfg.demo.verify


@pytest.mark.parametrize(
    ("region", "partition"),
    [("ap-northeast-2", "aws"), ("cn-north-1", "aws-cn"), ("us-gov-west-1", "aws-us-gov")],
)
def test_partition_follows_the_region(region, partition):
    assert parse({"aws:region": region}, stack="dev").partition == partition


# (override, fragments every one of which the message must contain)
BAD_INPUTS = [
    ({"aws:region": None}, ["aws:region", "pulumi config set aws:region"]),
    ({"clusterName": "Cilium_EKS"}, ["clusterName", "'Cilium_EKS'", "32 characters"]),
    ({"clusterName": "a" * 33}, ["clusterName", "32 characters"]),
    ({"clusterName": "-dev"}, ["clusterName", "starting and ending"]),
    ({"clusterName": "dev-"}, ["clusterName", "starting and ending"]),
    ({"kubernetesVersion": "1.29"}, ["kubernetesVersion", "'1.29'", "1.34, 1.35, 1.36"]),
    ({"network.cidr": "10.0.0.0/33"}, ["network.cidr", "'10.0.0.0/33'", "CIDR"]),
    ({"network.cidr": "not-a-cidr"}, ["network.cidr", "'not-a-cidr'"]),
    ({"network.cidr": "10.0.0.1/16"}, ["network.cidr", "'10.0.0.1/16'"]),  # host bits set
    ({"network.cidr": "8.8.0.0/16"}, ["network.cidr", "private"]),
    ({"network.cidr": 167772160}, ["network.cidr", "167772160", "CIDR notation"]),  # 10.0.0.0
    ({"access.publicAccessCidrs": [123]}, ["access.publicAccessCidrs", "123", "IPv4 CIDR"]),
    ({"cilium.hubble.relay": "yes"}, ["cilium.hubble.relay: 'yes'", "true or false"]),
    ({"network.cidr": "10.0.0.0/20"}, ["network.cidr", "/20", "allowed: /16 or /17"]),
    ({"network.azCount": 1}, ["network.azCount", "1", "from 2 to 6"]),
    ({"network.azCount": 7}, ["network.azCount", "from 2 to 6"]),
    ({"network.azCount": "3"}, ["network.azCount", "'3'", "whole number"]),
    ({"network.natGateways": "many"}, ["network.natGateways", "'many'", "single, perAz"]),
    (
        {"network.natGateway": "single"},
        ["network", "natGateway", "allowed: cidr, azCount, natGateways"],
    ),
    ({"nodes.instanceTypes": []}, ["nodes.instanceTypes", "must not be empty"]),
    ({"nodes.instanceTypes": "t3.medium"}, ["nodes.instanceTypes: 't3.medium'", "use a list"]),
    ({"nodes.instanceTypes": ["t3.medium", 3]}, ["nodes.instanceTypes[1]: 3", "instance type"]),
    ({"nodes.instanceTypes": ["t3.medium"] * 2}, ["nodes.instanceTypes", "same value twice"]),
    ({"nodes.minSize": 3, "nodes.desiredSize": 2}, ["minSize (3) <= desiredSize (2)"]),
    ({"nodes.maxSize": 1}, ["desiredSize (2) <= maxSize (1)"]),
    ({"nodes.minSize": 0}, ["nodes.minSize", "1 or more"]),
    ({"nodes.desiredSize": 0, "nodes.minSize": 0}, ["nodes.desiredSize: 0", "1 or more"]),
    ({"cilium.version": "latest"}, ["cilium.version", "'latest'", "X.Y.Z"]),
    ({"cilium.version": "1.19"}, ["cilium.version", "X.Y.Z"]),
    ({"cilium.version": "1.15.9"}, ["cilium.version", "too old", "1.19.0 or newer"]),
    ({"cilium.version": "1.18.12"}, ["cilium.version", "1.19.0 or newer", "Helm hook"]),
    ({"cilium.kubeProxyReplacement": "true"}, ["cilium.kubeProxyReplacement", "true or false"]),
    ({"cilium.prefixDelegation": 1}, ["cilium.prefixDelegation", "true or false"]),
    ({"network.vpcEndpoints": "yes"}, ["network.vpcEndpoints", "true or false"]),
    ({"network.azCount": True}, ["network.azCount", "True", "whole number"]),
    ({"nodes.desiredSize": 2.5}, ["nodes.desiredSize", "whole number"]),
    ({"nodes.minSize": "1"}, ["nodes.minSize: '1'", "whole number"]),
    ({"nodes.maxSize": 4.0}, ["nodes.maxSize: 4.0", "whole number"]),
    (
        {"access.adminPrincipalArns": ["arn:aws:sts::123456789012:assumed-role/Admin/alice"]},
        ["access.adminPrincipalArns", "STS session", "arn:aws:iam::123456789012:role/Admin"],
    ),
    (
        {"access.viewerPrincipalArns": ["arn:aws-us-gov:sts::123456789012:assumed-role/CI/x"]},
        ["access.viewerPrincipalArns", "arn:aws-us-gov:iam::123456789012:role/CI"],
    ),
    ({"access.viewerPrincipalArns": "arn"}, ["access.viewerPrincipalArns", "list"]),
    (
        {
            "access.adminPrincipalArns": ["arn:aws:iam::123456789012:role/ci"],
            "access.viewerPrincipalArns": ["arn:aws:iam::123456789012:role/ci"],
        },
        ["access.viewerPrincipalArns", "also in access.adminPrincipalArns", "one access entry"],
    ),
    ({"cilium.hubble.relay": False}, ["cilium.hubble.ui", "requires cilium.hubble.relay"]),
    ({"cilium.hubble.ui": "yes"}, ["cilium.hubble.ui", "true or false"]),
    ({"access.adminPrincipalArns": ["alice"]}, ["access.adminPrincipalArns", "'alice'", "ARN"]),
    (
        {"access.adminPrincipalArns": ["arn:aws:iam::123456789012:group/admins"]},
        ["access.adminPrincipalArns", "role or user ARN"],
    ),
    ({"access.publicAccessCidrs": []}, ["access.publicAccessCidrs", "must not be empty"]),
    ({"access.publicAccessCidrs": ["1.2.3.4"]}, ["access.publicAccessCidrs", "IPv4 CIDR"]),
    ({"access.publicAccessCidrs": ["10.0.0.1/8"]}, ["access.publicAccessCidrs", "'10.0.0.1/8'"]),
    ({"demo.policy": "l4"}, ["demo.policy", "'l4'", "none, l3l4, l7"]),
    # a typo in a key is an error, not a silent default
    ({"cilium.kubeproxyReplacement": True}, ["cilium: unknown key 'kubeproxyReplacement'"]),
    ({"cilium.hubble.uii": True}, ["cilium.hubble: unknown key 'uii'", "allowed: relay, ui"]),
    ({"demo.polic": "l7"}, ["demo: unknown key 'polic'", "allowed: enabled, policy, verify"]),
    ({"nodes.size": 3}, ["nodes: unknown key 'size'"]),
    ({"nodes.min_size": 3}, ["nodes: unknown key 'min_size'", "minSize"]),  # camelCase only
    ({"access.admins": []}, ["access: unknown key 'admins'"]),
    (
        {"access.adminPrincipalArns": ["arn:aws:iam::123456789012:role/a"] * 2},
        ["access.adminPrincipalArns", "same value twice"],
    ),
    ({"demo.enabled": "true"}, ["demo.enabled", "true or false"]),
    ({"demo.verify": 1}, ["demo.verify", "true or false"]),
    # the region against the AWS SDK's own list of EKS regions
    ({"aws:region": "us-east-11"}, ["aws:region: 'us-east-11' is not a region with EKS"]),
    ({"aws:region": "eu-west"}, ["aws:region: 'eu-west'"]),
    # a top-level key's typo, and a namespace nobody reads, are refused, not ignored
    ({"nodess": {"minSize": 1}}, ["cilium-eks: unknown key 'nodess'", "allowed: clusterName"]),
    ({"cilium-ek:nodes": {}}, ["cilium-ek:nodes: unknown namespace 'cilium-ek'", "cilium-eks:*"]),
    # the program builds its AWS provider itself: other aws:* keys would be ignored
    (
        {"aws:profile": "prod"},
        ["aws:profile: not read", "aws:region and aws:defaultTags", "AWS_PROFILE"],
    ),
    ({"aws:defaultTags": {"tag": {}}}, ["aws:defaultTags: unknown key 'tag';", "allowed: tags"]),
    # a number where text belongs: quoting is the way out (more below, the YAML cases)
    (
        {"aws:defaultTags": {"tags": {"team": 7}}},
        ['aws:defaultTags.tags.team: read as the number 7, not as text; write it in quotes: "7"'],
    ),
    ({"cilium.encryption": "ipsec"}, ["cilium.encryption: 'ipsec'", "allowed: wireguard, none"]),
    ({"cilium.datapathMode": "tap"}, ["cilium.datapathMode: 'tap'", "allowed: veth, netkit"]),
    # netkit needs eBPF host routing, which needs kube-proxy replacement (Cilium #44713)
    (
        {"cilium.datapathMode": "netkit", "cilium.kubeProxyReplacement": False},
        ["cilium: datapathMode: netkit needs eBPF host routing", "kubeProxyReplacement: true"],
    ),
    ({"cilium.upgradeCompatibility": "1.19.6"}, ["cilium.upgradeCompatibility", "use X.Y"]),
    (
        {"cilium.upgradeCompatibility": 1.19},
        ["cilium.upgradeCompatibility: read as the number 1.19, not as text", 'quotes: "1.19"'],
    ),
    (
        {"cilium.upgradeCompatibility": "1.20"},  # the version is 1.19.6
        ["cilium.upgradeCompatibility: '1.20' is newer than cilium.version '1.19.6'"],
    ),
    ({"mesh": {"clusterId": 0}}, ["mesh.clusterId: 0", "from 1 to 127"]),
    ({"mesh": {"clusterId": 128}}, ["mesh.clusterId: 128", "from 1 to 127"]),  # ENI mode
    ({"mesh": {"peers": []}}, ["mesh.clusterId: not set"]),
    ({"mesh": {"clusterId": 2}}, ["mesh: clusterId 2 with no peers", "cluster 1"]),
    (
        {"mesh": {"clusterId": 1, "peers": ["mesh-b"]}},
        ["mesh.peers", "'mesh-b'", "ORG/cilium-eks/STACK"],
    ),
    ({"mesh": {"clusterId": 1, "peers": ["acme/other/b"]}}, ["mesh.peers", "'acme/other/b'"]),
    ({"mesh": {"clusterId": 1, "peers": ["acme/cilium-eks/b"] * 2}}, ["mesh.peers", "twice"]),
    ({"mesh": {"clusterId": 1, "peer": []}}, ["mesh: unknown key 'peer'", "clusterId, peers"]),
    ({"mesh": 1}, ["mesh: 1 is not allowed; must be an object with keys clusterId, peers"]),
    ({"karpenter.enabled": "yes"}, ["karpenter.enabled: 'yes'", "true or false"]),
    ({"karpenter.capacityTypes": []}, ["karpenter.capacityTypes", "must not be empty"]),
    (
        {"karpenter.capacityTypes": ["reserved"]},
        ["karpenter.capacityTypes[0]: 'reserved'", "on-demand, spot"],
    ),
    (
        {"karpenter.instanceCategories": ["x"]},
        ["karpenter.instanceCategories[0]: 'x'", "c, m, r, t"],
    ),
    ({"karpenter.instanceFamilies": ["M7i"]}, ["karpenter.instanceFamilies", "'M7i'", "family"]),
    ({"karpenter.cpuLimit": "lots"}, ["karpenter.cpuLimit: 'lots'", "quantity"]),
    ({"karpenter.memoryLimit": "1 TB"}, ["karpenter.memoryLimit: '1 TB'", "quantity"]),
]


@pytest.mark.parametrize(("overrides", "fragments"), BAD_INPUTS, ids=lambda v: repr(v)[:60])
def test_bad_input_is_refused_with_the_key_and_allowed_values(overrides, fragments):
    message = error_of(overrides)
    for fragment in fragments:
        assert fragment in message


def test_every_section_is_checked_before_raising():
    message = error_of({"network.azCount": 1, "demo.policy": "l4", "cilium.version": "latest"})
    assert "network.azCount" in message and "demo.policy" in message
    assert "cilium.version" in message


def test_a_stack_name_that_makes_a_bad_default_cluster_name_asks_for_a_cluster_name():
    message = error_of({"clusterName": None}, stack="a-very-long-stack-name-for-testing")
    assert "clusterName" in message and "set clusterName explicitly" in message


@pytest.mark.parametrize("name", ["a", "dev", "cilium-eks-dev", "x" * 32, "a-1"])
def test_valid_cluster_names(name):
    assert parse(raw({"clusterName": name}), stack="dev").cluster_name == name


def test_good_optional_values_are_accepted():
    cfg = parse(
        raw(
            {
                "network.cidr": "172.16.0.0/17",
                "network.azCount": 6,
                "network.natGateways": "perAz",
                "nodes.instanceTypes": ["m7g.large", "m6g.large"],
                "nodes.desiredSize": 1,
                "nodes.minSize": 1,
                "nodes.maxSize": 1,
                "cilium.hubble.ui": False,
                "cilium.hubble.relay": False,
                "access.adminPrincipalArns": [
                    "arn:aws:iam::123456789012:role/ci/deployer",
                    "arn:aws:iam::123456789012:user/alice",
                ],
                "demo.policy": "none",
            }
        ),
        stack="dev",
    )
    assert cfg.network.az_count == 6 and cfg.network.nat_gateways == "perAz"
    assert cfg.nodes.max_size == 1
    assert not cfg.cilium.hubble.ui and not cfg.cilium.hubble.relay
    assert len(cfg.access.admin_principal_arns) == 2


@pytest.mark.parametrize(
    "overrides",
    [
        {"network.azCount": 1},
        {"nodes.minSize": 5},
        {"cilium.version": "latest"},
        {"network.cidr": "10.0.0.0/33"},
        {"network.natGateways": "many"},
        {"demo.policy": "l4"},
    ],
    ids=lambda v: next(iter(v)),
)
def test_the_program_declares_nothing_before_a_config_error(overrides):
    graph = run_program(overrides)
    assert graph.error is not None and graph.error["type"] == "ConfigError"
    assert next(iter(overrides)).split(".")[-1] in graph.error["message"]
    assert declared(graph) == []


def test_a_config_object_that_is_not_an_object_is_refused_by_the_program():
    graph = run_program({"network": "10.0.0.0/16"})
    message = graph.error["message"] if graph.error else ""
    assert "network: '10.0.0.0/16' is not allowed; must be an object with keys cidr" in message
    assert declared(graph) == []


def test_more_azs_than_the_region_has_fails_before_any_network_resource():
    graph = run_program(
        {"network.azCount": 4}, azs="ap-northeast-2a,ap-northeast-2b,ap-northeast-2c"
    )
    assert graph.error is not None and graph.error["type"] == "ConfigError"
    assert "network.azCount: 4" in graph.error["message"]
    assert "only 3 available zones" in graph.error["message"]
    assert not [
        r for r in graph.resources if r.custom and not r.type.startswith("pulumi:providers:")
    ]


# --- instance types against EC2's facts and pulumi-eks's rules -----------------------------

# EC2's published facts (architectures, Nitro, ENIs, IPv4 per ENI, vCPUs).
EC2 = {
    "t3.medium": InstanceType("t3.medium", ("x86_64",), True, 3, 6, 2),
    "m6i.large": InstanceType("m6i.large", ("x86_64",), True, 3, 10, 2),
    "t4g.medium": InstanceType("t4g.medium", ("arm64",), True, 3, 6, 2),
    "m7g.large": InstanceType("m7g.large", ("arm64",), True, 3, 10, 2),
    "a1.large": InstanceType("a1.large", ("arm64",), True, 3, 10, 2),
    "t2.medium": InstanceType("t2.medium", ("i386", "x86_64"), False, 3, 6, 2),
    "m4.large": InstanceType("m4.large", ("x86_64",), False, 2, 10, 2),
    "mac.metal": InstanceType("mac.metal", ("x86_64",), True, 8, 30, 12),  # hypothetical
}


def with_types(types: list[str], **cilium: Any):
    overrides = {"nodes.instanceTypes": types, **{f"cilium.{k}": v for k, v in cilium.items()}}
    return parse(raw(overrides), stack="dev", describe=EC2.__getitem__)


@pytest.mark.parametrize("types", [["t3.medium", "m6i.large"], ["t4g.medium", "m7g.large"]])
def test_instance_types_of_one_architecture_keep_their_facts(types):
    assert [f.name for f in with_types(types).nodes.facts] == types


@pytest.mark.parametrize(
    ("types", "fragments"),
    [
        (["t3.medium", "t4g.medium"], ["t3.medium (x86_64), t4g.medium (arm64) mix"]),
        (["a1.large"], ["'a1.large' is arm64", "x86_64 AMI"]),  # pulumi-eks misreads a1
        (["t2.medium"], ["t2.medium", "Nitro", "cilium.prefixDelegation: false"]),
        (["t3.medium", "m4.large"], ["m4.large", "Nitro"]),
        (["mac.metal"], ["mac.metal cannot be read by pulumi-eks"]),  # no generation digit
    ],
)
def test_instance_types_pulumi_eks_or_prefix_delegation_would_refuse(types, fragments):
    with pytest.raises(ConfigError) as err:
        with_types(types)
    message = str(err.value)
    assert "nodes.instanceTypes" in message
    for fragment in fragments:
        assert fragment in message


def test_older_instance_types_are_fine_without_prefix_delegation():
    assert with_types(["t2.medium", "m4.large"], prefixDelegation=False).nodes.facts


def test_instance_facts_are_checked_only_once_the_rest_is_valid():
    # a bad region or list is reported as such, without asking EC2 about anything
    asked = []
    with pytest.raises(ConfigError, match="aws:region"):
        parse(raw({"aws:region": None}), stack="dev", describe=lambda t: asked.append(t))
    assert not asked


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"nodes.instanceTypes": ["t3.medium", "t4g.medium"]}, "nodes.instanceTypes"),
        ({"nodes.instanceTypes": ["t2.medium"]}, "cilium.prefixDelegation"),
        ({"nodes.instanceTypes": ["x9.huge"]}, "'x9.huge' could not be looked up in EC2"),
    ],
)
def test_the_program_refuses_them_before_any_resource(overrides, key):
    graph = run_program(overrides)
    assert graph.error is not None and graph.error["type"] == "ConfigError"
    assert key in graph.error["message"]
    assert declared_in_aws(graph) == []


def test_a_top_level_typo_is_refused_by_the_program_itself():
    # the CLI hands every key in PULUMI_CONFIG; pulumi.Config would never read this one
    graph = run_program({"nodess": {"minSize": 1}})
    assert graph.error is not None and graph.error["type"] == "ConfigError"
    assert "cilium-eks: unknown key 'nodess'" in graph.error["message"]
    assert declared(graph) == []


@pytest.mark.parametrize("region", ["eu-west-1", "us-east-1", "ap-southeast-7", "cn-north-1"])
def test_regions_the_sdk_knows_are_accepted(region):
    assert parse(raw({"aws:region": region}), stack="dev").region == region


def test_offline_instance_type_names_are_checked_against_the_sdks_list():
    # a type EC2 lists that the tests' own EC2 facts have never heard of
    assert parse(raw({"nodes.instanceTypes": ["m7i-flex.large"]}), stack="dev", offline=True)
    with pytest.raises(ConfigError) as err:
        parse(raw({"nodes.instanceTypes": ["t3.mediun"]}), stack="dev", offline=True)
    assert "nodes.instanceTypes: t3.mediun not known to the AWS SDK's EC2 model" in str(err.value)
    # online, the name is EC2's to judge (the preview asks it): not refused here
    assert parse(raw({"nodes.instanceTypes": ["t3.mediun"]}), stack="dev")


def test_every_mistake_is_listed_once_even_beside_a_bad_section():
    message = error_of(
        {"nodes.instanceTypes": ["t3.medium", "t4g.medium"], "cilium.hubble.relay": False}
    )
    assert message.count("mix architectures") == 1 and "cilium.hubble.ui" in message


def test_new_keys_have_their_documented_defaults():
    cfg = parse({"aws:region": "eu-west-1"}, stack="dev")
    assert cfg.cilium.encryption == "wireguard" and cfg.cilium.upgrade_compatibility is None
    assert cfg.cilium.datapath_mode == "veth"  # netkit is an option, not the default
    assert cfg.mesh is None  # no mesh key, no mesh
    k = cfg.karpenter
    assert k.enabled is False and k.capacity_types == ("on-demand",)
    assert k.instance_categories == ("c", "m", "r") and k.instance_families == ()
    assert (k.cpu_limit, k.memory_limit) == ("32", "128Gi")


def test_good_new_values_are_accepted():
    cfg = parse(
        raw(
            {
                "cilium.version": "1.20.0",
                "cilium.upgradeCompatibility": "1.19",
                "cilium.encryption": "none",
                "cilium.datapathMode": "netkit",
                "mesh": {"clusterId": 2, "peers": ["acme/cilium-eks/mesh-a"]},
                "karpenter": {
                    "enabled": True,
                    "capacityTypes": ["spot", "on-demand"],
                    "instanceFamilies": ["m7i", "c7g"],
                    "cpuLimit": 64,
                    "memoryLimit": "256Gi",
                },
            }
        ),
        stack="dev",
    )
    assert cfg.cilium.upgrade_compatibility == "1.19" and cfg.cilium.encryption == "none"
    assert cfg.cilium.datapath_mode == "netkit"
    assert cfg.mesh is not None and cfg.mesh.peers == ("acme/cilium-eks/mesh-a",)
    assert cfg.karpenter.cpu_limit == "64" and cfg.karpenter.capacity_types == ("spot", "on-demand")


@pytest.mark.parametrize("version", ["1.19.0", "1.20.0", "2.0.0"])
def test_cilium_from_1_19_0_is_accepted(version):
    assert parse(raw({"cilium.version": version}), stack="dev").cilium.version == version


# --- a typo: the closest allowed key or value first ---------------------------------------


def mistake(message: str, key: str) -> str:
    """The one line of a ConfigError about `key` (as typed)."""
    (line,) = [m for m in message.splitlines() if m.startswith(f"  - {key}:")]
    return line


# (overrides, the key as typed, what it is taken for): one unknown key in every section,
# and unknown values of every kind of list of allowed ones
TYPOS = [
    ({"nodess": {"minSize": 1}}, "cilium-eks", "nodes"),
    ({"region": "eu-west-1"}, "cilium-eks", "aws:region"),  # the provider's key, not ours
    ({"network.azcount": 3}, "network", "azCount"),
    ({"nodes.minsize": 2}, "nodes", "minSize"),
    ({"cilium.kubeproxyReplacement": True}, "cilium", "kubeProxyReplacement"),
    ({"cilium.hubble.uii": True}, "cilium.hubble", "ui"),
    ({"access.adminPrincipalArn": []}, "access", "adminPrincipalArns"),
    ({"demo.polic": "l7"}, "demo", "policy"),
    ({"mesh": {"clusterId": 1, "peer": []}}, "mesh", "peers"),
    ({"karpenter.capacityType": ["spot"]}, "karpenter", "capacityTypes"),
    ({"aws:defaultTags": {"tag": {}}}, "aws:defaultTags", "tags"),
    ({"network.natGateways": "perAZ"}, "network.natGateways", "perAz"),
    ({"demo.policy": "L7"}, "demo.policy", "l7"),
    ({"cilium.encryption": "wireguad"}, "cilium.encryption", "wireguard"),
    ({"karpenter.capacityTypes": ["spott"]}, "karpenter.capacityTypes[0]", "spot"),
    ({"aws:region": "eu-west-9"}, "aws:region", "eu-west-1"),
    ({"aws:region": "us-east-11"}, "aws:region", "us-east-1"),
    ({"aws:regoin": "eu-west-1", "aws:region": None}, "aws:regoin", "aws:region"),
    ({"aws:defaultTag": {}}, "aws:defaultTag", "aws:defaultTags"),
    ({"aws:profil": "prod"}, "aws:profil", "aws:profile"),  # the provider's, not read either
    ({"cilium-ek:nodes": {}}, "cilium-ek:nodes", "cilium-eks:nodes"),
]


@pytest.mark.parametrize(("overrides", "key", "meant"), TYPOS, ids=lambda v: repr(v)[:40])
def test_a_typo_is_answered_with_the_closest_allowed_first(overrides, key, meant):
    line = mistake(error_of(overrides), key)
    guess = line.index(f"did you mean {meant}?")
    # before any other advice: the list of what is allowed, AWS_PROFILE, the SDK's age
    for advice in ("allowed:", "AWS_PROFILE", "make upgrade", "this program reads"):
        assert advice not in line or line.index(advice) > guess, advice


def test_a_typo_of_aws_region_is_one_mistake_with_one_way_out():
    message = error_of({"aws:regoin": "eu-west-1", "aws:region": None})
    assert "  - aws:regoin: unknown key; did you mean aws:region?" in message.splitlines()
    assert "AWS_PROFILE" not in message and "aws:region: not set" not in message


def test_an_unknown_region_is_not_put_on_the_sdk():
    # a typo: the closest region, and no advice to re-lock the dependencies (issue 23)
    line = mistake(error_of({"aws:region": "eu-west-9"}), "aws:region")
    assert line.endswith("'eu-west-9' is not a region with EKS; did you mean eu-west-1?")
    # nothing close: the one case where the SDK's list may be what is wrong, said as such
    line = mistake(error_of({"aws:region": "mars-1"}), "aws:region")
    assert "did you mean" not in line
    assert line.endswith("is missing until `make upgrade`")


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"network.natGateways": "many"}, "network.natGateways"),
        ({"nodes.count": 3}, "nodes"),
        ({"aws:region": "mars-1"}, "aws:region"),
        ({"aws:profile": "prod"}, "aws:profile"),  # the provider's own key: not a typo
        ({"aws:stsRegion": "us-east-1"}, "aws:stsRegion"),  # ditto, however close to region
        ({"kubernetesVersion": "1.33"}, "kubernetesVersion"),  # a version is not a misspelling
    ],
)
def test_nothing_is_guessed_where_nothing_is_close(overrides, key):
    assert "did you mean" not in mistake(error_of(overrides), key)


def test_an_aws_key_the_program_does_not_read_still_says_how_to_choose_credentials():
    line = mistake(error_of({"aws:stsRegion": "us-east-1"}), "aws:stsRegion")
    assert "not read" in line and "AWS_PROFILE" in line


def test_offline_a_misspelt_instance_type_gets_the_closest_one():
    with pytest.raises(ConfigError) as err:
        parse(raw({"nodes.instanceTypes": ["t3.mediun", "m6i.larg"]}), stack="dev", offline=True)
    line = mistake(str(err.value), "nodes.instanceTypes")
    assert "did you mean t3.medium (for t3.mediun), m6i.large (for m6i.larg)?" in line


# --- a number where text belongs: what YAML made of an unquoted 1.30 ---------------------

# The same mistake as each reader hands it over.
UNQUOTED = "config:\n  aws:region: eu-west-1\n  cilium-eks:kubernetesVersion: 1.30\n"
KUBERNETES_VERSIONS = 'one of "1.34", "1.35", "1.36"'


def test_make_check_says_an_unquoted_version_was_read_as_a_number(tmp_path):
    (tmp_path / "Pulumi.yaml").write_text("name: cilium-eks\nruntime: python\n")
    (tmp_path / "Pulumi.staging.yaml").write_text(
        UNQUOTED + "  cilium-eks:cilium:\n    upgradeCompatibility: 1.20\n"
    )
    mistakes = check("staging", root=tmp_path)
    # what was written, that it was read as a number, and the way out: quotes (true whether
    # check_config.py reads with PyYAML's safe_load, or with the StackFileLoader below,
    # which keeps 1.30 as written)
    version = next(m for m in mistakes if m.startswith("kubernetesVersion:"))
    assert "1.30" in version and "number 1.3" in version
    assert version.endswith(f"write it in quotes: {KUBERNETES_VERSIONS}")
    assert "1.3 is not allowed" not in version
    compatibility = next(m for m in mistakes if m.startswith("cilium.upgradeCompatibility:"))
    assert "number 1.2" in compatibility and "write it in quotes" in compatibility
    assert '"1.20"' in compatibility


def test_read_with_its_text_kept_the_message_shows_the_number_as_written():
    config = yaml.load(UNQUOTED.replace("1.30", "1.300"), Loader=StackFileLoader)["config"]
    assert config["cilium-eks:kubernetesVersion"] == 1.3  # the number any YAML reader makes
    with pytest.raises(ConfigError) as err:
        parse({k.removeprefix("cilium-eks:"): v for k, v in config.items()}, stack="dev")
    assert mistake(str(err.value), "kubernetesVersion") == (
        "  - kubernetesVersion: 1.300 is read as the number 1.3, not as text; write it in "
        f"quotes: {KUBERNETES_VERSIONS}"
    )


def test_an_unquoted_allowed_version_is_told_to_be_quoted_as_written():
    config = yaml.load("kubernetesVersion: 1.35\n", Loader=StackFileLoader)
    message = error_of(config)
    assert mistake(message, "kubernetesVersion") == (
        "  - kubernetesVersion: 1.35 is read as the number 1.35, not as text; write it in quotes: "
        '"1.35"'
    )


def test_the_stack_file_reader_is_pyyamls_safe_loader_otherwise():
    text = STACK_FIXTURE.read_text() + "\n  extra: [1, 2.5, true, null, '1.30', !!float 3]\n"
    assert yaml.load(text, Loader=StackFileLoader) == yaml.safe_load(text)
    with pytest.raises(yaml.constructor.ConstructorError):  # safe: no Python objects
        yaml.load("x: !!python/object/apply:os.getcwd []\n", Loader=StackFileLoader)


def test_through_the_cli_an_unquoted_version_is_explained():
    # What the Pulumi CLI hands the program for the stack file UNQUOTED with cilium's
    # upgradeCompatibility: 1.20: Pulumi's YAML reader makes both floats, and hands a top-
    # level value as text, an object as JSON (pulumi/pulumi sdk/go/common/resource/config/
    # object.go: UnmarshalYAML into float64, MarshalString via encoding/json).
    handed = {
        "aws:region": "eu-west-1",
        "cilium-eks:kubernetesVersion": "1.3",
        "cilium-eks:cilium": '{"upgradeCompatibility":1.2}',
    }
    with pytest.raises(ConfigError) as err:
        parse(stack_config_keys(handed), stack="dev")
    message = str(err.value)
    assert mistake(message, "kubernetesVersion") == (
        "  - kubernetesVersion: '1.3' is not allowed; allowed: 1.34, 1.35, 1.36 (an unquoted "
        "1.30 in the stack file reaches the program as '1.3': YAML reads it as a number; write "
        "versions in quotes)"
    )
    assert mistake(message, "cilium.upgradeCompatibility") == (
        "  - cilium.upgradeCompatibility: read as the number 1.2 (YAML reads 1.2 and 1.20 alike, "
        'unquoted), not as text; write it in quotes: "1.2" or "1.20"'
    )


def test_a_rule_of_ours_handed_a_number_for_text_says_so_too():
    line = mistake(error_of({"karpenter.cpuLimit": 0.5}), "karpenter.cpuLimit")
    assert line.startswith("  - karpenter.cpuLimit: read as the number 0.5")
    assert "write it in quotes" in line


def test_the_program_explains_an_unquoted_version_as_the_cli_hands_it_over():
    # the harness hands a top-level number over as the CLI does: as text, '1.3' for 1.30
    graph = run_program({"kubernetesVersion": 1.3})
    assert graph.error is not None and graph.error["type"] == "ConfigError"
    assert "reaches the program as '1.3'" in graph.error["message"]
    assert declared(graph) == []


BOUNDARY = "arn:aws:iam::123456789012:policy/cilium-eks-boundary"


@pytest.mark.parametrize(
    "arn",
    [
        BOUNDARY,
        "arn:aws:iam::123456789012:policy/team/platform/cilium-eks-boundary",  # with a path
        "arn:aws-cn:iam::123456789012:policy/b",
        "arn:aws-us-gov:iam::123456789012:policy/b",
        "arn:aws:iam::aws:policy/PowerUserAccess",  # an AWS managed policy is a policy too
    ],
)
def test_a_permissions_boundary_is_an_iam_managed_policy_of_any_partition(arn):
    cfg = parse(raw({"access.permissionsBoundaryArn": arn}), stack="dev")
    assert cfg.access.permissions_boundary_arn == arn
    assert parse(raw(), stack="dev").access.permissions_boundary_arn is None  # unset: none


@pytest.mark.parametrize(
    "arn",
    [
        "cilium-eks-boundary",  # a name, not an ARN
        "arn:aws:iam::123456789012:role/cilium-eks-boundary",  # a role
        "arn:aws:iam::123456789012:policy/",
        "arn:aws:s3:::bucket/policy/x",
        "arn:aws:iam::12345:policy/b",
        ["arn:aws:iam::123456789012:policy/b"],
    ],
)
def test_anything_else_as_a_boundary_is_refused_naming_the_key_and_the_way_out(arn):
    message = error_of({"access.permissionsBoundaryArn": arn})
    assert "access.permissionsBoundaryArn" in message
    assert "IAM managed policy" in message and "docs/ci-iam.md" in message
    # the way out names the boundary's document, never a command that would upload it with
    # its ACCOUNT_ID placeholders left in
    assert "docs/iam/boundary-policy.json with the account filled in" in message
    assert "file://" not in message


# --- the datapath tuning (docs/performance.md): each a key, each refusal Cilium's --------------

# Text that is no ratio: out of range, or no plain decimal (the last with an Arabic-Indic
# zero, a digit to Python's float() but not to Cilium's)
RATIO_TEXTS_REFUSED = [
    "1.5",
    "0",
    "-0.1",
    "nan",
    "inf",
    "1e-2",
    "true",
    "0.08 ",
    "",
    "0,08",
    "\u0660.5",
]

TUNING_REFUSED = [
    # the chart writes enable-bbr only with the bandwidth manager (cilium-configmap.yaml):
    # BBR asked for without it is refused (unset, it is off: below)
    (
        {"cilium.bandwidthManager": False, "cilium.bbr": True},
        [
            "cilium: bbr: true needs bandwidthManager: true",
            "set cilium.bbr: false, or cilium.bandwidthManager: true",
        ],
    ),
    # the agent refuses BBR on legacy routing (pkg/datapath/linux/bandwidth probe)
    (
        {"cilium.kubeProxyReplacement": False, "cilium.bbr": True},
        ["cilium: bbr: true needs eBPF host routing", "kubeProxyReplacement: true"],
    ),
    (
        {"cilium.kubeProxyReplacement": False, "cilium.bandwidthManager": True, "cilium.bbr": True},
        ["cilium: bbr: true needs eBPF host routing"],
    ),
    ({"cilium.bbr": "on"}, ["cilium.bbr: 'on' is not allowed; use true or false"]),
    # without kube-proxy replacement kube-proxy balances Services and the program passes
    # no algorithm to the chart (components/cilium_values.py): one asked for is refused
    (
        {"cilium.kubeProxyReplacement": False, "cilium.loadBalancerAlgorithm": "random"},
        [
            "cilium: loadBalancerAlgorithm: random needs kubeProxyReplacement: true",
            "remove cilium.loadBalancerAlgorithm, or set cilium.kubeProxyReplacement: true",
        ],
    ),
    (
        {"cilium.kubeProxyReplacement": False, "cilium.loadBalancerAlgorithm": "maglev"},
        ["cilium: loadBalancerAlgorithm: maglev needs kubeProxyReplacement: true"],
    ),
    (
        {"cilium.loadBalancerAlgorithm": "roundRobin"},
        ["cilium.loadBalancerAlgorithm: 'roundRobin'", "allowed: maglev, random"],
    ),
    ({"cilium.distributedLru": 1}, ["cilium.distributedLru: 1 is not allowed; use true or false"]),
    # the agent's range: (0.0, 1.0] (pkg/maps/mapsize calculateBPFMapSizes)
    (
        {"cilium.mapDynamicSizeRatio": 0},
        ["cilium.mapDynamicSizeRatio: 0 is not allowed", "more than 0 and at most 1"],
    ),
    ({"cilium.mapDynamicSizeRatio": 1.5}, ["cilium.mapDynamicSizeRatio: 1.5 is not allowed"]),
    ({"cilium.mapDynamicSizeRatio": -0.1}, ["cilium.mapDynamicSizeRatio: -0.1 is not allowed"]),
    ({"cilium.mapDynamicSizeRatio": True}, ["cilium.mapDynamicSizeRatio: True is not allowed"]),
    # text is taken for its number only when it is a plain decimal (below); shown as written
    *[
        ({"cilium.mapDynamicSizeRatio": text}, [f"cilium.mapDynamicSizeRatio: {text!r} is not"])
        for text in RATIO_TEXTS_REFUSED
    ],
]


@pytest.mark.parametrize(("overrides", "fragments"), TUNING_REFUSED, ids=lambda v: repr(v)[:60])
def test_a_tuning_cilium_or_its_chart_would_refuse_is_refused(overrides, fragments):
    message = error_of(overrides)
    for fragment in fragments:
        assert fragment in message


def test_the_tuning_is_on_by_default():
    c = parse({"aws:region": "eu-west-1"}, stack="dev").cilium
    assert (c.bandwidth_manager, c.bbr, c.distributed_lru) == (True, True, True)
    assert c.load_balancer_algorithm == "maglev" and c.map_dynamic_size_ratio == 0.08


def test_each_tuning_turns_off():
    c = parse(
        raw({
            "cilium.bandwidthManager": False, "cilium.bbr": False,
            "cilium.loadBalancerAlgorithm": "random", "cilium.distributedLru": False,
            "cilium.mapDynamicSizeRatio": 0.0025,
        }),
        stack="dev",
    ).cilium  # fmt: skip
    assert (c.bandwidth_manager, c.bbr, c.distributed_lru) == (False, False, False)
    assert c.load_balancer_algorithm == "random" and c.map_dynamic_size_ratio == 0.0025
    # BBR off alone keeps the bandwidth manager (CUBIC); a whole number is a ratio too
    c = parse(raw({"cilium.bbr": False, "cilium.mapDynamicSizeRatio": 1}), stack="dev").cilium
    assert (c.bandwidth_manager, c.bbr, c.map_dynamic_size_ratio) == (True, False, 1.0)


def test_without_kube_proxy_replacement_the_bandwidth_manager_and_bbr_default_off():
    # a stack file that says only kubeProxyReplacement: false still parses, as it did
    # before these keys: legacy routing, where Cilium refuses BBR
    c = parse(raw({"cilium.kubeProxyReplacement": False}), stack="dev").cilium
    assert (c.bandwidth_manager, c.bbr) == (False, False)
    # the bandwidth manager alone may be asked for there (CUBIC)
    c = parse(
        raw({"cilium.kubeProxyReplacement": False, "cilium.bandwidthManager": True}), stack="dev"
    ).cilium
    assert (c.bandwidth_manager, c.bbr) == (True, False)
    # and the algorithm, unset, is no ask: the default stays, the chart is not given it
    assert c.load_balancer_algorithm == "maglev"


# `cilium` with only bandwidthManager: false, as each way in hands it to the model: the
# stack file (parse), the same as the CLI hands it to the program (an object as JSON), a
# Stack's inputs from another language (numbers as doubles), the Cilium component's input.
MANAGER_OFF = {"bandwidthManager": False}
CILIUM_PATHS = {
    "stack file": lambda cilium: parse(raw({"cilium": cilium}), stack="dev").cilium,
    "cli": lambda cilium: (
        parse(
            stack_config_keys({"aws:region": "eu-west-1", "cilium-eks:cilium": json.dumps(cilium)}),
            stack="dev",
        ).cilium
    ),
    "stack inputs": lambda cilium: (
        parse(
            from_stack_inputs({**stack_inputs(), "cilium": on_the_wire(cilium)}), stack="dev"
        ).cilium
    ),
    "cilium input": lambda cilium: parse_cilium(on_the_wire(cilium)),
}


@pytest.mark.parametrize("path", sorted(CILIUM_PATHS))
def test_with_the_bandwidth_manager_off_bbr_unset_is_off(path):
    # the description's word: "unset, it is off without either"
    c = CILIUM_PATHS[path](MANAGER_OFF)
    assert (c.bandwidth_manager, c.bbr, c.kube_proxy_replacement) == (False, False, True)
    # asked for, it is refused, naming both keys
    with pytest.raises(ConfigError, match="bbr: true needs bandwidthManager: true"):
        CILIUM_PATHS[path]({**MANAGER_OFF, "bbr": True})


@pytest.mark.parametrize("path", sorted(CILIUM_PATHS))
def test_a_snake_case_key_never_reaches_the_tuning_defaults(path):
    # The defaults above read the camelCase keys; the model validates by alias only, so a
    # Python caller's bandwidth_manager is refused as unknown, not taken without them.
    with pytest.raises(ConfigError) as err:
        CILIUM_PATHS[path]({"bandwidth_manager": False})
    assert "unknown key 'bandwidth_manager'; did you mean bandwidthManager?" in str(err.value)


# What `pulumi config set --path cilium.mapDynamicSizeRatio 0.04` leaves in the stack file:
# the CLI makes a number only of true/false and base-10 digits (pulumi/pulumi sdk/go/common/
# resource/config/object.go `coerce`), so 0.04 is stored, and written back, as text.
RATIO_SET_BY_THE_CLI = (
    'config:\n  aws:region: eu-west-1\n  cilium-eks:cilium:\n    mapDynamicSizeRatio: "0.04"\n'
)


@pytest.mark.parametrize("path", sorted(CILIUM_PATHS))
def test_a_ratio_written_as_text_is_taken_as_its_number(path):
    for text, number in [("0.04", 0.04), (".5", 0.5), ("1", 1.0), ("1.0", 1.0), ("0.0025", 0.0025)]:
        assert CILIUM_PATHS[path]({"mapDynamicSizeRatio": text}).map_dynamic_size_ratio == number


def test_make_check_takes_the_ratio_pulumi_config_set_left(tmp_path):
    (tmp_path / "Pulumi.yaml").write_text("name: cilium-eks\nruntime: python\n")
    (tmp_path / "Pulumi.staging.yaml").write_text(RATIO_SET_BY_THE_CLI)
    assert yaml.safe_load(RATIO_SET_BY_THE_CLI)["config"]["cilium-eks:cilium"] == {
        "mapDynamicSizeRatio": "0.04"
    }
    assert check("staging", root=tmp_path) == []


def test_the_program_passes_a_ratio_set_by_the_cli_to_the_chart_as_a_number():
    graph = run_program({"cilium.mapDynamicSizeRatio": "0.04"})
    assert graph.error is None, graph.error["traceback"]
    values = graph.one("kubernetes:helm.sh/v3:Release").inputs["values"]
    assert values["bpf"]["mapDynamicSizeRatio"] == 0.04
