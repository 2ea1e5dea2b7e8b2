"""What the preflight asks of the AWS account itself, before Pulumi runs: may the caller use
the cluster (its EKS access entry), and does the account hold what AWS creates once per
account and the stack needs (EC2's Spot service-linked role, for Karpenter's spot nodes).

Each check calls the AWS CLI with the caller's credentials; a call the caller may not make
is said and skipped, never guessed. Each `aws` call here needs its IAM action in both CI
roles' policies (docs/iam; tests/iam.py PREFLIGHT_ACTIONS, checked against what the
preflight calls in tests/test_preflight.py).

Imports the config package and scripts/pulumi_session.py (its `run`), nothing of the
program's components.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

from components.config import StackConfig
from scripts.pulumi_session import run

# EC2's service-linked role for Spot: EC2 needs it to launch a spot instance, and an
# account has it only once someone asked for spot capacity (EC2 user guide, "Service-linked
# role for Spot Instance requests"). Without it Karpenter's spot launches fail while its
# NodePool reports Ready (Karpenter troubleshooting guide, "Missing Service Linked Role").
# Account-wide and shared by every stack: made once by an administrator, never by a stack
# (whose destroy would take it from the others).
SPOT_ROLE = "AWSServiceRoleForEC2Spot"
SPOT_SERVICE = "spot.amazonaws.com"

# How a check says it skipped something it may not read (the preflight's own `warn`).
Warn = Callable[[str], None]


def role_of(arn: str) -> str:
    """The IAM principal EKS access entries name for a caller: a role session is its role."""
    return re.sub(
        r"^arn:([^:]+):sts::(\d+):assumed-role/([^/]+)/.*$", r"arn:\1:iam::\2:role/\3", arn
    )


def is_listed(principal: str, arns: Sequence[str]) -> bool:
    """Whether one of `arns` names the principal; a role's ARN may carry a path
    (role/ci/Deployer) that its session's ARN leaves out."""
    for arn in arns:
        if arn == principal:
            return True
        if ":role/" in principal:
            head, name = principal.split(":role/", 1)
            if arn.startswith(f"{head}:role/") and arn.endswith(f"/{name}"):
                return True
    return False


def access_findings(
    env: Mapping[str, str],
    cfg: StackConfig,
    cluster: str,
    principal: str,
    action: str,
    warn: Warn,
) -> list[str]:
    described = run(
        env, "aws", "eks", "describe-cluster", "--name", cluster, "--region", cfg.region
    )
    if described.returncode != 0:
        if "ResourceNotFoundException" not in described.stderr:
            warn(f"could not look up cluster {cluster} in {cfg.region} "
                 f"({described.stderr.strip()}); skipping the access checks")  # fmt: skip
            return []
        # No cluster yet: this run creates it, and its creator becomes admin on its own.
        listed = [*cfg.access.admin_principal_arns, *cfg.access.viewer_principal_arns]
        if action == "up" and is_listed(principal, listed):
            return [
                f"access.adminPrincipalArns: you ({principal}) are about to create cluster "
                f"{cluster} and so become its admin (EKS access entry of the creator); listing "
                "yourself as well would fail the create with 409 ResourceInUseException. "
                "Remove the ARN from the config, then run make up again."
            ]
        return []
    entries = run(
        env, "aws", "eks", "list-access-entries", "--cluster-name", cluster, "--region", cfg.region,
        "--query", "accessEntries", "--output", "text",
    )  # fmt: skip
    if entries.returncode != 0:
        warn(f"could not list the access entries of {cluster} ({entries.stderr.strip()}); "
             "skipping the access check")  # fmt: skip
        return []
    if not is_listed(principal, entries.stdout.split()):
        return [
            f"access.adminPrincipalArns: you ({principal}) have no EKS access entry on cluster "
            f"{cluster}: every Kubernetes call of this {action} would fail with Unauthorized. "
            "Admins are the identity that created the cluster and access.adminPrincipalArns; "
            "access.viewerPrincipalArns may preview. Fix: an admin adds you and deploys, e.g. "
            f"pulumi config set --path 'access.adminPrincipalArns[0]' {principal} "
            "(viewerPrincipalArns for a preview-only role), then make up."
        ]
    return []


def spot_findings(env: Mapping[str, str], cfg: StackConfig, action: str, warn: Warn) -> list[str]:
    """With spot among karpenter.capacityTypes, the account must hold EC2's Spot
    service-linked role (SPOT_ROLE); checked with `aws iam get-role`."""
    wants_spot = cfg.karpenter.enabled and "spot" in cfg.karpenter.capacity_types
    if action == "destroy" or not wants_spot:
        return []
    found = run(env, "aws", "iam", "get-role", "--role-name", SPOT_ROLE, "--query", "Role.Arn",
                "--output", "text")  # fmt: skip
    if found.returncode == 0:
        return []
    if "NoSuchEntity" not in found.stderr:
        warn(f"could not look up the {SPOT_ROLE} role ({found.stderr.strip()}); skipping the "
             "spot check")  # fmt: skip
        return []
    return [
        f"karpenter.capacityTypes: spot, but this AWS account has no {SPOT_ROLE}, the "
        "service-linked role EC2 needs to launch spot instances: Karpenter's spot launches "
        "would fail while its NodePool reports Ready. An administrator creates it once per "
        f"account: `aws iam create-service-linked-role --aws-service-name {SPOT_SERVICE}`; "
        "or leave spot out of karpenter.capacityTypes."
    ]
