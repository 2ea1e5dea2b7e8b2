"""The `nodes` section: the managed node group (components/nodes.py builds it), with
EC2's facts about its instance types once `with_instance_facts` (or `parse` with
`describe`) asked for them.

Imports only the config package's own modules (never a component).
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, PrivateAttr, model_validator

from components.config.aws_facts import InstanceType
from components.config.fields import Section, no_repeats, not_empty, refuse

INSTANCE_TYPE_RE = re.compile(r"^[a-z0-9-]+\.[a-z0-9]+$")


def _instance_type(value: Any) -> str:
    if not isinstance(value, str) or not INSTANCE_TYPE_RE.match(value):
        raise refuse(f"{value!r} is not an EC2 instance type (e.g. t3.medium)")
    return value


class NodesConfig(Section):
    """The managed node group (components/nodes.py)."""

    instance_types: Annotated[
        tuple[Annotated[str, BeforeValidator(_instance_type)], ...],
        Field(strict=False),
        AfterValidator(not_empty),
        AfterValidator(no_repeats),
    ] = Field(
        default=("t3.medium",),
        description="EC2 types of the managed node group: one architecture (x86_64 or "
        "arm64 Graviton), Nitro-based while prefix delegation is on.",
    )
    desired_size: int = Field(default=2, ge=1, description="Nodes to run.")
    min_size: int = Field(
        default=2,
        ge=1,
        description="Lower bound; also caps cilium-operator replicas (one per node).",
    )
    max_size: int = Field(
        default=4,
        ge=1,
        description="Upper bound; the in-cluster checks' rollout budget grows with it.",
    )
    # EC2's facts for each of instance_types, filled in by with_instance_facts (or parse
    # with `describe`); not a config key.
    _facts: tuple[InstanceType, ...] = PrivateAttr(default=())

    @property
    def facts(self) -> tuple[InstanceType, ...]:
        return self._facts

    @model_validator(mode="after")
    def _sizes_in_order(self) -> NodesConfig:
        if not self.min_size <= self.desired_size <= self.max_size:
            raise refuse(
                f"minSize ({self.min_size}) <= desiredSize ({self.desired_size}) <= maxSize "
                f"({self.max_size}) does not hold"
            )
        return self
