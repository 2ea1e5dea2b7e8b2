"""What AWS knows that the config is checked against: the regions and instance types of
the AWS SDK's own data (offline, botocore's files), and EC2's facts about the instance
types of the stack's region (DescribeInstanceTypes, through the stack's AWS provider).

Imports only the config package's own modules (never a component); pulumi and pulumi_aws
only inside `describe_instance_type`, so that `parse()` and its tests never load them.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from components.config.fields import ConfigError, closest
from components.config.mesh import MESH_REFUSED

if TYPE_CHECKING:
    from components.config.cilium import CiliumConfig
    from components.config.nodes import NodesConfig
    from components.config.stack import StackConfig

# The partitions this program builds ARNs for (StackConfig.partition).
PARTITIONS = ("aws", "aws-cn", "aws-us-gov")
# pulumi-eks's rule for an instance type (nodejs/eks/nodes/nodegroup.ts, ec2InstanceRegex,
# matched anywhere in the string): the letter after the generation is the processor family,
# and "g" (Graviton) makes it pick an arm64 AMI for the whole node group, x86_64 otherwise.
PULUMI_EKS_INSTANCE_RE = re.compile(r"([a-z]+)([0-9]+)([a-z])?-?([a-z]+)?\.([a-zA-Z0-9-]+)")


@dataclass(frozen=True)
class InstanceType:
    """What EC2 says of an instance type (DescribeInstanceTypes, via aws.ec2.get_instance_type)."""

    name: str
    architectures: tuple[str, ...]  # e.g. ("i386", "x86_64") or ("arm64",)
    nitro: bool  # built on the Nitro System (prefix delegation needs it)
    max_enis: int
    ipv4_per_eni: int
    vcpus: int


def botocore_data(*parts: str) -> Path:
    # botocore's own data files, without importing botocore (a session costs ~0.5 s)
    spec = importlib.util.find_spec("botocore")
    assert spec and spec.submodule_search_locations, "botocore is a dependency"
    return Path(next(iter(spec.submodule_search_locations)), "data", *parts)


@functools.cache
def eks_regions() -> frozenset[str]:
    """Regions of the partitions this program supports where botocore knows an EKS endpoint."""
    endpoints = json.loads(botocore_data("endpoints.json").read_text())
    return frozenset(
        region
        for partition in endpoints["partitions"]
        if partition["partition"] in PARTITIONS
        for region in partition["regions"]
        if region in partition["services"].get("eks", {}).get("endpoints", {})
    )


@functools.cache
def aws_provider_keys() -> frozenset[str]:
    """The AWS provider's config keys (aws:NAME, without aws:), as the installed pulumi_aws
    reads them (pulumi_aws/config/vars.py, `__config__.get('NAME')`): from its source text,
    since importing pulumi_aws costs over a second."""
    spec = importlib.util.find_spec("pulumi_aws")
    assert spec and spec.submodule_search_locations, "pulumi_aws is a dependency"
    source = Path(next(iter(spec.submodule_search_locations)), "config", "vars.py").read_text()
    return frozenset(re.findall(r"__config__\.get\w*\('(\w+)'\)", source))


@functools.cache
def ec2_instance_types() -> frozenset[str]:
    """Every instance type name in botocore's EC2 model (the InstanceType enum)."""
    folder = max(botocore_data("ec2").iterdir())  # the newest API version
    model = json.loads(gzip.decompress((folder / "service-2.json.gz").read_bytes()))
    return frozenset(model["shapes"]["InstanceType"]["enum"])


