"""The IAM documents the tests read (docs/iam/*.json, with their placeholders filled, and
the policies the program declares) and a small evaluator of identity policies.

The evaluator follows AWS's policy evaluation logic for one principal's identity policy
(IAM user guide, "Policy evaluation logic"; condition operators from "IAM JSON policy
elements: Condition operators"): an explicit Deny wins, else any Allow, else denied. A key
the request does not carry fails every positive operator and satisfies every negated one
("...IfExists" is satisfied by an absent key, `Null` tests presence). Action names match
case-insensitively, resources case-sensitively, `*` and `?` as wildcards. What it leaves
out (NotAction, NotResource, policy variables, date and IP operators) no document here uses;
`evaluate` refuses such a statement rather than guess.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from tests.harness import ROOT, Graph

IAM = ROOT / "docs" / "iam"
ACCOUNT = "123456789012"  # the mocks' account (tests/mock_run.py), also filled in below
# Plausible values for the documents' placeholders (docs/ci-iam.md names them).
PLACEHOLDERS = {"ACCOUNT_ID": ACCOUNT, "STATE_BUCKET": "cilium-eks-state", "ORG/REPO": "org/repo"}
BOUNDARY_NAME = "cilium-eks-boundary"
BOUNDARY_ARN = f"arn:aws:iam::{ACCOUNT}:policy/{BOUNDARY_NAME}"
# The identity policies among the documents (the trust policies are resource policies).
IDENTITY_DOCUMENTS = ("boundary-policy.json", "deploy-policy.json", "preview-policy.json")

Context = Mapping[str, str | Sequence[str]]

# What each provider function the program calls asks AWS (an invoke's token -> the IAM
# action of the API call behind it; None: no permission needed).
INVOKE_ACTIONS = {
    "aws:index/getAvailabilityZones:getAvailabilityZones": "ec2:DescribeAvailabilityZones",
    "aws:ec2/getInstanceType:getInstanceType": "ec2:DescribeInstanceTypes",
    "aws:ec2/getVpcEndpointService:getVpcEndpointService": "ec2:DescribeVpcEndpointServices",
    "aws:eks/getAddonVersion:getAddonVersion": "eks:DescribeAddonVersions",
    "aws:eks/getClusters:getClusters": "eks:ListClusters",
    "aws:eks/getCluster:getCluster": "eks:DescribeCluster",
    "aws:cloudwatch/getLogGroups:getLogGroups": "logs:DescribeLogGroups",
    "aws:index/getPartition:getPartition": None,
    "aws:index/getCallerIdentity:getCallerIdentity": None,  # sts: needs no permission
}
# What the preflight asks AWS about a live cluster (scripts/preflight.py), before every
# preview, up and destroy, with the role of the job.
# What the preflight asks AWS (scripts/account.py; tests/test_preflight.py checks this is
# every `aws` call it makes): each action with what it acts on (ACCOUNT filled in).
PREFLIGHT_ACTIONS = {
    "eks:DescribeCluster": "arn:aws:eks:{region}:{account}:cluster/{cluster}",
    "eks:ListAccessEntries": "arn:aws:eks:{region}:{account}:cluster/{cluster}",
    # EC2's Spot service-linked role (IAM user guide: service-linked roles live under
    # role/aws-service-role/<service>/)
    "iam:GetRole": (
        "arn:aws:iam::{account}:role/aws-service-role/spot.amazonaws.com/AWSServiceRoleForEC2Spot"
    ),
}


def filled(name: str) -> str:
    text = (IAM / name).read_text()
    for placeholder, value in PLACEHOLDERS.items():
        text = text.replace(placeholder, value)
    return text


def document(name: str) -> dict[str, Any]:
    """A document under docs/iam with its placeholders filled."""
    return json.loads(filled(name))


def as_list(value: str | Sequence[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def program_policies(graph: Graph) -> dict[str, dict[str, Any]]:
    """Every inline identity policy the program declares (aws.iam.RolePolicy), by URN
    name: the operator's, Karpenter's controller's, the nodes' image-cache policy."""
    return {
        f"{r.parent.split('::')[-1] if r.parent else ''}/{r.name}": json.loads(r.inputs["policy"])
        for r in graph.of_type("aws:iam/rolePolicy:RolePolicy")
    }


# --- evaluation ----------------------------------------------------------------------------


@functools.cache
def _wildcard(pattern: str, case: bool) -> re.Pattern[str]:
    regex = re.escape(pattern).replace(r"\*", ".*").replace(r"\?", ".")
    return re.compile(regex, 0 if case else re.IGNORECASE)


def _like(pattern: str, value: str, case: bool = True) -> bool:
    """IAM's wildcard match: `*` any run of characters (none too), `?` any one."""
    return _wildcard(pattern, case).fullmatch(value) is not None


