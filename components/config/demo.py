"""The `demo` section: Cilium's Star Wars demo and its in-cluster checks
(components/starwars.py deploys them).

Imports only the config package's own field types (never a component).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from components.config.fields import Flag, Section


class DemoConfig(Section):
    """Cilium's Star Wars demo and its in-cluster checks (components/starwars.py)."""

    enabled: Flag = Field(default=True, description="Deploy the Star Wars demo.")
    policy: Literal["none", "l3l4", "l7"] = Field(
        default="l7", description="Which policy the demo's CiliumNetworkPolicy rule1 holds."
    )
    verify: Flag = Field(
        default=True, description="Prove the policy in the cluster during `pulumi up`."
    )
