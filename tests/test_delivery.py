"""Delivery: workflows, the Makefile's preflight, the project files the CLI reads."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.harness import ROOT

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def workflow(name: str) -> dict:
    data = yaml.safe_load((ROOT / ".github" / "workflows" / name).read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as True
    return data


def steps_using(job: dict, action: str) -> list[dict]:
    return [s for s in job["steps"] if s.get("uses", "").startswith(action + "@")]


def test_workflows_are_valid_against_the_github_workflow_schema():
    proc = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
         *map(str, WORKFLOWS)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.skipif(shutil.which("actionlint") is None, reason="actionlint is not installed")
def test_workflows_are_clean_under_actionlint():
    proc = subprocess.run(["actionlint", *map(str, WORKFLOWS)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_pull_requests_run_the_tests_then_a_commented_preview_with_the_policy_pack():
    wf = workflow("pull-request.yml")
    assert "pull_request" in wf["on"]
    test, preview = wf["jobs"]["test"], wf["jobs"]["preview"]
    assert any("make" in s.get("run", "") and "test" in s.get("run", "") for s in test["steps"])
    assert preview["needs"] == "test"
    assert preview["permissions"]["id-token"] == "write"
    (creds,) = steps_using(preview, "aws-actions/configure-aws-credentials")
    assert creds["with"]["role-to-assume"].startswith("${{ vars.")
    (pulumi,) = steps_using(preview, "pulumi/actions")
    assert pulumi["with"]["command"] == "preview"
    assert pulumi["with"]["comment-on-pr"] is True
    assert pulumi["with"]["stack-name"] == "${{ vars.PULUMI_STACK }}"
    assert pulumi["with"]["policyPacks"] == "policy"


def test_main_deploys_behind_an_environment_and_destroy_is_on_demand():
    deploy = workflow("deploy.yml")
    assert deploy["on"]["push"]["branches"] == ["main"]
    (up,) = deploy["jobs"].values()
    assert up["environment"]
    assert steps_using(up, "pulumi/actions")[0]["with"]["command"] == "up"
    destroy = workflow("destroy.yml")
    assert "stack" in destroy["on"]["workflow_dispatch"]["inputs"]
    (job,) = destroy["jobs"].values()
    assert steps_using(job, "pulumi/actions")[0]["with"]["command"] == "destroy"
    assert steps_using(job, "pulumi/actions")[0]["with"]["stack-name"] == "${{ inputs.stack }}"
    assert job["environment"]


def test_no_long_lived_aws_keys_in_any_workflow():
    for path in WORKFLOWS:
        text = path.read_text()
        assert "aws-access-key-id" not in text and "AWS_SECRET_ACCESS_KEY" not in text, path


def test_ci_runs_what_the_readme_promises():
    ci = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make test" in ci and "make test" in readme and "make up" in readme
    targets = set(re.findall(r"^([a-z]+):", (ROOT / "Makefile").read_text(), re.M))
    assert {"venv", "test", "lint", "preview", "up", "destroy"} <= targets


def test_pulumi_project_file():
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    assert project["name"] == "cilium-eks"
    assert project["runtime"]["name"] == "python"
    options = project["runtime"]["options"]
    assert options["toolchain"] == "pip" and options["virtualenv"] == "venv"
    # the type checker it names is installed by requirements.txt, which Pulumi installs
    assert options["typechecker"] in (ROOT / "requirements.txt").read_text()


def test_requirements_pin_compatible_ranges():
    for name in ("requirements.txt", "requirements-dev.txt", "policy/requirements.txt"):
        for line in (ROOT / name).read_text().splitlines():
            spec = line.split("#")[0].strip()
            if spec and not spec.startswith("-r"):
                assert ">=" in spec and "<" in spec.replace("<=", ""), f"{name}: {spec}"


def test_config_keys_in_the_dev_stack_are_documented():
    readme = (ROOT / "README.md").read_text()
    config = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["config"]
    for key in config:
        name = key.removeprefix("cilium-eks:")
        assert re.search(rf"`{re.escape(name)}[`.]", readme), f"{key} is not in README's table"


# --- scripts/pulumi-preflight.sh: missing tools are caught with a fix, not a trace ------


def fake(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


@pytest.fixture
def tools(tmp_path: Path) -> Path:
    """A PATH with only the basics the script uses, and a log of the fakes' calls."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "sed", "printf", "cat"):
        found = shutil.which(tool)
        if found:
            os.symlink(found, bin_dir / tool)
    return bin_dir


def preflight(bin_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / "pulumi-preflight.sh")],
        env={"PATH": str(bin_dir), "HOME": str(bin_dir.parent), **env},
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip


GOOD_AWS = (
    'case "$1" in --version) echo "aws-cli/2.31.0 Python/3.13";;'
    " *) echo arn:aws:iam::1:user/x;; esac"
)
LOGGED_OUT_PULUMI = (
    'echo "$@" >> "$HOME/pulumi.log"\n'
    'case "$1" in whoami) [ -f "$HOME/in" ] || exit 1; echo "Backend URL: file://~";;'
    ' login) : > "$HOME/in";; esac'
)


def test_preflight_names_a_missing_pulumi_cli(tools):
    proc = preflight(tools)
    assert proc.returncode == 1 and "Pulumi CLI is not installed" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_preflight_names_a_missing_or_old_aws_cli(tools):
    fake(tools, "pulumi", "exit 0")
    proc = preflight(tools)
    assert proc.returncode == 1 and "AWS CLI v2 is not installed" in proc.stderr
    fake(tools, "aws", 'echo "aws-cli/1.29.0 Python/3.8"')
    proc = preflight(tools)
    assert proc.returncode == 1 and "AWS CLI v2 is required" in proc.stderr


def test_preflight_names_missing_credentials(tools):
    fake(tools, "pulumi", "exit 0")
    fake(tools, "aws", 'case "$1" in --version) echo "aws-cli/2.31.0";; *) exit 255;; esac')
    proc = preflight(tools)
    assert proc.returncode == 1 and "no usable AWS credentials" in proc.stderr


def test_preflight_falls_back_to_local_state_and_asks_for_the_passphrase(tools):
    fake(tools, "aws", GOOD_AWS)
    fake(tools, "pulumi", LOGGED_OUT_PULUMI)
    proc = preflight(tools)
    assert proc.returncode == 1 and "PULUMI_CONFIG_PASSPHRASE" in proc.stderr
    log = (tools.parent / "pulumi.log").read_text()
    assert "login --local" in log


def test_preflight_selects_or_creates_the_stack(tools):
    fake(tools, "aws", GOOD_AWS)
    fake(tools, "pulumi", LOGGED_OUT_PULUMI)
    proc = preflight(tools, PULUMI_CONFIG_PASSPHRASE="", STACK="dev")
    assert proc.returncode == 0, proc.stderr
    assert "stack select --create dev" in (tools.parent / "pulumi.log").read_text()


def test_preflight_respects_an_explicit_backend(tools):
    fake(tools, "aws", GOOD_AWS)
    fake(
        tools,
        "pulumi",
        'echo "$@" >> "$HOME/pulumi.log"\n'
        '[ "$1" = whoami ] && echo "Backend URL: https://app.pulumi.com/me"; exit 0',
    )
    proc = preflight(tools, PULUMI_BACKEND_URL="https://api.pulumi.com")
    assert proc.returncode == 0, proc.stderr
    assert "login" not in (tools.parent / "pulumi.log").read_text()
