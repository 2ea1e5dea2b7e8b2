"""The guardrails, as plain validation functions over resource properties.

They state the platform's invariants independently of the program's code (no imports
from components/), so a change that breaks an invariant is stopped in the PR's preview
even when the program and its tests were changed together. For the same reason each rule
reads every spelling a user might write for what it guards (chart references, resource
types, taint shapes, policy documents), not only the shapes this program happens to use.

What the analyzer shows. A resource policy sees one resource's inputs; a stack policy
sees every resource's outputs and its property dependencies. pulumi-eks's components are
registered by its own provider process, and whether a preview shows their inputs depends
on the Node.js SDK it was built with (3.202 and newer send them; pulumi-eks 4.x bundles
an older one). So a pulumi-eks component is judged on what it shows, and one that shows
no inputs is left to the AWS resources it creates (aws:eks/cluster:Cluster,
aws:eks/nodeGroup:NodeGroup, its own launch template), which a real preview always shows
and which carry the same settings. Stack policies, which see outputs, judge those AWS
resources only. Property names are the engine's (camelCase).

Unknowns. During a preview some properties are unknown; reading one raises inside
pulumi_policy, which then reports that the check cannot run in this preview instead of
guessing. So these functions never treat an unknown as absent. Stack checks that link
resources read property dependencies first, which are known in a preview even when ids
are not, and match ids only without them.

The rules, by what they guard: nodes (Cilium's taint, private subnets), imds (IMDSv2 with
hop limit 1), cilium (the CNI's release, aws-node off), iam (no wildcard actions), clusters
(standard support); reading holds what they share. POLICIES is the pack policy/__main__.py
runs.

Imports pulumi_policy and its own modules only, never components/ (tests/test_layout.py).
"""

from __future__ import annotations

from pulumi_policy import ResourceValidationPolicy, StackValidationPolicy

from .cilium import (
    aws_node_is_off_wherever_cilium_is_installed,
    cilium_release_uses_eni_ipam_native_routing_and_a_pinned_version,
)
from .clusters import clusters_use_the_standard_upgrade_policy
from .iam import no_iam_wildcard_actions
from .imds import (
    launch_templates_require_imdsv2_with_hop_limit_1,
    node_groups_use_an_imdsv2_hop_limit_1_launch_template,
)
from .nodes import node_groups_carry_the_cilium_taint, node_subnets_do_not_map_public_ips

POLICIES = [
    ResourceValidationPolicy(
        name="node-groups-carry-cilium-taint",
        description=(
            "Node groups (managed: NO_EXECUTE in EKS's list; self-managed: NoExecute in "
            "pulumi-eks's map) carry node.cilium.io/agent-not-ready=true."
        ),
        validate=node_groups_carry_the_cilium_taint,
    ),
    ResourceValidationPolicy(
        name="cilium-eni-native-pinned",
        description=(
            "A Helm release of the cilium chart, however referenced (repo, OCI, archive, "
            "path), uses ENI IPAM, native routing and a version pinned to X.Y.Z."
        ),
        validate=cilium_release_uses_eni_ipam_native_routing_and_a_pinned_version,
    ),
    ResourceValidationPolicy(
        name="no-iam-wildcard-actions",
        description="No IAM identity policy allows wildcard actions or NotAction.",
        validate=no_iam_wildcard_actions,
    ),
    ResourceValidationPolicy(
        name="launch-templates-imdsv2-hop-limit-1",
        description="Launch templates require IMDSv2 with a hop limit of 1.",
        validate=launch_templates_require_imdsv2_with_hop_limit_1,
    ),
    ResourceValidationPolicy(
        name="clusters-standard-upgrade-policy",
        description="EKS clusters use the STANDARD upgrade policy, not extended support.",
        validate=clusters_use_the_standard_upgrade_policy,
    ),
    StackValidationPolicy(
        name="node-subnets-private",
        description="No subnet holding nodes maps public IPs on launch.",
        validate=node_subnets_do_not_map_public_ips,
    ),
    StackValidationPolicy(
        name="node-groups-imdsv2-launch-template",
        description=(
            "Managed node groups use a launch template of the stack that requires IMDSv2 "
            "with a hop limit of 1."
        ),
        validate=node_groups_use_an_imdsv2_hop_limit_1_launch_template,
    ),
    StackValidationPolicy(
        name="aws-node-off-with-cilium",
        description=(
            "Wherever a Cilium release is, a DaemonSetPatch (or DaemonSet) of exactly "
            "kube-system/aws-node selects nodes that do not exist."
        ),
        validate=aws_node_is_off_wherever_cilium_is_installed,
    ),
]
