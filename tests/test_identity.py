"""The stack's resource identities: what a live stack would delete and re-create if they
changed, with every optional feature on.

- tests/stack_urns_now.txt: every URN the program declares, as the engine writes it;
- tests/stack_urns.txt: the URNs of the program before the package (0.1.0, when every
  component sat at the stack's root), which live stacks hold. Each must still be found
  by the engine, as a URN the program declares or through an alias, by the engine's own
  rules (pulumi/pulumi pkg/resource/deploy/step_generator.go, `generateAliases`,
  `collapseAliasToUrn`, `inheritedChildAlias`, and `getOldResource`, which records the
  alias a resource was found by: only that one is passed on to its children);
- a consumer's Stack, in a project of its own: its aliases, which name this project,
  claim none of the consumer's resources.

The mocks' URNs are not the engine's: they qualify a resource's type with its parent's
type only (pulumi/runtime/mocks.py `make_urn`), where the engine writes every ancestor's
but the root stack's, and they put pulumi:pulumi:Stack$ before a top-level resource's type.
`engine_urns` rebuilds the engine's from the recorded parents.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from tests.harness import ROOT, Graph, Resource, construct, on_the_wire, run_ok, stack_inputs

OLD = ROOT / "tests" / "stack_urns.txt"
NOW = ROOT / "tests" / "stack_urns_now.txt"
EVERYTHING = {"network.vpcEndpoints": True, "karpenter.enabled": True, "mesh": {"clusterId": 1}}
STACK, PROJECT = "dev", "cilium-eks"
CONSUMER = "platform"  # another program's project, which adds the package
ROOT_STACK = "pulumi:pulumi:Stack"


def recorded(path) -> set[str]:
    return {line for line in path.read_text().splitlines() if line and not line.startswith("#")}


def old_state() -> set[str]:
    """A 0.1.0 stack's URNs as the engine wrote them (the record has the mocks' prefix)."""
    return {urn.replace("::pulumi:pulumi:Stack$", "::") for urn in recorded(OLD)}


def create_urn(name: str, type_: str, parent: str = "", project: str = PROJECT) -> str:
    """resource.CreateURN: the parent's qualified type, then this type (none at the root)."""
    qualified = f"{parent.split('::')[2]}${type_}" if parent else type_
    return f"urn:pulumi:{STACK}::{project}::{qualified}::{name}"


def engine_urns(resources: Sequence[Resource], project: str = PROJECT) -> dict[str, str]:
    """Each resource's URN as the engine of a deployment of `project` writes it, by its
    mock URN."""
    urns: dict[str, str] = {}
    for res in resources:  # registered in order: a parent before its children
        parent = urns.get(res.parent or "", "")
        if res.type == ROOT_STACK or parent.split("::")[2:3] == [ROOT_STACK]:
            parent = ""  # the engine leaves the root stack out of its children's types
        urns[res.urn] = create_urn(res.name, res.type, parent, project)
    return urns


def collapse(spec: Any, res: Resource, parent: str, found: dict[str, str], project: str) -> str:
    """collapseAliasToUrn in a deployment of `project`: a URN as it is; a spec's blanks are
    the resource's own (its project and stack the deployment's), and a parent the engine
    found by an alias stands for that old URN."""
    if isinstance(spec, str):
        return spec
    if spec.get("noParent") or parent.split("::")[2:3] == [ROOT_STACK]:
        parent = ""
    elif spec.get("parentUrn"):
        parent = found.get(spec["parentUrn"], spec["parentUrn"])
    urn = create_urn(
        spec.get("name") or res.name, spec.get("type") or res.type, parent,
        spec.get("project") or project,
    )  # fmt: skip
    return urn.replace(f"urn:pulumi:{STACK}::", f"urn:pulumi:{spec.get('stack') or STACK}::", 1)


def inherited(
    child_type: str, child_name: str, parent_name: str, parent_alias: str, project: str
) -> str:
    """inheritedChildAlias: under the parent's old URN, renamed with it if prefixed by it,
    in the deployment's own stack and project whatever the parent's alias named."""
    name = child_name
    if child_name.startswith(parent_name):
        name = parent_alias.rsplit("::", 1)[1] + child_name[len(parent_name) :]
    return create_urn(name, child_type, parent_alias, project)


def generate_aliases(
    res: Resource, parent: str, found: dict[str, str], project: str = PROJECT
) -> list[str]:
    """generateAliases: the resource's own aliases, then each multiplied out by the old URN
    its parent was found by."""
    own = [collapse(spec, res, parent, found, project) for spec in res.aliases]
    aliases = list(own)
    if parent in found:
        parent_name = parent.rsplit("::", 1)[1]
        aliases.append(inherited(res.type, res.name, parent_name, found[parent], project))
        for alias in own:
            child_type, child_name = alias.split("::")[2].rsplit("$", 1)[-1], alias.split("::")[3]
            aliases.append(inherited(child_type, child_name, parent_name, found[parent], project))
    return list(dict.fromkeys(aliases))


