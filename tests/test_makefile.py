"""Which stack the make targets work on: STACK=, else the one Pulumi has selected, as a bare
`pulumi config set` or `pulumi up` would, else dev. `make -n` prints what each target
would run, with a stub `pulumi` on a PATH of its own (nothing else on it: a real CLI on
this machine must not answer)."""

from __future__ import annotations

import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from tests.harness import ROOT

MAKE = shutil.which("make")
pytestmark = pytest.mark.skipif(MAKE is None, reason="GNU make is not installed")

SELECTED = "echo prod; exit 0"
# What the CLI prints, and its status, where no stack is selected (pkg/cmd/pulumi/stack/io.go)
NONE_SELECTED = (
    'echo "error: no stack selected; please use \\`pulumi stack select\\` or '
    '\\`pulumi stack init\\` to choose one" >&2; exit 255'
)
STACK_TARGETS = ("check", "preview", "up", "destroy", "verify", "hubble", "perf")


def make_n(tmp_path: Path, targets: list[str], answer: str | None, **env: str) -> list[str]:
    """The commands `make -n TARGETS` prints; the stub's calls go to tmp_path/pulumi.log."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    if answer is not None:
        stub = bin_dir / "pulumi"
        stub.write_text(f'#!/bin/sh\necho "$@" >> "{tmp_path}/pulumi.log"\n{answer}\n')
        stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    assert MAKE is not None
    proc = subprocess.run(
        [MAKE, "-n", "--no-print-directory", *targets],
        cwd=ROOT, env={"PATH": str(bin_dir), "HOME": str(tmp_path), **env},
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def asked(tmp_path: Path) -> list[str]:
    log = tmp_path / "pulumi.log"
    return log.read_text().splitlines() if log.exists() else []


def stacks(lines: list[str]) -> set[str]:
    """Every stack the printed commands name, however each names it."""
    found = set()
    for line in lines:
        found |= set(re.findall(r"(?:--stack |STACK=|check_config\.py )(\S+)", line))
    return found


def test_every_stack_target_works_on_the_stack_pulumi_has_selected(tmp_path):
    lines = make_n(tmp_path, list(STACK_TARGETS), SELECTED)
    assert stacks(lines) == {"prod"}
    assert "pulumi up --stack prod --policy-pack policy " in lines
    assert "pulumi preview --stack prod --policy-pack policy " in lines
    assert "venv/bin/python scripts/day2.py verify --stack prod" in lines
    # asked once, non-interactively (stdout is a pipe as well: never a prompt)
    assert asked(tmp_path) == ["stack --show-name --non-interactive"]


@pytest.mark.parametrize("answer", [NONE_SELECTED, None], ids=["none-selected", "no-pulumi-cli"])
def test_dev_where_no_stack_is_selected_or_there_is_no_cli(tmp_path, answer):
    # `make check` on a fresh machine, before the Pulumi CLI is installed, included
    lines = make_n(tmp_path, ["check", "up"], answer)
    assert stacks(lines) == {"dev"}
    assert "venv/bin/python scripts/check_config.py dev" in lines


def test_stack_given_wins_and_pulumi_is_not_asked(tmp_path):
    assert stacks(make_n(tmp_path, ["up"], SELECTED, STACK="staging")) == {"staging"}
    assert stacks(make_n(tmp_path, ["verify", "STACK=qa"], SELECTED)) == {"qa"}
    assert asked(tmp_path) == []


def test_targets_without_a_stack_never_ask_pulumi(tmp_path):
    make_n(tmp_path, ["test", "lint", "venv"], SELECTED)
    assert asked(tmp_path) == []


def test_the_stack_targets_are_the_ones_that_take_a_stack():
    # a new target that works on a stack must be listed where the Makefile picks it
    makefile = (ROOT / "Makefile").read_text()
    (listed,) = re.findall(r"^STACK_TARGETS := (.*)$", makefile, re.M)
    using = {
        target
        for target, recipe in re.findall(r"^([a-z]+):[^\n]*\n((?:\t[^\n]*\n)*)", makefile, re.M)
        if "$(STACK)" in recipe
    }
    assert set(listed.split()) == using == set(STACK_TARGETS)


# --- the docs say the same ---------------------------------------------------------------------

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def snippets(text: str) -> list[str]:
    """The commands a reader copies together: each fenced block, and each other line."""
    blocks = re.findall(r"^```[a-z]*\n(.*?)^```", text, re.M | re.S)
    rest = re.sub(r"^```[a-z]*\n.*?^```", "", text, flags=re.M | re.S)
    return blocks + rest.splitlines()


@pytest.mark.parametrize("page", DOCS, ids=lambda p: p.name)
def test_every_pulumi_config_set_and_make_target_work_on_the_same_stack(page):
    for snippet in snippets(page.read_text()):
        sets = re.findall(r"pulumi config set([^\n&;|`]*)", snippet)  # up to the next command
        if not sets:
            continue
        named = {m for flags in sets for m in re.findall(r"--stack ([\w/-]+)", flags)} | set(
            re.findall(r"STACK=([\w/-]+)", snippet)
        )
        bare = [flags for flags in sets if "--stack" not in flags]
        # a bare `pulumi config set` edits the selected stack, which a bare make target uses:
        # next to a STACK= or --stack naming another, the two would part
        assert not (bare and named), f"{page.name}: {snippet.strip()}"
        assert len(named) <= 1, f"{page.name}: {snippet.strip()}"


@pytest.mark.parametrize("page", ["README.md", "docs/operations.md"])
def test_the_docs_name_the_stack_make_chooses(page):
    text = " ".join((ROOT / page).read_text().split())
    assert not re.search(r"STACK=[^.]*\(default `?dev`?\)", text)
    assert "the stack Pulumi has selected (`pulumi stack --show-name`), else `dev`" in text
