"""The examples in other languages (examples/), checked as far as this machine allows: no
Pulumi CLI to generate their SDKs, no npm install. Their Pulumi.yaml files parse and add
this repository as the package; every input name they use exists in schema.json, at every
level; the YAML program's Stack inputs are a valid stack config and declare the stack
under the mocks; the TypeScript program's literal `cilium` settings pass the Cilium
component's check, and the name of the cluster it hands Cilium (its literal `name`, or the
one pulumi-eks derives without one) is one the component takes as Cilium's cluster.name;
its node group waits for Cilium and carries its taint. Not checked: TypeScript's own type
check of index.ts against the generated SDK, @pulumi/eks and @pulumi/awsx (docs/package.md
says so).
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.cilium import cilium_cluster_name
from components.config import ConfigError, from_stack_inputs, parse, parse_cilium
from components.nodes import CILIUM_AGENT_NOT_READY_TAINT
from scripts import account
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


@dataclass(frozen=True)
class Expression:
    """A value in a TypeScript object literal that is not a literal: its source text."""

    text: str


# A literal value, up to the comma or brace that ends it: a string without interpolation, a
# number, a boolean, or an array of those.
SCALAR = r"""(?:"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?|true|false)"""
LITERAL = re.compile(rf"\s*({SCALAR}|\[\s*(?:{SCALAR}\s*,?\s*)*\])\s*(?=[,}}\n])")


def object_literal(text: str, start: int) -> tuple[dict[str, Any], int]:
    """The TypeScript object literal opening at text[start] == "{": its keys with their
    values (nested literals as dicts; strings, numbers, booleans and arrays of them as
    Python values; anything else as an Expression), and the index after its closing brace."""
    assert text[start] == "{"
    keys: dict[str, Any] = {}
    i, depth, expecting_key, last_key, value_at = start + 1, 1, True, None, 0

    def close_value(end: int) -> None:
        if last_key is not None and keys[last_key] is None:
            keys[last_key] = Expression(text[value_at:end].strip())

    while depth:
        char = text[i]
        if depth == 1 and not expecting_key and last_key is not None and i == value_at:
            if char == "{":
                keys[last_key], i = object_literal(text, i)
                continue
            literal = LITERAL.match(text, i)
            if literal:
                keys[last_key] = json.loads(literal.group(1).replace(",]", "]"))
                i = literal.end()
                continue
        if char in "\"'`":
            i = text.index(char, i + 1) + 1
            continue
        if char in "{[(":
            depth += 1
        elif char in "}])":
            depth -= 1
            if not depth:
                close_value(i)
        elif depth == 1 and char == ",":
            close_value(i)
            expecting_key = True
        elif depth == 1 and expecting_key:
            match = re.compile(r"\s*(\w+)\s*:\s*").match(text, i)
            if match:
                last_key, expecting_key = match.group(1), False
                keys[last_key] = None
                i = value_at = match.end()
                continue
        i += 1
    return keys, i


def constructed(text: str, call: str) -> list[dict[str, Any]]:
    """The input objects passed to every `new <call>(name, {...})`, e.g. `ciliumEks.Cilium`."""
    found = []
    for match in re.finditer(rf"new {re.escape(call)}\(\s*\"[\w-]+\",\s*\{{", text):
        found.append(object_literal(text, match.end() - 1)[0])
    return found


def plain(keys: dict[str, Any]) -> dict[str, Any]:
    return {k: plain(v) if isinstance(v, dict) else "" for k, v in keys.items()}


def test_the_typescript_program_passes_cilium_inputs_it_has():
    text = (TYPESCRIPT / "index.ts").read_text()
    assert 'import * as ciliumEks from "@pulumi/cilium-eks";' in text  # what codegen names it
    (inputs,) = constructed(text, "ciliumEks.Cilium")
    schema = resource("cilium-eks:index:Cilium")
    assert unknown_names(plain(inputs), schema["inputProperties"], "args") == []
    assert set(schema["requiredInputs"]) <= inputs.keys()
    assert inputs["cilium"] and "hubble" in inputs["cilium"]  # nested names were checked
    # the outputs it reads
    used = set(re.findall(r"(?<![\w.])cilium\.(\w+)", text))
    assert used and used <= schema["properties"].keys()


def test_the_typescript_programs_cilium_settings_are_valid_ones():
    """The literal `cilium` settings pass the Cilium component's own check (the stack
    config's model): a version it does not support would only fail at `pulumi up`."""
    (inputs,) = constructed((TYPESCRIPT / "index.ts").read_text(), "ciliumEks.Cilium")
    settings = inputs["cilium"]
    assert not [v for v in settings.values() if isinstance(v, Expression)]  # all literal
    assert parse_cilium(settings).version == settings["version"]


# pulumi-eks's Cluster names its aws.eks.Cluster `${name}-eksCluster` and passes its `name`
# input on, so without one the cluster is auto-named `${name}-eksCluster-` plus a random
# suffix (the `name` input's doc: "`${name}-eksCluster-0123abcd`"; nodejs/eks/cluster/
# cluster.ts in pulumi/pulumi-eks).
PULUMI_EKS_AUTONAME = "{}-eksCluster-0123abcd"


def eks_cluster_name(text: str, expression: Expression) -> str:
    """The name of the EKS cluster an expression such as `cluster.eksCluster.name` reads:
    the literal `name` of that `new eks.Cluster`, else the name pulumi-eks derives."""
    match = re.fullmatch(r"(\w+)\.eksCluster\.name", expression.text)
    assert match, f"clusterName {expression.text!r} is not a pulumi-eks cluster's name"
    declared = re.search(rf"const {match.group(1)} = new eks\.Cluster\(\s*\"([\w-]+)\"", text)
    assert declared, f"no `const {match.group(1)} = new eks.Cluster(...)`"
    args, _ = object_literal(text, text.index("{", declared.end()))
    name = args.get("name")
    assert name is None or isinstance(name, str), f"the cluster's name is no literal: {name}"
    return name if name is not None else PULUMI_EKS_AUTONAME.format(declared.group(1))


def test_the_typescript_programs_cluster_name_is_one_cilium_takes():
    """The cluster's name is Cilium's cluster.name: the component refuses a name Cilium
    would not take, at `pulumi up` once the cluster exists (an Output's apply), so the
    example's is checked here with the component's own rule."""
    text = (TYPESCRIPT / "index.ts").read_text()
    (inputs,) = constructed(text, "ciliumEks.Cilium")
    name = eks_cluster_name(text, inputs["clusterName"])
    assert cilium_cluster_name(name) == name


def test_an_unnamed_pulumi_eks_cluster_gets_a_name_cilium_refuses():
    text = 'const cluster = new eks.Cluster("cluster", {\n    vpcId: vpc.vpcId,\n});'
    name = eks_cluster_name(text, Expression("cluster.eksCluster.name"))
    assert name.startswith("cluster-eksCluster-")
    with pytest.raises(ConfigError, match="not a valid Cilium cluster name"):
        cilium_cluster_name(name)


def test_the_object_literal_reader_sees_nested_keys_and_literal_values():
    text = (
        'new ciliumEks.Cilium("c", { a: f({ x: 1 }), b: { c: "d,e: f", g: [1, "2"] },'
        " h: 1.5, i: true, j: x.y.z })"
    )
    assert constructed(text, "ciliumEks.Cilium") == [
        {
            "a": Expression("f({ x: 1 })"),
            "b": {"c": "d,e: f", "g": [1, "2"]},
            "h": 1.5,
            "i": True,
            "j": Expression("x.y.z"),
        }
    ]


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


def test_the_package_doc_names_each_check_of_the_preflight_a_consumer_runs_instead():
    """A Stack's consumer runs no preflight: docs/package.md names each of its refusals by
    the key its message names (the messages' own words, read from the scripts), with the
    Spot role's commands."""
    doc = (ROOT / "docs" / "package.md").read_text()
    start = doc.index("### What the preflight checks and a Stack does not")
    section = doc[start : doc.index("\n## ", start)]
    keys = set()
    for script in ("preflight", "account"):
        source = (ROOT / "scripts" / f"{script}.py").read_text()
        keys |= set(re.findall(r'\bf?"([a-z]+\.[a-zA-Z]+): ', source))
    assert {"karpenter.capacityTypes", "cilium.kubeProxyReplacement"} <= keys  # read right
    assert sorted(k for k in keys if f"`{k}`" not in section) == []
    assert f"aws iam get-role --role-name {account.SPOT_ROLE}" in " ".join(section.split())
    assert f"--aws-service-name {account.SPOT_SERVICE}" in section
