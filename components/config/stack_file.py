"""The YAML loader for reading a stack file directly, as `make check` does
(scripts/check_config.py): PyYAML's safe loader, except that a number YAML reads as a float
keeps the text it was written as.

`kubernetesVersion: 1.30`, unquoted, is the float 1.3 to any YAML reader, Pulumi's
included; a message that said "1.3 is not allowed" would name a value nobody wrote. With
the text kept, the config's messages say "1.30 is read as the number 1.3" and how to
quote it (messages.py). The program never reads the file: it gets the config from the
Pulumi CLI, whose YAML reader has already made the number 1.3 (reading.py,
`stack_config_keys`).

Imports only the config package's own modules, and PyYAML (a dependency of pulumi);
nothing of the program imports it, so `pulumi up` never loads it.
"""

from __future__ import annotations

import yaml

from components.config.fields import WrittenFloat


class StackFileLoader(yaml.SafeLoader):
    """`yaml.load(text, Loader=StackFileLoader)`: yaml.safe_load, floats as WrittenFloat."""

    def construct_yaml_float(self, node: yaml.Node) -> WrittenFloat:
        assert isinstance(node, yaml.ScalarNode)
        return WrittenFloat(super().construct_yaml_float(node), node.value)


StackFileLoader.add_constructor("tag:yaml.org,2002:float", StackFileLoader.construct_yaml_float)
