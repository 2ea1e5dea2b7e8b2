"""scripts/preflight.py: every gap caught with its fix before Pulumi runs, and on a live
stack what AWS or Cilium would refuse halfway, judged by what the state says exists.

The machine is played by fake `pulumi` and `aws` executables on a PATH of their own
(FAKE_CLOUD below); the state rules are also checked directly on exported states.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from components.config import parse
from scripts import account, pulumi_session
from scripts import preflight as preflight_module
from tests.harness import ROOT, dev_config, with_overrides
from tests.iam import PREFLIGHT_ACTIONS

SCRIPT = ROOT / "scripts" / "preflight.py"
Deployed = preflight_module.Deployed


def fake(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


@pytest.fixture
def tools(tmp_path: Path) -> Path:
    """A PATH with only the basics, and a HOME without AWS or Pulumi settings."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sh", "cat"):
        found = shutil.which(tool)
        if found:
            os.symlink(found, bin_dir / tool)
    return bin_dir


def preflight(bin_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    home = bin_dir.parent
    return subprocess.run(
        [sys.executable, str(SCRIPT)],
        env={
            "PATH": str(bin_dir), "HOME": str(home),
            # the SDK's fallback (no AWS CLI) must find no credentials here, and ask no IMDS
            "AWS_CONFIG_FILE": str(home / "none"),
            "AWS_SHARED_CREDENTIALS_FILE": str(home / "none"),
            "AWS_EC2_METADATA_DISABLED": "true", **env,
        },
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


GOOD_AWS = (
    'case "$1" in --version) echo "aws-cli/2.31.0 Python/3.13";;'
    " *) echo arn:aws:iam::1:user/x;; esac"
)
PULUMI_VERSION = 'case "$1" in version) echo v3.200.0; exit 0;; esac\n'
# What `pulumi whoami` says, logged in nowhere (pulumi/pulumi pkg/backend/httpstate/login.go)
NOT_LOGGED_IN = (
    "error: PULUMI_ACCESS_TOKEN must be set for login during non-interactive CLI sessions"
)
LOGGED_OUT_PULUMI = f'NOT_LOGGED_IN="{NOT_LOGGED_IN}"\n' + (
    PULUMI_VERSION + 'echo "$@" >> "$HOME/pulumi.log"\n'
    'case "$1" in whoami) [ -f "$HOME/in" ] || { echo "$NOT_LOGGED_IN" >&2; exit 255; };'
    ' echo "Backend URL: file://~";;'
    ' login) : > "$HOME/in";; config) echo \'{"aws:region": {"value": "eu-west-1"}}\';;'
    " stack) [ \"$2\" = export ] && echo '{}'; true;; esac"
)


def test_every_missing_prerequisite_is_named_in_one_run_with_its_fix(tools):
    proc = preflight(tools)
    assert proc.returncode == 1
    err = proc.stderr
    assert "4 prerequisite(s) missing" in err
    assert "Pulumi CLI is not installed" in err and "get.pulumi.com" in err
    assert "the AWS CLI is not installed" in err and "getting-started-install" in err
    # the SDK's own reason (the AWS CLI is not there to ask)
    assert "no usable AWS credentials; AWS says: Unable to locate credentials" in err
    assert "aws sso login" in err
    assert "PULUMI_CONFIG_PASSPHRASE" in err
    assert "Traceback" not in err
    # the words are the preflight's, not make's
    assert all(line.startswith(("preflight:", "  - ", "    ")) for line in err.splitlines())


def aws_cli(bin_dir: Path, version: str) -> None:
    answers = f'--version) echo "{version}";; *) echo arn:aws:iam::1:user/x;;'
    fake(bin_dir, "aws", f'case "$1" in {answers} esac')


SSO_CONFIG = """[default]
region = eu-west-1

[profile sandbox]
sso_session = corp
sso_account_id = 111122223333
sso_role_name = Admin

[profile legacy]
sso_start_url = https://corp.awsapps.com/start
sso_region = eu-west-1

[sso-session corp]
sso_start_url = https://corp.awsapps.com/start
"""


@pytest.mark.parametrize(
    ("version", "env", "fragment"),
    [
        # get-token answers v1beta1, as the kubeconfig asks, from 1.23.9 and 2.6.3 on
        ("aws-cli/1.23.9 Python/3.8.10 Linux/5.4 botocore/1.25.9", {}, None),
        ("aws-cli/1.44.0 Python/3.12", {"AWS_PROFILE": "plain"}, None),
        ("aws-cli/2.6.3 Python/3.9.11", {}, None),
        ("aws-cli/2.31.0 Python/3.13", {"AWS_PROFILE": "sandbox"}, None),  # v2 logs in to SSO
        ("aws-cli/1.23.8 Python/3.8", {}, "AWS CLI 1.23.8 is too old"),
        ("aws-cli/1.16.156 Python/2.7", {}, "answers client.authentication.k8s.io/v1alpha1"),
        ("aws-cli/2.6.2 Python/3.9", {}, "2.6.3 or newer is needed"),
        # v1 and a profile that signs in with IAM Identity Center: no `aws sso login` in v1
        ("aws-cli/1.44.0 Python/3.12", {"AWS_PROFILE": "sandbox"},
         "is v1, which has no `aws sso login`, and AWS profile sandbox (sso_session in"),
        ("aws-cli/1.44.0 Python/3.12", {"AWS_DEFAULT_PROFILE": "legacy"},
         "AWS profile legacy (sso_start_url in"),
        # keys in the environment come before any profile
        ("aws-cli/1.44.0 Python/3.12", {"AWS_PROFILE": "sandbox", "AWS_ACCESS_KEY_ID": "AKIA"},
         None),
    ],
)  # fmt: skip
def test_the_aws_cli_is_judged_by_the_tokens_it_writes_and_sso(tools, version, env, fragment):
    aws_cli(tools, version)
    config = tools.parent / "aws-config"
    config.write_text(SSO_CONFIG)
    environment = {"PATH": str(tools), "HOME": str(tools.parent), "AWS_CONFIG_FILE": str(config)}
    problem = preflight_module.aws_cli_problem({**environment, **env})
    if fragment is None:
        assert problem is None
    else:
        assert problem is not None and fragment in problem, problem
        assert "getting-started-install.html" in problem


def test_the_sso_profile_is_read_from_the_users_aws_config_by_default(tools):
    aws_cli(tools, "aws-cli/1.44.0 Python/3.12")
    (tools.parent / ".aws").mkdir()
    (tools.parent / ".aws" / "config").write_text(SSO_CONFIG)
    env = {"PATH": str(tools), "HOME": str(tools.parent), "AWS_PROFILE": "sandbox"}
    assert "sso_session in " + str(tools.parent / ".aws" / "config") in str(
        preflight_module.aws_cli_problem(env)
    )


@pytest.mark.parametrize(
    "said",
    [
        "An error occurred (ExpiredToken) when calling the GetCallerIdentity operation: "
        "The security token included in the request is expired",
        "Error when retrieving token from sso: Token has expired and refresh failed",
    ],
)
def test_unusable_credentials_are_named_with_awss_own_reason(tools, said):
    fake(tools, "pulumi", PULUMI_VERSION + "exit 0")
    fake(tools, "aws", 'case "$1" in --version) echo "aws-cli/2.31.0";; *) '
                       f'echo >&2; echo "{said}" >&2; exit 254;; esac')  # fmt: skip
    proc = preflight(tools, PULUMI_CONFIG_PASSPHRASE="x")
    assert proc.returncode == 1 and "1 prerequisite(s) missing" in proc.stderr
    assert f"no usable AWS credentials; AWS says: {said}" in proc.stderr


def test_an_old_pulumi_cli_is_named(tools):
    fake(tools, "pulumi", 'case "$1" in version) echo v3.150.2;; esac')
    fake(tools, "aws", GOOD_AWS)
    proc = preflight(tools, PULUMI_CONFIG_PASSPHRASE="x")
    assert proc.returncode == 1 and "Pulumi CLI v3.150.2 is too old; 3.174.0" in proc.stderr


@pytest.mark.parametrize("lookup", ["", "failed error: [503] Service Unavailable"])
def test_a_failing_whoami_is_not_taken_for_logged_in_nowhere(tools, lookup):
    # Pulumi Cloud down, or a token expired: the user is logged in somewhere, so logging in
    # to local state would put a new dev stack (and cluster) beside theirs. Pulumi's words
    # are shown, and nothing is logged in to, selected or created.
    fake(tools, "aws", GOOD_AWS)
    fake(
        tools,
        "pulumi",
        PULUMI_VERSION + 'echo "$@" >> "$HOME/pulumi.log"\n'
        'echo "error: [503] Service Unavailable" >&2; exit 255',
    )
    env = {"PULUMI_CONFIG_PASSPHRASE": "x", "STACK_LOOKUP": lookup} if lookup else {}
    proc = preflight(tools, **env)
    assert proc.returncode == 1
    assert "`pulumi whoami` failed" in proc.stderr
    assert "error: [503] Service Unavailable" in proc.stderr
    log = (tools.parent / "pulumi.log").read_text()
    assert "login" not in log and "stack select" not in log


def test_local_state_is_the_fallback_and_asks_for_the_passphrase(tools):
    fake(tools, "aws", GOOD_AWS)
    fake(tools, "pulumi", LOGGED_OUT_PULUMI)
    proc = preflight(tools)
    assert proc.returncode == 1 and "PULUMI_CONFIG_PASSPHRASE" in proc.stderr
    assert "local state" in proc.stderr
    proc = preflight(tools, PULUMI_CONFIG_PASSPHRASE="", STACK="dev")
    assert proc.returncode == 0, proc.stderr
    log = (tools.parent / "pulumi.log").read_text()
    assert "login --local" in log and "stack select --create dev" in log


def test_an_explicit_backend_is_respected(tools):
    fake(tools, "aws", GOOD_AWS)
    fake(
        tools,
        "pulumi",
        PULUMI_VERSION + 'echo "$@" >> "$HOME/pulumi.log"\n'
        '[ "$1" = whoami ] && echo "Backend URL: https://app.pulumi.com/me"\n'
        '[ "$1" = config ] && echo \'{"aws:region": {"value": "eu-west-1"}}\'\n'
        "exit 0",
    )
    proc = preflight(tools, PULUMI_BACKEND_URL="https://api.pulumi.com")
    assert proc.returncode == 0, proc.stderr
    assert "login" not in (tools.parent / "pulumi.log").read_text()


# A cloud and a backend in one fake, for `aws` and `pulumi`: what each call answers comes
# from FAKE_WORLD, and every call is logged.
FAKE_CLOUD = """#!{python} -S
import json, os, sys
NONE_SELECTED = {none_selected!r}
world = json.loads(os.environ["FAKE_WORLD"])
tool, args = os.path.basename(sys.argv[0]), sys.argv[1:]
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(" ".join([tool, *args]) + "\\n")
def answer(value):
    if value is None:
        sys.exit(1)
    print(value if isinstance(value, str) else json.dumps(value))
    sys.exit(0)
def flag(name):
    return args[args.index(name) + 1] if name in args else None
if tool == "aws":
    if args == ["--version"]:
        answer(world.get("aws_version", "aws-cli/2.31.0 Python/3.13"))
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
    if args[:2] == ["iam", "get-role"]:
        role = world.get("spot_role", True)
        if role == "denied":
            sys.stderr.write("An error occurred (AccessDenied): not authorized to iam:GetRole")
            sys.exit(254)
        name = flag("--role-name")
        if role:
            answer("arn:aws:iam::111122223333:role/aws-service-role/spot.amazonaws.com/" + name)
        sys.stderr.write(f"An error occurred (NoSuchEntity): The role with name {{name}} cannot "
                         "be found.")
        sys.exit(254)
    if args[:2] == ["eks", "list-access-entries"]:
        if world.get("entries") is None:
            sys.stderr.write("An error occurred (AccessDeniedException): not authorized")
            sys.exit(254)
        answer("\\t".join(world["entries"]))
if tool == "pulumi":
    if args[0] == "version":
        answer("v3.200.0")
    if args[0] == "whoami":
        answer("Backend URL: https://api.pulumi.com")
    if args[:2] == ["stack", "--show-name"]:
        # the selected stack (world["selected"], fully qualified with -Q), after what the
        # CLI may print first (world["before"]); or why it could not tell (world["lookup"]);
        # else no stack selected, in the CLI's words (pkg/cmd/pulumi/stack/io.go ChooseStack)
        if world.get("lookup"):
            sys.stderr.write(world["lookup"] + "\\n")
            sys.exit(255)
        if world.get("selected"):
            print(world.get("before", ""))
            answer(world["selected"])
        sys.stderr.write(NONE_SELECTED + "\\n")
        sys.exit(255)
    if args[:2] == ["stack", "select"]:
        if world.get("select_error"):
            sys.stderr.write(world["select_error"])
            sys.exit(255)
        # Pulumi Cloud's resolution of a name (pkg/backend/httpstate/backend.go
        # ParseStackReference): the org, where not named, is the user's default (here `me`);
        # the project, where not named, the current one
        name = args[-1]
        org, _, rest = name.rpartition("/") if name.count("/") < 2 else (name, "", "")
        full = name if not rest else (org or "me") + "/cilium-eks/" + rest
        exists = full in world["stacks"] if "stacks" in world else world.get("stack", True)
        if exists or "--create" in args:
            sys.exit(0)
        sys.stderr.write(f"error: no stack named '{{args[-1]}}' found")
        sys.exit(255)
    if args[:2] == ["config", "--json"]:
        # an ESC environment's pulumiConfig, which only --open resolves (stack values win)
        config = {{**(world.get("esc", {{}}) if "--open" in args else {{}}), **world["config"]}}
        text = lambda v: v if isinstance(v, str) else json.dumps(v)
        answer({{k: {{"value": text(v)}} for k, v in config.items()}})
    if args[:2] == ["stack", "export"]:
        answer({{"deployment": {{"resources": world.get("state", [])}}}})
    if args[:2] == ["stack", "output"]:
        answer(world.get("peers", {{}}).get(flag("--stack")))
sys.exit(0)
"""

ROLE_SESSION = "arn:aws:sts::111122223333:assumed-role/Deployer/ci-run-42"
ROLE_WITH_PATH = "arn:aws:iam::111122223333:role/ci/Deployer"


def stack_file_config(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The suite's stack as `pulumi config --json` would list it (namespaced keys)."""
    cfg = with_overrides(dev_config(), overrides or {})
    return {k if ":" in k else f"cilium-eks:{k}": v for k, v in cfg.items()}


@dataclass
class Result:
    """What a preflight run returned and printed (as subprocess.CompletedProcess has it)."""

    returncode: int
    stdout: str
    stderr: str


def preflight_as(tools: Path, world: dict, **env: str) -> Result:
    """The preflight against FAKE_CLOUD playing `world`, run in this process (its startup
    is most of a run's cost; tests above run it as a command); calls go to calls.log."""
    for name in ("aws", "pulumi"):
        path = tools / name
        path.write_text(FAKE_CLOUD.format(python=sys.executable, none_selected=NONE_SELECTED))
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    world = {"config": stack_file_config(), **world}
    environment = {
        "PATH": str(tools), "HOME": str(tools.parent), "FAKE_WORLD": json.dumps(world),
        "FAKE_LOG": str(tools.parent / "calls.log"),
        "PULUMI_BACKEND_URL": "https://api.pulumi.com", **env,
    }  # fmt: skip
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = preflight_module.main(environment)
    return Result(code, out.getvalue(), err.getvalue())


def cloud(tools: Path, world: dict, action: str = "up") -> tuple[Result, str]:
    proc = preflight_as(tools, {"caller": ROLE_SESSION, **world}, STACK="dev", ACTION=action)
    log = tools.parent / "calls.log"
    return proc, log.read_text() if log.exists() else ""


# --- states, as `pulumi stack export` lists resources --------------------------------------


def res(type_: str, name: str, inputs: dict | None = None, outputs: dict | None = None) -> dict:
    return {
        "urn": f"urn:pulumi:dev::cilium-eks::{type_}::{name}",
        "type": type_,
        "inputs": inputs or {},
        "outputs": outputs or {},
    }


CLUSTER = res("aws:eks/cluster:Cluster", "eks-eksCluster", {"name": "cilium-eks-dev"},
              {"name": "cilium-eks-dev"})  # fmt: skip
NODES = res("aws:eks/nodeGroup:NodeGroup", "nodes")
KUBE_PROXY_OFF = res("kubernetes:apps/v1:DaemonSetPatch", "kube-proxy",
                     {"metadata": {"name": "kube-proxy", "namespace": "kube-system"}})  # fmt: skip
KUBE_PROXY_ADDON = res("aws:eks/addon:Addon", "eks-kube-proxy", {"addonName": "kube-proxy"})


def release(version: str) -> dict:
    return res("kubernetes:helm.sh/v3:Release", "cilium", {"chart": "cilium", "version": version})


def subnets(count: int, cidr: str = "10.0.0.0/16") -> list[dict]:
    vpc = res("aws:ec2/vpc:Vpc", "vpc", {"cidrBlock": cidr}, {"cidrBlock": cidr})
    private = [
        res(
            "aws:ec2/subnet:Subnet",
            f"private-{i}",
            {"tags": {"kubernetes.io/role/internal-elb": "1"}},
        )
        for i in range(count)
    ]
    public = [res("aws:ec2/subnet:Subnet", f"public-{i}", {"tags": {"kubernetes.io/role/elb": "1"}})
              for i in range(count)]  # fmt: skip
    return [vpc, *private, *public]


LIVE = [CLUSTER, NODES, KUBE_PROXY_OFF, release("1.19.6"), *subnets(3)]
AS_ADMIN = {"cluster": True, "entries": [ROLE_WITH_PATH]}


def findings(state: list[dict], overrides: dict | None = None, action: str = "up") -> list[str]:
    cfg = parse(with_overrides(dev_config(), overrides or {}), stack="dev")
    deployed = Deployed.from_state({"deployment": {"resources": state}})
    return preflight_module.live_findings(cfg, deployed, action)


# --- access entries -------------------------------------------------------------------------


def test_a_caller_whose_role_has_an_access_entry_passes(tools):
    proc, calls = cloud(tools, {"cluster": True, "state": LIVE,
                                "entries": ["arn:aws:iam::1:role/x", ROLE_WITH_PATH]})  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "eks list-access-entries --cluster-name cilium-eks-dev --region ap-northeast-2" in calls


def test_a_caller_without_an_access_entry_is_stopped_with_the_fix(tools):
    proc, _ = cloud(tools, {"cluster": True, "state": LIVE,
                            "entries": ["arn:aws:iam::111122223333:role/NotDeployer"]})  # fmt: skip
    assert proc.returncode == 1
    message = " ".join(proc.stderr.split())
    assert "arn:aws:iam::111122223333:role/Deployer" in message  # the role, not the session
    assert "no EKS access entry on cluster cilium-eks-dev" in message
    assert "Unauthorized" in message and "access.adminPrincipalArns" in message


@pytest.mark.parametrize(
    ("caller", "entry", "listed"),
    [
        (ROLE_SESSION, ROLE_WITH_PATH, True),
        (ROLE_SESSION, "arn:aws:iam::111122223333:role/Deployer", True),
        (ROLE_SESSION, "arn:aws:iam::111122223333:role/NotDeployer", False),  # another role
        (ROLE_SESSION, "arn:aws:iam::444455556666:role/Deployer", False),  # another account's
        (ROLE_SESSION, "arn:aws:iam::111122223333:user/Deployer", False),
        ("arn:aws:iam::111122223333:user/alice", "arn:aws:iam::111122223333:user/alice", True),
        ("arn:aws:iam::111122223333:user/alice", "arn:aws:iam::111122223333:user/alice2", False),
        ("arn:aws:iam::111122223333:user/alice", "arn:aws:iam::111122223333:user/x/alice", False),
    ],
)
def test_an_access_entry_names_the_callers_role_or_user(caller, entry, listed):
    principal = account.role_of(caller)
    assert account.is_listed(principal, ["arn:aws:iam::1:role/x", entry]) is listed


def test_the_creator_who_also_lists_themselves_is_stopped(tools):
    config = stack_file_config({"access.adminPrincipalArns": [ROLE_WITH_PATH]})
    proc, calls = cloud(tools, {"config": config})
    assert proc.returncode == 1
    assert "409" in proc.stderr and "about to create cluster cilium-eks-dev" in proc.stderr
    assert "list-access-entries" not in calls  # no cluster yet: nothing to list
    # listing someone else is fine
    config = stack_file_config(
        {"access.adminPrincipalArns": ["arn:aws:iam::111122223333:role/Admin"]}
    )
    assert cloud(tools, {"config": config})[0].returncode == 0


@pytest.mark.parametrize(
    "world",
    [
        # listed as well: were the look-up's failure taken for "no cluster", the creator
        # check would stop this run
        {"cluster": "denied",
         "config": stack_file_config({"access.adminPrincipalArns": [ROLE_WITH_PATH]})},
        {"cluster": True, "entries": None},
    ],
    ids=["describe-denied", "list-denied"],
)  # fmt: skip
def test_what_it_may_not_read_is_skipped_and_said(tools, world):
    proc, _ = cloud(tools, world)
    assert proc.returncode == 0, proc.stderr
    assert "could not" in proc.stderr and "AccessDeniedException" in proc.stderr


def test_the_cluster_the_state_names_is_checked(tools):
    # the state names the cluster that exists, whatever config says it should become
    old = res("aws:eks/cluster:Cluster", "eks-eksCluster", {"name": "cilium-eks-old"},
              {"name": "cilium-eks-old"})  # fmt: skip
    config = stack_file_config({"clusterName": "cilium-eks-new"})
    proc, calls = cloud(tools, {**AS_ADMIN, "config": config, "state": [old]})
    assert proc.returncode == 0, proc.stderr
    assert "describe-cluster --name cilium-eks-old " in calls


def test_the_default_cluster_name_comes_from_the_stacks_short_name_in_lower_case(tools):
    config = stack_file_config({"clusterName": None})
    proc = preflight_as(tools, {"caller": ROLE_SESSION, **AS_ADMIN, "config": config},
                        STACK="acme/cilium-eks/Prod")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    calls = (tools.parent / "calls.log").read_text()
    assert "describe-cluster --name cilium-eks-prod " in calls


# --- the stack itself ----------------------------------------------------------------------


def test_a_preview_never_creates_a_stack(tools):
    proc, calls = cloud(tools, {"stack": False}, action="preview")
    assert proc.returncode == 1 and "--create" not in calls
    assert "stack dev could not be selected on https://api.pulumi.com (`make up` creates a " in (
        proc.stderr
    )
    assert "Pulumi says:\nerror: no stack named 'dev' found" in proc.stderr  # Pulumi's words


# The Makefile hands over the stack Pulumi has selected fully qualified, and says it is the
# selected one (SELECTED_STACK); here it is in org acme, the user's default org is `me`.
QUALIFIED = "acme/cilium-eks/prod"
IN_ACME = {"caller": ROLE_SESSION, **AS_ADMIN, "stacks": [QUALIFIED],
           "config": stack_file_config({"clusterName": None})}  # fmt: skip


# How the CLI says no stack is selected, non-interactively (pulumi/pulumi
# pkg/cmd/pulumi/stack/io.go ChooseStack, for `pulumi stack`, which offers a new one).
NONE_SELECTED = (
    "error: no stack selected; please use `pulumi stack select` or `pulumi stack init` to "
    "choose one"
)
# Any other failure says nothing of which stack is selected: Pulumi Cloud's 5xx.
UNAVAILABLE = "error: [503] Service Unavailable: please try again"
WHERE_NONE_SELECTED = {"STACK": "dev", "SELECTED_STACK": "", "STACK_LOOKUP": "none"}
AFTER_A_FAILED_LOOKUP = {**WHERE_NONE_SELECTED, "STACK_LOOKUP": f"failed {UNAVAILABLE}"}


def pulumi_calls(tools: Path) -> list[list[str]]:
    calls = (tools.parent / "calls.log").read_text().splitlines()
    return [line.split()[1:] for line in calls if line.startswith("pulumi ")]


def stacks_named(calls: list[list[str]]) -> list[str]:
    """The stack each Pulumi call works on: --stack's, or the one `stack select` names."""
    named = [c[c.index("--stack") + 1] for c in calls if "--stack" in c]
    return named + [c[-1] for c in calls if c[:2] == ["stack", "select"]]


@pytest.mark.parametrize("action", ["up", "preview", "destroy"])
def test_the_selected_stack_is_worked_on_by_its_qualified_name_and_never_created(tools, action):
    proc = preflight_as(tools, IN_ACME, STACK=QUALIFIED, SELECTED_STACK=QUALIFIED, ACTION=action)
    assert proc.returncode == 0, proc.stderr
    calls = pulumi_calls(tools)
    assert ["stack", "select", QUALIFIED] in calls  # selected, not `--create`d
    assert not any("--create" in call for call in calls)
    assert ["stack", "export", "--stack", QUALIFIED] in calls
    assert ["config", "--json", "--open", "--stack", QUALIFIED] in calls
    assert set(stacks_named(calls)) == {QUALIFIED}
    # the default cluster name, like the stack file, comes from the last segment
    aws = (tools.parent / "calls.log").read_text()
    assert "describe-cluster --name cilium-eks-prod " in aws


def test_a_selected_stack_named_bare_is_not_made_anew_in_the_default_org(tools):
    # What a bare `pulumi stack --show-name` gave: `prod` is me/cilium-eks/prod, which does
    # not exist. `--create` would make it, and `make up` a second cluster; selecting fails.
    proc = preflight_as(tools, IN_ACME, STACK="prod", SELECTED_STACK="prod", ACTION="up")
    assert proc.returncode == 1
    assert pulumi_calls(tools)[-1] == ["stack", "select", "prod"]
    assert proc.stderr.endswith(
        "stack prod could not be selected on https://api.pulumi.com; Pulumi says:\n"
        "error: no stack named 'prod' found\n"
    )


@pytest.mark.parametrize("given", ["prod", "acme/prod", QUALIFIED])
def test_a_stack_named_with_stack_is_created_by_up_as_named(tools, given):
    # STACK= given: the Makefile says nothing was selected; the name is passed as typed
    world = {**IN_ACME, "stacks": []}
    proc = preflight_as(tools, world, STACK=given, SELECTED_STACK="", ACTION="up")
    assert proc.returncode == 0, proc.stderr
    calls = pulumi_calls(tools)
    assert ["stack", "select", "--create", given] in calls
    assert set(stacks_named(calls)) == {given}


def test_a_stack_named_with_stack_beside_another_selected_one_is_created_by_up(tools):
    proc = preflight_as(tools, IN_ACME, STACK=QUALIFIED, SELECTED_STACK="acme/cilium-eks/dev")
    assert proc.returncode == 0, proc.stderr
    assert ["stack", "select", "--create", QUALIFIED] in pulumi_calls(tools)


def test_dev_where_none_is_selected_is_created_by_up(tools):
    proc = preflight_as(tools, {"caller": ROLE_SESSION, **AS_ADMIN}, SELECTED_STACK="")
    assert proc.returncode == 0, proc.stderr
    calls = pulumi_calls(tools)
    assert ["stack", "select", "--create", "dev"] in calls
    assert set(stacks_named(calls)) == {"dev"}


# --- make's fallback, dev: Pulumi is asked again after the login -----------------------------

ASK = ["stack", "--show-name", "--fully-qualify-stack-names", "--non-interactive"]


@pytest.mark.parametrize("action", ["up", "preview", "destroy"])
@pytest.mark.parametrize("make_saw", [WHERE_NONE_SELECTED, AFTER_A_FAILED_LOOKUP],
                         ids=["none-selected", "failed"])  # fmt: skip
def test_a_question_that_fails_again_stops_with_pulumis_words(tools, action, make_saw):
    proc = preflight_as(tools, {"caller": ROLE_SESSION, **AS_ADMIN, "lookup": UNAVAILABLE},
                        ACTION=action, **make_saw)  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.endswith(f"STACK=<name>. Pulumi says:\n{UNAVAILABLE}\n")
    assert "dev (make's choice where none is) is neither selected nor created" in proc.stderr
    calls = pulumi_calls(tools)
    assert calls[-1] == ASK  # nothing after: no `stack select`, let alone `--create`
    assert not any("--create" in call for call in calls)


@pytest.mark.parametrize("make_saw", [WHERE_NONE_SELECTED, AFTER_A_FAILED_LOOKUP],
                         ids=["none-selected", "failed"])  # fmt: skip
def test_a_stack_selected_by_now_is_named_beside_dev_and_nothing_is_created(tools, make_saw):
    world = {**IN_ACME, "selected": QUALIFIED, "before": "warning: A new version of Pulumi"}
    proc = preflight_as(tools, world, ACTION="up", **make_saw)
    assert proc.returncode == 1
    # both stacks named, and the ways out: again (the selected one), or STACK=
    assert f"Pulumi has stack {QUALIFIED} selected, but make chose dev" in proc.stderr
    assert f"run `make up` again to work on {QUALIFIED}" in proc.stderr
    assert f"make up STACK={QUALIFIED} (or STACK=dev)" in proc.stderr
    # what make was told, where its question failed
    assert (f"when its question failed ({UNAVAILABLE})" in proc.stderr) == (
        make_saw is AFTER_A_FAILED_LOOKUP
    )
    assert pulumi_calls(tools)[-1] == ASK


def test_dev_selected_by_now_on_a_self_managed_backend_is_dev(tools):
    # make asked before the login; after it, the local backend has dev selected, which it
    # names organization/cilium-eks/dev: the same stack, worked on without a second run
    world = {"caller": ROLE_SESSION, **AS_ADMIN, "selected": "organization/cilium-eks/dev"}
    proc = preflight_as(tools, world, **AFTER_A_FAILED_LOOKUP)
    assert proc.returncode == 0, proc.stderr
    assert ["stack", "select", "--create", "dev"] in pulumi_calls(tools)
    # another stack of the backend is not dev
    world["selected"] = "organization/cilium-eks/prod"
    proc = preflight_as(tools, world, **AFTER_A_FAILED_LOOKUP)
    assert proc.returncode == 1 and "make chose dev" in proc.stderr


def test_dev_is_created_only_where_pulumi_says_again_that_none_is_selected(tools):
    # make's question failed (a blip); asked again, Pulumi says none is selected: dev
    proc = preflight_as(tools, {"caller": ROLE_SESSION, **AS_ADMIN}, **AFTER_A_FAILED_LOOKUP)
    assert proc.returncode == 0, proc.stderr
    calls = pulumi_calls(tools)
    assert calls.index(ASK) < calls.index(["stack", "select", "--create", "dev"])


def test_a_fallback_asked_before_the_login_is_asked_again_after_it(tools):
    # a new user, no backend: make's question failed for want of a login; the preflight
    # logs in to local state, asks again, and only then creates dev
    fake(tools, "aws", GOOD_AWS)
    said = "error: PULUMI_ACCESS_TOKEN must be set for login during non-interactive CLI sessions"
    fake(tools, "pulumi", LOGGED_OUT_PULUMI.replace(
        ' stack) [ "$2" = export ]',
        ' stack) [ "$2" = --show-name ] && { [ -f "$HOME/in" ] && echo "' + NONE_SELECTED
        + '" >&2 || echo "' + said + '" >&2; exit 255; }; [ "$2" = export ]'))  # fmt: skip
    proc = preflight(tools, PULUMI_CONFIG_PASSPHRASE="", STACK="dev",
                     STACK_LOOKUP=f"failed {said}")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    log = (tools.parent / "pulumi.log").read_text().splitlines()
    assert log.index("login --local") < log.index(" ".join(ASK))
    assert log.index(" ".join(ASK)) < log.index("stack select --create dev")


def test_a_stack_given_is_not_asked_about(tools):
    # STACK= given (make sets no STACK_LOOKUP), or the preflight run by CI with its STACK
    proc = preflight_as(tools, {**IN_ACME, "stacks": [], "selected": QUALIFIED},
                        STACK="dev", SELECTED_STACK="")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert ASK not in pulumi_calls(tools)
    assert ["stack", "select", "--create", "dev"] in pulumi_calls(tools)


@pytest.mark.parametrize(
    ("stub", "selected"),
    [
        ("echo 'warning: A new version of Pulumi is available.'; echo acme/cilium-eks/prod",
         pulumi_session.Selected("acme/cilium-eks/prod")),
        (f"echo '{NONE_SELECTED}' >&2; exit 255", pulumi_session.Selected(None)),
        (f"echo '{UNAVAILABLE}' >&2; exit 255", pulumi_session.Selected(None, UNAVAILABLE)),
        (None, pulumi_session.Selected(None)),  # no CLI yet: make check, on a fresh machine
    ],
    ids=["line-before-the-name", "none-selected", "failed", "no-cli"],
)  # fmt: skip
def test_what_pulumi_says_is_read_as_selected_none_or_failed(tools, stub, selected):
    if stub is not None:
        fake(tools, "pulumi", stub)
    env = {"PATH": str(tools), "HOME": str(tools.parent)}
    assert pulumi_session.selected_stack(env) == selected


def test_any_other_pulumi_error_is_shown_as_pulumi_printed_it(tools):
    said = 'error: constructing secrets manager of type "passphrase": incorrect passphrase'
    proc, _ = cloud(tools, {"select_error": said})
    assert proc.returncode == 1 and proc.stderr.endswith(f"Pulumi says:\n{said}\n")


def test_a_v1_cli_without_sso_runs_the_whole_preflight(tools):
    proc, _ = cloud(tools, {**AS_ADMIN, "aws_version": "aws-cli/1.44.0 Python/3.12"})
    assert proc.returncode == 0, proc.stderr


def test_the_preflight_reads_the_config_pulumi_resolves_esc_included(tools):
    # The stack file leaves aws:region to an ESC environment (`make check` says so):
    # `pulumi config --open` resolves it, and the rest is checked as usual.
    config = {k: v for k, v in stack_file_config().items() if k != "aws:region"}
    esc = {"aws:region": "eu-west-1"}
    proc, calls = cloud(tools, {**AS_ADMIN, "config": config, "esc": esc})
    assert proc.returncode == 0, proc.stderr
    assert "eks describe-cluster --name cilium-eks-dev --region eu-west-1" in calls
    proc, _ = cloud(tools, {"config": {**config, "cilium-eks:network": {"azCount": 1}},
                            "esc": esc})  # fmt: skip
    assert proc.returncode == 1 and "network.azCount: 1 is not allowed" in proc.stderr


def test_an_unknown_action_is_refused_before_any_call(tools):
    # a misspelt ACTION would otherwise skip the stack's creation and still check the rest
    proc = preflight_as(tools, {"caller": ROLE_SESSION}, STACK="dev", ACTION="Up")
    assert proc.returncode == 1 and "ACTION=Up: use preview, up, destroy" in proc.stderr
    assert not (tools.parent / "calls.log").exists()


def test_it_says_which_stack_and_identity_it_runs_as(tools):
    proc, _ = cloud(tools, {**AS_ADMIN, "state": LIVE})
    assert proc.returncode == 0, proc.stderr
    assert f"stack dev on https://api.pulumi.com, AWS identity {ROLE_SESSION}" in proc.stdout


def test_an_invalid_config_is_refused_naming_the_key(tools):
    proc, _ = cloud(tools, {"config": stack_file_config({"network.azCount": 9})})
    assert proc.returncode == 1 and "network.azCount: 9" in proc.stderr


# --- a failed first run: no outputs, judged by the state ----------------------------------


def test_a_partial_stack_without_outputs_goes_on(tools):
    # NodeCreationFailure after the cluster, patches and release: no output was ever
    # written. Nothing here may be read as `false`, and `make up` must go on.
    partial = [CLUSTER, KUBE_PROXY_OFF, release("1.19.6"), *subnets(3)]
    proc, _ = cloud(tools, {**AS_ADMIN, "state": partial})
    assert proc.returncode == 0, proc.stderr


def test_a_real_kube_proxy_replacement_switch_is_still_refused(tools):
    proc, _ = cloud(
        tools,
        {
            **AS_ADMIN,
            "state": LIVE,
            "config": stack_file_config({"cilium.kubeProxyReplacement": False}),
        },
    )
    assert proc.returncode == 1
    message = " ".join(proc.stderr.split())
    assert (
        "cilium.kubeProxyReplacement: false, but cluster cilium-eks-dev runs with true" in message
    )
    assert "(kube-proxy is patched off)" in message
    assert "cilium.kubeProxyReplacement true" in message  # advises what the cluster runs
    # destroy has nothing to switch
    assert cloud(tools, {**AS_ADMIN, "state": LIVE}, action="destroy")[0].returncode == 0


@pytest.mark.parametrize(
    ("state", "wanted", "refused"),
    [
        ([CLUSTER, NODES, KUBE_PROXY_OFF], True, False),
        ([CLUSTER, NODES, KUBE_PROXY_OFF], False, True),
        ([CLUSTER, NODES, KUBE_PROXY_ADDON], False, False),
        ([CLUSTER, NODES, KUBE_PROXY_ADDON], True, True),
        ([CLUSTER, KUBE_PROXY_ADDON], True, True),  # the add-on exists: the mode is known
        ([CLUSTER], True, False),  # neither patch nor add-on yet: nothing runs either way
        ([CLUSTER], False, False),
        ([], False, False),  # a new stack
    ],
)
def test_kube_proxy_replacement_is_judged_by_what_exists(state, wanted, refused):
    found = findings(state, {"cilium.kubeProxyReplacement": wanted})
    assert bool(found) == refused, found
    if refused:
        deployed = not wanted
        # never advise a value the cluster does not run
        assert f"cilium.kubeProxyReplacement {str(deployed).lower()}`" in found[0]


def test_a_secret_the_export_did_not_decrypt_is_not_read_as_a_value():
    secret = {preflight_module.SECRET_SIG: "1b47061264138c4ac30d75fd1eb44270", "ciphertext": "x"}
    hidden = res("kubernetes:helm.sh/v3:Release", "cilium", {"chart": "cilium", "version": secret})
    assert Deployed.from_state({"deployment": {"resources": [hidden]}}).cilium_version is None


# --- network: more AZs fine, fewer or another CIDR is a rebuild --------------------------


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"network.azCount": 2}, "network.azCount: 2"),
        ({"network.cidr": "10.1.0.0/16"}, "network.cidr: 10.1.0.0/16"),
    ],
)  # fmt: skip
def test_removing_an_az_or_changing_the_cidr_is_refused_as_a_rebuild(overrides, key):
    (found,) = findings(LIVE, overrides)
    assert found.startswith(key) and "rebuild (make destroy, then make up)" in found


