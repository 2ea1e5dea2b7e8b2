"""Stack configuration, read and validated once, before any resource is declared.

A bad value found 15 minutes into `pulumi up` leaves a half-built VPC behind; found here it
costs nothing. The keys are pydantic models below, each field with its type, default and
meaning (docs/configuration.md is the same table for readers). Every mistake is reported
at once, each naming the key as typed in `Pulumi.<stack>.yaml` and what would have been
accepted: one `ConfigError`, one round of fixes.

`parse()` is pure and offline (tests and `make check` call it directly); `load()` feeds it
the stack's config as the Pulumi CLI hands it over, and asks EC2 about the instance types.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import importlib.util
import ipaddress
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

PROJECT = "cilium-eks"
# Config namespaces a stack file may use: this project's keys, and the providers'.
PROVIDER_NAMESPACES = ("aws", "kubernetes", "eks", "pulumi")
# The AWS provider's keys this program reads (it builds the provider itself, from these).
AWS_KEYS = ("aws:region", "aws:defaultTags")

# EKS versions in standard support through late 2026 (EKS Kubernetes release calendar:
# 1.33 left standard support in July 2026). The pinned Cilium minors (1.19, 1.20) are
# e2e-tested on these; see docs/operations.md "Versions".
KubernetesVersion = Literal["1.34", "1.35", "1.36"]
DEFAULT_KUBERNETES_VERSION = "1.35"

DEFAULT_CILIUM_VERSION = "1.19.6"
# The oldest chart that installs with no node yet. In 1.16-1.18 `hubble.tls.auto.method:
# cronJob` makes the first certificate Job a Helm post-install hook; Helm waits for hooks
# even when the release does not wait for pods, the hook never runs without nodes, and the
# node group (which waits for the release) is never created. Fixed in 1.19 (cilium/cilium
# PR #42298); tests/test_cilium_chart.py renders 1.18.12 to show the hook.
MIN_CILIUM_VERSION = (1, 19, 0)

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
INSTANCE_TYPE_RE = re.compile(r"^[a-z0-9-]+\.[a-z0-9]+$")
SEMVER_RE = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")
MINOR_RE = re.compile(r"^(\d+)\.(\d+)$")
# A fully qualified stack of this project: what `pulumi.StackReference` takes.
PEER_STACK_RE = re.compile(rf"^[A-Za-z0-9][\w.-]*/{PROJECT}/[A-Za-z0-9][\w.-]*$")
# A Kubernetes quantity as Karpenter's NodePool limits take it (e.g. 64, 500m, 256Gi).
QUANTITY_RE = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")

# The partitions this program builds ARNs for (StackConfig.partition).
PARTITIONS = ("aws", "aws-cn", "aws-us-gov")


class ConfigError(ValueError):
    """Raised for invalid stack configuration, before any resource is declared."""


def _refuse(message: str) -> PydanticCustomError:
    """A validation error whose words are ours; the key is put in front by `_describe`."""
    return PydanticCustomError("config", "{message}", {"message": message})


# --- field types with their rules ----------------------------------------------------------


def _bool_only(value: Any) -> Any:
    # strict models refuse "true" and 1 already; this says so in the config's words
    if not isinstance(value, bool):
        raise _refuse(f"{value!r} is not allowed; use true or false")
    return value


Flag = Annotated[bool, BeforeValidator(_bool_only)]


def _private_ipv4_network(value: Any) -> str:
    low, high = VPC_PREFIX_RANGE
    try:
        # a number would be read as one address (10 -> 0.0.0.10/32): only strings here
        net = ipaddress.ip_network(value, strict=True) if isinstance(value, str) else None
    except ValueError:
        net = None
    if not isinstance(net, ipaddress.IPv4Network) or not net.is_private:
        raise _refuse(
            f"{value!r} is not a private IPv4 network in CIDR notation (e.g. 10.0.0.0/16)"
        )
    if not low <= net.prefixlen <= high:
        raise _refuse(
            f"{value!r} has prefix /{net.prefixlen}; allowed: /{low} or /{high} "
            "(each AZ's private subnet holds the pod IPs and must be /20 or larger)"
        )
    return str(net)


def _ipv4_cidr(value: Any) -> str:
    try:
        if not isinstance(value, str) or "/" not in value:  # EKS wants 203.0.113.7/32
            raise ValueError(value)
        return str(ipaddress.IPv4Network(value, strict=True))
    except ValueError:
        raise _refuse(f"{value!r} is not an IPv4 CIDR (e.g. 203.0.113.0/24)") from None


def _principal_arn(arn: Any) -> str:
    """An IAM role or user ARN for an EKS access entry (which takes no STS session ARN)."""
    session = STS_SESSION_ARN_RE.match(arn) if isinstance(arn, str) else None
    if session:
        partition, account, role = session.group(1) or "", session.group(2), session.group(3)
        raise _refuse(
            f"{arn!r} is an STS session of a role, which EKS access entries do not take; use "
            f"the role's IAM ARN: arn:aws{partition}:iam::{account}:role/{role} (with its "
            f"path, if it has one: `aws iam get-role --role-name {role} --query Role.Arn`)"
        )
    if not isinstance(arn, str) or not IAM_PRINCIPAL_ARN_RE.match(arn):
        raise _refuse(
            f"{arn!r} is not an IAM role or user ARN "
            "(arn:aws:iam::123456789012:role/NAME or ...:user/NAME)"
        )
    return arn


def _no_repeats(values: tuple[Any, ...]) -> tuple[Any, ...]:
    if len(set(values)) != len(values):
        raise _refuse("lists the same value twice")
    return values


def _not_empty(values: tuple[Any, ...]) -> tuple[Any, ...]:
    if not values:
        raise _refuse("must not be empty")
    return values


def _instance_type(value: Any) -> str:
    if not isinstance(value, str) or not INSTANCE_TYPE_RE.match(value):
        raise _refuse(f"{value!r} is not an EC2 instance type (e.g. t3.medium)")
    return value


def _quantity(value: Any) -> str:
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(text, str) or not QUANTITY_RE.match(text):
        raise _refuse(f"{value!r} is not a Kubernetes quantity (e.g. 64 or 256Gi)")
    return text


PrincipalArns = Annotated[
    tuple[Annotated[str, BeforeValidator(_principal_arn)], ...],
    Field(strict=False),
    AfterValidator(_no_repeats),
]


class _Section(BaseModel):
    """A config object: camelCase keys, no unknown key (a typo is an error), immutable."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        extra="forbid",
        frozen=True,
        strict=True,
    )


