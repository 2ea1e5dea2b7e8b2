"""IAM identity policies allow no wildcard action and no NotAction
(no-iam-wildcard-actions), wherever a document sits.

Imports pulumi_policy and this package's reading helpers only (never components/).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from pulumi_policy import ReportViolation, ResourceValidationArgs

from .reading import get

# IAM resources whose property holds a policy document, and that property.
IAM_POLICY_PROPS = {
    "aws:iam/policy:Policy": "policy",
    "aws:iam/rolePolicy:RolePolicy": "policy",
    "aws:iam/userPolicy:UserPolicy": "policy",
    "aws:iam/groupPolicy:GroupPolicy": "policy",
}
ROLE_TYPE = "aws:iam/role:Role"
# IAM's action wildcards: any run of characters, and any one character.
ACTION_WILDCARDS = ("*", "?")
DENY = "Deny"


def _statements(document: Any) -> Iterable[Mapping[str, Any]]:
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except ValueError:
            return []  # IAM refuses a document that is not JSON
    statements = get(document, "Statement") or []
    return [statements] if isinstance(statements, Mapping) else statements


def wildcard_actions(document: Any) -> list[str]:
    """Actions a policy document allows through a wildcard (IAM's `*` and `?`), and
    "NotAction" for an allowing statement with NotAction (it allows all but a list).

    A document is a JSON string (whitespace and all) or an object; Statement and Action
    may each be one item or a list. A statement counts as allowing unless its Effect is
    exactly `Deny`: IAM accepts only `Allow` and `Deny`, case-sensitive (IAM User Guide,
    "Effect"), so any other spelling grants nothing, but judging it costs nothing and the
    rule does not rest on IAM's validation.
    """
    found = []
    for stmt in _statements(document):
        if not isinstance(stmt, Mapping) or stmt.get("Effect") == DENY:
            continue
        if "NotAction" in stmt:
            found.append("NotAction")
        actions = stmt.get("Action") or []
        for action in [actions] if isinstance(actions, str) else actions:
            if isinstance(action, str) and any(w in action for w in ACTION_WILDCARDS):
                found.append(action)
    return found


def no_iam_wildcard_actions(args: ResourceValidationArgs, report: ReportViolation):
    """Identity policies in every place a document can sit: managed policies, role, user
    and group inline policies, and a role's `inlinePolicies`."""
    documents = []
    if args.resource_type in IAM_POLICY_PROPS:
        documents.append(args.props.get(IAM_POLICY_PROPS[args.resource_type]))
    if args.resource_type == ROLE_TYPE:
        documents += [get(p, "policy") for p in args.props.get("inlinePolicies") or []]
    for document in documents:
        for action in wildcard_actions(document):
            report(f"IAM policies must not allow wildcard actions; found {action!r}")
