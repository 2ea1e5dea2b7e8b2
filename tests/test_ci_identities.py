"""The CI identities (docs/iam/*.json, docs/ci-iam.md): the deploy role only for the
deploy and destroy jobs on main; the preview role only for pull requests, reading only
what a preview reads."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml
from moto.iam.aws_managed_policies import aws_managed_policies_data

from components.nodes import NODE_POLICIES
from components.teardown import eni_gc_tags
from tests.harness import ROOT, Graph, run_ok
from tests.iam import (
    ACCOUNT,
    BOUNDARY_ARN,
    INVOKE_ACTIONS,
    PREFLIGHT_ACTIONS,
    allows,
    evaluate,
    program_policies,
)
from tests.iam import document as filled_document
from tests.test_iam_calls import CALLS, REGION, Made

IAM = ROOT / "docs" / "iam"
SUB = "token.actions.githubusercontent.com:sub"
AUD = "token.actions.githubusercontent.com:aud"


def document(name: str) -> dict[str, Any]:
    return json.loads((IAM / name).read_text())


def statements(name: str) -> list[dict[str, Any]]:
    return document(name)["Statement"]


def actions(statement: dict[str, Any]) -> list[str]:
    found = statement["Action"]
    return [found] if isinstance(found, str) else found


def workflow(name: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / ".github" / "workflows" / name).read_text())


def test_the_policies_are_where_readme_and_the_ci_page_link_them():
    names = sorted(p.name for p in IAM.glob("*.json"))
    assert names == [
        "boundary-policy.json", "deploy-policy.json", "deploy-trust-policy.json",
        "preview-policy.json", "preview-trust-policy.json",
    ]  # fmt: skip
    page = (ROOT / "docs" / "ci-iam.md").read_text()
    assert all(f"iam/{n}" in page for n in names)
    assert "docs/ci-iam.md" in (ROOT / "README.md").read_text()


# --- trust ----------------------------------------------------------------------------------


def test_the_deploy_role_trusts_only_the_deploy_and_destroy_environments_on_main():
    (statement,) = statements("deploy-trust-policy.json")
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    condition = statement["Condition"]
    # exact subjects: no wildcard could let a branch in
    assert set(condition) == {"StringEquals"}
    subjects = condition["StringEquals"][SUB]
    assert condition["StringEquals"][AUD] == "sts.amazonaws.com"
    # GitHub's default subject for an environment job carries no branch: anyone who can
    # push a branch could run a job in the environment. With the subject customized to
    # repo, context and ref (docs/ci-iam.md), the branch is part of it.
    assert sorted(subjects) == [
        "repo:ORG/REPO:environment:deploy:ref:refs/heads/main",
        "repo:ORG/REPO:environment:destroy:ref:refs/heads/main",
    ]
    # the environments the workflows name
    for name, environment in (("deploy.yml", "deploy"), ("destroy.yml", "destroy")):
        (job,) = workflow(name)["jobs"].values()
        assert job["environment"] == environment


def test_the_preview_role_trusts_only_pull_requests_with_the_customized_subject():
    (statement,) = statements("preview-trust-policy.json")
    condition = statement["Condition"]
    assert condition["StringEquals"] == {AUD: "sts.amazonaws.com"}
    # the subject customization is repository-wide: pull requests' subjects change too
    assert condition["StringLike"] == {SUB: "repo:ORG/REPO:pull_request:ref:refs/pull/*/merge"}
    preview = workflow("pull-request.yml")["jobs"]["preview"]
    assert "environment" not in preview  # else the subject would name it, not pull_request


def test_the_ci_page_sets_the_subject_template_both_trusts_assume():
    page = (ROOT / "docs" / "ci-iam.md").read_text()
    assert re.search(r'"include_claim_keys":\s*\["repo",\s*"context",\s*"ref"\]', page)
    assert '"use_default": false' in page


# --- what each role may do ---------------------------------------------------------------------

# Every feature on, and a cluster that exists: every look-up a preview can make.
EVERYTHING = {
    "network.vpcEndpoints": True,
    "karpenter.enabled": True,
    "cilium.kubeProxyReplacement": False,  # the kube-proxy add-on's version look-up
}
LIVE = {"eksCluster": {"name": "cilium-eks-dev", "vpcId": "vpc-id", "subnetIds": ["s-1", "s-2"]}}
# ... and what the program adopts when it exists: the control plane's retained log group
# (components/cluster.py sets `import_` on it), which a preview reads.
ADOPTED = {**LIVE, "logGroups": ["/aws/eks/cilium-eks-dev/cluster"]}
READ_VERBS = ("Describe", "List", "Get")
LOG_GROUP_ARN = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/eks/cilium-eks-dev/cluster"


def import_reads(graph: Graph) -> set[tuple[str, str]]:
    """(action, resource) of every read a preview of an import makes: the engine reads each
    resource with an import ID through its provider's Read, i.e. the read calls of the
    type's Terraform resource (tests/test_iam_calls.py CALLS, each with its source; for a
    log group, internal/service/logs/group.go resourceGroupRead's DescribeLogGroups, then,
    its @Tags(identifierAttribute="arn"), tags_gen.go listTags' ListTagsForResource on
    the group's ARN)."""
    reads = set()
    for resource in graph.resources:
        if not resource.import_id:
            continue
        assert resource.type in CALLS, f"no calls known for an import of {resource.type}"
        made = Made(resource.type, resource.name, resource.inputs, None)
        for action, on, _ in CALLS[resource.type][1]:
            if action.split(":")[1].startswith(READ_VERBS):
                assert on in ("self", "none"), (resource.type, action, on)
                reads.add((action, made.arn if on == "self" else "*"))
    return reads


