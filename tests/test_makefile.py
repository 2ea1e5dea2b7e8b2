"""Which stack the make targets work on: STACK=, else the one Pulumi has selected, as a bare
`pulumi config set` or `pulumi up` would, else dev: only where Pulumi says none is
selected (or there is no CLI), never because the question failed. `make -n` prints what
each target would run, with a stub `pulumi` on a PATH of its own (nothing else on it but
python3, which asks it: a real CLI on this machine must not answer); where a failed
question matters, the targets run for real against stubs."""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from scripts import check_config
from tests.harness import ROOT

MAKE = shutil.which("make")
pytestmark = pytest.mark.skipif(MAKE is None, reason="GNU make is not installed")

# `pulumi stack --show-name` prints the selected stack's bare name; with -Q
# (--fully-qualify-stack-names) its reference in full, <org>/<project>/<stack> on Pulumi
# Cloud (pkg/cmd/pulumi/stack/stack.go writeStackName; pkg/backend/httpstate/stack.go).
# The selected stack here is in org acme, which need not be the user's default org: the
# bare `prod` would name another stack there.
SELECTED = (
    'for a in "$@"; do case "$a" in -Q|--fully-qualify-stack-names) echo acme/cilium-eks/prod;'
    " exit 0;; esac; done; echo prod; exit 0"
)
QUALIFIED = "acme/cilium-eks/prod"
# A legacy DIY backend (stacks not scoped by project) prints the bare name either way
# (pkg/backend/diy/backend.go diyBackendReference.String): unambiguous there.
LEGACY_DIY = "echo prod; exit 0"
# What the CLI prints, and its status, where no stack is selected (pkg/cmd/pulumi/stack/io.go)
NONE_SELECTED = (
    'echo "error: no stack selected; please use \\`pulumi stack select\\` or '
    '\\`pulumi stack init\\` to choose one" >&2; exit 255'
)
# Any other failure says nothing of which stack is selected: Pulumi Cloud's 5xx (its
# client's error for a non-2xx answer, pkg/backend/httpstate/client/api.go), with quotes
# and a `$` that must reach the scripts as printed.
UNAVAILABLE = 'error: [503] Service Unavailable: `pulumi` could not reach "$PULUMI_URL" (retry)'
LOOKUP_FAILS = f"echo '{UNAVAILABLE}' >&2; exit 255"
# The CLI may print a line before the name (an update warning): the name is the last line.
WARNED = "echo 'warning: A new version of Pulumi is available.'; " + SELECTED
STACK_TARGETS = ("check", "preview", "up", "destroy", "verify", "hubble", "perf")


def stub_path(tmp_path: Path, answer: str | None) -> Path:
    """A PATH folder with python3 (which the Makefile asks Pulumi with) and, unless
    answer is None, a `pulumi` whose calls go to tmp_path/pulumi.log."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    python = bin_dir / "python3"
    if not python.exists():
        os.symlink(os.path.realpath(sys.executable), python)
    if answer is not None:
        stub = bin_dir / "pulumi"
        stub.write_text(f'#!/bin/sh\necho "$@" >> "{tmp_path}/pulumi.log"\n{answer}\n')
        stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    return bin_dir


def make_n(tmp_path: Path, targets: list[str], answer: str | None, **env: str) -> list[str]:
    """The commands `make -n TARGETS` prints; the stub's calls go to tmp_path/pulumi.log."""
    bin_dir = stub_path(tmp_path, answer)
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


def preflight_env(lines: list[str]) -> list[str]:
    """What each printed preflight command is told: its STACK= and SELECTED_STACK=."""
    return [
        " ".join(
            word for word in shlex.split(line) if word.split("=")[0] in ("STACK", "SELECTED_STACK")
        )
        for line in lines
        if "scripts/preflight.py" in line
    ]


def test_every_stack_target_works_on_the_selected_stack_by_its_qualified_name(tmp_path):
    lines = make_n(tmp_path, list(STACK_TARGETS), SELECTED)
    assert stacks(lines) == {QUALIFIED}
    assert f"pulumi up --stack {QUALIFIED} --policy-pack policy " in lines
    assert f"pulumi preview --stack {QUALIFIED} --policy-pack policy " in lines
    assert f"pulumi destroy --stack {QUALIFIED} " in lines
    assert f"venv/bin/python scripts/day2.py verify --stack {QUALIFIED}" in lines
    assert f"venv/bin/python scripts/day2.py hubble --stack {QUALIFIED}" in lines
    assert f"venv/bin/python scripts/perf.py run --stack {QUALIFIED} --duration 10" in lines
    # the preflight is told the stack is the selected one: it selects it, never creates it
    assert preflight_env(lines) == [f"STACK={QUALIFIED} SELECTED_STACK={QUALIFIED}"] * 3
    # asked once, fully qualified, non-interactively (stdout is a pipe: never a prompt)
    assert asked(tmp_path) == ["stack --show-name --fully-qualify-stack-names --non-interactive"]


def test_make_check_reads_the_file_of_the_qualified_stacks_last_segment(tmp_path):
    (line,) = [line for line in make_n(tmp_path, ["check"], SELECTED) if "check_config" in line]
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(ROOT / "Pulumi.yaml", project)
    config = {"aws:region": "eu-west-1", "cilium-eks:nodes": {"instanceTypes": ["m7i-flex.large"]}}
    (project / "Pulumi.prod.yaml").write_text(yaml.safe_dump({"config": config}))
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = check_config.main([*shlex.split(line)[1:], "--dir", str(project)])
    assert code == 0 and "Pulumi.prod.yaml is valid" in out.getvalue()


