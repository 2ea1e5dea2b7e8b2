"""The in-cluster checks: Jobs that prove, during `pulumi up`, that the cluster runs what the
stack declares and that the policy holds, and suspended CronJobs of the very same pods
that `make verify` runs again at any time (after a node replacement, after an incident).

Every check runs starwars_verify.sh (its header says what it checks and how it reports)
from a pod labelled like a Star Wars ship, with a ServiceAccount that may only read: the
`cilium`, `cilium-envoy` and `kube-proxy` DaemonSets and the `cilium-operator` Deployment
in kube-system, and, cluster-wide, CiliumNodes (WireGuard keys) and, with Karpenter,
NodePools. Nothing leaves the cluster: the pods ask the API server from inside.

Imports no other module of the program; components/starwars.py uses it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_kubernetes as k8s

VERIFY_SCRIPT = Path(__file__).with_name("starwars_verify.sh")
ACCOUNT = "starwars-verify"
# What `make verify` finds the CronJobs by (scripts/day2.py), in every namespace.
PART_OF = {"app.kubernetes.io/part-of": "cilium-eks-checks"}
CHECK_LABELS = {"app.kubernetes.io/name": "starwars-verify"}

# How long the checks may wait for Cilium to roll out. The chart rolls the agents and
# cilium-envoy two nodes at a time (updateStrategy maxUnavailable: 2, charts 1.19 and
# 1.20); an agent takes up to ~40 s to restart and turn Ready, so a node adds ~20 s. At
# least ten minutes; sixty nodes get 1,500 s.
ROLLOUT_BASE_SECONDS = 300
ROLLOUT_SECONDS_PER_NODE = 20
ROLLOUT_MIN_SECONDS = 600
# After the rollout: DNS and the policy calls with their retries (8 tries of at most 7 s
# per call, three calls at most), and a second pod if the first one's node fails.
CHECKS_SECONDS = 300
# Pulumi's wait for a Job (its own default is shorter than the deadline): the deadline,
# and the minutes a pod may take to be scheduled and to pull its image.
POD_START_SECONDS = 300


@dataclass(frozen=True)
class Budget:
    """The checks' time bounds for a cluster of at most `max_nodes` nodes."""

    max_nodes: int
    checks_seconds: int = CHECKS_SECONDS  # the calls' share, after the rollout

    @property
    def rollout(self) -> int:
        """ROLLOUT_TIMEOUT: the script's one budget for every wait before the calls."""
        grows = ROLLOUT_BASE_SECONDS + ROLLOUT_SECONDS_PER_NODE * self.max_nodes
        return max(ROLLOUT_MIN_SECONDS, grows)

    @property
    def deadline(self) -> int:
        """The Job's activeDeadlineSeconds: the rollout, then the calls."""
        return self.rollout + self.checks_seconds

    @property
    def pulumi_wait(self) -> str:
        """How long Pulumi waits for a Job, in its customTimeouts' words."""
        return f"{math.ceil((self.deadline + POD_START_SECONDS) / 60)}m"


def checks_identity(
    namespace: pulumi.Input[str], *, karpenter: bool, opts: pulumi.ResourceOptions
) -> list[pulumi.Resource]:
    """The checks' ServiceAccount and the read-only access it needs; the Jobs wait for all
    of it (the account and both bindings)."""
    account = k8s.core.v1.ServiceAccount(
        "verify",
        metadata=k8s.meta.v1.ObjectMetaArgs(name=ACCOUNT, namespace=namespace),
        opts=opts,
    )
    subjects = [
        k8s.rbac.v1.SubjectArgs(
            kind="ServiceAccount", name=account.metadata.name, namespace=namespace
        )
    ]
    in_kube_system = k8s.meta.v1.ObjectMetaArgs(name=ACCOUNT, namespace="kube-system")
    role = k8s.rbac.v1.Role(
        "verify",
        metadata=in_kube_system,
        rules=[
            k8s.rbac.v1.PolicyRuleArgs(
                api_groups=["apps"],
                resources=["daemonsets", "deployments"],
                verbs=["get", "list", "watch"],
            )
        ],
        opts=opts,
    )
    binding = k8s.rbac.v1.RoleBinding(
        "verify",
        metadata=in_kube_system,
        role_ref=k8s.rbac.v1.RoleRefArgs(
            api_group="rbac.authorization.k8s.io", kind="Role", name=role.metadata.name
        ),
        subjects=subjects,
        opts=opts,
    )
    cluster_rules = [
        k8s.rbac.v1.PolicyRuleArgs(
            api_groups=["cilium.io"], resources=["ciliumnodes"], verbs=["get", "list"]
        )
    ]
    if karpenter:
        cluster_rules.append(
            k8s.rbac.v1.PolicyRuleArgs(
                api_groups=["karpenter.sh"], resources=["nodepools"], verbs=["get"]
            )
        )
    cluster_role = k8s.rbac.v1.ClusterRole(
        "verify",
        metadata=k8s.meta.v1.ObjectMetaArgs(name=ACCOUNT),
        rules=cluster_rules,
        opts=opts,
    )
    cluster_binding = k8s.rbac.v1.ClusterRoleBinding(
        "verify",
        metadata=k8s.meta.v1.ObjectMetaArgs(name=ACCOUNT),
        role_ref=k8s.rbac.v1.RoleRefArgs(
            api_group="rbac.authorization.k8s.io",
            kind="ClusterRole",
            name=cluster_role.metadata.name,
        ),
        subjects=subjects,
        opts=opts,
    )
    return [account, binding, cluster_binding]