@pytest.fixture(scope="module")
def preview_graphs() -> list[Graph]:
    return [run_ok({}, world=LIVE), run_ok(EVERYTHING, world=ADOPTED)]


@pytest.fixture(scope="module")
def preview_calls(preview_graphs) -> set[str]:
    calls = set()
    for graph in preview_graphs:
        for invoke in graph.invokes:
            if invoke["token"].startswith("aws:"):
                assert invoke["token"] in INVOKE_ACTIONS, f"unknown look-up {invoke['token']}"
                calls.add(INVOKE_ACTIONS[invoke["token"]])
        calls |= {action for action, _ in import_reads(graph)}
    return {c for c in calls if c} | set(PREFLIGHT_ACTIONS)


def test_the_preview_role_may_read_exactly_what_a_preview_looks_up(preview_calls):
    allowed = {
        a for s in statements("preview-policy.json") for a in actions(s) if a.split(":")[0] != "s3"
    }
    assert allowed == preview_calls


def test_the_preview_role_may_read_what_the_program_adopts(preview_graphs):
    reads = import_reads(preview_graphs[1])
    assert ("logs:ListTagsForResource", LOG_GROUP_ARN) in reads  # the model sees the import
    preview = filled_document("preview-policy.json")
    assert [(a, r) for a, r in sorted(reads) if not allows(preview, a, r, {})] == []
    # another log group's tags stay out of reach
    other = LOG_GROUP_ARN.replace("/aws/eks/", "/aws/lambda/")
    assert not allows(preview, "logs:ListTagsForResource", other, {})


def test_the_preview_role_may_make_each_preflight_call_on_what_it_reads():
    # the preflight runs before every CI preview, as the preview role (docs/ci-iam.md)
    preview = filled_document("preview-policy.json")
    for action, resource in PREFLIGHT_ACTIONS.items():
        arn = resource.format(region="ap-northeast-2", account=ACCOUNT, cluster="cilium-eks-dev")
        assert allows(preview, action, arn, {}), (action, arn)
    # and no other role: the spot check reads only EC2's Spot service-linked role
    other = f"arn:aws:iam::{ACCOUNT}:role/cilium-eks-operator-1234567"
    assert not allows(preview, "iam:GetRole", other, {})


def test_the_preview_role_reads_nothing_else():
    everything = [(a, s) for s in statements("preview-policy.json") for a in actions(s)]
    assert all(s["Effect"] == "Allow" for _, s in everything)
    for action, _ in everything:
        service, verb = action.split(":")
        assert "*" not in action, action
        assert verb.startswith(("Describe", "List", "Get")), action
        assert service not in ("ssm", "secretsmanager"), action
    # the state: its objects only, never every object in the account
    for action, statement in everything:
        if action == "s3:GetObject":
            assert statement["Resource"] == "arn:aws:s3:::STATE_BUCKET/.pulumi/*"
        if action.startswith("s3:"):
            assert statement["Resource"] != "*"
    assert "ReadOnlyAccess" not in (IAM / "preview-policy.json").read_text()


