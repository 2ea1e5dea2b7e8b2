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
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from pulumi_policy import (
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

# --- node groups ----------------------------------------------------------------------

# The taint Cilium's agent removes from a node once it runs there (Cilium docs,
# "Installation on EKS"): until then no pod gets an address from anything but Cilium.
CILIUM_TAINT_KEY = "node.cilium.io/agent-not-ready"
CILIUM_TAINT_VALUE = "true"
# What pulumi-eks's ManagedNodeGroup creates: the EKS node group itself.
AWS_NODE_GROUP_TYPE = "aws:eks/nodeGroup:NodeGroup"
# Managed node groups take EKS API taints, a list of {key, value, effect}, the effect in
# the EKS enum's spelling.
MANAGED_NODE_GROUP_TYPES = ("eks:index:ManagedNodeGroup", AWS_NODE_GROUP_TYPE)
EKS_NO_EXECUTE = "NO_EXECUTE"
# pulumi-eks's self-managed node groups take a map {key: {value, effect}} and pass it to
# kubelet's --register-with-taints, so the effect is Kubernetes' spelling.
SELF_MANAGED_NODE_GROUP_TYPES = ("eks:index:NodeGroupV2", "eks:index:NodeGroup")
KUBELET_NO_EXECUTE = "NoExecute"

SUBNET_TYPE = "aws:ec2/subnet:Subnet"
# Components registered by pulumi-eks's provider (see the module docstring).
PULUMI_EKS_COMPONENTS = (
    "eks:index:Cluster",
    "eks:index:ManagedNodeGroup",
    "eks:index:NodeGroupV2",
    "eks:index:NodeGroup",
)

# --- launch templates and IMDS ----------------------------------------------------------

LAUNCH_TEMPLATE_TYPE = "aws:ec2/launchTemplate:LaunchTemplate"
# Launch configurations (deprecated by AWS, still made by pulumi-eks's NodeGroup v1)
# carry the same metadataOptions.
LAUNCH_SPEC_TYPES = (LAUNCH_TEMPLATE_TYPE, "aws:ec2/launchConfiguration:LaunchConfiguration")
IMDS_TOKENS_REQUIRED = "required"
IMDS_HOP_LIMIT = 1
IMDS_ENDPOINT_ON = (None, "enabled")  # unset means enabled

# --- clusters -------------------------------------------------------------------------

CLUSTER_TYPES = ("eks:index:Cluster", "aws:eks/cluster:Cluster")
STANDARD_SUPPORT = "STANDARD"

# --- Cilium and aws-node --------------------------------------------------------------

# Resources that install a Helm chart from chart, version, repositoryOpts and values.
# The v4 Chart is a component the provider registers itself: a real preview shows its
# inputs only if pulumi-kubernetes sends them. Not kubernetes:helm.sh/v3:Chart: it renders
# the chart in the program and registers no properties of its own (pulumi_kubernetes
# passes it an empty dict), so there is nothing to read; its objects arrive as plain
# Kubernetes resources.
HELM_RELEASE_TYPES = ("kubernetes:helm.sh/v3:Release", "kubernetes:helm.sh/v4:Chart")
CILIUM_CHART = "cilium"
OCI_SCHEME = "oci://"
# `helm package` names an archive <chart>-<version>.tgz.
CHART_ARCHIVE = re.compile(
    r"^(?P<name>.+?)(?:-(?P<version>v?\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.+-]+)?))?\.(?:tgz|tar\.gz)$"
)
EXACT_VERSION = re.compile(r"^\d+\.\d+\.\d+$")
CILIUM_VALUES = {("eni", "enabled"): True, ("ipam", "mode"): "eni", ("routingMode",): "native"}

AWS_NODE_OFF_TYPES = ("kubernetes:apps/v1:DaemonSetPatch", "kubernetes:apps/v1:DaemonSet")
AWS_NODE_NAMESPACE, AWS_NODE_NAME = "kube-system", "aws-node"
AWS_NODE_SELECTOR = ("io.cilium/aws-node-enabled", "true")
DEFAULT_NAMESPACE = "default"

# --- IAM ------------------------------------------------------------------------------

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


def _get(props: Any, *path: str) -> Any:
    node: Any = props
    for key in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(key)
    return node


# --- node-groups-carry-cilium-taint ---------------------------------------------------


def carries_the_cilium_taint(resource_type: str, taints: Any) -> bool:
    """Whether a node group's `taints` hold Cilium's, in that resource type's own shape.

    Only the `taints` property counts. A self-managed group's kubelet flags
    (`kubeletExtraArgs: "--register-with-taints=..."`) are not read: a flag inside a
    free-form string is easily mistyped, and pulumi-eks adds its own --register-with-taints
    from `taints` after the user's flags, so which one holds is up to kubelet's parsing.
    """
    if resource_type in SELF_MANAGED_NODE_GROUP_TYPES:
        taint = _get(taints, CILIUM_TAINT_KEY)
        return _get(taint, "value") == CILIUM_TAINT_VALUE and (
            _get(taint, "effect") == KUBELET_NO_EXECUTE
        )
    if isinstance(taints, (str, Mapping)) or not isinstance(taints, Iterable):
        return False
    wanted = {"key": CILIUM_TAINT_KEY, "value": CILIUM_TAINT_VALUE, "effect": EKS_NO_EXECUTE}
    return any(
        isinstance(t, Mapping) and all(t.get(k) == v for k, v in wanted.items()) for t in taints
    )


def shows_no_inputs(args: ResourceValidationArgs) -> bool:
    """A pulumi-eks component registered without its inputs: the AWS resources it creates
    are judged instead (module docstring)."""
    return args.resource_type in PULUMI_EKS_COMPONENTS and not args.props


def node_groups_carry_the_cilium_taint(args: ResourceValidationArgs, report: ReportViolation):
    """Every node group, managed or self-managed, registers its nodes with Cilium's taint,
    so no pod starts on a node before Cilium runs there. (Karpenter is out of scope.)"""
    if args.resource_type not in MANAGED_NODE_GROUP_TYPES + SELF_MANAGED_NODE_GROUP_TYPES:
        return
    if shows_no_inputs(args):
        return
    if not carries_the_cilium_taint(args.resource_type, args.props.get("taints")):
        self_managed = args.resource_type in SELF_MANAGED_NODE_GROUP_TYPES
        effect = KUBELET_NO_EXECUTE if self_managed else EKS_NO_EXECUTE
        report(
            f"node groups must carry the taint {CILIUM_TAINT_KEY}={CILIUM_TAINT_VALUE} with "
            f"effect {effect}, so no pod starts before Cilium runs on the node"
        )


# --- cilium-eni-native-pinned ---------------------------------------------------------


def chart_reference(chart: str) -> tuple[str, str | None]:
    """The chart name a Helm chart reference names, and the version it carries, if any.

    `cilium`, `cilium/cilium` (repository alias), `./cilium` (a directory) and
    `oci://quay.io/cilium/charts/cilium` name `cilium` and carry no version. Archives
    carry theirs in the name: `cilium-1.19.6.tgz`, `./charts/cilium-1.19.6.tgz`,
    `https://helm.cilium.io/cilium-1.19.6.tgz`. So do OCI tags: `oci://…/cilium:1.19.6`
    and `oci://…/cilium:1.19.6@sha256:…` (Helm takes the tag for the version when none is
    given, and refuses the two if they differ); a digest alone carries no version. Only a
    colon in the last path segment starts a tag: `registry:5000/…` is a port.
    """
    ref = chart.strip()
    if ref.startswith(OCI_SCHEME):
        name, _, tag = ref.partition("@")[0].rsplit("/", 1)[-1].partition(":")
        return name, tag or None
    if "://" in ref:
        ref = urlsplit(ref).path  # no query string or fragment
    last = re.split(r"[/\\]", ref.rstrip("/\\"))[-1]
    archive = CHART_ARCHIVE.match(last)
    return (archive["name"], archive["version"]) if archive else (last, None)


def is_cilium_release(props: Mapping[str, Any]) -> bool:
    """Whether a Helm release installs Cilium: its chart is named `cilium`, however the
    reference spells it (see chart_reference), so the ENI/native-routing/pinned-version
    rule cannot be dodged by writing the chart another way.

    The name decides, not the repository. `tetragon` from https://helm.cilium.io is
    Cilium's project but not the CNI, and must not be held to ENI values; a `cilium`
    chart from a mirror (an internal registry, ECR) is the CNI all the same. And exactly
    `cilium`, not a `cilium-` prefix: the CNI's chart is published as `cilium`, while a
    prefix would catch unrelated charts (a team's own `cilium-policies`, say). Case is ignored:
    a chart directory may be spelled `Cilium`. What a name cannot catch: the chart
    repackaged or a directory renamed, and the Chart resources that expose no properties
    (see HELM_RELEASE_TYPES).
    """
    chart = props.get("chart")
    return isinstance(chart, str) and chart_reference(chart)[0].lower() == CILIUM_CHART


def chart_version_problems(props: Mapping[str, Any]) -> list[str]:
    """The chart version must be pinned to X.Y.Z, by `version` or by the chart reference
    (an OCI tag, an archive's name), which may then stand alone. Where both give one they
    must agree: Helm refuses an OCI tag that differs from the version, and ignores the
    version for an archive, so a different `version` would misstate what runs."""
    given = [v for v in (props.get("version"), chart_reference(props["chart"])[1]) if v]
    if not given:
        return ["the Cilium chart version must be pinned to X.Y.Z; none is given"]
    problems = [
        f"the Cilium chart version must be pinned to X.Y.Z, not {v!r}"
        for v in given
        if not (isinstance(v, str) and EXACT_VERSION.match(v))
    ]
    if given[0] != given[-1]:
        problems.append(
            f"the Cilium chart's version {given[0]!r} and its reference's {given[-1]!r} differ"
        )
    return problems


def cilium_release_uses_eni_ipam_native_routing_and_a_pinned_version(
    args: ResourceValidationArgs, report: ReportViolation
):
    """The values are read from `values` only: value files are assets the analyzer cannot
    open, so the three settings must be stated there."""
    if args.resource_type not in HELM_RELEASE_TYPES or not is_cilium_release(args.props):
        return
    for problem in chart_version_problems(args.props):
        report(problem)
    values = args.props.get("values") or {}
    for path, want in CILIUM_VALUES.items():
        if _get(values, *path) != want:
            report(f"Cilium values: {'.'.join(path)} must be {want!r} (ENI IPAM, native routing)")


# --- no-iam-wildcard-actions ----------------------------------------------------------


def _statements(document: Any) -> Iterable[Mapping[str, Any]]:
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except ValueError:
            return []  # IAM refuses a document that is not JSON
    statements = _get(document, "Statement") or []
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
        documents += [_get(p, "policy") for p in args.props.get("inlinePolicies") or []]
    for document in documents:
        for action in wildcard_actions(document):
            report(f"IAM policies must not allow wildcard actions; found {action!r}")


# --- launch-templates-imdsv2-hop-limit-1 ----------------------------------------------


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


# --- node-groups-imdsv2-launch-template -----------------------------------------------


def _linked(
    group: PolicyResource,
    prop: str,
    rtype: str,
    candidates: list[PolicyResource],
    refers: Callable[[Any, PolicyResource], bool],
) -> list[PolicyResource]:
    """The resources of type `rtype` a node group's `prop` names: from its property
    dependencies (known in a preview too), else the candidates `refers(value of prop,
    candidate)` accepts (a group given literal ids)."""
    by_dependency = [
        r for r in group.property_dependencies.get(prop, []) if r.resource_type == rtype
    ]
    if by_dependency:
        return by_dependency
    value = group.props.get(prop)
    return [c for c in candidates if refers(value, c)]


def launch_templates_of(
    group: PolicyResource, templates: list[PolicyResource]
) -> list[PolicyResource]:
    """The launch templates of this stack a managed node group's `launchTemplate` names,
    by dependency or by the template's `id` or `name`."""

    def refers(spec: Any, template: PolicyResource) -> bool:
        return isinstance(spec, Mapping) and any(
            spec.get(key) and template.props.get(key) == spec.get(key) for key in ("id", "name")
        )

    return _linked(group, "launchTemplate", LAUNCH_TEMPLATE_TYPE, templates, refers)


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


# --- clusters-standard-upgrade-policy -------------------------------------------------


def clusters_use_the_standard_upgrade_policy(args: ResourceValidationArgs, report: ReportViolation):
    """EXTENDED, the default of EKS and pulumi-eks when unset, keeps a Kubernetes version
    past standard support at $0.60 per cluster-hour instead of $0.10, without anyone
    deciding it. STANDARD has EKS upgrade the control plane when standard support ends."""
    if args.resource_type not in CLUSTER_TYPES or shows_no_inputs(args):
        return
    support = _get(args.props, "upgradePolicy", "supportType")
    if support != STANDARD_SUPPORT:
        report(
            "clusters must set upgradePolicy.supportType='STANDARD', not "
            f"{support!r} (unset is EXTENDED: $0.60 per hour instead of $0.10 once the "
            "version leaves standard support)"
        )


# --- node-subnets-private -------------------------------------------------------------


def _node_subnets(group: PolicyResource, subnets: list[PolicyResource]) -> list[PolicyResource]:
    """The subnets a node group's nodes land in, by dependency or by subnet id."""
    return _linked(
        group, "subnetIds", SUBNET_TYPE, subnets, lambda ids, s: s.props.get("id") in (ids or [])
    )


def node_subnets_do_not_map_public_ips(args: StackValidationArgs, report: ReportViolation):
    subnets = [r for r in args.resources if r.resource_type == SUBNET_TYPE]
    for group in (r for r in args.resources if r.resource_type in MANAGED_NODE_GROUP_TYPES):
        for subnet in _node_subnets(group, subnets):
            if subnet.props.get("mapPublicIpOnLaunch"):
                report(
                    f"subnet {subnet.name} holds nodes of {group.name} and maps public IPs "
                    "on launch; nodes belong in private subnets",
                    subnet.urn,
                )


# --- aws-node-off-with-cilium ---------------------------------------------------------


def namespace_of(resource: PolicyResource) -> str:
    """Where a namespaced Kubernetes object lands: its metadata.namespace, else its
    provider's `namespace`, else `default` (pulumi-kubernetes' order; a namespace in the
    kubeconfig's context is not read, so such an object counts as in `default`)."""
    own = _get(resource.props, "metadata", "namespace")
    if own:
        return own
    provider = resource.provider.props.get("namespace") if resource.provider else None
    return provider or DEFAULT_NAMESPACE


def switches_aws_node_off(resource: PolicyResource) -> bool:
    """A DaemonSetPatch, or a whole DaemonSet, of exactly kube-system/aws-node whose pods
    select a label no node has.

    A DaemonSet counts because the invariant is about what runs: a DaemonSet object
    kube-system/aws-node with that selector is aws-node switched off, however it got
    there (over EKS's own with the provider's upsertExistingObjects, or rendered from a
    YAML file or a chart, which register plain DaemonSets).
    """
    key, value = AWS_NODE_SELECTOR
    return (
        resource.resource_type in AWS_NODE_OFF_TYPES
        and _get(resource.props, "metadata", "name") == AWS_NODE_NAME
        and namespace_of(resource) == AWS_NODE_NAMESPACE
        and _get(resource.props, "spec", "template", "spec", "nodeSelector", key) == value
    )


def aws_node_is_off_wherever_cilium_is_installed(
    args: StackValidationArgs, report: ReportViolation
):
    releases = [
        r
        for r in args.resources
        if r.resource_type in HELM_RELEASE_TYPES and is_cilium_release(r.props)
    ]
    if not releases or any(switches_aws_node_off(r) for r in args.resources):
        return
    key, value = AWS_NODE_SELECTOR
    for release in releases:
        report(
            "a Cilium release needs a DaemonSetPatch (or DaemonSet) of kube-system/aws-node "
            f"with nodeSelector {key}={value}: two CNIs would hand out pod IPs",
            release.urn,
        )


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