@pytest.mark.parametrize("az_count", [3, 4, 6])
def test_keeping_or_growing_the_azs_is_fine(az_count):
    assert findings(LIVE, {"network.azCount": az_count}) == []


# --- Cilium minors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("deployed", "overrides", "fragment"),
    [
        ("1.19.6", {"cilium.version": "1.19.7"}, None),  # a patch release
        ("1.19.6", {"cilium.version": "1.20.0", "cilium.upgradeCompatibility": "1.19"}, None),
        ("1.19.6", {"cilium.version": "1.20.0"}, 'cilium.upgradeCompatibility "1.19"'),
        # the minor first installed may be older than the deployed one
        ("1.19.6", {"cilium.version": "1.20.0", "cilium.upgradeCompatibility": "1.18"}, None),
        ("1.20.1", {"cilium.version": "1.21.0", "cilium.upgradeCompatibility": "1.19"}, None),
        ("1.20.1", {"cilium.version": "1.21.0", "cilium.upgradeCompatibility": "1.21"},
         "upgradeCompatibility: 1.21, but cilium.version 1.21.0 upgrades the deployed 1.20.1"),
        ("1.19.6", {"cilium.version": "1.21.0", "cilium.upgradeCompatibility": "1.19"},
         "skips a minor from the deployed 1.19.6; Cilium upgrades one minor at a time: "
         "first 1.20.x"),
        ("1.19.6", {"cilium.version": "2.0.0", "cilium.upgradeCompatibility": "1.19"},
         "skips a minor"),
        ("1.20.0", {"cilium.version": "1.19.6"}, "would downgrade Cilium 1.20.0"),
        ("1.20.0", {"cilium.version": "1.20.1", "cilium.upgradeCompatibility": "1.19"}, None),
    ],
)  # fmt: skip
def test_cilium_moves_one_minor_at_a_time_with_upgrade_compatibility(deployed, overrides, fragment):
    state = [CLUSTER, NODES, KUBE_PROXY_OFF, release(deployed)]
    found = findings(state, overrides)
    if fragment is None:
        assert found == []
    else:
        assert len(found) == 1 and fragment in found[0], found