def test_the_deploy_role_names_every_action_it_may_take():
    for statement in statements("deploy-policy.json"):
        for action in actions(statement):
            verb = action.split(":")[1]
            assert verb != "*" and action != "*", action
            # reads may be by prefix; anything else is named
            if "*" in verb:
                assert verb in ("Describe*",), action


# --- no escalation through the roles the deploy role makes (AWS's permissions-boundary
# delegation: IAM user guide, "Permissions boundaries for IAM entities"; AWS security blog,
# "When and where to use IAM permissions boundaries") ----------------------------------------

DEPLOY = filled_document("deploy-policy.json")
BOUNDARY = filled_document("boundary-policy.json")
ROLE = f"arn:aws:iam::{ACCOUNT}:role/cilium-eks-operator-1234567"
PROJECT = {"aws:ResourceTag/project": "cilium-eks"}
BOUNDED = {**PROJECT, "iam:PermissionsBoundary": BOUNDARY_ARN}
ADMIN = "arn:aws:iam::aws:policy/AdministratorAccess"
OTHER_BOUNDARY = f"arn:aws:iam::{ACCOUNT}:policy/AdministratorAccessBoundary"


def deploy_may(action: str, context: dict, resource: str = ROLE) -> bool:
    return allows(DEPLOY, action, resource, context)


def test_the_deploy_role_creates_roles_only_tagged_and_within_the_boundary():
    tagged = {"aws:RequestTag/project": "cilium-eks", "aws:TagKeys": ["project", "stack"]}
    assert deploy_may("iam:CreateRole", {**tagged, "iam:PermissionsBoundary": BOUNDARY_ARN})
    assert not deploy_may("iam:CreateRole", tagged)  # no boundary
    assert not deploy_may("iam:CreateRole", {**tagged, "iam:PermissionsBoundary": OTHER_BOUNDARY})
    assert not deploy_may("iam:CreateRole", {"iam:PermissionsBoundary": BOUNDARY_ARN})


def test_the_deploy_role_grants_only_to_bounded_roles_of_the_project():
    for action in ("iam:PutRolePolicy", "iam:AttachRolePolicy"):
        policy = {"iam:PolicyARN": "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy"}
        assert deploy_may(action, {**BOUNDED, **policy}), action
        assert not deploy_may(action, {**PROJECT, **policy}), action  # a role without it
        assert not deploy_may(
            action, {**BOUNDED, **policy, **{"iam:PermissionsBoundary": OTHER_BOUNDARY}}
        ), action
        assert not deploy_may(action, {"iam:PermissionsBoundary": BOUNDARY_ARN, **policy})


def test_the_escalation_the_issue_names_is_closed():
    """Create a role tagged project, attach AdministratorAccess, assume it: the role cannot
    be made without the boundary, and AdministratorAccess cannot be attached even within it."""
    assert not deploy_may("iam:CreateRole", {"aws:RequestTag/project": "cilium-eks"})
    assert not deploy_may("iam:AttachRolePolicy", {**BOUNDED, "iam:PolicyARN": ADMIN})
    assert not deploy_may("iam:CreatePolicy", {}, f"arn:aws:iam::{ACCOUNT}:policy/x")
    assert not deploy_may("iam:CreatePolicyVersion", {}, BOUNDARY_ARN)


def test_the_deploy_role_cannot_reach_the_boundary_through_a_role_it_makes():
    """The boundary is what a role the deploy role makes may do; the deploy role cannot
    become one. In the same account a trust policy naming the deploy role would let it
    assume the role without any permission of its own (IAM user guide, "Policy evaluation
    for requests within a single account"), and the deploy role writes trust policies
    (iam:CreateRole, iam:UpdateAssumeRolePolicy): an explicit deny of sts:AssumeRole wins
    over any trust policy. Nor can it register an OIDC issuer of its choosing and make a
    role trusting that: only an EKS cluster's issuer (oidc.eks.<region>.amazonaws.com),
    which is what pulumi-eks registers (tests/test_iam_calls.py EKS_ISSUER)."""
    for action in ("sts:AssumeRole", "sts:TagSession"):
        assert evaluate(DEPLOY, action, ROLE, BOUNDED) == "Deny", action
    # a trust policy may change only on a role within the boundary
    assert not deploy_may("iam:UpdateAssumeRolePolicy", PROJECT)
    assert deploy_may("iam:UpdateAssumeRolePolicy", BOUNDED)
    tagged = {"aws:RequestTag/project": "cilium-eks"}
    provider = f"arn:aws:iam::{ACCOUNT}:oidc-provider/"
    eks = "oidc.eks.ap-northeast-2.amazonaws.com/id/0123456789ABCDEF0123456789ABCDEF"
    assert deploy_may("iam:CreateOpenIDConnectProvider", tagged, provider + eks)
    for issuer in (
        "token.actions.githubusercontent.com",
        "issuer.example.com/id/x",
        # a host of one's own, with a path that spells EKS's: `*` in an ARN spans "/"
        "oidc.eks.example.com/x.amazonaws.com/id/y",
    ):
        assert not deploy_may("iam:CreateOpenIDConnectProvider", tagged, provider + issuer)
    # nor change one that is not the project's
    assert not deploy_may("iam:DeleteOpenIDConnectProvider", {}, provider + eks)