# --- the sections ------------------------------------------------------------------------


class NetworkConfig(_Section):
    """The VPC (components/network.py)."""

    cidr: Annotated[str, BeforeValidator(_private_ipv4_network)] = Field(
        default="10.0.0.0/16",
        description="VPC CIDR, private IPv4, /16 or /17 (private subnets /19 or /20 per AZ). "
        "Fixed for the stack's life: changing it means a rebuild.",
    )
    az_count: int = Field(
        default=3,
        ge=2,
        le=6,
        description="Availability zones used (no more than the region has). May grow on a "
        "live stack (nodes and pods use the new AZ); shrinking it means a rebuild.",
    )
    nat_gateways: Literal["single", "perAz"] = Field(
        default="single",
        description="One NAT gateway, or one per AZ (survives an AZ outage, costs more).",
    )
    vpc_endpoints: Flag = Field(
        default=False,
        description="Interface endpoints for sts, ec2, ecr.api, ecr.dkr and an S3 gateway, "
        "and an ECR pull-through cache for quay.io: Cilium and the demo start without NAT.",
    )


@dataclass(frozen=True)
class InstanceType:
    """What EC2 says of an instance type (DescribeInstanceTypes, via aws.ec2.get_instance_type)."""

    name: str
    architectures: tuple[str, ...]  # e.g. ("i386", "x86_64") or ("arm64",)
    nitro: bool  # built on the Nitro System (prefix delegation needs it)
    max_enis: int
    ipv4_per_eni: int
    vcpus: int


class NodesConfig(_Section):
    """The managed node group (components/nodes.py)."""

    instance_types: Annotated[
        tuple[Annotated[str, BeforeValidator(_instance_type)], ...],
        Field(strict=False),
        AfterValidator(_not_empty),
        AfterValidator(_no_repeats),
    ] = Field(
        default=("t3.medium",),
        description="EC2 types of the managed node group: one architecture (x86_64 or "
        "arm64 Graviton), Nitro-based while prefix delegation is on.",
    )
    desired_size: int = Field(default=2, ge=1, description="Nodes to run.")
    min_size: int = Field(
        default=2,
        ge=1,
        description="Lower bound; also caps cilium-operator replicas (one per node).",
    )
    max_size: int = Field(
        default=4,
        ge=1,
        description="Upper bound; the in-cluster checks' rollout budget grows with it.",
    )
    # EC2's facts for each of instance_types, filled in by load() (not a config key).
    _facts: tuple[InstanceType, ...] = PrivateAttr(default=())

    @property
    def facts(self) -> tuple[InstanceType, ...]:
        return self._facts

    @model_validator(mode="after")
    def _sizes_in_order(self) -> NodesConfig:
        if not self.min_size <= self.desired_size <= self.max_size:
            raise _refuse(
                f"minSize ({self.min_size}) <= desiredSize ({self.desired_size}) <= maxSize "
                f"({self.max_size}) does not hold"
            )
        return self