def old_resources_found(
    resources: Sequence[Resource], olds: set[str], project: str = PROJECT
) -> dict[str, str]:
    """getOldResource for every resource of a run (a deployment of `project`) against a
    state holding `olds`: {old URN: the new URN that takes it over}. Fails where two
    resources would claim one."""
    urns = engine_urns(resources, project)
    found: dict[str, str] = {}  # new URN -> the old URN it was found by (the engine's aliases)
    claimed: dict[str, str] = {}
    for res in resources:
        urn, parent = urns[res.urn], urns.get(res.parent or "", "")
        for candidate in [urn, *generate_aliases(res, parent, found, project)]:
            if candidate in olds:
                assert candidate not in claimed, f"{urn} and {claimed[candidate]} claim {candidate}"
                claimed[candidate] = urn
                if candidate != urn:
                    found[urn] = candidate
                break
    return claimed


def test_every_resource_has_the_urn_recorded(dev):
    declared = {
        *engine_urns(dev.resources).values(),
        *engine_urns(run_ok(EVERYTHING).resources).values(),
    }
    known = recorded(NOW)
    gone, new = sorted(known - declared), sorted(declared - known)
    assert not gone, (
        "a live stack would delete (and re-create) these; add a pulumi.Alias, or update "
        f"tests/{NOW.name} on purpose: {gone}"
    )
    assert not new, f"new resources: review their names, then add them to {NOW.name}: {new}"


def test_a_stack_from_before_the_package_keeps_every_resource(dev):
    olds = old_state()
    claimed = {
        **old_resources_found(dev.resources, olds),
        **old_resources_found(run_ok(EVERYTHING).resources, olds),
    }
    lost = sorted(olds - claimed.keys())
    assert not lost, f"a live stack of 0.1.0 would delete (and re-create) these: {lost}"


def test_the_rules_find_a_moved_child_only_through_its_parents_alias(dev):
    # the model above is not vacuous: without the Network's alias, its VPC (whose own URN
    # changed with its parent's) is lost too
    olds = old_state()
    network = dev.one("cilium-eks:index:Network")
    without = [dataclasses.replace(r, aliases=[]) if r is network else r for r in dev.resources]
    lost = olds - old_resources_found(without, olds).keys()
    was = "urn:pulumi:dev::cilium-eks::cilium-eks:index:Network"
    assert {f"{was}::network", f"{was}$aws:ec2/vpc:Vpc::vpc"} <= lost


def consumers_stack(project: str) -> Graph:
    """A consumer's Stack, every feature on, as the package's provider constructs it in a
    deployment of `project`."""
    inputs = stack_inputs()
    inputs |= on_the_wire({
        "network": {**inputs["network"], "vpcEndpoints": True},
        "karpenter": {"enabled": True}, "mesh": {"clusterId": 1},
    })  # fmt: skip
    graph = construct("cilium-eks:index:Stack", "cilium-eks", inputs, kubernetes=False,
                      project=project)  # fmt: skip
    assert graph.error is None, graph.error["traceback"]
    return graph


def test_a_consumer_named_like_this_project_claims_none_of_its_resources():
    # A consumer's project named cilium-eks, as a mesh peer's must be (config/mesh.py
    # PEER_STACK_RE), whose state holds at its root a resource under every name the
    # program's 0.1.0 stacks had there, its own aws.Provider("aws") above all: the aliases
    # to this project's root would name exactly those, so the package's Stack makes none
    # (only the program asks, __main__.py adopt_program_urns). The root stack resource is
    # the deployment's own, found by its URN.
    graph = consumers_stack(PROJECT)
    olds = old_state()
    assert f"urn:pulumi:{STACK}::{PROJECT}::pulumi:providers:aws::aws" in olds
    found = old_resources_found(graph.resources, olds)
    assert set(found) == {f"urn:pulumi:{STACK}::{PROJECT}::{ROOT_STACK}::{PROJECT}-{STACK}"}


def test_a_stack_in_another_project_claims_none_of_its_resources():
    # A consumer's Stack, every feature on, in a deployment of the consumer's project whose
    # state holds, at its root, a resource under every name the program's 0.1.0 stacks had
    # there: its own `aws.Provider("aws")` above all, the common case. An alias to the
    # root that names no project is the consumer's root: the Stack's provider would take
    # over the consumer's (or the engine refuse both, step_generator.go getOldResource).
    graph = consumers_stack(CONSUMER)
    assert all(f"::{CONSUMER}::" in urn for urn in engine_urns(graph.resources, CONSUMER).values())
    consumers = {urn.replace(f"::{PROJECT}::", f"::{CONSUMER}::") for urn in old_state()}
    assert f"urn:pulumi:{STACK}::{CONSUMER}::pulumi:providers:aws::aws" in consumers
    assert old_resources_found(graph.resources, consumers, CONSUMER) == {}
    # nor could any: each alias names this project's stack, which no state of the
    # consumer's holds, or a place inside the consumer's Stack (pulumi-kubernetes's aliases
    # to a kind's older API versions), which only the Stack's resources take; so no parent
    # is found by an alias, and no child inherits one
    urns = engine_urns(graph.resources, CONSUMER)
    aliases = {
        alias
        for res in graph.resources
        for alias in generate_aliases(res, urns.get(res.parent or "", ""), {}, CONSUMER)
    }
    in_the_stack = f"urn:pulumi:{STACK}::{CONSUMER}::cilium-eks:index:Stack$"
    elsewhere = {a for a in aliases if not a.startswith(in_the_stack)}
    assert elsewhere and all(a.startswith(f"urn:pulumi:{STACK}::{PROJECT}::") for a in elsewhere)
