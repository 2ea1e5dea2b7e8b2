"""The whole stack's config: every section under its key, the cluster's name and
Kubernetes version, and the AWS provider's region and default tags.

Imports only the config package's own modules (never a component).
"""

from __future__ import annotations

import importlib.metadata
import json
import re
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from components.config.access import AccessConfig
from components.config.aws_facts import botocore_data, eks_regions
from components.config.cilium import CiliumConfig
from components.config.demo import DemoConfig
from components.config.fields import Section, closest, refuse
from components.config.karpenter import KarpenterConfig
from components.config.mesh import MeshConfig
from components.config.network import NetworkConfig
from components.config.nodes import NodesConfig

# EKS versions in standard support through late 2026 (EKS Kubernetes release calendar:
# 1.33 left standard support in July 2026). The pinned Cilium minors (1.19, 1.20) are
# e2e-tested on these; see docs/operations.md "Versions".
KubernetesVersion = Literal["1.34", "1.35", "1.36"]
DEFAULT_KUBERNETES_VERSION = "1.35"

# Cilium's own rule for `cluster.name` (chart values.yaml, `cluster.name`): at most 32
# characters, lowercase alphanumerics and '-', starting and ending alphanumeric. It is
# stricter than EKS's, and the cluster's name is used for both.
CLUSTER_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$")


class DefaultTags(Section):
    """`aws:defaultTags`, as the AWS provider spells it: {tags: {key: value}}."""

    tags: Annotated[dict[str, str], Field(strict=False)] = Field(
        default_factory=dict, description="Tag keys and values, e.g. {cost-center: platform}."
    )


class StackConfig(Section):
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
        if region not in eks_regions():
            known = sorted(eks_regions())  # sorted: of eu-west-1/2/3, eu-west-9 is taken for -1
            guess = closest(region, known)
            if guess:  # a typo: the closest region, and nothing about the SDK or the lock
                raise refuse(f"{region!r} is not a region with EKS; did you mean {guess}?")
            # Nothing close: the list is the SDK's data, and a region opened after this
            # botocore release is the one case where the SDK, not the value, is wrong.
            raise refuse(
                f"{region!r} is not a region with EKS (e.g. {', '.join(known[:4])}, ...); a "
                "region AWS opened after this AWS SDK (botocore "
                f"{importlib.metadata.version('botocore')}) is missing until `make upgrade`"
            )
        return region

    @field_validator("cluster_name", mode="after")
    @classmethod
    def _cilium_cluster_name(cls, name: str, info: ValidationInfo) -> str:
        if not CLUSTER_NAME_RE.match(name) and name == (info.context or {}).get("derived"):
            raise refuse(
                f"not set, and the default derived from the stack name, '{name}', is not a "
                "valid Cilium cluster name (at most 32 characters of a-z, 0-9 and '-', "
                "starting and ending with a letter or digit); set clusterName explicitly"
            )
        if not CLUSTER_NAME_RE.match(name):
            raise refuse(
                f"{name!r} is not allowed; use at most 32 characters of a-z, 0-9 and '-', "
                "starting and ending with a letter or digit (Cilium's cluster.name rule)"
            )
        return name

    @property
    def dns_suffix(self) -> str:
        """The partition's DNS suffix (amazonaws.com, amazonaws.com.cn), from botocore."""
        endpoints = json.loads(botocore_data("endpoints.json").read_text())
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