def test_the_deploy_jobs_never_assume_a_role_with_the_deploy_role():
    """The deny costs nothing: the jobs get the deploy role's credentials from GitHub's OIDC
    token (AssumeRoleWithWebIdentity, which the role's trust policy governs, not its
    permissions), with no role chained after it, and nothing the program runs assumes a
    role (the kubeconfig's `aws eks get-token` presigns sts:GetCallerIdentity)."""
    for name in ("deploy.yml", "destroy.yml"):
        (job,) = workflow(name)["jobs"].values()
        logins = [s for s in job["steps"] if "configure-aws-credentials" in s.get("uses", "")]
        assert len(logins) == 1 and "role-chaining" not in logins[0]["with"], name
        assert job["permissions"]["id-token"] == "write", name
    # boto3's assume_role, the CLI's, a kubeconfig that assumes a role (pulumi-eks's
    # provider_credential_opts puts --role-arn into `aws eks get-token`)
    calls = re.compile(r"\.assume_role\(|sts assume-role|--role-arn|provider_credential_opts")
    sources = [*ROOT.glob("components/**/*.py"), *ROOT.glob("scripts/*.*"), ROOT / "__main__.py"]
    assert [p for p in sources if calls.search(p.read_text())] == []


def test_the_deploy_role_cannot_set_remove_or_replace_a_boundary_nor_edit_it():
    """Not even the boundary onto a role without one: the boundary is what marks a role as
    one the deploy role made (CreateRole only with it), and every write on a role needs it
    (test_tagging_a_role_into_reach_gains_no_write_on_it)."""
    for boundary in (BOUNDARY_ARN, OTHER_BOUNDARY):
        context = {**PROJECT, "iam:PermissionsBoundary": boundary}
        for action in ("iam:PutRolePermissionsBoundary", "iam:DeleteRolePermissionsBoundary"):
            assert evaluate(DEPLOY, action, ROLE, context) == "Deny", (action, boundary)
    for action in ("iam:CreatePolicyVersion", "iam:DeletePolicy", "iam:DeletePolicyVersion",
                   "iam:SetDefaultPolicyVersion", "iam:TagPolicy", "iam:UntagPolicy"):  # fmt: skip
        assert evaluate(DEPLOY, action, BOUNDARY_ARN, {}) == "Deny", action


# The AWS-managed policies the program attaches: the node roles' (components/nodes.py
# NODE_POLICIES), and the one pulumi-eks attaches to the cluster's service role it makes
# when it is handed none (pulumi-eks nodejs/eks/cluster/cluster.ts: managedPolicies =
# ["AmazonEKSClusterPolicy"], plus four more only with autoMode, off here).
PULUMI_EKS_SERVICE_ROLE_POLICIES = ("AmazonEKSClusterPolicy",)


def attached_policy_arns() -> set[str]:
    graph = run_ok(EVERYTHING)
    found = {
        r.inputs["policyArn"]
        for r in graph.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    }
    if "serviceRole" not in graph.one("eks:index:Cluster").inputs:
        found |= {f"arn:aws:iam::aws:policy/{p}" for p in PULUMI_EKS_SERVICE_ROLE_POLICIES}
    return found


