"""The `mesh` section (ClusterMesh with other stacks of this project) and the mesh's
rules that need the peers' stack outputs (`mesh_problems`): the program (components/mesh.py)
refuses a mesh that breaks them, and the preflight reports them first.

Imports only the config package's own field types (never a component): the preflight
checks peers without loading the program.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import AfterValidator, Field, field_validator, model_validator

from components.config.fields import PROJECT, Section, no_repeats, refuse

# A fully qualified stack of this project: what `pulumi.StackReference` takes.
PEER_STACK_RE = re.compile(rf"^[A-Za-z0-9][\w.-]*/{PROJECT}/[A-Za-z0-9][\w.-]*$")


class MeshConfig(Section):
    """Cilium ClusterMesh with other stacks of this project (components/mesh.py)."""

    cluster_id: int = Field(
        ge=1,
        # ClusterMesh allows 255, but the chart refuses 128-255 with ENI IPAM (validate.yaml:
        # a known policy drop with those IDs in ENI mode); tests/test_mesh.py renders it.
        le=127,
        description="This cluster's ID, unique in the mesh (1-127: the Cilium chart refuses "
        "128-255 in ENI mode). Cluster 1 makes the mesh's CA.",
    )
    peers: Annotated[
        tuple[str, ...],
        Field(strict=False),
        AfterValidator(no_repeats),
    ] = Field(
        default=(),
        description="The other clusters: stacks of this project, fully qualified "
        "(org/cilium-eks/<stack>). Empty: a mesh-ready cluster.",
    )

    @field_validator("peers", mode="after")
    @classmethod
    def _qualified(cls, peers: tuple[str, ...]) -> tuple[str, ...]:
        for peer in peers:
            if not PEER_STACK_RE.match(peer):
                raise refuse(
                    f"{peer!r} is not a fully qualified stack of this project; use "
                    f"ORG/{PROJECT}/STACK (`pulumi stack ls --all` lists them)"
                )
        return peers

    @model_validator(mode="after")
    def _ca_source(self) -> MeshConfig:
        if self.cluster_id != 1 and not self.peers:
            raise refuse(
                f"clusterId {self.cluster_id} with no peers: the mesh's CA is made by "
                "cluster 1, so bring cluster 1 up first and list its stack in peers (or "
                "make this the mesh's first cluster with clusterId: 1)"
            )
        return self


# How the program's mesh refusal starts (components/mesh.py). The AWS provider waits for
# the mesh's checks, so the first AWS call, the instance-type lookup (aws_facts.py,
# describe_instance_type), is where a refusal surfaces, wrapped by the SDK: it is told
# apart by this text.
MESH_REFUSED = "invalid mesh (the peers' `mesh` stack outputs):"


def _cluster_id(facts: Mapping[str, Any]) -> Any:
    found = facts.get("clusterId")
    if isinstance(found, float) and found.is_integer():
        return int(found)  # stack outputs' numbers arrive as floats (protobuf)
    return found


def _network(cidr: Any) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(cidr) if isinstance(cidr, str) else None
    except ValueError:
        return None


# Cilium's WireGuard documentation (docs/security/network/encryption-wireguard.rst,
# "Limitations"): "The mixed mode of WireGuard encryption is not supported in a
# ClusterMesh", i.e. one cluster encrypting and the other not, or another method: pods of
# the two would not reach each other. Every cluster of a mesh sets the same
# cilium.encryption.
ENCRYPTION_KEY = "cilium.encryption"


def mesh_problems(
    *,
    cluster_name: str,
    cluster_id: int,
    vpc_cidr: str,
    account: str | None,
    peers: Mapping[str, Any],
    encryption: str | None = None,
) -> list[str]:
    """What is wrong with a mesh: this stack's facts against each peer's `mesh` stack
    output (None or missing: the peer is not deployed as a mesh cluster, or unreadable),
    and the peers against each other, since every cluster meets every other one: names,
    IDs and VPCs unique in the whole mesh, and one encryption mode (`encryption`, this
    cluster's cilium.encryption; None: not checked). A peer whose output has no
    encryption mode was deployed before it was published: it is checked once its next
    `pulumi up` publishes it (its peers need not wait for each other).
    The program raises on these (components/mesh.py); the preflight reports them first.
    """
    problems = []
    own = ipaddress.ip_network(vpc_cidr)
    readable: dict[str, Mapping[str, Any]] = {}
    for peer, facts in peers.items():
        if not isinstance(facts, Mapping):
            problems.append(
                f"mesh.peers: {peer} has no `mesh` output (not deployed, not readable, or "
                "without mesh.clusterId); bring it up as a mesh cluster first"
            )
            continue
        readable[peer] = facts
        if _cluster_id(facts) == cluster_id:
            problems.append(
                f"mesh.clusterId: {cluster_id} is also the cluster ID of {peer}; each "
                "cluster of a mesh needs its own"
            )
        if facts.get("clusterName") == cluster_name:
            problems.append(
                f"clusterName: {cluster_name} is also the cluster name of {peer}; "
                "ClusterMesh tells clusters apart by name"
            )
        cidr = _network(facts.get("vpcCidr"))
        if cidr is not None and cidr.overlaps(own):
            problems.append(
                f"network.cidr: {vpc_cidr} overlaps {peer}'s VPC {cidr}; in ENI mode pods "
                "take VPC addresses, so the clusters of a mesh need disjoint VPCs"
            )
        theirs = facts.get("encryption")
        if encryption is not None and theirs is not None and theirs != encryption:
            problems.append(
                f"{ENCRYPTION_KEY}: {encryption} here, {theirs} in {peer}; Cilium does not "
                "support mixed encryption in a ClusterMesh (WireGuard docs, Limitations): "
                "set the same on every cluster of the mesh"
            )
        peer_account = facts.get("accountId")
        if account and peer_account and peer_account != account:
            problems.append(
                f"mesh.peers: {peer} is in AWS account {peer_account}, this stack in "
                f"{account}; the link is a VPC peering both sides accept with this stack's "
                "credentials, so a mesh stays in one account (docs/clustermesh.md)"
            )
    problems += _peers_apart(readable)
    ids = {_cluster_id(f) for f in readable.values()}
    cas = {peer: f.get("ca") for peer, f in readable.items()}
    if cluster_id != 1 and not problems:
        # the mesh's CA: cluster 1's when it is a peer (the others follow it), else any
        # peer's, and then they must agree
        if not any(cas.values()):
            problems.append(
                "mesh.peers: none of them shares the mesh's CA (made by cluster 1): bring "
                "cluster 1 up first and list its stack among the peers"
            )
        elif 1 not in ids and len({ca for ca in cas.values() if ca}) > 1:
            problems.append(
                "mesh.peers: they trust different CAs and none of them is cluster 1 to "
                "follow; list cluster 1's stack, or only peers of one mesh"
            )
    return problems


def _peers_apart(peers: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The peers against each other: this cluster meets every one of them, so two that
    share a name or an ID, or whose VPCs overlap, cannot both be in its mesh (two routes
    to one CIDR: EC2 refuses the second, after the first peering exists)."""
    problems = []
    listed = list(peers.items())
    for i, (first, one) in enumerate(listed):
        for second, other in listed[i + 1 :]:
            both = f"mesh.peers: {first} and {second}"
            if _cluster_id(one) is not None and _cluster_id(one) == _cluster_id(other):
                problems.append(f"{both} have the same cluster ID {_cluster_id(one)}")
            if one.get("clusterName") and one.get("clusterName") == other.get("clusterName"):
                problems.append(f"{both} have the same cluster name {one['clusterName']}")
            mine, theirs = _network(one.get("vpcCidr")), _network(other.get("vpcCidr"))
            if mine is not None and theirs is not None and mine.overlaps(theirs):
                problems.append(
                    f"{both} have overlapping VPCs ({mine} and {theirs}); this cluster would "
                    "route both through its peerings, which EC2 refuses: list one of them"
                )
    return problems
