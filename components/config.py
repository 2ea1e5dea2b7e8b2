"""Stack configuration, read and validated once, before any resource is declared.

A bad value found 15 minutes into `pulumi up` leaves a half-built VPC behind; found
here it costs nothing. Every error names the key (as typed in `Pulumi.<stack>.yaml`)
and what would have been accepted, and all sections are checked before the one
`ConfigError` is raised, so a user fixes every mistake in one round.

`parse()` is pure (tests call it directly); `load()` feeds it the stack's config.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pulumi

# EKS versions in standard support through late 2026 (EKS Kubernetes release calendar:
# 1.33 left standard support in July 2026). The pinned Cilium minors (1.19, 1.20) are
# e2e-tested on these; see README "Versions".
KUBERNETES_VERSIONS = ("1.34", "1.35", "1.36")
DEFAULT_KUBERNETES_VERSION = "1.35"

DEFAULT_CILIUM_VERSION = "1.19.6"
# The oldest chart that installs with no node yet. In 1.16-1.18 `hubble.tls.auto.method:
# cronJob` makes the first certificate Job a Helm post-install hook; Helm waits for hooks
# even when the release does not wait for pods, the hook never runs without nodes, and the
# node group (which waits for the release) is never created. Fixed in 1.19 (cilium/cilium
# PR #42298); tests/test_cilium_chart.py renders 1.18.12 to show the hook.
MIN_CILIUM_VERSION = (1, 19, 0)

NAT_GATEWAY_MODES = ("single", "perAz")
DEMO_POLICIES = ("none", "l3l4", "l7")
AZ_COUNT_RANGE = (2, 6)
# AWS allows a VPC of /16 at the largest; the private subnets (pod IPs in ENI mode) must
# be /20 or larger, one per AZ (up to 6) plus room for the public ones: /17 at the smallest.
VPC_PREFIX_RANGE = (16, 17)

# Cilium's own rule for `cluster.name` (chart values.yaml, `cluster.name`): at most 32
# characters, lowercase alphanumerics and '-', starting and ending alphanumeric. It is
# stricter than EKS's, and the cluster's name is used for both.
CLUSTER_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$")
IAM_PRINCIPAL_ARN_RE = re.compile(r"^arn:aws(-cn|-us-gov)?:iam::\d{12}:(role|user)/[\w+=,.@/-]+$")
STS_SESSION_ARN_RE = re.compile(r"^arn:aws(-cn|-us-gov)?:sts::(\d{12}):assumed-role/([\w+=,.@-]+)/")
# pulumi-eks's rule for an instance type (nodejs/eks/nodes/nodegroup.ts, ec2InstanceRegex,
# matched anywhere in the string): the letter after the generation is the processor family,
# and "g" (Graviton) makes it pick an arm64 AMI for the whole node group, x86_64 otherwise.
PULUMI_EKS_INSTANCE_RE = re.compile(r"([a-z]+)([0-9]+)([a-z])?-?([a-z]+)?\.([a-zA-Z0-9-]+)")
SEMVER_RE = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")


class ConfigError(ValueError):
    """Raised for invalid stack configuration, before any resource is declared."""


@dataclass(frozen=True)
class NetworkConfig:
    cidr: str = "10.0.0.0/16"
    az_count: int = 3
    nat_gateways: str = "single"
    vpc_endpoints: bool = False


@dataclass(frozen=True)
class InstanceType:
    """What EC2 says of an instance type (DescribeInstanceTypes, via aws.ec2.get_instance_type)."""

    name: str
    architectures: tuple[str, ...]  # e.g. ("i386", "x86_64") or ("arm64",)
    nitro: bool  # built on the Nitro System (prefix delegation needs it)
    max_enis: int
    ipv4_per_eni: int
    vcpus: int


@dataclass(frozen=True)
class NodesConfig:
    instance_types: tuple[str, ...] = ("t3.medium",)
    desired_size: int = 2
    min_size: int = 2
    max_size: int = 4
    # EC2's facts for each of instance_types, filled in by load() (not a config key).
    facts: tuple[InstanceType, ...] = ()


@dataclass(frozen=True)
class HubbleConfig:
    relay: bool = True
    ui: bool = True


@dataclass(frozen=True)
class CiliumConfig:
    version: str = DEFAULT_CILIUM_VERSION
    hubble: HubbleConfig = HubbleConfig()
    kube_proxy_replacement: bool = True
    prefix_delegation: bool = True


@dataclass(frozen=True)
class AccessConfig:
    admin_principal_arns: tuple[str, ...] = ()
    viewer_principal_arns: tuple[str, ...] = ()
    public_access_cidrs: tuple[str, ...] = ("0.0.0.0/0",)


@dataclass(frozen=True)
class DemoConfig:
    enabled: bool = True
    policy: str = "l7"
    verify: bool = True


@dataclass(frozen=True)
class StackConfig:
    region: str
    cluster_name: str
    kubernetes_version: str
    network: NetworkConfig
    nodes: NodesConfig
    cilium: CiliumConfig
    access: AccessConfig
    demo: DemoConfig

    @property
    def partition(self) -> str:
        """The AWS partition of the region, for ARNs of AWS-managed policies."""
        if self.region.startswith("cn-"):
            return "aws-cn"
        if self.region.startswith("us-gov-"):
            return "aws-us-gov"
        return "aws"


# Project keys and the kind of value each holds (strings are read raw, objects as JSON).
STRING_KEYS = ("clusterName", "kubernetesVersion")
OBJECT_KEYS = ("network", "nodes", "cilium", "access", "demo")


def load() -> StackConfig:
    """Read this stack's configuration (`pulumi config`) and validate it, with EC2's facts
    about the instance types (a read-only call, no resource)."""
    project = pulumi.Config()
    raw: dict[str, Any] = {key: project.get(key) for key in STRING_KEYS}
    for key in OBJECT_KEYS:
        try:
            raw[key] = project.get_object(key)
        except pulumi.ConfigTypeError:  # not JSON: a plain string, which parse() rejects
            raw[key] = project.get(key)
    raw["aws:region"] = pulumi.Config("aws").get("region")
    return parse(raw, stack=pulumi.get_stack(), describe=describe_instance_type)


def describe_instance_type(name: str) -> InstanceType:
    """EC2's facts about an instance type in the stack's region (DescribeInstanceTypes)."""
    import pulumi_aws as aws  # here, so that parse() and its tests never load the AWS SDK

    try:
        found = aws.ec2.get_instance_type(instance_type=name)
    except Exception as err:  # the provider reports an unknown type as an invoke error
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


def parse(
    raw: Mapping[str, Any],
    stack: str,
    describe: Callable[[str], InstanceType] | None = None,
) -> StackConfig:
    """Validate raw config values (None = unset) into a StackConfig, or raise ConfigError.

    With `describe` (EC2's facts by instance type name) the instance types are also checked
    against what pulumi-eks and prefix delegation accept, and their facts kept.
    """
    errors: list[str] = []
    parsed: dict[str, Any] = {}
    sections: dict[str, Callable[[], Any]] = {
        "region": lambda: _region(raw.get("aws:region")),
        "cluster_name": lambda: _cluster_name(raw.get("clusterName"), stack),
        "kubernetes_version": lambda: _kubernetes_version(raw.get("kubernetesVersion")),
        "network": lambda: _network(raw.get("network")),
        "nodes": lambda: _nodes(raw.get("nodes")),
        "cilium": lambda: _cilium(raw.get("cilium")),
        "access": lambda: _access(raw.get("access")),
        "demo": lambda: _demo(raw.get("demo")),
    }
    for key, section in sections.items():
        try:
            parsed[key] = section()
        except ConfigError as err:
            errors.append(str(err))
    if describe is not None and not errors:  # EC2 is asked only with a valid region and list
        try:
            parsed["nodes"] = _instance_facts(parsed["nodes"], parsed["cilium"], describe)
        except ConfigError as err:
            errors.append(str(err))
    if errors:
        raise ConfigError("invalid stack configuration:\n  - " + "\n  - ".join(errors))
    return StackConfig(**parsed)


def _region(value: Any) -> str:
    if not value:
        raise ConfigError(
            "aws:region: not set; set it with `pulumi config set aws:region ap-northeast-2`"
        )
    return str(value)


def _cluster_name(value: Any, stack: str) -> str:
    if value is None:
        name = f"cilium-eks-{stack}".lower()
        if not CLUSTER_NAME_RE.match(name):
            raise ConfigError(
                f"clusterName: not set, and the default derived from the stack name, '{name}', "
                "is not a valid Cilium cluster name (at most 32 characters of a-z, 0-9 and '-', "
                "starting and ending with a letter or digit); set clusterName explicitly"
            )
        return name
    if not isinstance(value, str) or not CLUSTER_NAME_RE.match(value):
        raise ConfigError(
            f"clusterName: {value!r} is not allowed; use at most 32 characters of a-z, 0-9 "
            "and '-', starting and ending with a letter or digit (Cilium's cluster.name rule)"
        )
    return value


def _kubernetes_version(value: Any) -> str:
    if value is None:
        return DEFAULT_KUBERNETES_VERSION
    if value not in KUBERNETES_VERSIONS:
        raise ConfigError(
            f"kubernetesVersion: {value!r} is not supported; "
            f"allowed: {', '.join(KUBERNETES_VERSIONS)}"
        )
    return str(value)


def _object(key: str, value: Any, allowed: tuple[str, ...]) -> dict[str, Any]:
    """An optional config object with no keys but the allowed ones (a typo is an error)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{key}: must be an object with keys {', '.join(allowed)}")
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise ConfigError(
            f"{key}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}"
        )
    return value


def _int(key: str, value: Any, low: int, high: int | None = None) -> int:
    # bool is an int in Python; `azCount: true` is still a mistake.
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < low
        or (high is not None and value > high)
    ):
        bounds = f"from {low} to {high}" if high is not None else f"{low} or more"
        raise ConfigError(f"{key}: {value!r} is not allowed; use a whole number {bounds}")
    return value


