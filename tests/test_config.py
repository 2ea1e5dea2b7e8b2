"""components/config.py: every rule, every message, and nothing declared before an error."""

from __future__ import annotations

from typing import Any

import pytest

from components.config import ConfigError, parse
from tests.harness import dev_config, run_program, with_overrides


def raw(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The dev stack's config as parse() receives it, with `pulumi config set --path`-style
    overrides."""
    return with_overrides(dev_config(), overrides or {})


def declared(graph) -> list[str]:
    """What a run declared besides the stack itself."""
    return [r.type for r in graph.resources if r.type != "pulumi:pulumi:Stack"]


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
    assert cfg.access.admin_principal_arns == ()
    assert (cfg.demo.enabled, cfg.demo.policy, cfg.demo.verify) == (True, "l7", True)
    assert cfg.partition == "aws"


def test_defaults_apply_when_only_the_region_is_set():
    cfg = parse({"aws:region": "eu-west-1"}, stack="staging")
    assert cfg.cluster_name == "cilium-eks-staging"  # derived from the stack name
    assert cfg.network.cidr == "10.0.0.0/16" and cfg.network.az_count == 3
    assert cfg.network.nat_gateways == "single"
    assert cfg.nodes.instance_types == ("t3.medium",)
    assert (cfg.nodes.desired_size, cfg.nodes.min_size, cfg.nodes.max_size) == (2, 2, 4)
    assert cfg.cilium.version == "1.19.6"
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
    ({"network.cidr": "10.0.0.0/20"}, ["network.cidr", "/20", "allowed: /16 or /17"]),
    ({"network.azCount": 1}, ["network.azCount", "1", "from 2 to 6"]),
    ({"network.azCount": 7}, ["network.azCount", "from 2 to 6"]),
    ({"network.azCount": "3"}, ["network.azCount", "'3'", "whole number"]),
    ({"network.natGateways": "many"}, ["network.natGateways", "'many'", "single, perAz"]),
    (
        {"network.natGateway": "single"},
        ["network", "natGateway", "allowed: cidr, azCount, natGateways"],
    ),
    ({"nodes.instanceTypes": []}, ["nodes.instanceTypes", "non-empty list"]),
    ({"nodes.instanceTypes": "t3.medium"}, ["nodes.instanceTypes", "non-empty list"]),
    ({"nodes.minSize": 3, "nodes.desiredSize": 2}, ["minSize (3) <= desiredSize (2)"]),
    ({"nodes.maxSize": 1}, ["desiredSize (2) <= maxSize (1)"]),
    ({"nodes.minSize": 0}, ["nodes.minSize", "1 or more"]),
    ({"cilium.version": "latest"}, ["cilium.version", "'latest'", "X.Y.Z"]),
    ({"cilium.version": "1.19"}, ["cilium.version", "X.Y.Z"]),
    ({"cilium.version": "1.15.9"}, ["cilium.version", "too old", "1.16.0 or newer"]),
    ({"cilium.hubble.relay": False}, ["cilium.hubble.ui", "requires cilium.hubble.relay"]),
    ({"cilium.hubble.ui": "yes"}, ["cilium.hubble.ui", "true or false"]),
    ({"access.adminPrincipalArns": ["alice"]}, ["access.adminPrincipalArns", "'alice'", "ARN"]),
    (
        {"access.adminPrincipalArns": ["arn:aws:iam::123456789012:group/admins"]},
        ["access.adminPrincipalArns", "role or user ARN"],
    ),
    ({"access.publicAccessCidrs": []}, ["access.publicAccessCidrs", "non-empty list"]),
    ({"access.publicAccessCidrs": ["1.2.3.4"]}, ["access.publicAccessCidrs", "IPv4 CIDR"]),
    ({"access.publicAccessCidrs": ["10.0.0.1/8"]}, ["access.publicAccessCidrs", "'10.0.0.1/8'"]),
    ({"demo.policy": "l4"}, ["demo.policy", "'l4'", "none, l3l4, l7"]),
    ({"demo.enabled": "true"}, ["demo.enabled", "true or false"]),
    ({"demo.verify": 1}, ["demo.verify", "true or false"]),
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
    assert graph.error is not None and "network: must be an object" in graph.error["message"]
    assert declared(graph) == []


def test_more_azs_than_the_region_has_fails_before_any_network_resource():
    graph = run_program(
        {"network.azCount": 4}, azs="ap-northeast-2a,ap-northeast-2b,ap-northeast-2c"
    )
    assert graph.error is not None and graph.error["type"] == "ConfigError"
    assert "network.azCount: 4" in graph.error["message"]
    assert "only 3 available zones" in graph.error["message"]
    assert not [r for r in graph.resources if r.custom]