def test_a_fresh_stack_needs_no_upgrade_compatibility():
    assert findings([], {"cilium.version": "1.20.0"}) == []


MESH_1 = res("cilium-eks:index:Mesh", "mesh", {}, {"clusterId": 1, "peers": []})


@pytest.mark.parametrize(
    ("state", "overrides", "fragment"),
    [
        ([release("1.19.6")], {}, None),  # no mesh, as deployed
        ([release("1.19.6"), MESH_1], {"mesh": {"clusterId": 1}}, None),
        ([], {"mesh": {"clusterId": 1}}, None),  # a fresh stack joins from its first up
        ([release("1.19.6")], {"mesh": {"clusterId": 1}}, "mesh.clusterId: 1, but cluster"),
        ([release("1.19.6"), MESH_1], {}, "mesh.clusterId: none (no mesh), but"),
        (
            [release("1.19.6"), MESH_1],
            {"mesh": {"clusterId": 2, "peers": ["acme/cilium-eks/a"]}},
            "runs Cilium with cluster ID 1",
        ),
    ],
)  # fmt: skip
def test_a_live_cluster_keeps_the_cluster_id_it_was_built_with(state, overrides, fragment):
    found = findings([CLUSTER, NODES, KUBE_PROXY_OFF, *state], overrides)
    if fragment is None:
        assert found == []
    else:
        assert len(found) == 1 and fragment in found[0], found
        assert "rebuild the stack" in found[0]


