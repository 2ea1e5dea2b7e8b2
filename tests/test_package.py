"""The repository as a Pulumi package (components/package.py): its schema and generated
input types are what the code makes (`make schema`), every input and output is described,
the Stack's inputs are the config's keys, and __main__.py, run as Pulumi runs a plugin,
serves that schema over the provider protocol.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from components.config import ConfigError, StackConfig, from_stack_inputs, parse, parse_cilium
from components.config.messages import model_in
from tests.harness import ROOT, load_provider_in_fresh_process, provider_loader

SCHEMA = ROOT / "schema.json"
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
TOKENS = {"cilium-eks:index:Stack", "cilium-eks:index:Cilium"}


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return json.loads(SCHEMA.read_text())


def test_schema_json_is_what_the_code_generates():
    from components.package import schema

    assert SCHEMA.read_text() == schema(), "schema.json is stale: make schema"


def test_the_input_types_are_generated_from_the_config():
    from scripts.schema import INPUTS, inputs_module

    assert INPUTS.read_text() == inputs_module(), "components/inputs.py is stale: make schema"


def test_the_package_is_the_two_components_at_pyprojects_version(schema):
    assert schema["name"] == "cilium-eks" and schema["version"] == VERSION
    assert schema["resources"].keys() == TOKENS
    assert all(r["isComponent"] for r in schema["resources"].values())


def described(schema: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """(where, description) of every component, input, output, type, type property and
    enum in the schema."""
    for token, res in schema["resources"].items():
        yield token, res.get("description")
        for kind in ("inputProperties", "properties"):
            for name, prop in res[kind].items():
                yield f"{token} {kind}.{name}", prop.get("description")
    for token, type_ in schema["types"].items():
        yield token, type_.get("description")
        for name, prop in type_.get("properties", {}).items():
            yield f"{token}.{name}", prop.get("description")


def test_every_input_output_and_type_is_described(schema):
    missing = [where for where, text in described(schema) if not (text or "").strip()]
    assert missing == []
    assert len(list(described(schema))) > 80  # the walk sees them all


def test_descriptions_are_dedented_text(schema):
    # Markdown reads an indented line as code in the SDKs' docs
    for where, text in described(schema):
        assert "\n    " not in text, where


def test_the_stacks_inputs_are_the_config_keys(schema):
    """One model: every key of the stack config, at every level, is an input of the same
    name (aws:region is `region`), and nothing else is."""

    def keys(model: Any) -> dict[str, Any]:
        return {(f.alias or n).rpartition(":")[2]: f for n, f in model.model_fields.items()}

    def check(properties: dict[str, Any], model: Any, where: str) -> None:
        assert properties.keys() == keys(model).keys(), where
        for name, field in keys(model).items():
            inner = model_in(field.annotation)
            if inner is not None:
                token = properties[name]["$ref"].rsplit("/", 1)[1]
                check(schema["types"][token]["properties"], inner, f"{where}.{name}")

    stack = schema["resources"]["cilium-eks:index:Stack"]
    check(stack["inputProperties"], StackConfig, "Stack")
    assert stack["requiredInputs"] == ["region"]


def test_the_stacks_outputs_are_the_programs_exports(dev, schema):
    outputs = schema["resources"]["cilium-eks:index:Stack"]["properties"]
    assert outputs.keys() == {*dev.outputs, "mesh", "meshCa"}


def test_a_whole_double_from_the_wire_is_an_int_and_an_enum_its_value():
    from components.inputs import KubernetesVersion, NetworkNatGateways

    inputs = {
        "region": "eu-west-1",
        "kubernetesVersion": KubernetesVersion.V1_36,
        "network": {"azCount": 3.0, "natGateways": NetworkNatGateways.PER_AZ},
        "mesh": {"clusterId": 1.0},
    }
    cfg = parse(from_stack_inputs(inputs), stack="dev")
    assert (cfg.region, cfg.kubernetes_version) == ("eu-west-1", "1.36")
    assert (cfg.network.az_count, cfg.network.nat_gateways) == (3, "perAz")
    assert cfg.mesh is not None and cfg.mesh.cluster_id == 1
    with pytest.raises(ConfigError, match=r"network\.azCount: 2\.5 is not allowed"):
        parse(from_stack_inputs({**inputs, "network": {"azCount": 2.5}}), stack="dev")


def test_the_cilium_section_alone_is_refused_in_the_configs_words():
    assert parse_cilium({}).version == StackConfig.model_fields["cilium"].default_factory().version  # type: ignore[misc]
    with pytest.raises(ConfigError) as err:
        parse_cilium({"version": "latest", "hubble": {"relay": False}})
    assert "cilium.version: 'latest' is not an exact chart version" in str(err.value)
    assert "cilium.hubble.ui: true requires cilium.hubble.relay: true" in str(err.value)


def test_the_plugin_shares_the_programs_runtime():
    plugin = yaml.safe_load((ROOT / "PulumiPlugin.yaml").read_text())
    program = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    assert plugin["runtime"]["name"] == program["runtime"]["name"] == "python"
    options = program["runtime"]["options"]
    # the same venv from the same lock; no type check on a consumer's every run
    assert plugin["runtime"]["options"] == {k: options[k] for k in ("toolchain", "virtualenv")}


def test_run_as_a_plugin_main_serves_the_package(tmp_path, schema):
    """`python <dir> <engine address>` from the consumer's directory, as Python's language
    host runs a plugin with a __main__.py (sdk/python/cmd/pulumi-language-python/main.go
    RunPlugin): no runtime configured, so __main__.py hosts the components; the engine
    asks for the schema over the provider protocol."""
    import grpc
    from google.protobuf import empty_pb2
    from pulumi.runtime.proto import provider_pb2, provider_pb2_grpc

    plugin = subprocess.Popen(
        [sys.executable, str(ROOT), "127.0.0.1:1"], cwd=tmp_path, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert plugin.stdout is not None
        port = plugin.stdout.readline().strip()  # the plugin's handshake: its port
        assert port.isdigit(), plugin.communicate(timeout=30)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = provider_pb2_grpc.ResourceProviderStub(channel)
            assert stub.GetPluginInfo(empty_pb2.Empty(), timeout=30).version == VERSION
            served = stub.GetSchema(provider_pb2.GetSchemaRequest(), timeout=30).schema
        assert json.loads(served) == schema
    finally:
        plugin.terminate()
        plugin.wait(timeout=30)


def test_run_as_the_program_main_declares_the_stack(dev):
    # the mocks configure the runtime as the exec shim does: __main__.py is the program
    stack = dev.one("cilium-eks:index:Stack")
    assert stack.name == "cilium-eks" and stack.parent == dev.one("pulumi:pulumi:Stack").urn
    assert "clusterName" in dev.outputs


# `pulumi package add <repository>@v<version>`: the release's line, a tag (docs/package.md)
PACKAGE_ADD = re.compile(r"pulumi package add (github\.com/\S+?)@(v?\d+\.\d+\.\d+)")


@pytest.mark.parametrize("page", ["README.md", "docs/package.md"])
def test_the_release_to_add_is_pyprojects_version_as_a_tag(page):
    found = PACKAGE_ADD.findall((ROOT / page).read_text())
    assert found and {version for _, version in found} == {f"v{VERSION}"}


def test_the_guide_lists_the_cilium_components_inputs(schema):
    guide = (ROOT / "docs" / "package.md").read_text()
    table = guide[guide.index("| input | required | meaning |") :].split("\n\n")[0]
    rows = re.findall(r"^\| `(\w+)` \| (yes|no) \|", table, re.M)
    cilium = schema["resources"]["cilium-eks:index:Cilium"]
    assert [name for name, _ in rows] == list(cilium["inputProperties"])
    assert {n for n, required in rows if required == "yes"} == set(cilium["requiredInputs"])


@pytest.mark.parametrize(
    "provider",
    [
        "components.teardown:EniSweeperProvider",
        "components.image_cache:CacheWarmupProvider",
        "components.mesh_link:MeshLinkProvider",
    ],
)
def test_a_consumers_dynamic_provider_host_runs_the_sweep_with_the_recipe(tmp_path, provider):
    """The sweep (and the cache warm-up, the mesh link) as a consumer's Pulumi runs it: the
    Python dynamic-provider host, started in the consumer's directory, unpickles the
    provider the state names by module and class. Without PYTHONPATH on the package it
    cannot; with it (docs/package.md's recipe), it loads what the state holds."""
    import importlib

    from pulumi.dynamic.dynamic import serialize_provider

    module, name = provider.split(":")
    serialized = serialize_provider(getattr(importlib.import_module(module), name)())
    without = provider_loader(serialized, cwd=tmp_path, pythonpath=None)
    assert without.returncode != 0 and "No module named 'components'" in without.stderr
    loaded, _, reserialized = load_provider_in_fresh_process(
        serialized, cwd=tmp_path, pythonpath=ROOT
    )
    assert loaded == f"{module} {name}" and reserialized == serialized
