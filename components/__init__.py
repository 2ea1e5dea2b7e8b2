"""The program's modules, in layers (docs/design.md, tests/test_layout.py): config/ (the
stack's configuration, validated) and aws_api.py (the dynamic providers' AWS clients) at
the bottom; above them one module per concept that declares resources, a ComponentResource
each, which stack.py wires together into the whole stack (package.py: Stack and Cilium as a
Pulumi package); __main__.py at the top declares the Stack, or serves the package.

Imports nothing: a package marker with this map.
"""