def test_tagging_a_role_into_reach_gains_no_write_on_it():
    """IAM authorizes the tags CreateRole carries as iam:TagRole on the role being made, and
    no condition tells that role from one that exists: the deploy role may tag ANY role
    project=cilium-eks. So the project's tag marks no role as the deploy role's: every write
    on a role also needs the boundary on it, which only CreateRole puts there (above)."""
    tagging = {"aws:RequestTag/project": "cilium-eks", "aws:TagKeys": ["project"]}
    assert deploy_may("iam:TagRole", tagging, f"arn:aws:iam::{ACCOUNT}:role/another-teams")
    policy = {"iam:PolicyARN": "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy"}
    writes = ("iam:AttachRolePolicy", "iam:DeleteRole", "iam:DeleteRolePolicy",
              "iam:DetachRolePolicy", "iam:PutRolePolicy", "iam:UpdateAssumeRolePolicy",
              "iam:UpdateRoleDescription")  # fmt: skip
    for action in writes:
        assert deploy_may(action, {**BOUNDED, **policy}), action
        assert not deploy_may(action, {**PROJECT, **policy}), action  # tagged, unbounded
    # What such a role still serves for: being passed (iam:PassRole knows no boundary key),
    # the route docs/ci-iam.md names ("What it still can").
    assert deploy_may("iam:PassRole", {**PROJECT, "iam:PassedToService": "eks.amazonaws.com"})


def test_the_deploy_role_attaches_exactly_the_aws_policies_the_program_attaches():
    (statement,) = [s for s in DEPLOY["Statement"] if "iam:AttachRolePolicy" in actions(s)
                    and s["Effect"] == "Allow"]  # fmt: skip
    listed = statement["Condition"]["StringEquals"]["iam:PolicyARN"]
    assert sorted(listed) == sorted(attached_policy_arns())
    assert set(NODE_POLICIES) <= {arn.rsplit("/", 1)[1] for arn in listed}


def test_the_deploy_role_passes_the_projects_roles_to_eks_only():
    """To EKS: the cluster's service role and the node group's role. Karpenter passes its
    node role to EC2 itself, with its own role (components/karpenter.py)."""
    assert deploy_may("iam:PassRole", {**PROJECT, "iam:PassedToService": "eks.amazonaws.com"})
    assert not deploy_may("iam:PassRole", {**PROJECT, "iam:PassedToService": "ec2.amazonaws.com"})
    assert not deploy_may(
        "iam:PassRole", {**PROJECT, "iam:PassedToService": "lambda.amazonaws.com"}
    )
    assert not deploy_may("iam:PassRole", {"iam:PassedToService": "eks.amazonaws.com"})


# --- the boundary: what every role the program makes may do at most ---------------------------


def test_the_boundary_holds_every_aws_policy_the_program_attaches_whole():
    """Effective permissions are the intersection of a role's policies and its boundary:
    each action of each AWS-managed policy attached (moto ships AWS's documents, with their
    versions) must pass the boundary under the policy's own condition, on any resource."""
    documents = json.loads(aws_managed_policies_data)
    for arn in sorted(attached_policy_arns()):
        name = arn.rsplit("/", 1)[1]
        managed = documents[name]["Document"]
        for statement in managed["Statement"]:
            context = satisfying(statement.get("Condition", {}))
            for action in actions(statement):
                assert allows(BOUNDARY, action, "*", context) or any(
                    s.get("Condition", {}) == statement.get("Condition", {})
                    and action in actions(s) for s in BOUNDARY["Statement"]
                ), (name, action)  # fmt: skip


def satisfying(condition: dict) -> dict:
    """A request context that meets a condition block (first value of each key; a
    wildcard value stands for itself)."""
    context: dict = {}
    for operator, keys in condition.items():
        for key, wanted in keys.items():
            value = wanted if isinstance(wanted, str) else wanted[0]
            context[key] = value.replace("*", "x") if "Like" in operator else value
            if operator.startswith("ForAllValues"):
                context[key] = [value]
    return context


def concrete(arn: str) -> str:
    """A resource an ARN pattern of the program's policies stands for, in this account."""
    if arn == "*":
        return arn
    parts = arn.split(":", 5)
    defaults = [None, "aws", None, "ap-northeast-2", ACCOUNT]
    for i, default in enumerate(defaults):
        if default and parts[i] == "*":
            parts[i] = default
    parts[5] = parts[5].replace("*", "x")
    return ":".join(parts)