def instance_type_names(types: tuple[str, ...], *, offline: bool) -> list[str]:
    """What the names alone tell: pulumi-eks can read them, one architecture, and (offline)
    that EC2 knows them at all; their facts stay a preview-time lookup."""
    errors = []
    if offline:
        unknown = [t for t in types if t not in ec2_instance_types()]
        if unknown:
            # a typo's closest type first (t3.mediun -> t3.medium); sorted: ties go one way
            known = sorted(ec2_instance_types())
            guesses = [(t, guess) for t in unknown if (guess := closest(t, known))]
            guessed = ", ".join(g if len(unknown) == 1 else f"{g} (for {t})" for t, g in guesses)
            errors.append(
                f"nodes.instanceTypes: {', '.join(unknown)} not known to the AWS SDK's EC2 "
                f"model; {f'did you mean {guessed}? Otherwise ' if guessed else ''}use an "
                "existing type (`aws ec2 describe-instance-types`)"
            )
    unreadable = [t for t in types if not PULUMI_EKS_INSTANCE_RE.search(t)]
    if unreadable:
        errors.append(
            f"nodes.instanceTypes: {', '.join(unreadable)} cannot be read by pulumi-eks "
            "(it takes family, generation and size from the name, e.g. m7g.large)"
        )
        return errors
    by_pulumi_eks = {t: pulumi_eks_architecture(t) for t in types}
    if len(set(by_pulumi_eks.values())) > 1:
        listing = ", ".join(f"{n} ({a})" for n, a in by_pulumi_eks.items())
        errors.append(
            f"nodes.instanceTypes: {listing} mix architectures; one node group runs one AMI "
            "type, so use only arm64 (Graviton) or only x86_64 types"
        )
    return errors


def instance_facts(
    nodes: NodesConfig, cilium: CiliumConfig, describe: Callable[[str], InstanceType]
) -> tuple[InstanceType, ...]:
    """The instance types checked against EC2's facts, which pulumi-eks and ENI prefix
    delegation would otherwise refuse only at `pulumi up` (nodegroup.ts getArchitecture)."""
    facts = tuple(describe(name) for name in nodes.instance_types)
    for fact in facts:
        arch = pulumi_eks_architecture(fact.name)
        if arch not in fact.architectures:
            raise ConfigError(
                f"nodes.instanceTypes: {fact.name!r} is {'/'.join(fact.architectures)} but "
                f"pulumi-eks would give it an {arch} AMI (it judges the architecture by the "
                "name); use a current-generation type instead"
            )
    if cilium.prefix_delegation:
        old = [f.name for f in facts if not f.nitro]
        if old:
            raise ConfigError(
                f"nodes.instanceTypes: {', '.join(old)} not built on the Nitro System, which "
                "ENI prefix delegation needs; use Nitro types (e.g. t3, m5, m6i, m7g) or set "
                "cilium.prefixDelegation: false"
            )
    return facts


def pulumi_eks_architecture(instance_type: str) -> str:
    match = PULUMI_EKS_INSTANCE_RE.search(instance_type)
    return "arm64" if match and match.group(3) == "g" else "x86_64"


def with_instance_facts(cfg: StackConfig, provider: Any) -> StackConfig:
    """The config with EC2's facts about its instance types, asked through the stack's AWS
    provider (DescribeInstanceTypes: read-only, no resource); raises ConfigError for a type
    EC2 does not offer or pulumi-eks or prefix delegation would refuse."""
    try:
        facts = instance_facts(
            cfg.nodes, cfg.cilium, functools.partial(describe_instance_type, provider=provider)
        )
    except ConfigError as err:
        raise ConfigError(f"invalid stack configuration:\n  - {err}") from None
    nodes = cfg.nodes.model_copy()
    nodes._facts = facts
    return cfg.model_copy(update={"nodes": nodes})


def describe_instance_type(name: str, provider: Any = None) -> InstanceType:
    """EC2's facts about an instance type in the stack's region (DescribeInstanceTypes)."""
    import pulumi
    import pulumi_aws as aws  # here, so that parse() and its tests never load the AWS SDK

    try:
        found = aws.ec2.get_instance_type(
            instance_type=name, opts=pulumi.InvokeOptions(provider=provider)
        )
    except Exception as err:  # the provider reports an unknown type as an invoke error
        text = str(err)
        if MESH_REFUSED in text:
            raise ConfigError(text[text.index(MESH_REFUSED) :]) from None
        raise ConfigError(
            f"nodes.instanceTypes: {name!r} could not be looked up in EC2 ({err}); use an "
            "instance type offered in the region (`aws ec2 describe-instance-types`)"
        ) from None
    return InstanceType(
        name=name,
        architectures=tuple(found.supported_architectures),
        # bare-metal types report no hypervisor; those that offer prefix delegation are Nitro
        nitro=found.hypervisor == "nitro" or found.bare_metal,
        max_enis=found.maximum_network_interfaces,
        ipv4_per_eni=found.maximum_ipv4_addresses_per_interface,
        vcpus=found.default_vcpus,
    )
