"""`make check`: validate a stack's config offline, in the words of its keys.

    venv/bin/python scripts/check_config.py dev                    # Pulumi.dev.yaml
    venv/bin/python scripts/check_config.py acme/cilium-eks/prod   # Pulumi.prod.yaml
    venv/bin/python scripts/check_config.py dev --dir DIR          # DIR/Pulumi.dev.yaml

No Pulumi CLI, credentials or network: the stack file (with Pulumi.yaml's project-level
config under it) goes through the same rules as `pulumi up` (components/config/), with
the region and instance type names checked against the AWS SDK's own lists. What only EC2
can say of an instance type (Nitro, ENIs) waits for the preview. Prints every mistake
once and exits 1, or one line and exits 0.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from components.config import PROJECT, ConfigError, parse  # noqa: E402

PREFIX = "config check:"


def project_defaults(project_file: Path) -> dict[str, Any]:
    """Pulumi.yaml's `config:` block: `key: {value: V}` (or `default:`), or `key: V`."""
    block = (yaml.safe_load(project_file.read_text()) or {}).get("config") or {}
    values = {}
    for key, spec in block.items():
        full = key if ":" in key else f"{PROJECT}:{key}"
        if isinstance(spec, dict) and ("value" in spec or "default" in spec):
            values[full] = spec.get("value", spec.get("default"))
        elif not isinstance(spec, dict):
            values[full] = spec
    return values


def stack_values(stack_file: Path) -> dict[str, Any]:
    return (yaml.safe_load(stack_file.read_text()) or {}).get("config") or {}


def check(stack: str, root: Path = ROOT) -> list[str]:
    """The mistakes in the stack's config, each a line; none when it is valid."""
    name = stack.rsplit("/", 1)[-1]  # org/project/stack -> stack
    stack_file = root / f"Pulumi.{name}.yaml"
    if not stack_file.exists():
        return [
            f"{stack_file.name}: no such file; create the stack with `pulumi stack init "
            f"{name}` and set aws:region in it (see README, A second stack)"
        ]
    try:
        values = {**project_defaults(root / "Pulumi.yaml"), **stack_values(stack_file)}
    except yaml.YAMLError as err:
        return [f"{stack_file.name}: not valid YAML ({err})".replace("\n", " ")]
    secrets = sorted(k for k, v in values.items() if isinstance(v, dict) and "secure" in v)
    raw = {
        key.removeprefix(f"{PROJECT}:"): value
        for key, value in values.items()
        if key not in secrets
    }
    try:
        parse(raw, stack=name, offline=True)
    except ConfigError as err:
        return [line.removeprefix("  - ") for line in str(err).splitlines()[1:]]
    return []


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="Validate a stack's config offline.")
    parser.add_argument("stack", nargs="?", default="dev")
    parser.add_argument("--dir", type=Path, default=ROOT, help="where Pulumi.yaml lives")
    args = parser.parse_args(argv[1:])
    stack = args.stack
    mistakes = check(stack, args.dir)
    file = f"Pulumi.{stack.rsplit('/', 1)[-1]}.yaml"
    if mistakes:
        print(f"{PREFIX} {file} has {len(mistakes)} mistake(s):", file=sys.stderr)
        for line in mistakes:
            print(f"  - {line}", file=sys.stderr)
        return 1
    print(f"{PREFIX} {file} is valid (instance types' EC2 facts are checked by the preview)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