def test_a_legacy_diy_backends_bare_name_is_taken_as_printed(tmp_path):
    lines = make_n(tmp_path, ["check", "up"], LEGACY_DIY)
    assert stacks(lines) == {"prod"}
    assert preflight_env(lines) == ["STACK=prod SELECTED_STACK=prod"]


@pytest.mark.parametrize("answer", [NONE_SELECTED, None], ids=["none-selected", "no-pulumi-cli"])
def test_dev_where_no_stack_is_selected_or_there_is_no_cli(tmp_path, answer):
    # `make check` on a fresh machine, before the Pulumi CLI is installed, included
    lines = make_n(tmp_path, ["check", "up"], answer)
    assert stacks(lines) == {"dev"}
    assert "venv/bin/python scripts/check_config.py dev" in lines
    # no stack was selected: `make up` may create dev (the quick start's first run)
    assert preflight_env(lines) == ["STACK=dev SELECTED_STACK="]


def test_a_line_before_the_name_is_not_part_of_it(tmp_path):
    lines = make_n(tmp_path, ["check", "up"], WARNED)
    assert stacks(lines) == {QUALIFIED}
    assert preflight_env(lines) == [f"STACK={QUALIFIED} SELECTED_STACK={QUALIFIED}"]


def test_make_check_reads_dev_offline_when_the_question_fails(tmp_path):
    # a machine that cannot reach Pulumi Cloud still checks a stack file
    assert "venv/bin/python scripts/check_config.py dev" in make_n(
        tmp_path, ["check"], LOOKUP_FAILS
    )


# The targets run for real (their venv and `make check` taken as done), against a Pulumi
# Cloud whose `pulumi stack --show-name` answers LOOKUP: logged in, the CLI's version new
# enough, and an AWS CLI and kubectl that answer anything.
def cloud_pulumi(lookup: str) -> str:
    return (
        'case "$1 $2" in "version "*) echo v3.200.0;;'
        ' "whoami "*) echo "Backend URL: https://api.pulumi.com";;'
        f' "stack --show-name") {lookup};; esac'
    )


def make_run(tmp_path: Path, target: str, lookup: str) -> subprocess.CompletedProcess[str]:
    bin_dir = stub_path(tmp_path, cloud_pulumi(lookup))
    for tool, answer in (
        (
            "aws",
            'case "$1" in --version) echo aws-cli/2.31.0;; *) echo arn:aws:iam::1:user/x;; esac',
        ),
        ("kubectl", ""),
    ):
        (bin_dir / tool).write_text(f"#!/bin/sh\n{answer}\n")
        (bin_dir / tool).chmod(0o755)
    assert MAKE is not None
    return subprocess.run(
        [MAKE, "--no-print-directory", "-o", "runtime", "-o", "check", target],
        cwd=ROOT, env={"PATH": str(bin_dir), "HOME": str(tmp_path)},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.mark.parametrize("target", ["up", "preview", "destroy", "verify", "hubble", "perf"])
def test_a_failed_question_never_acts_on_dev_and_shows_what_pulumi_said(tmp_path, target):
    # Pulumi Cloud answering 503 is not "no stack selected": make falls back to dev, and
    # every target that would touch or read it stops with Pulumi's words, as printed
    proc = make_run(tmp_path, target, LOOKUP_FAILS)
    assert proc.returncode != 0
    assert UNAVAILABLE in proc.stderr
    assert "STACK=<name>" in proc.stderr  # the way out
    calls = asked(tmp_path)
    assert not any("--create" in call for call in calls)
    # neither selected, nor deployed, nor read
    assert not any(call.startswith(("stack select", "up", "preview", "destroy", "stack output"))
                   for call in calls), calls  # fmt: skip


def test_dev_is_created_by_up_where_pulumi_says_none_is_selected(tmp_path):
    make_run(tmp_path, "up", NONE_SELECTED)
    assert "stack select --create dev" in asked(tmp_path)


@pytest.mark.parametrize("given", ["staging", "acme/staging", "acme/cilium-eks/staging"])
def test_stack_given_wins_is_passed_as_given_and_pulumi_is_not_asked(tmp_path, given):
    lines = make_n(tmp_path, ["check", "up"], SELECTED, STACK=given)
    assert stacks(lines) == {given}
    # named by the user: `make up` may create it (the preflight is told nothing was selected)
    assert preflight_env(lines) == [f"STACK={given} SELECTED_STACK="]
    assert stacks(make_n(tmp_path, ["verify", f"STACK={given}"], SELECTED)) == {given}
    assert asked(tmp_path) == []


def test_a_selected_stack_in_the_environment_is_not_believed(tmp_path):
    # only the Makefile's own question says what is selected
    lines = make_n(tmp_path, ["up"], SELECTED, STACK="staging", SELECTED_STACK="staging")
    assert preflight_env(lines) == ["STACK=staging SELECTED_STACK="]


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
    assert (
        "the stack Pulumi has selected (`pulumi stack --show-name -Q`, fully qualified), else `dev`"
        in text
    )
    # and that the selected stack is never created (it exists): only one STACK= names
    assert "`make up` creates a stack only where `STACK=` names it, or `dev` where" in text
    # and that `dev` is never the answer to a question that failed
    assert "Where Pulumi cannot say (not logged in, a Pulumi Cloud error" in text
    assert "the other targets stop with Pulumi's words" in text
