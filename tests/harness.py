"""Test-side API over tests/mock_run.py: run the program with a config, query its graph."""

from __future__ import annotations

import copy
import functools
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "cilium-eks"


STACK_FIXTURE = ROOT / "tests" / "fixtures" / "stack.yaml"


def dev_config() -> dict[str, Any]:
    """The suite's own stack (tests/fixtures/stack.yaml, never the user's Pulumi.dev.yaml),
    as {key: value} with project keys unprefixed: a copy of its own to each caller."""
    return copy.deepcopy(_stack_fixture())


@functools.cache
def _stack_fixture() -> dict[str, Any]:
    """Read once per process: every mock run starts from it, and parsing it with PyYAML's
    pure Python parser cost 10 ms a time (a few seconds a suite)."""
    raw = yaml.safe_load(STACK_FIXTURE.read_text())["config"]
    return {k.removeprefix(f"{PROJECT}:"): v for k, v in raw.items()}


def with_overrides(config: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """`pulumi config set --path` semantics: "demo.policy": "none" sets one nested key;
    a value of None removes the key."""
    result = copy.deepcopy(config)
    for path, value in overrides.items():
        *parents, leaf = path.split(".")
        node = result
        for part in parents:
            node = node.setdefault(part, {})
        if value is None:
            node.pop(leaf, None)
        else:
            node[leaf] = value
    return result


def pulumi_config_env(config: dict[str, Any]) -> str:
    """The PULUMI_CONFIG variable the CLI hands the program: strings raw, objects as JSON."""
    env = {}
    for key, value in config.items():
        full = key if ":" in key else f"{PROJECT}:{key}"
        env[full] = value if isinstance(value, str) else json.dumps(value)
    return json.dumps(env)


@dataclass
class Resource:
    urn: str
    type: str
    name: str
    custom: bool
    remote: bool
    parent: str | None
    provider: str | None
    providers: dict[str, str]  # a remote component's, by package
    import_id: str | None
    retain_on_delete: bool
    dependencies: list[str]
    property_dependencies: dict[str, list[str]]
    inputs: dict[str, Any]
    custom_timeouts: dict[str, str]  # how long Pulumi waits: {"create": "20m", ...}
    secret_inputs: list[str]  # the inputs sent as secrets, as dotted paths ("values.tls")
    aliases: list[Any]  # the URNs (or alias specs) it may have had before


class Graph:
    """The resources one run declared, with transitive dependency queries.

    An edge A -> B means A cannot be created before B: B is in A's explicit or property
    dependencies, or B is A's provider.
    """

    def __init__(self, data: dict[str, Any]) -> None:
        self.error: dict[str, str] | None = data["error"]
        self.outputs: dict[str, Any] = data["outputs"]
        self.seconds: float = data["seconds"]  # wall clock
        self.cpu_seconds: float = data["cpuSeconds"]  # this process's CPU, all threads
        self.resources = [
            Resource(
                urn=r["urn"],
                type=r["type"],
                name=r["name"],
                custom=r["custom"],
                remote=r["remote"],
                parent=r["parent"],
                provider=r["provider"],
                providers=r["providers"],
                import_id=r["importId"],
                retain_on_delete=r["retainOnDelete"],
                dependencies=r["dependencies"],
                property_dependencies=r["propertyDependencies"],
                inputs=r["inputs"],
                custom_timeouts=r["customTimeouts"],
                secret_inputs=r["secretInputs"],
                aliases=r["aliases"],
            )
            for r in data["resources"]
        ]
        self.by_urn = {r.urn: r for r in self.resources}
        # what each component passed to register_outputs (absent: it never did)
        self.component_outputs: dict[str, dict[str, Any]] = data["componentOutputs"]
        # every provider function the run called: {"token", "args", "provider"}
        self.invokes: list[dict[str, Any]] = data["invokes"]
        # every resource read rather than managed: {"urn", "type", "id", "parent"}
        self.reads: list[dict[str, Any]] = data["reads"]

    def of_type(self, type_: str) -> list[Resource]:
        return [r for r in self.resources if r.type == type_]

    def one(self, type_: str, name: str | None = None) -> Resource:
        found = [r for r in self.of_type(type_) if name is None or r.name == name]
        assert len(found) == 1, f"expected one {type_} {name or ''}, found {len(found)}"
        return found[0]

    def direct(self, res: Resource) -> set[str]:
        deps = set(res.dependencies)
        for urns in res.property_dependencies.values():
            deps.update(urns)
        if res.provider:
            deps.add(res.provider)
        return deps

    def upstream(self, res: Resource) -> set[str]:
        """Every URN `res` waits for, transitively."""
        seen: set[str] = set()
        stack = list(self.direct(res))
        while stack:
            urn = stack.pop()
            if urn in seen:
                continue
            seen.add(urn)
            if urn in self.by_urn:
                stack.extend(self.direct(self.by_urn[urn]))
        return seen

    def waits_for(self, res: Resource, other: Resource) -> bool:
        return other.urn in self.upstream(res)

    def children(self, parent: Resource) -> Iterator[Resource]:
        return (r for r in self.resources if r.parent == parent.urn)

    def output(self, key: str) -> Any:
        return self.outputs[key]["value"]

    def declared(self, *, but_aliases: tuple[dict[str, Any], ...] = ()) -> dict[str, Any]:
        """What the run declared, by URN, in a form two runs can be compared by: parent,
        provider, edges, inputs and aliases (but those given). Registration order and the
        order of dependency sets vary with asyncio's scheduling; names, inputs and edges
        may not."""
        return {
            r.urn: (
                r.parent,
                r.provider,
                sorted(r.dependencies),
                {k: sorted(v) for k, v in r.property_dependencies.items()},
                r.inputs,
                [a for a in r.aliases if a not in but_aliases],
            )
            for r in self.resources
        }

    def subnet_ids(self, role: str) -> list[str]:
        """Sorted ids (as the mocks make them) of the `public` or `private` subnets, told
        apart by their load-balancer role tag, not by their names."""
        tag = {"public": "kubernetes.io/role/elb", "private": "kubernetes.io/role/internal-elb"}
        return sorted(
            mock_id(s)
            for s in self.of_type("aws:ec2/subnet:Subnet")
            if s.inputs["tags"].get(tag[role]) == "1"
        )


def mock_id(res: Resource) -> str:
    """The id tests/mock_run.py gives a resource (an IAM role's id is its name, as in AWS)."""
    return res.name if res.type == "aws:iam/role:Role" else f"{res.name}-id"


MOCK_RUN = ROOT / "tests" / "mock_run.py"


def _env(config_json: str) -> dict[str, str]:
    env = dict(os.environ, PULUMI_CONFIG=config_json)
    env.pop("PULUMI_CONFIG_SECRET_KEYS", None)
    # uv installs without bytecode and CI machines set PYTHONDONTWRITEBYTECODE: then every
    # run would compile pulumi_aws's modules again (~3.7 s of CPU instead of ~1.3 s). The
    # first run writes them into ./venv; what `pulumi up` on a user's machine does too.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("MOCK_WORLD", None)
    env.pop("MOCK_CONSTRUCT", None)
    return env


def _run_cold(config_json: str, world_json: str) -> str:
    """A run in a fresh interpreter, imports included (what `pulumi up` pays)."""
    env = _env(config_json)
    env["MOCK_WORLD"] = world_json
    proc = subprocess.run(
        [sys.executable, str(MOCK_RUN)], capture_output=True, text=True, env=env, cwd=ROOT,
        timeout=120,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"mock run crashed:\n{proc.stderr}")
    return proc.stdout


@functools.lru_cache(maxsize=1)
def _server() -> subprocess.Popen[str]:
    """This test process's `mock_run.py --serve`, warmed up on the dev stack's config."""
    return subprocess.Popen(
        [sys.executable, str(MOCK_RUN), "--serve"], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True, env=_env(pulumi_config_env(dev_config())), cwd=ROOT,
    )  # fmt: skip


@functools.cache
def _run(config_json: str, world_json: str, construct_json: str = "") -> str:
    """A run forked from the warm server; the same program, config and mocks."""
    server = _server()
    assert server.stdin and server.stdout
    with tempfile.NamedTemporaryFile("r", suffix=".json") as out:
        request = {
            "config": config_json,
            "world": world_json,
            "construct": construct_json,
            "out": out.name,
        }
        server.stdin.write(json.dumps(request) + "\n")
        server.stdin.flush()
        answer = server.stdout.readline()
        if not answer or json.loads(answer)["exit"] != 0:
            raise RuntimeError(f"mock run crashed ({answer.strip() or 'server gone'})")
        return out.read()


def run_program(
    overrides: dict[str, Any] | None = None,
    *,
    azs: str | None = None,
    world: dict[str, Any] | None = None,
    cached: bool = True,
) -> Graph:
    """Run __main__.py under mocks with the dev config (plus overrides): forked from a warm
    server and cached per input, or with `cached=False` in a fresh interpreter. `world` is
    what already exists in the account (tests/mock_run.py world()); `azs` the region's
    zones, comma-separated."""
    cfg = with_overrides(dev_config(), overrides or {})
    facts = {**(world or {}), **({"azs": azs} if azs is not None else {})}
    run = _run if cached else _run_cold
    return Graph(json.loads(run(pulumi_config_env(cfg), json.dumps(facts, sort_keys=True))))


def construct(
    type_: str,
    name: str,
    inputs: dict[str, Any],
    *,
    kubernetes: bool = True,
    project: str = PROJECT,
) -> Graph:
    """One of the package's components constructed as a program in another language has
    the package's provider construct it (tests/mock_run.py construct): `inputs` by the
    schema's names, as they cross the wire; `kubernetes`, whether the consumer passes a
    Kubernetes provider; `project`, the consumer's project. Forked from the warm server,
    with the dev stack's config (which the component does not read) for the mocks'
    region; cached per input."""
    request = {"type": type_, "name": name, "inputs": inputs, "kubernetes": kubernetes}
    config = pulumi_config_env(dev_config())
    world = json.dumps({"project": project} if project != PROJECT else {})
    return Graph(json.loads(_run(config, world, json.dumps(request, sort_keys=True))))


def on_the_wire(value: Any) -> Any:
    """A value as it reaches a provider from another language: every number a double."""
    if isinstance(value, dict):
        return {k: on_the_wire(v) for k, v in value.items()}
    if isinstance(value, list):
        return [on_the_wire(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def stack_inputs() -> dict[str, Any]:
    """The dev stack's config as a Stack's inputs on the wire: aws:region is `region`."""
    config = dev_config()
    return on_the_wire(
        {("region" if key == "aws:region" else key): value for key, value in config.items()}
    )


def run_ok(overrides: dict[str, Any] | None = None, **kwargs: Any) -> Graph:
    graph = run_program(overrides, **kwargs)
    assert graph.error is None, graph.error["traceback"]
    return graph


def load_provider_in_fresh_process(
    serialized: str, *, cwd: Path = ROOT, pythonpath: Path | None = None
) -> tuple[str, bool, str]:
    """What a dynamic-provider host makes of a provider Pulumi stored: (module and class,
    whether boto3 got imported, the provider serialized again). The host runs in the
    project's directory (`cwd`), so this project's own finds `components` there; a
    consumer's needs `pythonpath` (docs/package.md)."""
    proc = provider_loader(serialized, cwd=cwd, pythonpath=pythonpath)
    assert proc.returncode == 0, proc.stderr
    loaded, boto3_imported, reserialized = proc.stdout.splitlines()
    return loaded, boto3_imported == "boto3 imported", reserialized


def provider_loader(
    serialized: str, *, cwd: Path, pythonpath: Path | None
) -> subprocess.CompletedProcess[str]:
    """A fresh Python (this venv's, as PULUMI_PYTHON_CMD would name it) unpickling a
    provider as `python -m pulumi.dynamic` does, in `cwd` (on sys.path, as with -m)."""
    script = (
        "import base64, sys, dill\n"
        "from pulumi.dynamic.dynamic import serialize_provider\n"
        "provider = dill.loads(base64.b64decode(sys.argv[1]))\n"
        "print(type(provider).__module__, type(provider).__qualname__)\n"
        "print('boto3 imported' if 'boto3' in sys.modules else 'boto3 not imported')\n"
        "print(serialize_provider(type(provider)()))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run(
        [sys.executable, "-c", script, serialized], cwd=cwd, env=env, capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