# --- mesh peers -------------------------------------------------------------------------------


def mesh_outputs(cluster_id: int, cidr: str, name: str = "cilium-eks-b") -> dict:
    return {"mesh": {"clusterId": cluster_id, "vpcCidr": cidr, "clusterName": name}}


def test_the_preflight_checks_peers_with_the_programs_rules_and_the_callers_account():
    # the rules themselves: tests/test_mesh.py (config.mesh_problems)
    cfg = parse(
        with_overrides(dev_config(), {"mesh": {"clusterId": 3, "peers": ["acme/cilium-eks/b"]}}),
        stack="dev",
    )
    peer = {"mesh": {**mesh_outputs(1, "10.1.0.0/16")["mesh"], "accountId": "222222222222",
                     "ca": "fingerprint"}}  # fmt: skip
    assert preflight_module.peer_findings(cfg, "222222222222", {"acme/cilium-eks/b": peer}) == []
    found = preflight_module.peer_findings(cfg, "111111111111", {"acme/cilium-eks/b": peer})
    assert len(found) == 1 and "in AWS account 222222222222" in found[0], found
    found = preflight_module.peer_findings(cfg, "222222222222", {"acme/cilium-eks/b": None})
    assert len(found) == 1 and "has no `mesh` output" in found[0], found