def test_the_boundary_holds_every_policy_the_program_declares():
    """Each statement of the operator's, Karpenter's and the image cache's policies, on a
    resource it names, under its own conditions, passes the boundary. Cilium's ENIs carry
    both GC tags (components/teardown.py eni_gc_tags), whichever the policy names, and the
    stack's tags (eni.eniTags, tests/test_cilium.py); the role Karpenter passes and the
    queue it reads are the program's, tagged like every resource of the stack."""
    gc_tags = {f"aws:ResourceTag/{k}": v for k, v in eni_gc_tags("cilium-eks-dev").items()}
    for name, policy in program_policies(run_ok(EVERYTHING)).items():
        for statement in policy["Statement"]:
            context = satisfying(statement.get("Condition", {}))
            if any(k in context for k in gc_tags):
                context |= gc_tags | PROJECT
            resources = statement["Resource"]
            for resource in [resources] if isinstance(resources, str) else resources:
                for action in actions(statement):
                    stacks = action == "iam:PassRole" or action.startswith("sqs:")
                    call = (action, concrete(resource), {**context, **(PROJECT if stacks else {})})
                    assert allows(BOUNDARY, *call), (name, *call)


def test_the_boundary_lets_no_role_grant_itself_more():
    """Nothing in the boundary makes or changes a role, a user or a policy, touches a
    boundary, or assumes a role: a role within it stays within it. Karpenter's instance
    profiles and iam:PassRole (only the project's roles, only to EC2) are its IAM writes."""
    iam_writes = {
        a for s in BOUNDARY["Statement"] for a in actions(s)
        if a.startswith(("iam:", "sts:")) and not a.split(":")[1].startswith(("Get", "List"))
    }  # fmt: skip
    assert iam_writes == {
        "iam:AddRoleToInstanceProfile", "iam:CreateInstanceProfile", "iam:DeleteInstanceProfile",
        "iam:RemoveRoleFromInstanceProfile", "iam:TagInstanceProfile", "iam:PassRole",
        "iam:CreateServiceLinkedRole",
    }  # fmt: skip
    assert not allows(BOUNDARY, "iam:PassRole", ROLE, {"iam:PassedToService": "ec2.amazonaws.com"})
    assert not allows(BOUNDARY, "iam:CreateServiceLinkedRole", "*",
                      {"iam:AWSServiceName": "spot.amazonaws.com"})  # fmt: skip
    assert not any(a.split(":")[1] == "*" for s in BOUNDARY["Statement"] for a in actions(s))


# What a role within the boundary may delete or take, each only on what carries the tag
# that makes it Cilium's or Karpenter's (cluster-agnostic: the boundary serves every
# cluster of the account). Cilium's ENIs carry its GC tags and the stack's (eni.eniTags);
# Karpenter's nodes and templates its nodepool tag, its instance profiles its
# ec2nodeclass tag (upstream's conditions, components/policies/karpenter-controller.json);
# its interruption queue the stack's tags.
EC2 = f"arn:aws:ec2:ap-northeast-2:{ACCOUNT}"
NODEPOOL = {"aws:ResourceTag/karpenter.sh/nodepool": "default"}
NODECLASS = {"aws:ResourceTag/karpenter.k8s.aws/ec2nodeclass": "default"}
PROFILE = f"arn:aws:iam::{ACCOUNT}:instance-profile/cilium-eks-dev_123"
QUEUE = f"arn:aws:sqs:ap-northeast-2:{ACCOUNT}:cilium-eks-dev"
BOUNDED_BY_TAGS = {
    "ec2:TerminateInstances": (f"{EC2}:instance/i-1", NODEPOOL),
    "ec2:DeleteLaunchTemplate": (f"{EC2}:launch-template/lt-1", NODEPOOL),
    "iam:DeleteInstanceProfile": (PROFILE, NODECLASS),
    "iam:RemoveRoleFromInstanceProfile": (PROFILE, NODECLASS),
    "iam:AddRoleToInstanceProfile": (PROFILE, NODECLASS),
    "iam:TagInstanceProfile": (PROFILE, NODECLASS),
    "sqs:DeleteMessage": (QUEUE, PROJECT),
    "sqs:ReceiveMessage": (QUEUE, PROJECT),
    "ec2:DeleteNetworkInterface": (
        f"{EC2}:network-interface/eni-1",
        {**PROJECT, "aws:ResourceTag/io.cilium/cilium-managed": "true"},
    ),
}


