"""The user's stack file and `make check`.

Pulumi.dev.yaml is the user's to edit (region, sizes, policy mode before the first `make
up`): the suite builds its configurations from tests/fixtures/stack.yaml, and checks the
shipped file only for being valid and for listing every key a user can set.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.config import StackConfig
from components.config.messages import model_in
from scripts.check_config import check
from tests.harness import ROOT

STACK_FILE = ROOT / "Pulumi.dev.yaml"
CHECK = [sys.executable, str(ROOT / "scripts" / "check_config.py")]


def key_paths(model: Any = StackConfig, prefix: str = "") -> list[str]:
    """Every key a stack file can set, as `pulumi config set --path` spells it."""
    paths = []
    for name, field in model.model_fields.items():
        key = field.alias or name
        inner = model_in(field.annotation)
        if inner is not None:
            paths += key_paths(inner, f"{prefix}{key}.")
        else:
            paths.append(f"{prefix}{key}")
    return paths


def all_keys_uncommented(text: str) -> dict[str, Any]:
    """The stack file with every commented-out key line put back: the keys it lists."""
    known = {part for path in key_paths() for part in re.split(r"[.]", path)} | {
        f"cilium-eks:{p.split('.')[0]}" for p in key_paths()
    }
    lines = []
    for line in text.splitlines():
        found = re.match(r"^(\s*)# ?(\s*)([\w:-]+):(.*)$", line)
        lines.append(
            f"{found[1]}{found[2]}{found[3]}:{found[4]}" if found and found[3] in known else line
        )
    return yaml.safe_load("\n".join(lines))["config"]


def flat(config: dict[str, Any]) -> set[str]:
    paths = set()
    for key, value in config.items():
        key = key.removeprefix("cilium-eks:")
        if isinstance(value, dict):
            paths |= {f"{key}.{p}" for p in flat(value)}
        else:
            paths.add(key)
    return paths


def test_the_shipped_stack_file_is_valid():
    assert check("dev") == []


def test_the_shipped_stack_file_lists_every_key_set_or_commented():
    listed = flat(all_keys_uncommented(STACK_FILE.read_text()))
    assert not set(key_paths()) - listed, "keys a user cannot see in Pulumi.dev.yaml"
    assert not listed - set(key_paths()), "keys the program does not know"
    # and with every commented key put back, it still holds valid values
    config = all_keys_uncommented(STACK_FILE.read_text())
    assert config["cilium-eks:mesh"]["clusterId"] == 1


def test_the_shipped_stack_file_names_the_stack_nowhere_it_can_be_derived():
    values = yaml.safe_load(STACK_FILE.read_text())["config"]
    assert "dev" not in yaml.safe_dump(values), "a value names the stack by hand"


def test_only_the_stack_file_tests_read_the_users_file():
    readers = [
        p.name
        for p in (ROOT / "tests").glob("*.py")
        if re.search(r"[\"']Pulumi\.(dev\.yaml|\{)", p.read_text())
        and p.name != "test_stack_file.py"
    ]
    assert readers == []


def test_the_configuration_reference_is_the_models_own():
    # every key with its type, default and meaning, from the one place they are defined
    from scripts.config_reference import DOC, with_table

    assert DOC.read_text() == with_table(DOC.read_text()), (
        "docs/configuration.md is stale: venv/bin/python scripts/config_reference.py --write"
    )
    assert all(f"| `{path}` |" in DOC.read_text() for path in key_paths())


# --- make check -------------------------------------------------------------------------------


def stack_dir(tmp_path: Path, config: dict[str, Any], name: str = "dev") -> Path:
    shutil.copy(ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    (tmp_path / f"Pulumi.{name}.yaml").write_text(yaml.safe_dump({"config": config}))
    return tmp_path


def test_make_check_lists_every_mistake_once_naming_the_key(tmp_path):
    config = {
        "aws:region": "us-east-11",
        "cilium-eks:nodess": {"minSize": 1},
        "cilium-eks:nodes": {"instanceTypes": ["t3.mediun"], "minSize": 0},
        "cilium-eks:demo": {"policy": "l4"},
    }
    proc = subprocess.run([*CHECK, "dev", "--dir", str(stack_dir(tmp_path, config))],
                          capture_output=True, text=True, timeout=30)  # fmt: skip
    assert proc.returncode == 1 and proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert lines[0] == "config check: Pulumi.dev.yaml has 5 mistake(s):"
    body = "\n".join(lines[1:])
    for fragment in (
        "aws:region: 'us-east-11' is not a region",
        "cilium-eks: unknown key 'nodess'; did you mean nodes? allowed: clusterName",
        "nodes.instanceTypes: t3.mediun not known to the AWS SDK",
        "nodes.minSize: 0 is not allowed; use a whole number 1 or more",
        "demo.policy: 'l4' is not allowed; did you mean l3l4? allowed: none, l3l4, l7",
    ):
        assert body.count(fragment) == 1, fragment
    assert "Traceback" not in proc.stderr and len(lines) == 6


@pytest.mark.parametrize(
    ("name", "config", "fragment"),
    [
        ("prod", None, "Pulumi.prod.yaml: no such file; create the stack with `pulumi stack"),
        ("dev", "config: [", "Pulumi.dev.yaml: not valid YAML"),
    ],
)  # fmt: skip
def test_make_check_names_a_missing_or_broken_file(tmp_path, name, config, fragment):
    shutil.copy(ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    if config is not None:
        (tmp_path / f"Pulumi.{name}.yaml").write_text(config)
    proc = subprocess.run([*CHECK, f"acme/cilium-eks/{name}", "--dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=30)  # fmt: skip
    assert proc.returncode == 1 and fragment in proc.stderr and "Traceback" not in proc.stderr


def test_make_check_passes_a_valid_file_in_one_line(tmp_path):
    config = {"aws:region": "eu-west-1", "cilium-eks:nodes": {"instanceTypes": ["m7i-flex.large"]}}
    proc = subprocess.run([*CHECK, "staging", "--dir", str(stack_dir(tmp_path, config, "staging"))],
                          capture_output=True, text=True, timeout=30)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("config check: Pulumi.staging.yaml is valid")


def test_make_up_and_preview_check_the_config_before_the_preflight():
    makefile = (ROOT / "Makefile").read_text()
    for target in ("up", "preview"):
        prerequisites = re.search(rf"^{target}: (.*)$", makefile, re.M)
        assert prerequisites and "check" in prerequisites[1].split()


# --- a newcomer's edits, and the suite -----------------------------------------------------------


# Each key as a newcomer sets it, whatever the file holds now (the user's own edits
# included): the pattern matches the key's line, commented out or not.
NEWCOMER_EDITS = {
    r"^(\s*)aws:region: \S+": r"\1aws:region: eu-west-1",
    # a type the tests' EC2 facts have never heard of
    r"^(\s*instanceTypes:\n\s*- )\S+": r"\1m7i-flex.large",
    r"^(\s*)desiredSize: \d+": r"\1desiredSize: 3",
    r"^(\s*)maxSize: \d+": r"\1maxSize: 6",
    r"^(\s*)policy: \w+": r"\1policy: l3l4",
    r"^(\s*)(# )?cilium-eks:clusterName: \S+": r"\1cilium-eks:clusterName: platform-sandbox",
}


def test_a_newcomers_edited_stack_file_still_passes_the_suite(tmp_path):
    # A copy of the checkout whose Pulumi.dev.yaml is edited as a user would before their
    # first `make up`: the tests that read it pass, and nothing else reads it (above).
    copy = tmp_path / "checkout"
    # the sources, not what make installs or caches (a checkout or a copy without .git alike)
    skipped = ("venv", ".venv", ".tools", ".git", "__pycache__", ".pytest_cache", ".ruff_cache")
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(*skipped))
    text = STACK_FILE.read_text()
    for pattern, replacement in NEWCOMER_EDITS.items():
        text, count = re.subn(pattern, replacement, text, flags=re.M)
        assert count == 1, pattern
    (copy / "Pulumi.dev.yaml").write_text(text)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider",
         "tests/test_stack_file.py", "-k", "not newcomer"],
        cwd=copy, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:]
