"""Cilium as the only CNI: a release of the cilium chart, however referenced, uses ENI
IPAM, native routing and a pinned version (cilium-eni-native-pinned), and wherever one is,
aws-node is switched off (aws-node-off-with-cilium).

Imports pulumi_policy and this package's reading helpers only (never components/).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from pulumi_policy import (
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    StackValidationArgs,
)

from .reading import get

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
        if get(values, *path) != want:
            report(f"Cilium values: {'.'.join(path)} must be {want!r} (ENI IPAM, native routing)")


def namespace_of(resource: PolicyResource) -> str:
    """Where a namespaced Kubernetes object lands: its metadata.namespace, else its
    provider's `namespace`, else `default` (pulumi-kubernetes' order; a namespace in the
    kubeconfig's context is not read, so such an object counts as in `default`)."""
    own = get(resource.props, "metadata", "namespace")
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
        and get(resource.props, "metadata", "name") == AWS_NODE_NAME
        and namespace_of(resource) == AWS_NODE_NAMESPACE
        and get(resource.props, "spec", "template", "spec", "nodeSelector", key) == value
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