@pytest.mark.parametrize("action", sorted(BOUNDED_BY_TAGS))
def test_what_a_role_within_the_boundary_deletes_carries_the_tags_that_make_it_its_own(action):
    resource, tags = BOUNDED_BY_TAGS[action]
    assert allows(BOUNDARY, action, resource, tags)
    for key in tags:  # every tag is needed: without any one, refused
        assert not allows(BOUNDARY, action, resource, {k: v for k, v in tags.items() if k != key})


def ec2_tag_conditions(policy: dict[str, Any]) -> set[str]:
    """The tag keys the Allow statements on EC2 read on what they act on."""
    return {
        key.split("/", 1)[1]
        for s in policy["Statement"] if s["Effect"] == "Allow"
        and any(a.startswith("ec2:") for a in actions(s))
        for keys in s.get("Condition", {}).values() for key in keys
        if key.startswith(("aws:ResourceTag/", "ec2:ResourceTag/"))
    }  # fmt: skip


def test_no_role_within_the_boundary_can_tag_an_ec2_resource_into_reach():
    """A tag a condition reads makes a resource the project's, Cilium's or Karpenter's: a
    role within the boundary (AmazonEKSClusterPolicy gives it ec2:CreateTags on "*") may put
    such a tag only on what it creates (ec2:CreateAction: Cilium's ENIs, Karpenter's nodes
    and templates carry theirs from their create), never on what exists; else it could tag
    another VPC project=cilium-eks for the deploy role to delete. Keys with the aws: prefix
    are AWS's own, which no one can set (IAM user guide, "Tagging AWS resources")."""
    (deny,) = [s for s in BOUNDARY["Statement"] if s["Sid"] == "NoOwnershipTagsAfterTheFact"]
    denied = set(deny["Condition"]["ForAnyValue:StringEquals"]["aws:TagKeys"])
    read = ec2_tag_conditions(DEPLOY) | ec2_tag_conditions(BOUNDARY)
    assert {k for k in read if not k.startswith("aws:")} <= denied
    # and the operator's own: its cluster's name on its ENIs (components/cilium.py)
    assert "io.cilium/cluster-name" in denied
    vpc, eni = f"{EC2}:vpc/vpc-1", f"{EC2}:network-interface/eni-1"
    for key in sorted(denied):
        adding = {"aws:TagKeys": [key], f"aws:RequestTag/{key}": "x"}
        assert evaluate(BOUNDARY, "ec2:CreateTags", vpc, adding) == "Deny", key
        creating = {**adding, "ec2:CreateAction": "CreateNetworkInterface"}
        assert allows(BOUNDARY, "ec2:CreateTags", eni, creating), key
    # Karpenter names its nodes after launch (upstream's AllowScopedResourceTagging keys)
    naming = {"aws:TagKeys": ["Name", "karpenter.sh/nodeclaim", "eks:eks-cluster-name"]}
    assert allows(BOUNDARY, "ec2:CreateTags", f"{EC2}:instance/i-1", naming)


def test_no_role_within_the_boundary_can_rewrite_an_instances_user_data():
    """AmazonEKSClusterPolicy gives ec2:ModifyInstanceAttribute on every instance. User data
    runs as root at an instance's next start, under the instance's role: a role within the
    boundary (the cluster-admin route, docs/ci-iam.md) that could rewrite a stopped
    instance's would act as that instance's role. Denied in both forms of the request: the
    attribute named (`Attribute=userData`, which ec2:Attribute carries) or its value set
    (`UserData`, which ec2:Attribute/UserData carries: EC2 user guide, "ec2:Attribute
    condition key"). The other attributes stay (AmazonEKSClusterPolicy's, whose use by EKS
    is not documented: the cloud provider sets an instance's source/destination check, and
    once set its security groups, groupSet); docs/ci-iam.md names them."""
    instance = f"{EC2}:instance/i-1"
    for request in ({"ec2:Attribute": "userData"}, {"ec2:Attribute": "UserData"},
                    {"ec2:Attribute/UserData": "IyEvYmluL3NoCg=="}):  # fmt: skip
        assert evaluate(BOUNDARY, "ec2:ModifyInstanceAttribute", instance, request) == "Deny"
    for attribute in ("groupSet", "sourceDestCheck"):
        request = {"ec2:Attribute": attribute}
        assert allows(BOUNDARY, "ec2:ModifyInstanceAttribute", instance, request), attribute
    page = (ROOT / "docs" / "ci-iam.md").read_text()
    assert "user data" in page and "groupSet" in page