def test_the_preflight_reads_each_peers_outputs(tools):
    config = stack_file_config({"mesh": {"clusterId": 2, "peers": ["acme/cilium-eks/a"]}})
    world = {
        **AS_ADMIN,
        "config": config,
        "peers": {"acme/cilium-eks/a": mesh_outputs(2, "10.9.0.0/16", "cilium-eks-a")},
    }
    proc, calls = cloud(tools, world)
    assert proc.returncode == 1 and "mesh.clusterId: 2 is also the cluster ID" in proc.stderr
    assert "pulumi stack output --json --stack acme/cilium-eks/a" in calls


# --- the account: EC2's Spot service-linked role ----------------------------------------------

SPOT = {"karpenter": {"enabled": True, "capacityTypes": ["spot", "on-demand"]}}


@pytest.mark.parametrize("action", ["up", "preview"])
def test_spot_without_the_accounts_spot_role_is_refused_with_the_command(tools, action):
    proc, calls = cloud(
        tools, {**AS_ADMIN, "config": stack_file_config(SPOT), "spot_role": False}, action
    )
    assert proc.returncode == 1
    assert "iam get-role --role-name AWSServiceRoleForEC2Spot" in calls
    assert (
        "karpenter.capacityTypes: spot, but this AWS account has no AWSServiceRoleForEC2Spot"
        in proc.stderr
    )
    assert (
        "`aws iam create-service-linked-role --aws-service-name spot.amazonaws.com`" in proc.stderr
    )


