"""Reading resources as the analyzer shows them: a property at a path (`get`), the
resources a node group links to (`linked`), and whether a pulumi-eks component was
registered without its inputs (`shows_no_inputs`; the package docstring says why).

Imports pulumi_policy only (never components/).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pulumi_policy import PolicyResource, ResourceValidationArgs

# Components registered by pulumi-eks's provider (see the package docstring).
PULUMI_EKS_COMPONENTS = (
    "eks:index:Cluster",
    "eks:index:ManagedNodeGroup",
    "eks:index:NodeGroupV2",
    "eks:index:NodeGroup",
)


def get(props: Any, *path: str) -> Any:
    node: Any = props
    for key in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(key)
    return node


def linked(
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


def shows_no_inputs(args: ResourceValidationArgs) -> bool:
    """A pulumi-eks component registered without its inputs: the AWS resources it creates
    are judged instead (package docstring)."""
    return args.resource_type in PULUMI_EKS_COMPONENTS and not args.props
