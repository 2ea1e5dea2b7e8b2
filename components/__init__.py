"""The program's modules, in layers (docs/design.md, tests/test_layout.py): config/ (the
stack's configuration, validated) and aws_api.py (the dynamic providers' AWS clients) at
the bottom; above them one module per concept that declares resources, a ComponentResource
each; __main__.py at the top wires them together.

Imports nothing: a package marker with this map.
"""
