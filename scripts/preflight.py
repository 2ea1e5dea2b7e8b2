"""Everything `make preview|up|destroy` (and the CI workflows) need before Pulumi runs.

    STACK=dev ACTION=up venv/bin/python scripts/preflight.py

Environment:
  STACK                      stack to select: <name>, <org>/<name> or <org>/<project>/<name>
                             (created by `up` when missing; default dev)
  SELECTED_STACK             the stack Pulumi has selected, as `make` found it: when STACK
                             is this stack, it exists and is selected, never created
  STACK_LOOKUP               set by `make` where STACK is its fallback, dev: `none` (no
                             stack selected) or `failed <what Pulumi said>`. Pulumi is
                             asked again after the login: dev is created only where no
                             stack is selected (scripts/pulumi_session.py)
  ACTION                     preview | up | destroy (default up)
  PULUMI_BACKEND_URL         where state lives; unset and not logged in: local files
  PULUMI_CONFIG_PASSPHRASE   encrypts secrets (the kubeconfig) in a self-managed backend

First the machine: every missing prerequisite is reported in one run, each with its fix.
Then, on a stack that exists, what Pulumi cannot see until AWS or Cilium refuses it
halfway through. The stack is judged by what exists, its state (`pulumi stack export`),
never by outputs a failed first run did not write:
  - the caller has an EKS access entry on the cluster (or would conflict with creating it),
    and the account has EC2's Spot service-linked role where Karpenter may launch spot
    (scripts/account.py);
  - kube-proxy replacement is not switched once the cluster runs in one mode or the other;
  - no AZ is removed and the VPC CIDR is unchanged (either would delete subnets in use);
  - Cilium moves one minor at a time, with cilium.upgradeCompatibility set (upgrade guide);
  - mesh peers exist, have their own cluster ID and a VPC CIDR that does not overlap.
Exits 1 with every finding, each naming the config key and the way out; 0 otherwise.

Imports the config package, scripts/account.py and scripts/pulumi_session.py; nothing of
the program's components: it runs before the program.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from components.config import (  # noqa: E402
    ConfigError,
    StackConfig,
    mesh_problems,
    minor_of,
    parse,
    stack_config_keys,
)
from scripts import account, pulumi_session  # noqa: E402
from scripts.pulumi_session import run  # noqa: E402

PREFIX = "preflight:"
ACTIONS = ("preview", "up", "destroy")

AWS_CLI_INSTALL = "https://docs.aws.amazon.com/cli/latest/userguide/getting-started-install.html"
# The oldest AWS CLI of each major version whose `aws eks get-token` answers in the API
# version the stack's kubeconfig asks for. pulumi-eks writes it (nodejs/eks/cluster/
# cluster.ts, generateKubeconfig) with exec apiVersion client.authentication.k8s.io/v1beta1
# and KUBERNETES_EXEC_INFO naming v1beta1; the CLI honours that from 1.23.9 and 2.6.3 (its
# CHANGELOG: "eks get-token: Add support for respecting API version found in
# KUBERNETES_EXEC_INFO"). Before, it answered v1alpha1 (1.16.156, whose get-token the EKS
# guide once named as enough, included), which client-go refuses for a v1beta1 kubeconfig
# and has not known at all since Kubernetes 1.24 (aws/containers-roadmap #1736).
MIN_AWS_CLI = {1: (1, 23, 9), 2: (2, 6, 3)}
# Keys of a profile that signs in with IAM Identity Center (AWS CLI User Guide, "Configuring
# IAM Identity Center authentication with the AWS CLI"): `aws sso login` refreshes them, and
# only v2 has that command (v1's awscli/customizations has no sso/).
SSO_KEYS = ("sso_start_url", "sso_session")

# What the state says, by the types the program (and pulumi-eks) declare.
EKS_CLUSTER = "aws:eks/cluster:Cluster"
EKS_NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
EKS_ADDON = "aws:eks/addon:Addon"
DAEMONSET_PATCH = "kubernetes:apps/v1:DaemonSetPatch"
HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
VPC = "aws:ec2/vpc:Vpc"
MESH = "cilium-eks:index:Mesh"
SUBNET = "aws:ec2/subnet:Subnet"
PRIVATE_SUBNET_TAG = "kubernetes.io/role/internal-elb"
# How Pulumi writes a secret into an exported state it was not asked to decrypt.
SECRET_SIG = "4dabf18193072939515e22adb298388d"


class RefusedError(Exception):
    """A finding that stops the run; its text names the key and the way out."""


def say(message: str) -> None:
    print(f"{PREFIX} {message}")


def warn(message: str) -> None:
    print(f"{PREFIX} {message}", file=sys.stderr)


# --- the machine -----------------------------------------------------------------------------


def prerequisites(env: Mapping[str, str]) -> tuple[list[str], str | None]:
    """(each missing prerequisite with its fix, the caller's ARN when credentials work)."""
    missing = pulumi_session.problems(env, first_run=True)
    aws_cli = aws_cli_problem(env)
    if aws_cli:
        missing.append(aws_cli)
    caller, reason = caller_identity(env, use_cli=aws_cli is None)
    if caller is None:
        missing.append(
            f"no usable AWS credentials; AWS says: {reason}\nrun `aws sso login` (or `aws "
            "configure`), or set AWS_PROFILE to a profile that has them"
        )
    return missing, caller


def aws_cli_problem(env: Mapping[str, str]) -> str | None:
    """Why the AWS CLI on PATH cannot write the kubeconfig's tokens, if it cannot."""
    if not shutil.which("aws", path=env.get("PATH")):
        return (
            "the AWS CLI is not installed (the kubeconfig runs `aws eks get-token`): see "
            f"{AWS_CLI_INSTALL}"
        )
    proc = run(env, "aws", "--version")
    said = proc.stdout.strip() or proc.stderr.strip()  # v1 on Python 2 printed to stderr
    found = re.match(r"aws-cli/(\d+)\.(\d+)\.(\d+)", said)
    if not found:
        return f"`aws --version` printed {said!r}, not an AWS CLI version: see {AWS_CLI_INSTALL}"
    version = tuple(map(int, found.groups()))
    oldest = MIN_AWS_CLI.get(version[0], (0, 0, 0))
    if version < oldest:
        return (
            f"AWS CLI {found[0].removeprefix('aws-cli/')} is too old: its `aws eks get-token` "
            "answers client.authentication.k8s.io/v1alpha1, which the stack's kubeconfig "
            f"(v1beta1) refuses; {'.'.join(map(str, oldest))} or newer is needed (v2 "
            f"recommended): see {AWS_CLI_INSTALL}"
        )
    sso = sso_profile(env) if version[0] == 1 else None
    if sso:
        return (
            f"AWS CLI {found[0].removeprefix('aws-cli/')} is v1, which has no `aws sso login`, "
            f"and AWS profile {sso} signs in with IAM Identity Center (SSO); install v2 (see "
            f"{AWS_CLI_INSTALL}), or use a profile with other credentials"
        )
    return None


def sso_profile(env: Mapping[str, str]) -> str | None:
    """The selected AWS profile, as the CLI chooses it, when it uses IAM Identity Center:
    read from the config file the CLI reads (AWS_CONFIG_FILE, else ~/.aws/config), with
    botocore's own loader, as the v1 CLI does. Credentials in the environment come first."""
    if env.get("AWS_ACCESS_KEY_ID"):
        return None
    from botocore.configloader import load_config
    from botocore.exceptions import ConfigNotFound, ConfigParseError

    name = env.get("AWS_PROFILE") or env.get("AWS_DEFAULT_PROFILE") or "default"
    home = Path(env.get("HOME") or Path.home())
    path = Path(env.get("AWS_CONFIG_FILE") or home / ".aws" / "config").expanduser()
    try:
        profile = load_config(str(path))["profiles"].get(name) or {}
    except (ConfigNotFound, ConfigParseError):
        return None
    keys = [key for key in SSO_KEYS if key in profile]
    return f"{name} ({', '.join(keys)} in {path})" if keys else None


def caller_identity(env: Mapping[str, str], *, use_cli: bool) -> tuple[str | None, str]:
    """(the caller's ARN, or None and AWS's own reason): through the AWS CLI when it works,
    else the SDK (same credentials chain), so that missing credentials are reported even
    before the CLI is installed."""
    if use_cli:
        proc = run(env, "aws", "sts", "get-caller-identity", "--query", "Arn", "--output", "text")
        if proc.returncode == 0 and proc.stdout.strip():
            return proc.stdout.strip(), ""
        return None, proc.stderr.strip() or f"`aws sts get-caller-identity` exit {proc.returncode}"
    try:
        import boto3

        return boto3.client("sts").get_caller_identity()["Arn"], ""
    except Exception as err:  # no credentials, no region, no network: AWS's words say which
        return None, str(err)


# --- the stack's state -------------------------------------------------------------------------


@dataclass
class Deployed:
    """What a stack's state says exists; None where the state does not say."""

    cluster_name: str | None = None
    has_nodes: bool = False
    # True: kube-proxy is patched off; False: its EKS add-on runs; None: neither exists yet
    kube_proxy_replacement: bool | None = None
    cilium_version: str | None = None
    vpc_cidr: str | None = None
    az_count: int | None = None
    # Cilium's cluster ID: the Mesh component's (0 when Cilium runs without a mesh)
    cluster_id: int | None = None
    resources: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_state(cls, export: Mapping[str, Any]) -> Deployed:
        resources = list((export.get("deployment") or {}).get("resources") or [])
        facts = cls(resources=resources)
        subnets = 0
        for res in resources:
            kind = res.get("type")
            inputs = res.get("inputs") or {}
            outputs = res.get("outputs") or {}
            if kind == EKS_CLUSTER:
                facts.cluster_name = plain(outputs.get("name")) or plain(inputs.get("name"))
            elif kind == EKS_NODE_GROUP:
                facts.has_nodes = True
            elif kind == DAEMONSET_PATCH and _name(inputs) == "kube-proxy":
                facts.kube_proxy_replacement = True
            elif kind == EKS_ADDON and plain(inputs.get("addonName")) == "kube-proxy":
                facts.kube_proxy_replacement = False
            elif kind == HELM_RELEASE and str(plain(inputs.get("chart")) or "").endswith("cilium"):
                facts.cilium_version = plain(inputs.get("version"))
                if facts.cluster_id is None:
                    facts.cluster_id = 0
            elif kind == MESH:
                facts.cluster_id = int(plain(outputs.get("clusterId")) or 0)
            elif kind == VPC:
                facts.vpc_cidr = plain(inputs.get("cidrBlock")) or plain(outputs.get("cidrBlock"))
            elif kind == SUBNET and PRIVATE_SUBNET_TAG in (plain(inputs.get("tags")) or {}):
                subnets += 1
        facts.az_count = subnets or None
        return facts


def plain(value: Any) -> Any:
    """A state value, or None where it is a secret the export did not decrypt."""
    return None if isinstance(value, dict) and SECRET_SIG in value else value


def _name(inputs: Mapping[str, Any]) -> Any:
    metadata = plain(inputs.get("metadata")) or {}
    return plain(metadata.get("name"))


def live_findings(cfg: StackConfig, deployed: Deployed, action: str) -> list[str]:
    """What this change would break on the stack as it exists (nothing for a destroy)."""
    if action == "destroy":
        return []
    findings = []
    name = deployed.cluster_name or cfg.cluster_name
    kpr = deployed.kube_proxy_replacement
    if kpr is not None and kpr != cfg.cilium.kube_proxy_replacement:
        evidence = "kube-proxy is patched off" if kpr else "kube-proxy runs as an EKS add-on"
        findings.append(
            f"cilium.kubeProxyReplacement: {str(cfg.cilium.kube_proxy_replacement).lower()}, "
            f"but cluster {name} runs with {str(kpr).lower()} ({evidence}); switching it on a "
            "live cluster is refused. On: kube-proxy would be switched off before every agent "
            "runs the replacement, so Services break until Cilium rolls. Off: kube-proxy's "
            "add-on would fight the patch that keeps it off. Keep "
            f"`pulumi config set --path cilium.kubeProxyReplacement {str(kpr).lower()}`, or "
            "rebuild the stack (make destroy, then make up) to change it."
        )
    if deployed.az_count and cfg.network.az_count < deployed.az_count:
        findings.append(
            f"network.azCount: {cfg.network.az_count}, but the stack has "
            f"{deployed.az_count} AZs; removing an AZ deletes its subnets, which Cilium's ENIs "
            "and the nodes may still use. Fewer AZs means a rebuild (make destroy, then make up)."
            f" Keep `pulumi config set --path network.azCount {deployed.az_count}`."
        )
    if deployed.vpc_cidr and deployed.vpc_cidr != cfg.network.cidr:
        findings.append(
            f"network.cidr: {cfg.network.cidr}, but the stack's VPC is {deployed.vpc_cidr}; "
            "a new CIDR replaces the VPC and everything in it (the EKS name is fixed, so the "
            "replacement would collide). It means a rebuild (make destroy, then make up). Keep "
            f"`pulumi config set --path network.cidr {deployed.vpc_cidr}`."
        )
    findings += cilium_upgrade_findings(cfg, deployed.cilium_version)
    wanted_id = cfg.mesh.cluster_id if cfg.mesh else 0
    if deployed.cluster_id is not None and deployed.cluster_id != wanted_id:
        findings.append(
            f"mesh.clusterId: {wanted_id or 'none (no mesh)'}, but cluster {name} runs Cilium "
            f"with cluster ID {deployed.cluster_id or 'none'}; a mesh is set from a stack's "
            "first `make up`. Cilium's identities carry the cluster ID (running agents and "
            "pods keep the old one), and the chart cannot take over the cilium-ca Secret "
            "Hubble's certgen made. Keep the deployed setting, or rebuild the stack (make "
            "destroy, then make up) with the mesh config (docs/clustermesh.md)."
        )
    return findings


def cilium_upgrade_findings(cfg: StackConfig, deployed: str | None) -> list[str]:
    """Cilium's upgrade guide: "The only tested rollback and upgrade path is between
    consecutive minor releases", and `upgradeCompatibility` "should be set to the initial
    Cilium version which was installed in this cluster" (else new defaults apply silently,
    e.g. 1.20's envoy-xds-mode: ads). The initial version is at most the deployed one."""
    if not deployed or not re.match(r"^\d+\.\d+\.\d+$", deployed):
        return []
    wanted = cfg.cilium.version
    have, want = minor_of(deployed), minor_of(wanted)
    if want == have:
        return []
    deployed_minor = f"{have[0]}.{have[1]}"
    if want < have:
        return [
            f"cilium.version: {wanted} would downgrade Cilium {deployed} across minors; Cilium "
            "documents a rollback only to the minor upgraded from, with its own procedure "
            "(upgrade guide, Downgrading). Keep "
            f"`pulumi config set --path cilium.version {deployed}`."
        ]
    if want[0] != have[0] or want[1] != have[1] + 1:
        return [
            f"cilium.version: {wanted} skips a minor from the deployed {deployed}; Cilium "
            f"upgrades one minor at a time: first {have[0]}.{have[1] + 1}.x, then on."
        ]
    chosen = cfg.cilium.upgrade_compatibility
    if chosen is None or minor_of(chosen) > have:
        return [
            f"cilium.upgradeCompatibility: {chosen or 'not set'}, but cilium.version {wanted} "
            f"upgrades the deployed {deployed}; Cilium's upgrade guide asks for the minor "
            "first installed on this cluster, so that its defaults are kept, e.g. "
            f'`pulumi config set --path cilium.upgradeCompatibility "{deployed_minor}"`'
        ]
    return []


# --- mesh peers ---------------------------------------------------------------------------------


def peer_findings(
    cfg: StackConfig, account: str | None, peers: Mapping[str, Mapping[str, Any] | None]
) -> list[str]:
    """Each peer's stack outputs (None: unreadable) against this stack's mesh config: the
    program's own rules (config.mesh_problems), before anything changes."""
    if cfg.mesh is None:
        return []
    return mesh_problems(
        cluster_name=cfg.cluster_name,
        cluster_id=cfg.mesh.cluster_id,
        vpc_cidr=cfg.network.cidr,
        account=account,
        peers={peer: (outputs or {}).get("mesh") for peer, outputs in peers.items()},
        encryption=cfg.cilium.encryption,
    )


# --- the run ------------------------------------------------------------------------------------


def stack_config(env: Mapping[str, str], stack: str) -> StackConfig:
    """The stack's config as the CLI resolves it (project defaults, stack file, ESC), where
    `make check` sees only the file."""
    # --open resolves the ESC environments the stack file imports (`pulumi config --help`)
    proc = run(env, "pulumi", "config", "--json", "--open", "--stack", stack)
    if proc.returncode != 0:
        raise RefusedError(f"could not read the config of stack {stack}: {proc.stderr.strip()}")
    entries = json.loads(proc.stdout or "{}")
    handed = {k: v.get("value") for k, v in entries.items() if isinstance(v, dict)}
    try:
        return parse(stack_config_keys(handed), stack=stack.rsplit("/", 1)[-1], offline=True)
    except ConfigError as err:
        raise RefusedError(str(err)) from None


def state_of(env: Mapping[str, str], stack: str) -> Deployed | None:
    proc = run(env, "pulumi", "stack", "export", "--stack", stack)
    if proc.returncode != 0:
        warn(f"could not read the state of stack {stack} ({proc.stderr.strip()}); "
             "skipping the checks of what it has deployed")  # fmt: skip
        return None
    return Deployed.from_state(json.loads(proc.stdout or "{}"))


def peer_outputs(
    env: Mapping[str, str], peers: Iterable[str]
) -> dict[str, Mapping[str, Any] | None]:
    found: dict[str, Mapping[str, Any] | None] = {}
    for peer in peers:
        proc = run(env, "pulumi", "stack", "output", "--json", "--stack", peer)
        found[peer] = json.loads(proc.stdout) if proc.returncode == 0 and proc.stdout else None
    return found


def pulumi_failure(env: Mapping[str, str], *args: str) -> str | None:
    """None when the Pulumi call succeeds, else what Pulumi printed, as it printed it."""
    proc = run(env, "pulumi", *args)
    if proc.returncode == 0:
        return None
    return proc.stderr.strip() or proc.stdout.strip() or f"exit status {proc.returncode}"


def fallback_refused(env: Mapping[str, str], stack: str, action: str) -> str | None:
    """Where STACK is make's fallback (STACK_LOOKUP set), why it may not be used, or None.

    make's question may have failed for a reason of its own (not logged in yet, which the
    login above mends; a Pulumi Cloud error, an expired token) while a stack is selected:
    dev, on Pulumi Cloud in the user's default org, would then be a wrong stack, and `up`
    would create it. So Pulumi is asked again, now: only where it says no stack is
    selected does the fallback stand."""
    if not env.get("STACK_LOOKUP"):
        return None  # STACK= given (or run by hand, or by CI): the name is the user's
    now = pulumi_session.selected_stack(env)
    again = f"run `make {action}` again, or name the stack: make {action} STACK=<name>"
    if now.failure:
        return (
            f"could not tell which stack Pulumi has selected, so {stack} (make's choice where "
            f"none is) is neither selected nor created; {again}. Pulumi says:\n{now.failure}"
        )
    # dev itself, as a self-managed backend qualifies it (pulumi/pulumi pkg/backend/diy:
    # the organization is always "organization"): the same stack, not another one
    diy_same = (
        now.name is not None
        and now.name.startswith("organization/")
        and (now.name.rsplit("/", 1)[-1] == stack)
    )
    if now.name is not None and now.name != stack and not diy_same:
        earlier = pulumi_session.lookup_failure(env)
        return (
            f"Pulumi has stack {now.name} selected, but make chose {stack}"
            + (f" when its question failed ({earlier})" if earlier else "")
            + f": run `make {action}` again to work on {now.name}, or name the one you mean: "
            f"make {action} STACK={now.name} (or STACK={stack})"
        )
    return None


def main(env: Mapping[str, str]) -> int:
    stack = env.get("STACK") or "dev"
    action = env.get("ACTION") or "up"
    if action not in ACTIONS:
        warn(f"ACTION={action}: use {', '.join(ACTIONS)}")
        return 1
    missing, caller = prerequisites(env)
    if missing:
        warn(f"{len(missing)} prerequisite(s) missing:")
        for problem in missing:
            print("  - " + problem.replace("\n", "\n    "), file=sys.stderr)
        return 1
    assert caller is not None

    login = (
        pulumi_session.Login(env["PULUMI_BACKEND_URL"])
        if env.get("PULUMI_BACKEND_URL")
        else pulumi_session.whoami(env)
    )
    if login.failure:  # asked again: a failure is never taken for "logged in nowhere"
        warn(f"`pulumi whoami` failed, so the backend is unknown; Pulumi says:\n{login.failure}")
        return 1
    backend = login.backend
    if backend is None:
        say("no Pulumi backend configured; using local state (pulumi login --local)")
        if said := pulumi_failure(env, "login", "--local"):
            warn(f"`pulumi login --local` failed:\n{said}")
            return 1
    backend = backend or "local state (~/.pulumi)"
    if refused := fallback_refused(env, stack, action):
        warn(refused)
        return 1
    # A stack named by STACK= (or dev, where none is selected) is created by `up`. The one
    # Pulumi has selected exists: selecting it creates nothing, so that a name resolving
    # elsewhere (a bare one, on Pulumi Cloud: in the user's default org) fails, not makes
    # a second stack with a cluster of its own.
    selected = stack == env.get("SELECTED_STACK")
    create = ["--create"] if action == "up" and not selected else []
    if said := pulumi_failure(env, "stack", "select", *create, stack):
        how = (
            "" if create or selected else f" (`make up` creates a stack, `make {action}` does not)"
        )
        warn(f"stack {stack} could not be selected on {backend}{how}; Pulumi says:\n{said}")
        return 1
    say(f"stack {stack} on {backend}, AWS identity {caller}")

    try:
        cfg = stack_config(env, stack)
    except RefusedError as err:
        warn(str(err))
        return 1
    deployed = state_of(env, stack) or Deployed()
    cluster = deployed.cluster_name or cfg.cluster_name
    principal = account.role_of(caller)
    findings = account.access_findings(env, cfg, cluster, principal, action, warn)
    findings += account.spot_findings(env, cfg, action, warn)
    findings += live_findings(cfg, deployed, action)
    if cfg.mesh and cfg.mesh.peers and action != "destroy":
        findings += peer_findings(cfg, caller.split(":")[4], peer_outputs(env, cfg.mesh.peers))
    if findings:
        warn(f"stack {stack}: {len(findings)} change(s) refused before anything is touched:")
        for finding in findings:
            print(f"  - {finding}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(os.environ))
