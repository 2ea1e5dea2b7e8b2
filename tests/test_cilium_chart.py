"""The Helm values against the Cilium chart itself, for every chart version in the reference.

values.schema.json checks types but accepts unknown keys, so every key the program sets
is also looked up in the chart's values.yaml: a key renamed or removed in a new chart
(as `tunnel` was in 1.15) fails here, before an upgrade is tried on a cluster.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.conftest import REFERENCE
from tests.harness import dev_config

# Without the reference folder one placeholder remains, and the `reference` fixture skips
# it with the reason.
CHART_VERSIONS = sorted(p.name for p in (REFERENCE / "cilium-chart").glob("*") if p.is_dir()) or [
    "no-reference"
]


def leaf_paths(values: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = []
    for key, value in values.items():
        if isinstance(value, dict) and value:
            paths.extend(leaf_paths(value, (*prefix, key)))
        else:
            paths.append((*prefix, key))
    return paths


def comment_above(values_yaml: str, path: tuple[str, ...]) -> str:
    """The comment block written above a key in values.yaml (the chart's documentation)."""
    lines = values_yaml.splitlines()
    start = 0
    for depth, key in enumerate(path):
        pattern = re.compile(rf"^{' ' * (2 * depth)}{re.escape(key)}:")
        start = next(i for i in range(start, len(lines)) if pattern.match(lines[i]))
    block = []
    for line in reversed(lines[:start]):
        if not line.strip().startswith("#"):
            break
        block.append(line)
    return "\n".join(reversed(block))


@pytest.fixture(scope="module")
def values(dev) -> dict[str, Any]:
    return dev.one("kubernetes:helm.sh/v3:Release").inputs["values"]


def chart_dir(reference: Path, version: str) -> Path:
    return reference / "cilium-chart" / version


def test_the_pinned_version_is_among_the_checked_charts(reference):
    pinned = dev_config()["cilium"]["version"]
    assert (reference / "cilium-chart" / pinned).is_dir(), (
        f"the pinned Cilium {pinned} has no chart schema under {reference}/cilium-chart"
    )


@pytest.mark.parametrize("version", CHART_VERSIONS)
def test_values_are_valid_against_the_charts_schema(reference, values, version):
    schema = json.loads((chart_dir(reference, version) / "values.schema.json").read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [f"{'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(values)]
    assert not errors


@pytest.mark.parametrize("version", CHART_VERSIONS)
def test_every_key_set_exists_in_the_charts_values_yaml(reference, values, version):
    defaults = yaml.safe_load((chart_dir(reference, version) / "values.yaml").read_text())
    missing = []
    for path in leaf_paths(values):
        node: Any = defaults
        for key in path:
            if not isinstance(node, dict) or key not in node:
                missing.append(".".join(path))
                break
            node = node[key]
    assert not missing, f"keys unknown to chart {version}: {missing}"


@pytest.mark.parametrize("version", CHART_VERSIONS)
@pytest.mark.parametrize("path", [("routingMode",), ("hubble", "tls", "auto", "method")])
def test_string_choices_are_among_those_the_chart_documents(reference, values, version, path):
    text = (chart_dir(reference, version) / "values.yaml").read_text()
    chosen: Any = values
    for key in path:
        chosen = chosen[key]
    assert re.search(rf"-\s+{re.escape(chosen)}\b", comment_above(text, path)), (
        f"{'.'.join(path)}={chosen!r} is not a documented choice in chart {version}"
    )