def check_pod(
    labels: dict[str, str], env: Mapping[str, pulumi.Input[str]], image: pulumi.Input[str]
) -> k8s.core.v1.PodTemplateSpecArgs:
    """A pod running the checks with `labels` (those of the ship it speaks for)."""
    return k8s.core.v1.PodTemplateSpecArgs(
        metadata=k8s.meta.v1.ObjectMetaArgs(labels={**labels, **CHECK_LABELS}),
        spec=k8s.core.v1.PodSpecArgs(
            service_account_name=ACCOUNT,
            restart_policy="Never",
            containers=[
                k8s.core.v1.ContainerArgs(
                    name="verify",
                    # the ships' image: it has sh, curl, getent and node (for JSON)
                    image=image,
                    command=["sh", "-c", VERIFY_SCRIPT.read_text()],
                    env=[k8s.core.v1.EnvVarArgs(name=k, value=v) for k, v in env.items()],
                    # The failed checks become the pod's termination message.
                    termination_message_policy="FallbackToLogsOnError",
                )
            ],
        ),
    )


def _job_spec(pod: k8s.core.v1.PodTemplateSpecArgs, budget: Budget) -> k8s.batch.v1.JobSpecArgs:
    # The script retries within one pod; a second pod gives a node hiccup a chance.
    return k8s.batch.v1.JobSpecArgs(
        backoff_limit=1, active_deadline_seconds=budget.deadline, template=pod
    )


def check_job(
    name: str,
    metadata: k8s.meta.v1.ObjectMetaArgs,
    pod: k8s.core.v1.PodTemplateSpecArgs,
    budget: Budget,
    opts: pulumi.ResourceOptions,
) -> k8s.batch.v1.Job:
    """The checks, during `pulumi up`: Pulumi waits for the Job and fails if it fails.

    Its name and environment carry what it proves on, so changing any of it replaces the
    Job and the checks run again. No TTL: a Job that deletes itself would show as drift.
    """
    return k8s.batch.v1.Job(
        name,
        metadata=metadata,
        spec=_job_spec(pod, budget),
        opts=pulumi.ResourceOptions.merge(
            opts,
            pulumi.ResourceOptions(
                custom_timeouts=pulumi.CustomTimeouts(
                    create=budget.pulumi_wait, update=budget.pulumi_wait
                )
            ),
        ),
    )


def check_cronjob(
    name: str,
    metadata: k8s.meta.v1.ObjectMetaArgs,
    pod: k8s.core.v1.PodTemplateSpecArgs,
    budget: Budget,
    opts: pulumi.ResourceOptions,
) -> k8s.batch.v1.CronJob:
    """The same checks as a suspended CronJob: never scheduled, a template for `kubectl
    create job --from=cronjob/NAME`, which `make verify` runs on the live cluster."""
    return k8s.batch.v1.CronJob(
        name,
        metadata=metadata,
        spec=k8s.batch.v1.CronJobSpecArgs(
            suspend=True,
            schedule="0 0 1 1 *",  # required by the API; suspended, it never fires
            concurrency_policy="Forbid",
            job_template=k8s.batch.v1.JobTemplateSpecArgs(
                metadata=k8s.meta.v1.ObjectMetaArgs(labels={**CHECK_LABELS, **PART_OF}),
                spec=_job_spec(pod, budget),
            ),
        ),
        opts=opts,
    )
