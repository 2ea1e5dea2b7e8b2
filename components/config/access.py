"""The `access` section: who may use the cluster besides its creator, and from where
(components/cluster.py makes the access entries and the endpoint's allow-list).

Imports only the config package's own field types (never a component).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, ValidationInfo, field_validator

from components.config.fields import Section, no_repeats, not_empty, refuse

IAM_PRINCIPAL_ARN_RE = re.compile(r"^arn:aws(-cn|-us-gov)?:iam::\d{12}:(role|user)/[\w+=,.@/-]+$")
STS_SESSION_ARN_RE = re.compile(r"^arn:aws(-cn|-us-gov)?:sts::(\d{12}):assumed-role/([\w+=,.@-]+)/")
# An IAM managed policy, what a permissions boundary is (IAM User Guide, "Permissions
# boundaries for IAM entities": a customer or an AWS managed policy; "IAM identifiers":
# arn:PARTITION:iam::ACCOUNT:policy/PATH/NAME, ACCOUNT "aws" for AWS's own).
MANAGED_POLICY_ARN_RE = re.compile(
    r"^arn:aws(-cn|-us-gov)?:iam::(\d{12}|aws):policy/[\w+=,.@-]+(/[\w+=,.@-]+)*$"
)


def _ipv4_cidr(value: Any) -> str:
    try:
        if not isinstance(value, str) or "/" not in value:  # EKS wants 203.0.113.7/32
            raise ValueError(value)
        return str(ipaddress.IPv4Network(value, strict=True))
    except ValueError:
        raise refuse(f"{value!r} is not an IPv4 CIDR (e.g. 203.0.113.0/24)") from None


def _principal_arn(arn: Any) -> str:
    """An IAM role or user ARN for an EKS access entry (which takes no STS session ARN)."""
    session = STS_SESSION_ARN_RE.match(arn) if isinstance(arn, str) else None
    if session:
        partition, account, role = session.group(1) or "", session.group(2), session.group(3)
        raise refuse(
            f"{arn!r} is an STS session of a role, which EKS access entries do not take; use "
            f"the role's IAM ARN: arn:aws{partition}:iam::{account}:role/{role} (with its "
            f"path, if it has one: `aws iam get-role --role-name {role} --query Role.Arn`)"
        )
    if not isinstance(arn, str) or not IAM_PRINCIPAL_ARN_RE.match(arn):
        raise refuse(
            f"{arn!r} is not an IAM role or user ARN "
            "(arn:aws:iam::123456789012:role/NAME or ...:user/NAME)"
        )
    return arn


def _boundary_arn(arn: Any) -> str:
    if not isinstance(arn, str) or not MANAGED_POLICY_ARN_RE.match(arn):
        raise refuse(
            f"{arn!r} is not the ARN of an IAM managed policy "
            "(arn:aws:iam::123456789012:policy/NAME); set the boundary an administrator "
            "created once per account from docs/iam/boundary-policy.json with the account "
            "filled in, e.g. arn:aws:iam::123456789012:policy/cilium-eks-boundary "
            '(docs/ci-iam.md, "2. The permissions boundary")'
        )
    return arn


PrincipalArns = Annotated[
    tuple[Annotated[str, BeforeValidator(_principal_arn)], ...],
    Field(strict=False),
    AfterValidator(no_repeats),
]


class AccessConfig(Section):
    """Who may use the cluster besides its creator (components/cluster.py)."""

    admin_principal_arns: PrincipalArns = Field(
        default=(), description="IAM role/user ARNs given cluster admin (EKS access entries)."
    )
    viewer_principal_arns: PrincipalArns = Field(
        default=(),
        description="IAM role/user ARNs given read-only access (AmazonEKSViewPolicy: "
        "no Secrets), e.g. the CI preview role.",
    )
    public_access_cidrs: Annotated[
        tuple[Annotated[str, BeforeValidator(_ipv4_cidr)], ...],
        Field(strict=False),
        AfterValidator(not_empty),
    ] = Field(
        default=("0.0.0.0/0",),
        description="IPv4 CIDRs allowed to reach the public API endpoint; the machine "
        "running `pulumi up` must be inside.",
    )
    permissions_boundary_arn: Annotated[str, BeforeValidator(_boundary_arn)] | None = Field(
        default=None,
        description="IAM managed policy ARN put as permissions boundary on every IAM role "
        "the program creates (cluster, nodes, cilium-operator, Karpenter); required when "
        "the deploy role may create roles only with it (docs/ci-iam.md). Unset: no boundary.",
    )

    @field_validator("viewer_principal_arns", mode="after")
    @classmethod
    def _one_entry_each(cls, viewers: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        both = sorted(set(info.data.get("admin_principal_arns", ())) & set(viewers))
        if both:
            raise refuse(
                f"{', '.join(both)} also in access.adminPrincipalArns; EKS allows one access "
                "entry per principal: list each in one of them"
            )
        return viewers