def _values_match(operator: str, wanted: list[str], have: list[str]) -> bool:
    """One condition operator (without ForAll/ForAny/IfExists) on present values."""
    base = operator.removesuffix("IgnoreCase")
    case = not operator.endswith("IgnoreCase")
    negated = "Not" in base
    if base.startswith(("StringEquals", "StringNotEquals", "ArnEquals", "ArnNotEquals")):
        hit = any(
            (w == h if case else w.lower() == h.lower()) if not base.startswith("Arn") else
            _like(w, h)
            for w in wanted for h in have
        )  # fmt: skip
    elif base.startswith(("StringLike", "StringNotLike", "ArnLike", "ArnNotLike")):
        hit = any(_like(w, h, case) for w in wanted for h in have)
    elif base == "Bool":
        hit = any(w.lower() == h.lower() for w in wanted for h in have)
    elif base.startswith("Numeric"):
        op = base.removeprefix("Numeric")
        compare = {
            "Equals": float.__eq__, "NotEquals": float.__ne__, "LessThan": float.__lt__,
            "LessThanEquals": float.__le__, "GreaterThan": float.__gt__,
            "GreaterThanEquals": float.__ge__,
        }[op]  # fmt: skip
        return any(compare(float(h), float(w)) for w in wanted for h in have)
    else:
        raise ValueError(f"condition operator {operator} is not evaluated here")
    return not hit if negated else hit


def condition_holds(condition: Mapping[str, Mapping[str, Any]], context: Context) -> bool:
    for operator, keys in condition.items():
        for key, wanted_raw in keys.items():
            wanted = [str(w) for w in as_list(wanted_raw)]
            present = key in context
            have = as_list(context[key]) if present else []
            if operator == "Null":
                if (not present) != (wanted[0].lower() == "true"):
                    return False
                continue
            qualifier, _, op = operator.rpartition(":")
            if_exists = op.endswith("IfExists")
            op = op.removesuffix("IfExists")
            if not present:
                if if_exists or "Not" in op or qualifier == "ForAllValues":
                    continue
                return False
            if qualifier == "ForAllValues":
                ok = all(_values_match(op, wanted, [h]) for h in have)
            elif qualifier == "ForAnyValue":
                ok = any(_values_match(op, wanted, [h]) for h in have)
            else:
                ok = _values_match(op, wanted, have)
            if not ok:
                return False
    return True


def statement_applies(
    statement: Mapping[str, Any], action: str, resource: str, context: Context
) -> bool:
    unsupported = {"NotAction", "NotResource", "NotPrincipal"} & set(statement)
    if unsupported:
        raise ValueError(f"{sorted(unsupported)} is not evaluated here")
    if not any(_like(a, action, case=False) for a in as_list(statement["Action"])):
        return False
    if not any(_like(r, resource) for r in as_list(statement.get("Resource", "*"))):
        return False
    return condition_holds(statement.get("Condition", {}), context)


def evaluate(policy: Mapping[str, Any], action: str, resource: str, context: Context) -> str:
    """ "Deny" (explicit), "Allow", or "ImplicitDeny"."""
    applies = [s for s in policy["Statement"] if statement_applies(s, action, resource, context)]
    if any(s["Effect"] == "Deny" for s in applies):
        return "Deny"
    return "Allow" if applies else "ImplicitDeny"


def allows(policy: Mapping[str, Any], action: str, resource: str, context: Context) -> bool:
    return evaluate(policy, action, resource, context) == "Allow"


def allowing(
    policy: Mapping[str, Any], action: str, resource: str, context: Context
) -> list[dict[str, Any]]:
    """The Allow statements that let the call through."""
    return [
        s
        for s in policy["Statement"]
        if s["Effect"] == "Allow" and statement_applies(s, action, resource, context)
    ]


def condition_keys(statement: Mapping[str, Any]) -> set[str]:
    return {key for keys in statement.get("Condition", {}).values() for key in keys}
