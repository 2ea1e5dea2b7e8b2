"""The `karpenter` section: nodes on demand (components/karpenter.py installs it), and
the Kubernetes quantities its limits are written in.

Imports only the config package's own field types (never a component).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, field_validator

from components.config.fields import Flag, Section, no_repeats, not_empty, refuse

# A Kubernetes quantity as Karpenter's NodePool limits take it (e.g. 64, 500m, 256Gi).
QUANTITY_RE = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")

# Kubernetes quantity suffixes (apimachinery resource.Quantity), as factors.
QUANTITY_SUFFIXES = {
    "m": 1e-3, "": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
}  # fmt: skip


def _quantity(value: Any) -> str:
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(text, str) or not QUANTITY_RE.match(text):
        raise refuse(f"{value!r} is not a Kubernetes quantity (e.g. 64 or 256Gi)")
    return text


def cpu_cores(quantity: str) -> float:
    """A CPU quantity (as _quantity accepted it) in cores: "500m" -> 0.5, "64" -> 64."""
    match = QUANTITY_RE.match(quantity)
    assert match, quantity
    return (
        float(quantity[: len(quantity) - len(match.group(2) or "")])
        * QUANTITY_SUFFIXES[match.group(2) or ""]
    )


class KarpenterConfig(Section):
    """Nodes on demand (components/karpenter.py)."""

    enabled: Flag = Field(default=False, description="Install Karpenter and its NodePool.")
    capacity_types: Annotated[
        tuple[Literal["on-demand", "spot"], ...],
        Field(strict=False),
        AfterValidator(not_empty),
        AfterValidator(no_repeats),
    ] = Field(default=("on-demand",), description="EC2 capacity types Karpenter may launch.")
    instance_categories: Annotated[
        tuple[Literal["c", "m", "r", "t"], ...],
        Field(strict=False),
        AfterValidator(no_repeats),
    ] = Field(
        default=("c", "m", "r"),
        description="Instance categories (c compute, m general, r memory, t burstable); "
        "ignored when instanceFamilies is set.",
    )
    instance_families: Annotated[
        tuple[str, ...],
        Field(strict=False),
        AfterValidator(no_repeats),
    ] = Field(default=(), description="Instance families, e.g. [m7i, c7i]; empty: by category.")
    cpu_limit: Annotated[str, BeforeValidator(_quantity)] = Field(
        default="32", description="Total vCPUs Karpenter may launch (NodePool limits.cpu)."
    )
    memory_limit: Annotated[str, BeforeValidator(_quantity)] = Field(
        default="128Gi", description="Total memory Karpenter may launch (NodePool limits.memory)."
    )

    @field_validator("instance_families", mode="after")
    @classmethod
    def _families(cls, families: tuple[str, ...]) -> tuple[str, ...]:
        for family in families:
            if not re.match(r"^[a-z]+[0-9][a-z0-9-]*$", family):
                raise refuse(f"{family!r} is not an EC2 instance family (e.g. m7i)")
        return families
