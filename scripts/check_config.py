"""`make check`: validate a stack's config offline, in the words of its keys.

    venv/bin/python scripts/check_config.py dev                    # Pulumi.dev.yaml
    venv/bin/python scripts/check_config.py acme/cilium-eks/prod   # Pulumi.prod.yaml
    venv/bin/python scripts/check_config.py dev --dir DIR          # DIR/Pulumi.dev.yaml

No Pulumi CLI, credentials or network: the stack file (with Pulumi.yaml's project-level
config under it) goes through the same rules as `pulumi up` (components/config/), with
the region and instance type names checked against the AWS SDK's own lists. What only EC2
can say of an instance type (Nitro, ENIs) waits for the preview. Prints every mistake
once and exits 1, or one line and exits 0.

A stack file that imports a Pulumi ESC environment (`environment:`) gets the rest of its
config from there, which only the CLI can resolve: what the file holds is checked, a key
it must have but leaves to the environment (aws:region) is named as expected from it, and
the preflight of `make preview|up` checks the config as `pulumi config --open` resolves it.

Imports the config package and its YAML reader (components/config/stack_file.py, which
the program never loads), nothing of the program's components: it runs without them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from components.config import PROJECT, ConfigError, eks_regions, parse  # noqa: E402
from components.config.stack_file import StackFileLoader  # noqa: E402

PREFIX = "config check:"
# The keys a stack must set, having no default (components/config/ StackConfig), each with
# a valid value that stands in for it where an ESC environment is to provide it, so that
# the rest of the file is still checked.
STAND_INS = {"aws:region": lambda: sorted(eks_regions())[0]}


class StackFileError(Exception):
    """A stack or project file that cannot be read as the CLI would; the text says where."""


def load_yaml(path: Path) -> tuple[Any, list[str]]:
    """The file's YAML, and a mistake for each mapping key given twice: YAML requires "each
    of the keys [to be] unique" (YAML 1.2.2, 3.2.1.1), and PyYAML would silently keep the
    last one (as the document returned here does, so that the rest is still checked). A
    syntax error, after which nothing can be read, raises StackFileError as the parser
    reports it: file, line, column and the line itself. A number keeps the text it was
    written as (StackFileLoader), for the config's messages.
    """
    loader = StackFileLoader(path.read_text())
    loader.name = path.name  # the marks of an error name this file
    try:
        node = loader.get_single_node()
        repeated = [
            f"{spelled(key)}: given twice in {path.name}, on lines {first} and {second}; YAML "
            "keeps only the last, so the first would be ignored: delete one of them"
            for key, first, second in repeated_keys(node)
        ]
        return (loader.construct_document(node) if node is not None else None), repeated
    except yaml.YAMLError as err:
        raise StackFileError(f"{path.name}: not valid YAML:\n{err}") from None
    finally:
        loader.dispose()


def repeated_keys(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple, int, int]]:
    """(key path, first line, repeated line) of every mapping key given twice."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else str(key.value)
            line = key.start_mark.line + 1
            if name in seen:
                yield (*path, name), seen[name], line
            else:
                seen[name] = line
            yield from repeated_keys(value, (*path, name))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            yield from repeated_keys(item, (*path, index))


def spelled(path: tuple[Any, ...]) -> str:
    """A key path as `pulumi config set --path` spells it: demo.policy, aws:region."""
    parts = list(path)
    if parts[:1] == ["config"] and len(parts) > 1:
        parts = [str(parts[1]).removeprefix(f"{PROJECT}:"), *parts[2:]]
    key = ""
    for part in parts:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    return key


def project_defaults(project_file: Path) -> tuple[dict[str, Any], list[str]]:
    """Pulumi.yaml's `config:` block: `key: {value: V}` (or `default:`), or `key: V`; and its
    keys given twice."""
    document, repeated = load_yaml(project_file)
    block = (document or {}).get("config") or {}
    values = {}
    for key, spec in block.items():
        full = key if ":" in key else f"{PROJECT}:{key}"
        if isinstance(spec, dict) and ("value" in spec or "default" in spec):
            values[full] = spec.get("value", spec.get("default"))
        elif not isinstance(spec, dict):
            values[full] = spec
    return values, repeated


