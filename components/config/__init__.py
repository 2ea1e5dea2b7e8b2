"""Stack configuration, read and validated once, before any resource is declared.

A bad value found 15 minutes into `pulumi up` leaves a half-built VPC behind; found here it
costs nothing. The keys are pydantic models, one module per section, each field with its
type, default and meaning (docs/configuration.md is the same table for readers). Every
mistake is reported at once, each naming the key as typed in `Pulumi.<stack>.yaml` and what
would have been accepted: one `ConfigError`, one round of fixes.

- fields: the project's namespace, `ConfigError`, the base of a section, shared field types;
- network, nodes, cilium, access, demo, mesh, karpenter: one section each (mesh also holds
  the rules the peers' stack outputs are checked against, `mesh_problems`);
- stack: the whole stack's model (`StackConfig`);
- messages: pydantic's errors in the config's words;
- aws_facts: what the AWS SDK's data and EC2 say of regions and instance types;
- reading: `parse()` (pure and offline: tests and `make check` call it directly),
  `handed()` (the stack's config as the Pulumi CLI hands it over), and the same config as
  the package's components take it (`stack_inputs`, `from_stack_inputs`, `parse_cilium`);
- stack_file: the YAML reader of `make check`, numbers with their text (1.30, not 1.3);
  not imported here, so that the program never loads PyYAML.

Callers import from here. The package is the program's lowest layer (tests/test_layout.py):

Imports only its own modules: never a component (anything that declares resources) nor
any other module of the program.
"""

from components.config.access import AccessConfig
from components.config.aws_facts import (
    InstanceType,
    describe_instance_type,
    ec2_instance_types,
    eks_regions,
    pulumi_eks_architecture,
    with_instance_facts,
)
from components.config.cilium import (
    DEFAULT_CILIUM_VERSION,
    MIN_CILIUM_VERSION,
    CiliumConfig,
    HubbleConfig,
    minor_of,
)
from components.config.demo import DemoConfig
from components.config.fields import PROJECT, ConfigError
from components.config.karpenter import KarpenterConfig, cpu_cores
from components.config.mesh import MESH_REFUSED, MeshConfig, mesh_problems
from components.config.network import NetworkConfig
from components.config.nodes import NodesConfig
from components.config.reading import (
    from_stack_inputs,
    handed,
    parse,
    parse_cilium,
    stack_config_keys,
    stack_inputs,
)
from components.config.stack import (
    CLUSTER_NAME_RE,
    DEFAULT_KUBERNETES_VERSION,
    DefaultTags,
    StackConfig,
)

__all__ = [
    "CLUSTER_NAME_RE",
    "DEFAULT_CILIUM_VERSION",
    "DEFAULT_KUBERNETES_VERSION",
    "MESH_REFUSED",
    "MIN_CILIUM_VERSION",
    "PROJECT",
    "AccessConfig",
    "CiliumConfig",
    "ConfigError",
    "DefaultTags",
    "DemoConfig",
    "HubbleConfig",
    "InstanceType",
    "KarpenterConfig",
    "MeshConfig",
    "NetworkConfig",
    "NodesConfig",
    "StackConfig",
    "cpu_cores",
    "describe_instance_type",
    "ec2_instance_types",
    "eks_regions",
    "from_stack_inputs",
    "handed",
    "mesh_problems",
    "minor_of",
    "parse",
    "parse_cilium",
    "pulumi_eks_architecture",
    "stack_config_keys",
    "stack_inputs",
    "with_instance_facts",
]
