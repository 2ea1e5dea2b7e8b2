"""The VPC peering between this stack's VPC and a ClusterMesh peer's: made once, by
whichever stack comes up first, adopted by the other, deleted by whichever is destroyed
first (components/mesh.py has the why; docs/clustermesh.md the bring-up order).

`find_peering`, `link` and `unlink` are the EC2 calls (tested against moto);
`MeshLinkProvider` runs them as a Pulumi dynamic provider, and `MeshLink` is the resource.

The provider is pickled BY REFERENCE into each stack's state: since this module was split
from components/mesh.py, new links name `components.mesh_link.MeshLinkProvider`, and stacks
made before name `components.mesh.MeshLinkProvider`, which components/mesh.py keeps
importable (tests/test_mesh.py loads both). Neither name may go.

Imports the AWS API helper (components/aws_api.py) and pulumi's dynamic providers; nothing
from the other components, so that loading the provider stays cheap (no boto3 until a
create or delete).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pulumi
import pulumi.dynamic

from components.aws_api import aws_client

# How long MeshLink waits for a peering to turn active once accepted.
ACTIVE_TIMEOUT = 300

LIVE = ("initiating-request", "pending-acceptance", "provisioning", "active")
NOT_FOUND = "InvalidVpcPeeringConnectionID.NotFound"


def find_peering(ec2: Any, vpc: str, peer_vpc: str) -> dict[str, Any] | None:
    """The live peering connection between two VPCs, whichever side requested it."""
    for requester, accepter in ((vpc, peer_vpc), (peer_vpc, vpc)):
        found = ec2.describe_vpc_peering_connections(
            Filters=[
                {"Name": "requester-vpc-info.vpc-id", "Values": [requester]},
                {"Name": "accepter-vpc-info.vpc-id", "Values": [accepter]},
                {"Name": "status-code", "Values": list(LIVE)},
            ]
        )["VpcPeeringConnections"]
        # the same test again on what came back (an EC2 look-alike may ignore filters)
        for peering in found:
            if (
                peering["RequesterVpcInfo"]["VpcId"] == requester
                and peering["AccepterVpcInfo"]["VpcId"] == accepter
                and peering["Status"]["Code"] in LIVE
            ):
                return peering
    return None


def _error_code(err: Exception) -> str:
    return getattr(err, "response", {}).get("Error", {}).get("Code", "")


def link(
    clients: Callable[[str], Any],
    region: str,
    vpc: str,
    peer_region: str,
    peer_vpc: str,
    *,
    name: str = "",
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[str, bool]:
    """(peering id, whether this call made it): the peering between the two VPCs, adopted
    if either side made it already, else requested from `vpc`; accepted in the accepter's
    region; active when this returns.

    Its state is read in this stack's region, where it is visible at once whichever side
    requested it. The accepter's region may not know a fresh cross-region request for a
    moment (EC2 is eventually consistent; Terraform waits for pending-acceptance in the
    requester's region for the same reason): acceptance is retried until it does.
    """
    ec2, peer_ec2 = clients(region), clients(peer_region)
    existing = find_peering(ec2, vpc, peer_vpc)
    created = existing is None
    if existing is None:
        request: dict[str, Any] = {"VpcId": vpc, "PeerVpcId": peer_vpc}
        if name:
            request["TagSpecifications"] = [
                {"ResourceType": "vpc-peering-connection", "Tags": [{"Key": "Name", "Value": name}]}
            ]
        if peer_region != region:
            request["PeerRegion"] = peer_region
        existing = ec2.create_vpc_peering_connection(**request)["VpcPeeringConnection"]
    peering = existing["VpcPeeringConnectionId"]
    deadline, accepted = clock() + ACTIVE_TIMEOUT, False
    while True:
        found = ec2.describe_vpc_peering_connections(VpcPeeringConnectionIds=[peering])
        (state,) = found["VpcPeeringConnections"]
        status = state["Status"]["Code"]
        if status == "active":
            return peering, created
        if status == "pending-acceptance" and not accepted:
            accepter = state["AccepterVpcInfo"]["VpcId"]
            try:
                (peer_ec2 if accepter == peer_vpc else ec2).accept_vpc_peering_connection(
                    VpcPeeringConnectionId=peering
                )
                accepted = True
                continue  # look again at once
            except Exception as err:
                if _error_code(err) != NOT_FOUND:
                    raise
        elif status not in LIVE:
            message = state["Status"].get("Message")
            raise RuntimeError(f"VPC peering {peering} is {status}: {message}")
        if clock() >= deadline:
            raise RuntimeError(f"VPC peering {peering} not active after {ACTIVE_TIMEOUT} s")
        sleep(5)


def unlink(clients: Callable[[str], Any], region: str, peering: str) -> bool:
    """Delete this peering if it is still live; whether this call deleted it. Only this
    one: a newer link between the same VPCs (the peer's, after this one went) stays."""
    ec2 = clients(region)
    try:
        (state,) = ec2.describe_vpc_peering_connections(VpcPeeringConnectionIds=[peering])[
            "VpcPeeringConnections"
        ]
        if state["Status"]["Code"] not in LIVE:
            return False
        ec2.delete_vpc_peering_connection(VpcPeeringConnectionId=peering)
    except Exception as err:
        if _error_code(err) == NOT_FOUND:
            return False  # gone long ago
        raise
    return True


def _clients(region: str) -> Any:
    return aws_client("ec2", region)


class MeshLinkProvider(pulumi.dynamic.ResourceProvider):
    """The peering between this stack's VPC and a peer's (see `link`, `unlink`). Inputs:
    region, vpc_id, peer_region, peer_vpc_id, the Name tag of a peering it makes, and
    peer_link: the peering the peer's stack last reported for this pair (its `mesh`
    output), None until it lists this stack. Pickled by reference, like teardown.py's.

    A link is replaced (create-before-delete: the new one adopts or makes the live
    peering, then the old one deletes only its own, if still live) when either VPC
    changes, or when the peer reports another peering than this one: the other side
    deleted this one (it left the mesh, or went first on destroy) and made a new one.
    """

    KEYS = ("region", "vpc_id", "peer_region", "peer_vpc_id")

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        peering, created = link(
            _clients,
            props["region"],
            props["vpc_id"],
            props["peer_region"],
            props["peer_vpc_id"],
            name=props.get("name_tag", ""),
        )
        pulumi.log.info(f"VPC peering {peering} {'created' if created else 'adopted'}")
        return pulumi.dynamic.CreateResult(peering, {**props, "peering_id": peering})

    def diff(
        self, _id: str, olds: dict[str, Any], news: dict[str, Any]
    ) -> pulumi.dynamic.DiffResult:
        changed = [k for k in self.KEYS if olds.get(k) != news.get(k)]
        theirs = news.get("peer_link")
        if theirs and theirs != olds.get("peering_id"):
            changed.append("peer_link")
        return pulumi.dynamic.DiffResult(changes=bool(changed), replaces=changed)

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        deleted = unlink(_clients, props["region"], props.get("peering_id") or _id)
        pulumi.log.info(f"VPC peering {_id}: {'deleted' if deleted else 'already gone'}")


class MeshLink(pulumi.dynamic.Resource, name="MeshLink"):
    peering_id: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        region: pulumi.Input[str],
        vpc_id: pulumi.Input[str],
        peer_region: pulumi.Input[str],
        peer_vpc_id: pulumi.Input[str],
        peer_link: pulumi.Input[str | None] = None,
        tag: pulumi.Input[str] = "",
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props = {
            "name_tag": tag,
            "peer_link": peer_link,
            "region": region,
            "vpc_id": vpc_id,
            "peer_region": peer_region,
            "peer_vpc_id": peer_vpc_id,
            "peering_id": None,
        }
        super().__init__(MeshLinkProvider(), name, props, opts)
