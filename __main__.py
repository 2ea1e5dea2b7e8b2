"""cilium-eks, in its two roles: this project's Pulumi program, and the plugin of the
cilium-eks package (components/package.py) that other Pulumi programs add.

Pulumi runs this file either way, and the runtime tells which:
- as the program (Pulumi.yaml), the language host's exec shim configures the runtime with
  the engine's resource monitor before it runs this file (pulumi-language-python-exec:
  `pulumi.runtime.configure(settings)`, then `runpy.run_path`); the test mocks configure
  it too. Then: the stack's config as the CLI hands it over, the whole stack as one
  `Stack` component (components/stack.py, whose docstring is the runbook's table of
  contents), and its outputs exported;
- as the plugin (PulumiPlugin.yaml), the host runs `python <dir> <engine address>` with
  no configuration (pulumi/pulumi sdk/python/cmd/pulumi-language-python/main.go
  RunPlugin: a directory with a __main__.py), and this file serves the package's
  components to the engine, which configures each construct itself.

Imports the config's reading, the Stack component and the package.
"""

import pulumi
from pulumi.runtime.settings import get_monitor

from components.config import handed, stack_inputs
from components.package import host
from components.stack import Stack

if get_monitor() is None:
    host()
else:
    # Every key the CLI hands over, typos included: the Stack refuses what `make check` does.
    # This program's stacks keep the URNs they had before the package (components/stack.py).
    inputs = stack_inputs(handed())
    stack = Stack("cilium-eks", inputs, adopt_program_urns=True)  # type: ignore[arg-type]
    if stack.mesh is not None:
        pulumi.export("mesh", stack.mesh)  # what the mesh's other stacks read
        pulumi.export("meshCa", stack.mesh_ca)  # secret: the CA they read
    if stack.demo is not None:
        pulumi.export("demo", stack.demo)
    pulumi.export("clusterName", stack.cluster_name)
    pulumi.export("region", stack.region)
    pulumi.export("vpcId", stack.vpc_id)
    pulumi.export("kubeconfig", stack.kubeconfig)  # secret
    pulumi.export("ciliumVersion", stack.cilium_version)
    pulumi.export("commands", stack.commands)
