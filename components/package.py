"""The cilium-eks package: this repository's components for any Pulumi language.

`pulumi package add` runs this repository as a plugin (PulumiPlugin.yaml: Python's
language host runs `python <dir> <engine address>`, i.e. __main__.py, which calls
`host()` when Pulumi has not configured it as a program), reads the schema the SDK infers
from the components' type annotations, and generates an SDK in the consumer's language.
The components are `Stack` (the whole stack, components/stack.py) and `Cilium` (Cilium on
an existing EKS cluster, components/cilium.py), with the tokens cilium-eks:index:Stack and
cilium-eks:index:Cilium (the analyzer names them after their classes).

The version is pyproject.toml's: a release is the tag v<version> (docs/package.md).

Imports the two components it hosts.
"""

import inspect
import json
import tomllib
from pathlib import Path

from pulumi import ComponentResource
from pulumi.provider.experimental import component_provider_host
from pulumi.provider.experimental.component import ComponentProvider

from components.cilium import Cilium
from components.stack import Stack

NAME = "cilium-eks"
COMPONENTS: list[type[ComponentResource]] = [Stack, Cilium]
PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"

# A component's description in the schema is its class docstring as Python keeps it, which
# in 3.11 is still indented (3.13 dedents): Markdown, which the SDKs' docs are written in,
# reads an indented paragraph as code. The same text, dedented.
for _component in COMPONENTS:
    _component.__doc__ = inspect.cleandoc(_component.__doc__ or "")


def version() -> str:
    """The package's version: pyproject.toml's, which a release's tag (v<version>) names."""
    return tomllib.loads(PYPROJECT.read_text())["project"]["version"]


def provider() -> ComponentProvider:
    """The package's provider, as the plugin serves it; its `schema` is schema.json."""
    return ComponentProvider(COMPONENTS, NAME, version=version())


def host() -> None:
    """Serve the package to the Pulumi engine that started this process as its plugin."""
    component_provider_host(components=COMPONENTS, name=NAME, version=version())


def schema() -> str:
    """The package's schema, pretty-printed: what `make schema` writes to schema.json."""
    return json.dumps(json.loads(provider().schema or "{}"), indent=2) + "\n"