def environments(settings: dict[str, Any]) -> list[str]:
    """The ESC environments a stack file imports: `environment: [a, b]`, or an inline
    definition with `imports:` (Pulumi's workspace.Environment takes both)."""
    block = settings.get("environment")
    if not block:
        return []
    if isinstance(block, list):
        return [str(name) for name in block]
    imports = block.get("imports") if isinstance(block, dict) else None
    names = [next(iter(i)) if isinstance(i, dict) else str(i) for i in imports or []]
    return names or ["the stack file's inline environment"]


@dataclass
class Checked:
    """What `make check` found: the mistakes, and what an ESC environment must provide."""

    mistakes: list[str] = field(default_factory=list)
    environments: list[str] = field(default_factory=list)
    expected: list[str] = field(default_factory=list)


def examine(stack: str, root: Path = ROOT) -> Checked:
    name = stack.rsplit("/", 1)[-1]  # org/project/stack -> stack
    stack_file = root / f"Pulumi.{name}.yaml"
    if not stack_file.exists():
        return Checked([
            f"{stack_file.name}: no such file; create the stack with `pulumi stack init "
            f"{name}` and set aws:region in it (see README, A second stack)"
        ])  # fmt: skip
    try:
        defaults, repeated = project_defaults(root / "Pulumi.yaml")
        document, repeated_here = load_yaml(stack_file)
    except StackFileError as err:
        return Checked(list(err.args))
    settings = document or {}
    values = {**defaults, **(settings.get("config") or {})}
    found = Checked(environments=environments(settings))
    if found.environments:
        found.expected = [key for key in STAND_INS if values.get(key) is None]
        values |= {key: STAND_INS[key]() for key in found.expected}
    secrets = sorted(k for k, v in values.items() if isinstance(v, dict) and "secure" in v)
    raw = {
        key.removeprefix(f"{PROJECT}:"): value
        for key, value in values.items()
        if key not in secrets
    }
    try:
        parse(raw, stack=name, offline=True)
    except ConfigError as err:
        found.mistakes = [line.removeprefix("  - ") for line in str(err).splitlines()[1:]]
    # a key given twice first: what the rest says is of the copy YAML kept
    found.mistakes = [*repeated, *repeated_here, *found.mistakes]
    return found


def check(stack: str, root: Path = ROOT) -> list[str]:
    """The mistakes in the stack's config, each a line; none when it is valid."""
    return examine(stack, root).mistakes


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="Validate a stack's config offline.")
    parser.add_argument("stack", nargs="?", default="dev")
    parser.add_argument("--dir", type=Path, default=ROOT, help="where Pulumi.yaml lives")
    args = parser.parse_args(argv[1:])
    stack = args.stack
    found = examine(stack, args.dir)
    file = f"Pulumi.{stack.rsplit('/', 1)[-1]}.yaml"
    if found.environments:
        expected = ", ".join(found.expected) or "no key this file lacks"
        print(
            f"{PREFIX} {file} imports the ESC environment(s) {', '.join(found.environments)}, "
            f"which must provide {expected}; the preflight of `make preview` and `make up` "
            "checks the config as Pulumi resolves it (`pulumi config --open`)"
        )
    if found.mistakes:
        print(f"{PREFIX} {file} has {len(found.mistakes)} mistake(s):", file=sys.stderr)
        for mistake in found.mistakes:
            print("  - " + mistake.replace("\n", "\n    "), file=sys.stderr)
        return 1
    what = "holds valid values" if found.environments else "is valid"
    print(f"{PREFIX} {file} {what} (instance types' EC2 facts are checked by the preview)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
