"""The CI identities (docs/iam/*.json, docs/ci-iam.md): the deploy role only for the
deploy and destroy jobs on main; the preview role only for pull requests, reading only
what a preview reads."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from components.config import parse
from components.provider import stack_tags
from tests.harness import ROOT, dev_config, run_ok

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
        "deploy-policy.json", "deploy-trust-policy.json",
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
# What the preflight asks AWS about a live cluster (scripts/preflight.py).
PREFLIGHT_ACTIONS = {"eks:DescribeCluster", "eks:ListAccessEntries"}
# Every feature on, and a cluster that exists: every look-up a preview can make.
EVERYTHING = {
    "network.vpcEndpoints": True,
    "karpenter.enabled": True,
    "cilium.kubeProxyReplacement": False,  # the kube-proxy add-on's version look-up
}
LIVE = {"eksCluster": {"name": "cilium-eks-dev", "vpcId": "vpc-id", "subnetIds": ["s-1", "s-2"]}}


@pytest.fixture(scope="module")
def preview_calls() -> set[str]:
    calls = set()
    for overrides in ({}, EVERYTHING):
        graph = run_ok(overrides, world=LIVE)
        for invoke in graph.invokes:
            if invoke["token"].startswith("aws:"):
                assert invoke["token"] in INVOKE_ACTIONS, f"unknown look-up {invoke['token']}"
                calls.add(INVOKE_ACTIONS[invoke["token"]])
    return {c for c in calls if c} | PREFLIGHT_ACTIONS


def test_the_preview_role_may_read_exactly_what_a_preview_looks_up(preview_calls):
    allowed = {
        a for s in statements("preview-policy.json") for a in actions(s) if a.split(":")[0] != "s3"
    }
    assert allowed == preview_calls


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


def test_the_deploy_role_touches_only_the_projects_own_roles():
    by_sid = {s["Sid"]: s for s in statements("deploy-policy.json")}
    tags = stack_tags(parse(dev_config(), stack="dev"), "dev")
    # the provider tags every role it creates project=cilium-eks (components/provider.py):
    # the policy lets the deploy role create only such roles and change only those
    assert by_sid["CreateRolesOnlyTaggedAsTheProjects"]["Condition"] == {
        "StringEquals": {"aws:RequestTag/project": tags["project"]}
    }
    change = by_sid["ChangeOnlyTheProjectsRoles"]
    assert change["Condition"] == {"StringEquals": {"aws:ResourceTag/project": tags["project"]}}
    assert "iam:PutRolePolicy" in change["Action"] and "iam:AttachRolePolicy" in change["Action"]
    iam_writes = {
        a for s in statements("deploy-policy.json") for a in actions(s)
        if a.startswith("iam:") and not a.split(":")[1].startswith(("Get", "List"))
    }  # fmt: skip
    conditioned = {
        a for s in statements("deploy-policy.json") if "Condition" in s for a in actions(s)
    }  # fmt: skip
    assert iam_writes <= conditioned  # no IAM change without a condition


def test_the_deploy_role_passes_roles_to_eks_and_ec2_only():
    passes = [s for s in statements("deploy-policy.json") if "iam:PassRole" in actions(s)]
    (statement,) = passes
    assert statement["Condition"]["StringEquals"]["iam:PassedToService"] == [
        "eks.amazonaws.com", "ec2.amazonaws.com",
    ]  # fmt: skip


def test_the_deploy_role_covers_every_service_the_program_declares():
    graph = run_ok(EVERYTHING)
    declared = {
        r.type.split(":")[1].split("/")[0] for r in graph.resources if r.type.startswith("aws:")
    }
    service_of = {"cloudwatch": {"logs", "events"}, "vpc": {"ec2"}}
    allowed = {a.split(":")[0] for s in statements("deploy-policy.json") for a in actions(s)}
    for module in declared:
        assert service_of.get(module, {module}) & allowed, module