def test_spot_with_the_role_passes_and_no_spot_asks_nothing(tools):
    log = tools.parent / "calls.log"
    proc, calls = cloud(tools, {**AS_ADMIN, "config": stack_file_config(SPOT)})
    assert proc.returncode == 0 and "iam get-role" in calls, proc.stderr
    on_demand = {"karpenter": {"enabled": True}}
    log.unlink()
    proc, calls = cloud(tools, {**AS_ADMIN, "config": stack_file_config(on_demand)})
    assert proc.returncode == 0 and "iam get-role" not in calls
    log.unlink()
    proc, calls = cloud(tools, {**AS_ADMIN, "config": stack_file_config(SPOT)}, "destroy")
    assert proc.returncode == 0 and "iam get-role" not in calls


def test_a_spot_role_it_may_not_read_is_said_and_skipped(tools):
    config = stack_file_config(SPOT)
    proc, _ = cloud(tools, {**AS_ADMIN, "config": config, "spot_role": "denied"})
    assert proc.returncode == 0, proc.stderr
    assert "could not look up the AWSServiceRoleForEC2Spot role" in proc.stderr
    assert "AccessDenied" in proc.stderr  # AWS's own words


def test_every_aws_call_of_the_preflight_is_in_the_ci_roles_policies(tools):
    # Every feature that makes the preflight ask AWS something, on a live cluster: each
    # `aws` call needs its action in tests/iam.PREFLIGHT_ACTIONS, which the deploy and
    # preview policies are checked against (tests/test_iam_calls.py, test_ci_identities.py).
    world = {**AS_ADMIN, "config": stack_file_config(SPOT), "state": LIVE}
    cloud(tools, world)
    asked = {
        f"{line.split()[1]}:{line.split()[2]}"
        for line in (tools.parent / "calls.log").read_text().splitlines()
        if line.startswith("aws ") and line.split()[1] not in ("--version", "sts")
    }
    cli_to_action = {
        "eks:describe-cluster": "eks:DescribeCluster",
        "eks:list-access-entries": "eks:ListAccessEntries",
        "iam:get-role": "iam:GetRole",
    }
    assert asked == set(cli_to_action)
    assert {cli_to_action[call] for call in asked} == set(PREFLIGHT_ACTIONS)