def test_the_documents_fit_iams_size_limits():
    """IAM quotas (IAM user guide, "IAM and AWS STS quotas"), whitespace not counted: a
    managed policy (the boundary) 6,144 characters, a role's inline policies together
    10,240 (the deploy and the preview role have one each)."""

    def size(name: str) -> int:
        return len(re.sub(r"\s", "", (IAM / name).read_text()))

    assert size("boundary-policy.json") <= 6144
    assert size("deploy-policy.json") <= 10240
    assert size("preview-policy.json") <= 10240


# --- destructive and key-management actions only on what the project made --------------------

# action -> (a resource it acts on, the context of the project's own). Each is refused on
# anything else: a resource without the project tag, another cluster's ENI.
PROTECTED = {
    "ec2:DeleteVpc": PROJECT,
    "ec2:DeleteSubnet": PROJECT,
    "ec2:DeleteSecurityGroup": PROJECT,
    "ec2:DeleteRouteTable": PROJECT,
    "ec2:DeleteRoute": PROJECT,
    "ec2:DeleteNatGateway": PROJECT,
    "ec2:DeleteInternetGateway": PROJECT,
    "ec2:DeleteNetworkInterface": PROJECT,
    "ec2:DeleteVpcEndpoints": PROJECT,
    "ec2:DeleteLaunchTemplate": PROJECT,
    "ec2:ReleaseAddress": PROJECT,
    "ec2:CreateLaunchTemplateVersion": PROJECT,
    "ec2:CreateRoute": PROJECT,
    "ec2:AssociateRouteTable": PROJECT,
    "ec2:CreateTags": PROJECT,
    "ec2:DisassociateAddress": PROJECT,  # on the address (its interface: any)
    "ec2:DeleteTags": PROJECT,
    "eks:DeleteCluster": PROJECT,
    "eks:DeleteNodegroup": PROJECT,
    "sqs:DeleteQueue": PROJECT,
    "sqs:SetQueueAttributes": PROJECT,
    "events:DeleteRule": PROJECT,
    "events:PutTargets": PROJECT,
    "events:RemoveTargets": PROJECT,
    "logs:PutRetentionPolicy": PROJECT,
    "kms:ScheduleKeyDeletion": PROJECT,
    "kms:UntagResource": PROJECT,
    "kms:CreateGrant": {"kms:GrantIsForAWSResource": "true"},
}
# Not granted at all: the stack sets no key policy (the key keeps KMS's default), so it
# never calls it (tests/test_iam_calls.py); a role's boundary is set and removed by an
# administrator; assuming a role is denied outright.
NEVER_GRANTED = (
    "kms:PutKeyPolicy", "iam:DeleteRolePermissionsBoundary", "iam:PutRolePermissionsBoundary",
    "sts:AssumeRole",
)  # fmt: skip


def arn_for(action: str) -> str:
    service = action.split(":")[0]
    if action == "ec2:DisassociateAddress":
        return f"{EC2}:elastic-ip/eipalloc-1"
    return {
        "kms": f"arn:aws:kms:ap-northeast-2:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        "sqs": f"arn:aws:sqs:ap-northeast-2:{ACCOUNT}:cilium-eks-dev",
        "events": f"arn:aws:events:ap-northeast-2:{ACCOUNT}:rule/spot-interruption-1a2b3c",
        "logs": f"arn:aws:logs:ap-northeast-2:{ACCOUNT}:log-group:/aws/eks/cilium-eks-dev/cluster",
    }.get(service, f"arn:aws:{service}:ap-northeast-2:{ACCOUNT}:thing/x")


@pytest.mark.parametrize("action", NEVER_GRANTED)
def test_what_the_deploy_role_never_does(action):
    assert not deploy_may(action, BOUNDED, arn_for(action))


@pytest.mark.parametrize("action", sorted(PROTECTED))
def test_destructive_actions_only_on_what_the_project_made(action):
    assert deploy_may(action, PROTECTED[action], arn_for(action))
    assert not deploy_may(action, {}, arn_for(action))
    assert not deploy_may(action, {"aws:ResourceTag/project": "other"}, arn_for(action))


def test_the_ci_page_says_which_condition_protects_what():
    page = (ROOT / "docs" / "ci-iam.md").read_text()
    missing = [a for a in [*PROTECTED, *NEVER_GRANTED] if f"`{a}`" not in page]
    assert missing == []
