"""The `network` section: the VPC (components/network.py builds it).

Imports only the config package's own field types (never a component).
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field

from components.config.fields import Flag, Section, refuse

# AWS allows a VPC of /16 at the largest; the private subnets (pod IPs in ENI mode) must
# be /20 or larger, one per AZ (up to 6) plus room for the public ones: /17 at the smallest.
VPC_PREFIX_RANGE = (16, 17)


def _private_ipv4_network(value: Any) -> str:
    low, high = VPC_PREFIX_RANGE
    try:
        # a number would be read as one address (10 -> 0.0.0.10/32): only strings here
        net = ipaddress.ip_network(value, strict=True) if isinstance(value, str) else None
    except ValueError:
        net = None
    if not isinstance(net, ipaddress.IPv4Network) or not net.is_private:
        raise refuse(f"{value!r} is not a private IPv4 network in CIDR notation (e.g. 10.0.0.0/16)")
    if not low <= net.prefixlen <= high:
        raise refuse(
            f"{value!r} has prefix /{net.prefixlen}; allowed: /{low} or /{high} "
            "(each AZ's private subnet holds the pod IPs and must be /20 or larger)"
        )
    return str(net)


class NetworkConfig(Section):
    """The VPC (components/network.py)."""

    cidr: Annotated[str, BeforeValidator(_private_ipv4_network)] = Field(
        default="10.0.0.0/16",
        description="VPC CIDR, private IPv4, /16 or /17 (private subnets /19 or /20 per AZ). "
        "Fixed for the stack's life: changing it means a rebuild.",
    )
    az_count: int = Field(
        default=3,
        ge=2,
        le=6,
        description="Availability zones used (no more than the region has). May grow on a "
        "live stack (nodes and pods use the new AZ); shrinking it means a rebuild.",
    )
    nat_gateways: Literal["single", "perAz"] = Field(
        default="single",
        description="One NAT gateway, or one per AZ (survives an AZ outage, costs more).",
    )
    vpc_endpoints: Flag = Field(
        default=False,
        description="Interface endpoints for sts, ec2, ecr.api, ecr.dkr and an S3 gateway, "
        "and an ECR pull-through cache for quay.io: Cilium and the demo start without NAT.",
    )