class HubbleConfig(_Section):
    relay: Flag = Field(default=True, description="Hubble Relay, served over TLS.")
    ui: Flag = Field(default=True, validate_default=True, description="Hubble UI (requires relay).")

    @field_validator("ui", mode="after")
    @classmethod
    def _ui_needs_relay(cls, ui: bool, info: ValidationInfo) -> bool:
        if ui and info.data.get("relay") is False:
            raise _refuse(
                "true requires cilium.hubble.relay: true (the UI reads flows from the relay)"
            )
        return ui


class CiliumConfig(_Section):
    """The Cilium chart (components/cilium.py)."""

    version: str = Field(
        default=DEFAULT_CILIUM_VERSION,
        description="Exact chart version X.Y.Z, 1.19.0 or newer. Upgrade one minor at a "
        "time, with upgradeCompatibility set.",
    )
    kube_proxy_replacement: Flag = Field(
        default=True,
        description="Cilium's eBPF service handling replaces kube-proxy. Cannot be switched "
        "on a live cluster.",
    )
    prefix_delegation: Flag = Field(
        default=True,
        description="ENIs hand out /28 prefixes instead of single IPs (110 pods per "
        "t3.medium instead of 17); needs Nitro instance types.",
    )
    encryption: Literal["wireguard", "none"] = Field(
        default="wireguard",
        description="Transparent encryption of pod traffic between nodes: WireGuard "
        "(UDP 51871 between nodes), or none.",
    )
    upgrade_compatibility: str | None = Field(
        default=None,
        description='The Cilium minor first installed on this cluster (e.g. "1.19"): the '
        "chart keeps that minor's defaults across upgrades (Cilium's upgrade guide). Needed "
        "for a minor upgrade; unset on a fresh install.",
    )
    hubble: HubbleConfig = Field(default_factory=HubbleConfig)

    @field_validator("version", mode="after")
    @classmethod
    def _exact_and_recent(cls, version: str) -> str:
        match = SEMVER_RE.match(version)
        if not match:
            raise _refuse(
                f"{version!r} is not an exact chart version; use X.Y.Z (e.g. "
                f"{DEFAULT_CILIUM_VERSION}) so every `pulumi up` installs the same chart"
            )
        if tuple(int(part) for part in match.groups()) < MIN_CILIUM_VERSION:
            raise _refuse(
                f"{version!r} is too old; allowed: {'.'.join(map(str, MIN_CILIUM_VERSION))} or "
                "newer (before 1.19 the chart's Hubble certificate Job is a Helm hook that "
                "cannot run before nodes exist, so the install never finishes)"
            )
        return version

    @field_validator("upgrade_compatibility", mode="after")
    @classmethod
    def _a_minor_not_ahead(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return value
        if not MINOR_RE.match(value):
            raise _refuse(f'{value!r} is not a Cilium minor; use X.Y, e.g. "1.19"')
        version = info.data.get("version")
        if version and minor_of(value) > minor_of(version):
            raise _refuse(
                f"{value!r} is newer than cilium.version {version!r}; set it to the minor "
                "first installed on this cluster"
            )
        return value


class AccessConfig(_Section):
    """Who may use the cluster besides its creator (components/cluster.py)."""

    admin_principal_arns: PrincipalArns = Field(
        default=(), description="IAM role/user ARNs given cluster admin (EKS access entries)."
    )
    viewer_principal_arns: PrincipalArns = Field(
        default=(),
        description="IAM role/user ARNs given read-only access (AmazonEKSAdminViewPolicy), "
        "e.g. the CI preview role.",
    )
    public_access_cidrs: Annotated[
        tuple[Annotated[str, BeforeValidator(_ipv4_cidr)], ...],
        Field(strict=False),
        AfterValidator(_not_empty),
    ] = Field(
        default=("0.0.0.0/0",),
        description="IPv4 CIDRs allowed to reach the public API endpoint; the machine "
        "running `pulumi up` must be inside.",
    )

    @field_validator("viewer_principal_arns", mode="after")
    @classmethod
    def _one_entry_each(cls, viewers: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        both = sorted(set(info.data.get("admin_principal_arns", ())) & set(viewers))
        if both:
            raise _refuse(
                f"{', '.join(both)} also in access.adminPrincipalArns; EKS allows one access "
                "entry per principal: list each in one of them"
            )
        return viewers


class DemoConfig(_Section):
    """Cilium's Star Wars demo and its in-cluster checks (components/starwars.py)."""

    enabled: Flag = Field(default=True, description="Deploy the Star Wars demo.")
    policy: Literal["none", "l3l4", "l7"] = Field(
        default="l7", description="Which policy the demo's CiliumNetworkPolicy rule1 holds."
    )
    verify: Flag = Field(
        default=True, description="Prove the policy in the cluster during `pulumi up`."
    )


class MeshConfig(_Section):
    """Cilium ClusterMesh with other stacks of this project (components/mesh.py)."""

    cluster_id: int = Field(
        ge=1,
        # ClusterMesh allows 255, but the chart refuses 128-255 with ENI IPAM (validate.yaml:
        # a known policy drop with those IDs in ENI mode); tests/test_mesh.py renders it.
        le=127,
        description="This cluster's ID, unique in the mesh (1-127: the Cilium chart refuses "
        "128-255 in ENI mode). Cluster 1 makes the mesh's CA.",
    )
    peers: Annotated[
        tuple[str, ...],
        Field(strict=False),
        AfterValidator(_no_repeats),
    ] = Field(
        default=(),
        description="The other clusters: stacks of this project, fully qualified "
        "(org/cilium-eks/<stack>). Empty: a mesh-ready cluster.",
    )

    @field_validator("peers", mode="after")
    @classmethod
    def _qualified(cls, peers: tuple[str, ...]) -> tuple[str, ...]:
        for peer in peers:
            if not PEER_STACK_RE.match(peer):
                raise _refuse(
                    f"{peer!r} is not a fully qualified stack of this project; use "
                    f"ORG/{PROJECT}/STACK (`pulumi stack ls --all` lists them)"
                )
        return peers

    @model_validator(mode="after")
    def _ca_source(self) -> MeshConfig:
        if self.cluster_id != 1 and not self.peers:
            raise _refuse(
                f"clusterId {self.cluster_id} with no peers: the mesh's CA is made by "
                "cluster 1, so bring cluster 1 up first and list its stack in peers (or "
                "make this the mesh's first cluster with clusterId: 1)"
            )
        return self


class KarpenterConfig(_Section):
    """Nodes on demand (components/karpenter.py)."""

    enabled: Flag = Field(default=False, description="Install Karpenter and its NodePool.")
    capacity_types: Annotated[
        tuple[Literal["on-demand", "spot"], ...],
        Field(strict=False),
        AfterValidator(_not_empty),
        AfterValidator(_no_repeats),
    ] = Field(default=("on-demand",), description="EC2 capacity types Karpenter may launch.")
    instance_categories: Annotated[
        tuple[Literal["c", "m", "r", "t"], ...],
        Field(strict=False),
        AfterValidator(_no_repeats),
    ] = Field(
        default=("c", "m", "r"),
        description="Instance categories (c compute, m general, r memory, t burstable); "
        "ignored when instanceFamilies is set.",
    )
    instance_families: Annotated[
        tuple[str, ...],
        Field(strict=False),
        AfterValidator(_no_repeats),
    ] = Field(default=(), description="Instance families, e.g. [m7i, c7i]; empty: by category.")
    cpu_limit: Annotated[str, BeforeValidator(_quantity)] = Field(
        default="32", description="Total vCPUs Karpenter may launch (NodePool limits.cpu)."
    )
    memory_limit: Annotated[str, BeforeValidator(_quantity)] = Field(
        default="128Gi", description="Total memory Karpenter may launch (NodePool limits.memory)."
    )

    @field_validator("instance_families", mode="after")
    @classmethod
    def _families(cls, families: tuple[str, ...]) -> tuple[str, ...]:
        for family in families:
            if not re.match(r"^[a-z]+[0-9][a-z0-9-]*$", family):
                raise _refuse(f"{family!r} is not an EC2 instance family (e.g. m7i)")
        return families


class DefaultTags(_Section):
    """`aws:defaultTags`, as the AWS provider spells it: {tags: {key: value}}."""

    tags: Annotated[dict[str, str], Field(strict=False)] = Field(
        default_factory=dict, description="Tag keys and values, e.g. {cost-center: platform}."
    )


class StackConfig(_Section):
    """The whole stack: the keys of `Pulumi.<stack>.yaml` under `cilium-eks:`, and the AWS
    provider's region and default tags."""

    region: str = Field(
        alias="aws:region", description="AWS region (required), e.g. ap-northeast-2."
    )
    default_tags: DefaultTags = Field(
        default_factory=DefaultTags,
        alias="aws:defaultTags",
        description="Tags for every AWS resource, besides `project` and `stack`, which the "
        "program sets.",
    )
    cluster_name: str = Field(
        json_schema_extra={"default": "cilium-eks-<stack>"},
        description="EKS cluster name, also Cilium's cluster.name; default "
        "cilium-eks-<stack>. At most 32 characters of a-z, 0-9 and '-'.",
    )
    kubernetes_version: KubernetesVersion = Field(
        default=DEFAULT_KUBERNETES_VERSION, description="EKS version (in EKS standard support)."
    )
    network: NetworkConfig = Field(default_factory=NetworkConfig)
    nodes: NodesConfig = Field(default_factory=NodesConfig)
    cilium: CiliumConfig = Field(default_factory=CiliumConfig)
    access: AccessConfig = Field(default_factory=AccessConfig)
    demo: DemoConfig = Field(default_factory=DemoConfig)
    mesh: MeshConfig | None = Field(default=None, description="ClusterMesh; absent: no mesh.")
    karpenter: KarpenterConfig = Field(default_factory=KarpenterConfig)

    @model_validator(mode="before")
    @classmethod
    def _default_cluster_name(cls, raw: Any, info: ValidationInfo) -> Any:
        if isinstance(raw, dict) and raw.get("clusterName") is None and info.context is not None:
            info.context["derived"] = f"cilium-eks-{info.context.get('stack', '')}".lower()
            raw = {**raw, "clusterName": info.context["derived"]}
        return raw

    @field_validator("region", mode="after")
    @classmethod
    def _known_region(cls, region: str) -> str:
        known = eks_regions()
        if region not in known:
            raise _refuse(
                f"{region!r} is not a region where the AWS SDK in this venv knows EKS "
                f"(e.g. {', '.join(sorted(known)[:4])}, ...); for a region newer than the SDK, "
                "run `make upgrade`"
            )
        return region

    @field_validator("cluster_name", mode="after")
    @classmethod
    def _cilium_cluster_name(cls, name: str, info: ValidationInfo) -> str:
        if not CLUSTER_NAME_RE.match(name) and name == (info.context or {}).get("derived"):
            raise _refuse(
                f"not set, and the default derived from the stack name, '{name}', is not a "
                "valid Cilium cluster name (at most 32 characters of a-z, 0-9 and '-', "
                "starting and ending with a letter or digit); set clusterName explicitly"
            )
        if not CLUSTER_NAME_RE.match(name):
            raise _refuse(
                f"{name!r} is not allowed; use at most 32 characters of a-z, 0-9 and '-', "
                "starting and ending with a letter or digit (Cilium's cluster.name rule)"
            )
        return name

    @property
    def dns_suffix(self) -> str:
        """The partition's DNS suffix (amazonaws.com, amazonaws.com.cn), from botocore."""
        endpoints = json.loads(_botocore_data("endpoints.json").read_text())
        (suffix,) = [
            p["dnsSuffix"] for p in endpoints["partitions"] if p["partition"] == self.partition
        ]
        return suffix

    @property
    def partition(self) -> str:
        """The AWS partition of the region, for ARNs of AWS-managed policies."""
        if self.region.startswith("cn-"):
            return "aws-cn"
        if self.region.startswith("us-gov-"):
            return "aws-us-gov"
        return "aws"


# How the program's mesh refusal starts (components/mesh.py). The AWS provider waits for
# the mesh's checks, so the first AWS call, the instance-type lookup below, is where a
# refusal surfaces, wrapped by the SDK: it is told apart by this text.
MESH_REFUSED = "invalid mesh (the peers' `mesh` stack outputs):"


def mesh_problems(
    *,
    cluster_name: str,
    cluster_id: int,
    vpc_cidr: str,
    account: str | None,
    peers: Mapping[str, Any],
) -> list[str]:
    """What is wrong with a mesh: this stack's facts against each peer's `mesh` stack
    output (None or missing: the peer is not deployed as a mesh cluster, or unreadable).
    The program raises on these (components/mesh.py); the preflight reports them first.
    """
    problems = []
    ids: dict[int, str] = {}
    own = ipaddress.ip_network(vpc_cidr)
    for peer, facts in peers.items():
        if not isinstance(facts, Mapping):
            problems.append(
                f"mesh.peers: {peer} has no `mesh` output (not deployed, not readable, or "
                "without mesh.clusterId); bring it up as a mesh cluster first"
            )
            continue
        peer_id = facts.get("clusterId")
        if isinstance(peer_id, float) and peer_id.is_integer():
            peer_id = int(peer_id)  # stack outputs' numbers arrive as floats (protobuf)
        if peer_id == cluster_id:
            problems.append(
                f"mesh.clusterId: {cluster_id} is also the cluster ID of {peer}; each "
                "cluster of a mesh needs its own"
            )
        elif isinstance(peer_id, int) and peer_id in ids:
            problems.append(
                f"mesh.peers: {peer} and {ids[peer_id]} have the same cluster ID {peer_id}"
            )
        if isinstance(peer_id, int):
            ids.setdefault(peer_id, peer)
        if facts.get("clusterName") == cluster_name:
            problems.append(
                f"clusterName: {cluster_name} is also the cluster name of {peer}; "
                "ClusterMesh tells clusters apart by name"
            )
        cidr = facts.get("vpcCidr")
        if isinstance(cidr, str) and ipaddress.ip_network(cidr).overlaps(own):
            problems.append(
                f"network.cidr: {vpc_cidr} overlaps {peer}'s VPC {cidr}; in ENI mode pods "
                "take VPC addresses, so the clusters of a mesh need disjoint VPCs"
            )
        peer_account = facts.get("accountId")
        if account and peer_account and peer_account != account:
            problems.append(
                f"mesh.peers: {peer} is in AWS account {peer_account}, this stack in "
                f"{account}; the link is a VPC peering both sides accept with this stack's "
                "credentials, so a mesh stays in one account (docs/clustermesh.md)"
            )
    cas = {peer: f.get("ca") for peer, f in peers.items() if isinstance(f, Mapping)}
    if cluster_id != 1 and not problems:
        # the mesh's CA: cluster 1's when it is a peer (the others follow it), else any
        # peer's, and then they must agree
        if not any(cas.values()):
            problems.append(
                "mesh.peers: none of them shares the mesh's CA (made by cluster 1): bring "
                "cluster 1 up first and list its stack among the peers"
            )
        elif 1 not in ids and len({ca for ca in cas.values() if ca}) > 1:
            problems.append(
                "mesh.peers: they trust different CAs and none of them is cluster 1 to "
                "follow; list cluster 1's stack, or only peers of one mesh"
            )
    return problems


# Kubernetes quantity suffixes (apimachinery resource.Quantity), as factors.
QUANTITY_SUFFIXES = {
    "m": 1e-3, "": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
}  # fmt: skip


def cpu_cores(quantity: str) -> float:
    """A CPU quantity (as _quantity accepted it) in cores: "500m" -> 0.5, "64" -> 64."""
    match = QUANTITY_RE.match(quantity)
    assert match, quantity
    return (
        float(quantity[: len(quantity) - len(match.group(2) or "")])
        * QUANTITY_SUFFIXES[match.group(2) or ""]
    )


def minor_of(version: str) -> tuple[int, int]:
    """(1, 20) for "1.20.0" or "1.20"."""
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


# --- what the AWS SDK knows, offline -------------------------------------------------------


def _botocore_data(*parts: str) -> Path:
    # botocore's own data files, without importing botocore (a session costs ~0.5 s)
    spec = importlib.util.find_spec("botocore")
    assert spec and spec.submodule_search_locations, "botocore is a dependency"
    return Path(next(iter(spec.submodule_search_locations)), "data", *parts)


@functools.cache
def eks_regions() -> frozenset[str]:
    """Regions of the partitions this program supports where botocore knows an EKS endpoint."""
    endpoints = json.loads(_botocore_data("endpoints.json").read_text())
    return frozenset(
        region
        for partition in endpoints["partitions"]
        if partition["partition"] in PARTITIONS
        for region in partition["regions"]
        if region in partition["services"].get("eks", {}).get("endpoints", {})
    )


@functools.cache
def ec2_instance_types() -> frozenset[str]:
    """Every instance type name in botocore's EC2 model (the InstanceType enum)."""
    folder = max(_botocore_data("ec2").iterdir())  # the newest API version
    model = json.loads(gzip.decompress((folder / "service-2.json.gz").read_bytes()))
    return frozenset(model["shapes"]["InstanceType"]["enum"])


# --- reading and validating ----------------------------------------------------------------


def parse(
    raw: Mapping[str, Any],
    stack: str,
    describe: Callable[[str], InstanceType] | None = None,
    *,
    offline: bool = False,
) -> StackConfig:
    """Validate raw config values into a StackConfig, or raise ConfigError listing each
    mistake once.

    `raw` holds this project's keys unprefixed (`network`), other namespaces' keys with
    their prefix (`aws:region`); a key set to None counts as unset. With `describe` (EC2's
    facts by instance type name) the instance types are also checked against what
    pulumi-eks and prefix delegation accept, and their facts kept; with `offline`, their
    names are checked against the AWS SDK's list instead.
    """
    values, errors = _project_keys(raw)
    try:
        cfg = StackConfig.model_validate(values, context={"stack": stack})
    except ValidationError as err:
        errors += [_describe(e) for e in err.errors()]
        cfg = None
    nodes = values.get("nodes")
    types = nodes.get("instanceTypes") if isinstance(nodes, dict) else None
    types = cfg.nodes.instance_types if types is None and cfg is not None else types
    if isinstance(types, list | tuple) and all(isinstance(t, str) for t in types):
        errors += _instance_type_names(tuple(types), offline=offline)
    if cfg is not None and describe is not None and not errors:
        # EC2 is asked only with a valid region and list
        try:
            facts = _instance_facts(cfg.nodes, cfg.cilium, describe)
        except ConfigError as err:
            errors.append(str(err))
        else:
            cfg.nodes._facts = facts
    if errors or cfg is None:
        raise ConfigError("invalid stack configuration:\n  - " + "\n  - ".join(errors))
    return cfg


def _project_keys(raw: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """This project's keys and aws:region, for the model; a namespace nobody reads is an
    error (`cilium-ek:nodes` would otherwise be ignored without a word)."""
    values: dict[str, Any] = {}
    errors: list[str] = []
    for key, value in raw.items():
        namespace, _, name = key.rpartition(":")
        if namespace in ("", PROJECT):
            if value is not None:
                values[name] = value
        elif key in AWS_KEYS:
            if value is not None:
                values[key] = value
        elif namespace == "aws":
            errors.append(
                f"{key}: not read; this program builds its AWS provider from "
                f"{' and '.join(AWS_KEYS)} only (components/aws.py): choose credentials with "
                "AWS_PROFILE or `aws sso login`, which the kubeconfig and the teardown sweep "
                "use as well"
            )
        elif namespace not in PROVIDER_NAMESPACES:
            errors.append(
                f"{key}: unknown namespace {namespace!r}; this program reads {PROJECT}:* "
                f"and the providers' {', '.join(f'{n}:*' for n in PROVIDER_NAMESPACES)}"
            )
    if "aws:region" not in values:
        errors.append(
            "aws:region: not set; set it with `pulumi config set aws:region ap-northeast-2`"
        )
        values["aws:region"] = next(iter(sorted(eks_regions())))  # checks the rest all the same
    return values, errors


def _describe(error: Any) -> str:
    """One pydantic error in the config's words: the key as typed, what is allowed."""
    loc = tuple(error["loc"])
    key = _key(loc)
    kind, value = error["type"], error.get("input")
    if kind == "config":
        # a model's own rule: name the section; a rule whose text names its key says so
        return f"{key}: {error['ctx']['message']}" if key else error["ctx"]["message"]
    if kind == "extra_forbidden":
        section = _section_at(loc[:-1])
        allowed = ", ".join(_aliases(section)) if section else ""
        where = _key(loc[:-1]) or PROJECT
        return f"{where}: unknown key {loc[-1]!r}; allowed: {allowed}"
    field = _field_at(loc)
    if kind == "literal_error":
        allowed = ", ".join(map(str, _literal_values(field)))
        return f"{key}: {value!r} is not allowed; allowed: {allowed}"
    if kind in ("int_type", "int_from_float", "greater_than_equal", "less_than_equal"):
        low, high = _bounds(field)
        bounds = f"from {low} to {high}" if high is not None else f"{low} or more"
        return f"{key}: {value!r} is not allowed; use a whole number {bounds}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        section = _section_at(loc)
        allowed = ", ".join(_aliases(section)) if section else ""
        return f"{key}: {value!r} is not allowed; must be an object with keys {allowed}"
    if kind in ("tuple_type", "list_type"):
        return f"{key}: {value!r} is not allowed; use a list"
    if kind == "string_type":
        return f"{key}: {value!r} is not allowed; use a string"
    if kind == "missing":
        return f"{key}: not set"
    return f"{key}: {error['msg']}"


def _key(loc: Iterable[Any]) -> str:
    key = ""
    for part in loc:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    return key


def _field_at(loc: tuple[Any, ...]) -> Any:
    """The FieldInfo of the key at `loc` (list indexes skipped), or None."""
    model: type[BaseModel] | None = StackConfig
    field = None
    for part in loc:
        if isinstance(part, int):
            continue
        if model is None:
            return None
        field = next((f for n, f in model.model_fields.items() if part in (n, f.alias)), None)
        if field is None:
            return None
        model = _model_in(field.annotation)
    return field


def _section_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The section (model) whose keys sit at `loc`: the whole stack for ()."""
    if not loc:
        return StackConfig
    field = _field_at(loc)
    return _model_in(field.annotation) if field else None


def _model_in(annotation: Any) -> type[BaseModel] | None:
    return next(
        (t for t in _flatten(annotation) if isinstance(t, type) and issubclass(t, BaseModel)),
        None,
    )


def _flatten(annotation: Any) -> list[Any]:
    """The types inside an annotation (Optional[X], tuple[X, ...], Annotated[...])."""
    args = get_args(annotation)
    if not args:
        return [annotation]
    return [annotation, *(t for arg in args for t in _flatten(arg))]


def _literal_values(field: Any) -> list[Any]:
    for inner in _flatten(field.annotation) if field else []:
        if getattr(inner, "__origin__", None) is Literal:
            return list(get_args(inner))
    return []


def _bounds(field: Any) -> tuple[Any, Any]:
    low = high = None
    for rule in field.metadata if field else []:
        low = getattr(rule, "ge", low)
        high = getattr(rule, "le", high)
    return low, high


def _aliases(model: type[BaseModel]) -> list[str]:
    # aws:region is the AWS provider's key, not one of this project's
    return [f.alias or n for n, f in model.model_fields.items() if ":" not in (f.alias or "")]


def _instance_type_names(types: tuple[str, ...], *, offline: bool) -> list[str]:
    """What the names alone tell: pulumi-eks can read them, one architecture, and (offline)
    that EC2 knows them at all; their facts stay a preview-time lookup."""
    errors = []
    if offline:
        unknown = [t for t in types if t not in ec2_instance_types()]
        if unknown:
            errors.append(
                f"nodes.instanceTypes: {', '.join(unknown)} not known to the AWS SDK's EC2 "
                "model; use an existing type (`aws ec2 describe-instance-types`)"
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


def _instance_facts(
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


def stack_config_keys(config: Mapping[str, Any]) -> dict[str, Any]:
    """A stack's config as the CLI hands it to a program (every value a string: objects as
    JSON) turned back into values: the objects this program reads parsed, strings kept."""
    objects = set()
    for name, field in StackConfig.model_fields.items():
        if _model_in(field.annotation) is not None:
            key = field.alias or name
            objects.add(key if ":" in key else f"{PROJECT}:{key}")
    values: dict[str, Any] = {}
    for key, value in config.items():
        if key in objects and isinstance(value, str):
            # not JSON: a plain string, which the model refuses with its key
            with contextlib.suppress(json.JSONDecodeError):
                value = json.loads(value)
        values[key] = value
    return values


def load() -> StackConfig:
    """This stack's configuration, validated offline: every key the CLI hands over is read
    (`PULUMI_CONFIG`, and the map a language host sets), so a typo in a key is refused, not
    ignored as `pulumi.Config` would. Raises before any resource is declared."""
    import pulumi
    from pulumi.runtime import config as runtime_config

    handed = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    return parse(stack_config_keys(handed), stack=pulumi.get_stack())


def with_instance_facts(cfg: StackConfig, provider: Any) -> StackConfig:
    """The config with EC2's facts about its instance types, asked through the stack's AWS
    provider (DescribeInstanceTypes: read-only, no resource); raises ConfigError for a type
    EC2 does not offer or pulumi-eks or prefix delegation would refuse."""
    try:
        facts = _instance_facts(
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