def _bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{key}: {value!r} is not allowed; use true or false")
    return value


def _choice(key: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ConfigError(f"{key}: {value!r} is not allowed; allowed: {', '.join(allowed)}")
    return str(value)


def _network(value: Any) -> NetworkConfig:
    obj = _object("network", value, ("cidr", "azCount", "natGateways", "vpcEndpoints"))
    default = NetworkConfig()
    cidr = obj.get("cidr", default.cidr)
    low, high = VPC_PREFIX_RANGE
    try:
        # a number would be read as one address (10 -> 0.0.0.10/32): only strings here
        net = ipaddress.ip_network(cidr, strict=True) if isinstance(cidr, str) else None
    except ValueError:
        net = None
    if not isinstance(net, ipaddress.IPv4Network) or not net.is_private:
        raise ConfigError(
            f"network.cidr: {cidr!r} is not a private IPv4 network in CIDR notation "
            "(e.g. 10.0.0.0/16)"
        )
    if not low <= net.prefixlen <= high:
        raise ConfigError(
            f"network.cidr: {cidr!r} has prefix /{net.prefixlen}; allowed: /{low} or /{high} "
            "(each AZ's private subnet holds the pod IPs and must be /20 or larger)"
        )
    return NetworkConfig(
        cidr=str(net),
        az_count=_int("network.azCount", obj.get("azCount", default.az_count), *AZ_COUNT_RANGE),
        nat_gateways=_choice(
            "network.natGateways", obj.get("natGateways", default.nat_gateways), NAT_GATEWAY_MODES
        ),
        vpc_endpoints=_bool("network.vpcEndpoints", obj.get("vpcEndpoints", default.vpc_endpoints)),
    )


def _nodes(value: Any) -> NodesConfig:
    obj = _object("nodes", value, ("instanceTypes", "desiredSize", "minSize", "maxSize"))
    default = NodesConfig()
    types = obj.get("instanceTypes", list(default.instance_types))
    if (
        not isinstance(types, list)
        or not types
        or not all(isinstance(t, str) and re.match(r"^[a-z0-9-]+\.[a-z0-9]+$", t) for t in types)
    ):
        raise ConfigError(
            f"nodes.instanceTypes: {types!r} is not allowed; use a non-empty list of EC2 "
            'instance types, e.g. ["t3.medium"]'
        )
    desired = _int("nodes.desiredSize", obj.get("desiredSize", default.desired_size), 1)
    minimum = _int("nodes.minSize", obj.get("minSize", default.min_size), 1)
    maximum = _int("nodes.maxSize", obj.get("maxSize", default.max_size), 1)
    if not minimum <= desired <= maximum:
        raise ConfigError(
            f"nodes: minSize ({minimum}) <= desiredSize ({desired}) <= maxSize ({maximum}) "
            "does not hold"
        )
    return NodesConfig(tuple(types), desired, minimum, maximum)


def _instance_facts(
    nodes: NodesConfig, cilium: CiliumConfig, describe: Callable[[str], InstanceType]
) -> NodesConfig:
    """The instance types checked against EC2's facts and against what pulumi-eks accepts,
    which it would otherwise refuse only at `pulumi up` (nodegroup.ts getArchitecture)."""
    facts = [describe(name) for name in nodes.instance_types]
    unreadable = [f.name for f in facts if not PULUMI_EKS_INSTANCE_RE.search(f.name)]
    if unreadable:
        raise ConfigError(
            f"nodes.instanceTypes: {', '.join(unreadable)} cannot be read by pulumi-eks "
            "(it takes family, generation and size from the name, e.g. m7g.large)"
        )
    by_pulumi_eks = {f.name: _pulumi_eks_architecture(f.name) for f in facts}
    if len(set(by_pulumi_eks.values())) > 1:
        listing = ", ".join(f"{n} ({a})" for n, a in by_pulumi_eks.items())
        raise ConfigError(
            f"nodes.instanceTypes: {listing} mix architectures; one node group runs one AMI "
            "type, so use only arm64 (Graviton) or only x86_64 types"
        )
    for fact in facts:
        if by_pulumi_eks[fact.name] not in fact.architectures:
            raise ConfigError(
                f"nodes.instanceTypes: {fact.name!r} is {'/'.join(fact.architectures)} but "
                f"pulumi-eks would give it an {by_pulumi_eks[fact.name]} AMI (it judges the "
                "architecture by the name); use a current-generation type instead"
            )
    if cilium.prefix_delegation:
        old = [f.name for f in facts if not f.nitro]
        if old:
            raise ConfigError(
                f"nodes.instanceTypes: {', '.join(old)} not built on the Nitro System, which "
                "ENI prefix delegation needs; use Nitro types (e.g. t3, m5, m6i, m7g) or set "
                "cilium.prefixDelegation: false"
            )
    return dataclasses.replace(nodes, facts=tuple(facts))


def _pulumi_eks_architecture(instance_type: str) -> str:
    match = PULUMI_EKS_INSTANCE_RE.search(instance_type)
    return "arm64" if match and match.group(3) == "g" else "x86_64"


def _cilium(value: Any) -> CiliumConfig:
    obj = _object(
        "cilium", value, ("version", "hubble", "kubeProxyReplacement", "prefixDelegation")
    )
    default = CiliumConfig()
    version = obj.get("version", default.version)
    match = SEMVER_RE.match(version) if isinstance(version, str) else None
    if not match:
        raise ConfigError(
            f"cilium.version: {version!r} is not an exact chart version; use X.Y.Z "
            f"(e.g. {DEFAULT_CILIUM_VERSION}) so every `pulumi up` installs the same chart"
        )
    if tuple(int(part) for part in match.groups()) < MIN_CILIUM_VERSION:
        raise ConfigError(
            f"cilium.version: {version!r} is too old; allowed: "
            f"{'.'.join(map(str, MIN_CILIUM_VERSION))} or newer (before 1.19 the chart's "
            "Hubble certificate Job is a Helm hook that cannot run before nodes exist, so "
            "the install never finishes)"
        )
    hubble = _object("cilium.hubble", obj.get("hubble"), ("relay", "ui"))
    relay = _bool("cilium.hubble.relay", hubble.get("relay", default.hubble.relay))
    ui = _bool("cilium.hubble.ui", hubble.get("ui", default.hubble.ui))
    if ui and not relay:
        raise ConfigError(
            "cilium.hubble.ui: true requires cilium.hubble.relay: true (the UI reads flows "
            "from the relay)"
        )
    return CiliumConfig(
        version=version,
        hubble=HubbleConfig(relay=relay, ui=ui),
        kube_proxy_replacement=_bool(
            "cilium.kubeProxyReplacement",
            obj.get("kubeProxyReplacement", default.kube_proxy_replacement),
        ),
        prefix_delegation=_bool(
            "cilium.prefixDelegation", obj.get("prefixDelegation", default.prefix_delegation)
        ),
    )


def _access(value: Any) -> AccessConfig:
    obj = _object(
        "access", value, ("adminPrincipalArns", "viewerPrincipalArns", "publicAccessCidrs")
    )
    admins = _principals("access.adminPrincipalArns", obj.get("adminPrincipalArns", []))
    viewers = _principals("access.viewerPrincipalArns", obj.get("viewerPrincipalArns", []))
    both = sorted(set(admins) & set(viewers))
    if both:
        raise ConfigError(
            f"access.viewerPrincipalArns: {', '.join(both)} also in access.adminPrincipalArns; "
            "EKS allows one access entry per principal: list each in one of them"
        )
    cidrs = obj.get("publicAccessCidrs", list(AccessConfig().public_access_cidrs))
    if not isinstance(cidrs, list) or not cidrs:
        raise ConfigError(
            "access.publicAccessCidrs: must be a non-empty list of IPv4 CIDRs, e.g. "
            '["203.0.113.0/24"] (the runner of `pulumi up` must be inside)'
        )
    for cidr in cidrs:
        try:
            if "/" not in cidr:  # EKS wants CIDR notation: 203.0.113.7/32, not a bare IP
                raise ValueError(cidr)
            ipaddress.IPv4Network(cidr, strict=True)
        except (TypeError, ValueError):
            raise ConfigError(
                f"access.publicAccessCidrs: {cidr!r} is not an IPv4 CIDR (e.g. 203.0.113.0/24)"
            ) from None
    return AccessConfig(
        admin_principal_arns=admins, viewer_principal_arns=viewers, public_access_cidrs=tuple(cidrs)
    )


def _principals(key: str, arns: Any) -> tuple[str, ...]:
    """IAM role or user ARNs for EKS access entries (which take no STS session ARN)."""
    if not isinstance(arns, list):
        raise ConfigError(f"{key}: must be a list of IAM role or user ARNs")
    for arn in arns:
        session = STS_SESSION_ARN_RE.match(arn) if isinstance(arn, str) else None
        if session:
            partition, account, role = session.group(1) or "", session.group(2), session.group(3)
            raise ConfigError(
                f"{key}: {arn!r} is an STS session of a role, which EKS access entries do not "
                f"take; use the role's IAM ARN: arn:aws{partition}:iam::{account}:role/{role} "
                "(with its path, if it has one: `aws iam get-role --role-name "
                f"{role} --query Role.Arn`)"
            )
        if not isinstance(arn, str) or not IAM_PRINCIPAL_ARN_RE.match(arn):
            raise ConfigError(
                f"{key}: {arn!r} is not an IAM role or user ARN "
                "(arn:aws:iam::123456789012:role/NAME or ...:user/NAME)"
            )
    if len(set(arns)) != len(arns):
        raise ConfigError(f"{key}: lists the same ARN twice")
    return tuple(arns)


def _demo(value: Any) -> DemoConfig:
    obj = _object("demo", value, ("enabled", "policy", "verify"))
    default = DemoConfig()
    return DemoConfig(
        enabled=_bool("demo.enabled", obj.get("enabled", default.enabled)),
        policy=_choice("demo.policy", obj.get("policy", default.policy), DEMO_POLICIES),
        verify=_bool("demo.verify", obj.get("verify", default.verify)),
    )
