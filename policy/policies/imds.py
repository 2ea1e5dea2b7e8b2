"""Instance metadata: launch templates require IMDSv2 with hop limit 1
(launch-templates-imdsv2-hop-limit-1), and managed node groups use such a template of the
stack's own (node-groups-imdsv2-launch-template), so pods cannot take the node's
credentials.

Imports pulumi_policy and this package's reading helpers only (never components/).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pulumi_policy import (
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    StackValidationArgs,
)

from .nodes import AWS_NODE_GROUP_TYPE
from .reading import linked

LAUNCH_TEMPLATE_TYPE = "aws:ec2/launchTemplate:LaunchTemplate"
# Launch configurations (deprecated by AWS, still made by pulumi-eks's NodeGroup v1)
# carry the same metadataOptions.
LAUNCH_SPEC_TYPES = (LAUNCH_TEMPLATE_TYPE, "aws:ec2/launchConfiguration:LaunchConfiguration")
IMDS_TOKENS_REQUIRED = "required"
IMDS_HOP_LIMIT = 1
IMDS_ENDPOINT_ON = (None, "enabled")  # unset means enabled


def imds_problems(options: Any) -> list[str]:
    """What keeps a launch template's instances from requiring IMDSv2 with hop limit 1.

    Hop limit 1: the response to the PUT that opens an IMDSv2 session may travel one hop,
    so a pod in its own network namespace, one hop behind the node, gets no token and
    cannot take the node role's credentials; the node itself and host-network pods
    (cilium-agent) still can. Tokens required: IMDSv1 needs no PUT, so with it allowed the
    hop limit protects nothing. The endpoint stays on (unset is on): nodeadm and kubelet
    read the instance's identity from it. Both values must be explicit: left unset, the
    instance gets the AMI's defaults, hop limit 2 on EKS's AL2023 AMIs.
    """
    if not isinstance(options, Mapping):
        return [
            "metadataOptions must be set: httpTokens='required' and httpPutResponseHopLimit=1 "
            "(unset, the AMI's defaults apply: hop limit 2 on EKS's AL2023 AMIs, so pods reach "
            "IMDS and the node's credentials)"
        ]
    problems = []
    if options.get("httpTokens") != IMDS_TOKENS_REQUIRED:
        problems.append(
            f"metadataOptions.httpTokens must be 'required' (IMDSv2 only), "
            f"not {options.get('httpTokens')!r}"
        )
    if options.get("httpPutResponseHopLimit") != IMDS_HOP_LIMIT:
        problems.append(
            "metadataOptions.httpPutResponseHopLimit must be 1, so pods cannot reach IMDS, "
            f"not {options.get('httpPutResponseHopLimit')!r}"
        )
    if options.get("httpEndpoint") not in IMDS_ENDPOINT_ON:
        problems.append(
            "metadataOptions.httpEndpoint must be 'enabled' (nodes read IMDS), "
            f"not {options.get('httpEndpoint')!r}"
        )
    return problems


def launch_templates_require_imdsv2_with_hop_limit_1(
    args: ResourceValidationArgs, report: ReportViolation
):
    """Every launch template (or launch configuration). A real preview shows pulumi-eks's
    own too, and they fail here: a managed group's with `enableIMDSv2` has hop limit 2,
    and one made for kubelet args, user data or an AMI id has no metadataOptions."""
    if args.resource_type in LAUNCH_SPEC_TYPES:
        for problem in imds_problems(args.props.get("metadataOptions")):
            report(problem)


def launch_templates_of(
    group: PolicyResource, templates: list[PolicyResource]
) -> list[PolicyResource]:
    """The launch templates of this stack a managed node group's `launchTemplate` names,
    by dependency or by the template's `id` or `name`."""

    def refers(spec: Any, template: PolicyResource) -> bool:
        return isinstance(spec, Mapping) and any(
            spec.get(key) and template.props.get(key) == spec.get(key) for key in ("id", "name")
        )

    return linked(group, "launchTemplate", LAUNCH_TEMPLATE_TYPE, templates, refers)


def node_groups_use_an_imdsv2_hop_limit_1_launch_template(
    args: StackValidationArgs, report: ReportViolation
):
    """Without a launch template of the stack's own, a managed group's nodes get metadata
    options nobody here checks: EKS's defaults, or pulumi-eks's template (hop limit 2 with
    `enableIMDSv2`); and a template outside the stack cannot be checked either. Judged on
    the EKS node group (a stack policy sees outputs, and pulumi-eks's ManagedNodeGroup
    outputs no launch template; the node group it creates does)."""
    templates = [r for r in args.resources if r.resource_type == LAUNCH_TEMPLATE_TYPE]
    for group in (r for r in args.resources if r.resource_type == AWS_NODE_GROUP_TYPE):
        linked = launch_templates_of(group, templates)
        if not linked:
            report(
                f"node group {group.name} must use a launch template of this stack that "
                "requires IMDSv2 with hop limit 1; without one its nodes get EKS's or "
                "pulumi-eks's, which let pods reach the node's credentials",
                group.urn,
            )
        for template in linked:
            for problem in imds_problems(template.props.get("metadataOptions")):
                report(
                    f"node group {group.name} uses launch template {template.name}: {problem}",
                    group.urn,
                )
