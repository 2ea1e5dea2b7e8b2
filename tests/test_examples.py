"""The examples in other languages (examples/), checked as far as this machine allows: no
Pulumi CLI to generate their SDKs, no npm install. Their Pulumi.yaml files parse and add
this repository as the package; every input name they use exists in schema.json, at every
level; the YAML program's Stack inputs are a valid stack config and declare the stack
under the mocks; the TypeScript program's node group waits for Cilium and carries its
taint. Not checked: TypeScript's own type check of index.ts against the generated SDK,
@pulumi/eks and @pulumi/awsx (docs/package.md says so).
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.config import from_stack_inputs, parse
from components.nodes import CILIUM_AGENT_NOT_READY_TAINT
from tests.harness import ROOT, construct

EXAMPLES = ROOT / "examples"
TYPESCRIPT = EXAMPLES / "eks-typescript"
YAML = EXAMPLES / "stack-yaml"
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
SCHEMA = json.loads((ROOT / "schema.json").read_text())
# `pulumi package add <repository>@v<version>`: a release's tag (docs/package.md)
PACKAGE_ADD = re.compile(r"pulumi package add (github\.com/\S+?)@v?(\d+\.\d+\.\d+)")


def project(example: Path) -> dict[str, Any]:
    return yaml.safe_load((example / "Pulumi.yaml").read_text())


def resource(token: str) -> dict[str, Any]:
    return SCHEMA["resources"][token]


def type_of(prop: dict[str, Any]) -> dict[str, Any] | None:
    ref = prop.get("$ref", "")
    return SCHEMA["types"][ref.rsplit("/", 1)[1]] if ref.startswith("#/types/") else None


def unknown_names(given: dict[str, Any], properties: dict[str, Any], where: str) -> list[str]:
    """The names in `given` (nested objects too) that the schema does not have."""
    unknown = []
    for name, value in given.items():
        if name not in properties:
            unknown.append(f"{where}.{name}")
            continue
        nested = type_of(properties[name])
        if isinstance(value, dict) and nested and "properties" in nested:
            unknown += unknown_names(value, nested["properties"], f"{where}.{name}")
    return unknown


@pytest.mark.parametrize("example", [TYPESCRIPT, YAML], ids=lambda p: p.name)
def test_each_example_adds_this_repository_as_the_package(example):
    spec = project(example)["packages"]["cilium-eks"]
    source = spec if isinstance(spec, str) else spec["source"]
    assert (example / source).resolve() == ROOT  # a path: this checkout
    assert (ROOT / "PulumiPlugin.yaml").is_file()
    # and each one's README gives the release's line too, at pyproject's version
    readme = (example / "README.md").read_text()
    assert [m.group(2) for m in PACKAGE_ADD.finditer(readme)] == [VERSION]


def test_the_yaml_program_uses_the_stack_with_inputs_and_outputs_it_has():
    program = project(YAML)
    assert program["runtime"] == "yaml"
    (stack,) = program["resources"].values()
    assert stack["type"] == "cilium-eks:index:Stack"
    schema = resource(stack["type"])
    assert unknown_names(stack["properties"], schema["inputProperties"], "properties") == []
    name = next(iter(program["resources"]))
    used = re.findall(rf"\$\{{{re.escape(name)}\.(\w+)\}}", (YAML / "Pulumi.yaml").read_text())
    assert used and set(used) <= schema["properties"].keys()


def yaml_stack_inputs() -> dict[str, Any]:
    """The YAML program's Stack inputs, with its config's defaults in place."""
    program = project(YAML)
    (stack,) = program["resources"].values()
    defaults = {key: c["default"] for key, c in program["config"].items()}
    text = json.dumps(stack["properties"])
    for key, value in defaults.items():
        text = text.replace(f"${{{key}}}", value)
    return json.loads(text)


def test_the_yaml_programs_inputs_are_a_valid_stack_config():
    cfg = parse(from_stack_inputs(yaml_stack_inputs()), stack="dev")
    assert cfg.cluster_name == "cilium-eks-yaml"


def test_the_yaml_programs_stack_declares_the_stack_under_the_mocks():
    graph = construct("cilium-eks:index:Stack", "cilium-eks", yaml_stack_inputs(), kubernetes=False)
    assert graph.error is None, graph.error["traceback"]
    assert graph.one("eks:index:Cluster").inputs["name"] == "cilium-eks-yaml"
    assert graph.output("clusterName") == "cilium-eks-yaml"


def object_literal(text: str, start: int) -> tuple[dict[str, Any], int]:
    """The keys of the TypeScript object literal opening at text[start] == "{" (nested
    literals as dicts, other values as None), and the index after its closing brace."""
    assert text[start] == "{"
    keys: dict[str, Any] = {}
    i, depth, expecting_key, last_key = start + 1, 1, True, None
    while depth:
        char = text[i]
        if char in "\"'`":
            i = text.index(char, i + 1) + 1
            continue
        if depth == 1 and char == "{" and not expecting_key and last_key is not None:
            keys[last_key], i = object_literal(text, i)
            continue
        if char in "{[(":
            depth += 1
        elif char in "}])":
            depth -= 1
        elif depth == 1 and char == ",":
            expecting_key = True
        elif depth == 1 and expecting_key:
            match = re.compile(r"\s*(\w+)\s*:").match(text, i)
            if match:
                last_key, expecting_key = match.group(1), False
                keys[last_key] = None
                i = match.end()
                continue
        i += 1
    return keys, i


def constructed(text: str, token: str) -> list[dict[str, Any]]:
    """The input objects passed to every `new ciliumEks.<Component>(name, {...})`."""
    component = token.rsplit(":", 1)[1]
    found = []
    for match in re.finditer(rf"new ciliumEks\.{component}\(\s*\"[\w-]+\",\s*\{{", text):
        found.append(object_literal(text, match.end() - 1)[0])
    return found


def plain(keys: dict[str, Any]) -> dict[str, Any]:
    return {k: plain(v) if isinstance(v, dict) else "" for k, v in keys.items()}


def test_the_typescript_program_passes_cilium_inputs_it_has():
    text = (TYPESCRIPT / "index.ts").read_text()
    assert 'import * as ciliumEks from "@pulumi/cilium-eks";' in text  # what codegen names it
    (inputs,) = constructed(text, "cilium-eks:index:Cilium")
    schema = resource("cilium-eks:index:Cilium")
    assert unknown_names(plain(inputs), schema["inputProperties"], "args") == []
    assert set(schema["requiredInputs"]) <= inputs.keys()
    assert inputs["cilium"] and "hubble" in inputs["cilium"]  # nested names were checked
    # the outputs it reads
    used = set(re.findall(r"(?<![\w.])cilium\.(\w+)", text))
    assert used and used <= schema["properties"].keys()


def test_the_object_literal_reader_sees_nested_keys_and_skips_values():
    text = 'new ciliumEks.Cilium("c", { a: f({ x: 1 }), b: { c: "d,e: f", g: [1, 2] }, h: 1 })'
    assert constructed(text, "x:y:Cilium") == [{"a": None, "b": {"c": None, "g": None}, "h": None}]


def test_the_typescript_node_group_waits_for_cilium_and_carries_its_taint():
    text = (TYPESCRIPT / "index.ts").read_text()
    start = text.index('new eks.ManagedNodeGroup("nodes"')
    call = text[start : text.index("});", start)]
    taint = CILIUM_AGENT_NOT_READY_TAINT
    assert f'{{ key: "{taint.key}", value: "{taint.value}", effect: "{taint.effect}" }}' in call
    assert re.search(r"dependsOn: \[cilium\b", call)


def test_the_typescript_program_links_the_generated_sdk():
    package = json.loads((TYPESCRIPT / "package.json").read_text())
    assert package["dependencies"]["@pulumi/cilium-eks"] == "file:sdks/cilium-eks"
    assert "/sdks/" in (TYPESCRIPT / ".gitignore").read_text()  # generated, never committed
