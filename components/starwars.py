"""Cilium's Star Wars demo, its L3/L4 or L7 policy, and Jobs that prove the policy holds.

The objects match Cilium's examples/minikube/http-sw-app.yaml (names, labels, images,
ports) in a namespace of their own. The policy for each mode is in `policy_spec()`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.config import DemoConfig

NAMESPACE = "starwars"
# Images exactly as upstream pins them (tag and digest).
DEATHSTAR_IMAGE = (
    "quay.io/cilium/starwars:v2.1"
    "@sha256:833d915ec68fca3ce83668fc5dae97c455b2134d8f23ef96586f55b894cfb1e8"
)
SHIP_IMAGE = (
    "quay.io/cilium/json-mock:v1.3.8"
    "@sha256:5aad04835eda9025fe4561ad31be77fd55309af8158ca8663a72f6abb78c2603"
)
DEATHSTAR_LABELS = {"org": "empire", "class": "deathstar"}
SHIPS = {
    "tiefighter": {"org": "empire", "class": "tiefighter"},
    "xwing": {"org": "alliance", "class": "xwing"},
}
DEATHSTAR_URL = f"http://deathstar.{NAMESPACE}.svc.cluster.local"
VERIFY_SCRIPT = Path(__file__).with_name("starwars_verify.sh")


def policy_spec(mode: str) -> dict[str, Any] | None:
    """The CiliumNetworkPolicy spec for a mode (upstream sw_l3_l4_policy.yaml and
    sw_l3_l4_l7_policy.yaml), or None for `none`.

    `description` sits inside `spec`, where the CRD defines it; the upstream L3/L4 file
    has it at the top level, which the CRD's schema does not allow.
    """
    if mode == "none":
        return None
    port: dict[str, Any] = {"ports": [{"port": "80", "protocol": "TCP"}]}
    if mode == "l7":
        port["rules"] = {"http": [{"method": "POST", "path": "/v1/request-landing"}]}
    return {
        "description": (
            "L7 policy to restrict access to specific HTTP call"
            if mode == "l7"
            else "L3-L4 policy to restrict deathstar access to empire ships only"
        ),
        "endpointSelector": {"matchLabels": DEATHSTAR_LABELS},
        "ingress": [{"fromEndpoints": [{"matchLabels": {"org": "empire"}}], "toPorts": [port]}],
    }


def manual_checks(mode: str) -> dict[str, Any]:
    """The runbook's `kubectl exec` checks for this mode, with what each must print, and
    the Hubble commands that show the verdicts."""

    def curl(ship: str, method: str, path: str) -> str:
        return (
            f"kubectl -n {NAMESPACE} exec {ship} -- "
            f"curl -s -X{method} deathstar.{NAMESPACE}.svc.cluster.local{path}"
        )

    checks = {
        "tiefighterLands": {
            "command": curl("tiefighter", "POST", "/v1/request-landing"),
            "expect": "Ship landed",
        },
        "xwingLands": {
            "command": curl("xwing", "POST", "/v1/request-landing") + " --max-time 5",
            "expect": "Ship landed" if mode == "none" else "no answer: curl times out (dropped)",
        },
    }
    if mode == "l7":
        checks["tiefighterExhaustPort"] = {
            "command": curl("tiefighter", "PUT", "/v1/exhaust-port"),
            "expect": "Access denied",
        }
    return {
        "checks": checks,
        "hubble": {
            "dropped": f"hubble observe --namespace {NAMESPACE} --verdict DROPPED",
            "http": f"hubble observe --namespace {NAMESPACE} --protocol http",
            "portForward": "cilium hubble port-forward",
            "ui": "cilium hubble ui",
        },
    }


@dataclass
class StarWarsDemoArgs:
    config: DemoConfig
    cilium_version: str  # in the verification Jobs' spec: an upgrade proves the policy again
    provider: k8s.Provider
    cni_release: pulumi.Resource
    node_group: pulumi.Resource


class StarWarsDemo(pulumi.ComponentResource):
    """Namespace, deathstar Service + Deployment, the two ships, the policy, the checks.

    Ordering: Cilium's CRDs are registered at runtime by cilium-operator, not by the
    chart, and an agent turns Ready only after they exist. So every object here waits for
    the Cilium release and for the node group (nodes Ready => agents ready => CRDs
    registered); each carries that dependency itself, since children do not inherit a
    component's `depends_on`. The verification Jobs also wait for the policy and for the
    deathstar to be up.
    """

    namespace: pulumi.Output[str]

    def __init__(
        self, name: str, args: StarWarsDemoArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("cilium-eks:index:StarWarsDemo", name, None, opts)
        mode = args.config.policy
        platform = [args.cni_release, args.node_group]

        def after(*extra: pulumi.Resource) -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions(
                parent=self, provider=args.provider, depends_on=[*platform, *extra]
            )

        ns = k8s.core.v1.Namespace(
            "namespace", metadata=k8s.meta.v1.ObjectMetaArgs(name=NAMESPACE), opts=after()
        )
        namespace = ns.metadata.name

        def meta(
            name: str,
            labels: dict[str, str] | None = None,
            annotations: dict[str, str] | None = None,
        ) -> k8s.meta.v1.ObjectMetaArgs:
            return k8s.meta.v1.ObjectMetaArgs(
                name=name, namespace=namespace, labels=labels, annotations=annotations
            )

        service = k8s.core.v1.Service(
            "deathstar",
            metadata=meta("deathstar", {"app.kubernetes.io/name": "deathstar"}),
            spec=k8s.core.v1.ServiceSpecArgs(
                type="ClusterIP",
                ports=[k8s.core.v1.ServicePortArgs(port=80)],
                selector=DEATHSTAR_LABELS,
            ),
            opts=after(),
        )
        deathstar = k8s.apps.v1.Deployment(
            "deathstar",
            metadata=meta("deathstar", {"app.kubernetes.io/name": "deathstar"}),
            spec=k8s.apps.v1.DeploymentSpecArgs(
                replicas=2,
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=DEATHSTAR_LABELS),
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=k8s.meta.v1.ObjectMetaArgs(
                        labels={**DEATHSTAR_LABELS, "app.kubernetes.io/name": "deathstar"}
                    ),
                    spec=k8s.core.v1.PodSpecArgs(
                        containers=[
                            k8s.core.v1.ContainerArgs(name="deathstar", image=DEATHSTAR_IMAGE)
                        ]
                    ),
                ),
            ),
            opts=after(),
        )
        for ship, labels in SHIPS.items():
            k8s.core.v1.Pod(
                ship,
                metadata=meta(ship, {**labels, "app.kubernetes.io/name": ship}),
                spec=k8s.core.v1.PodSpecArgs(
                    containers=[k8s.core.v1.ContainerArgs(name="spaceship", image=SHIP_IMAGE)]
                ),
                opts=after(),
            )

        before_checks: list[pulumi.Resource] = [service, deathstar]
        spec = policy_spec(mode)
        if spec is not None:
            before_checks.append(
                k8s.apiextensions.CustomResource(
                    "policy",
                    api_version="cilium.io/v2",
                    kind="CiliumNetworkPolicy",
                    metadata=meta("rule1"),
                    spec=spec,
                    opts=after(),
                )
            )

        if args.config.verify:
            script = VERIFY_SCRIPT.read_text()
            for ship, labels in SHIPS.items():
                verify_job(
                    ship,
                    metadata=meta(
                        f"verify-{ship}-{mode}",
                        {"app.kubernetes.io/name": "starwars-verify"},
                        # A failed check is replaced, so run again, by the next `pulumi up`
                        # (by default Pulumi would only wait on the failed Job again).
                        {"pulumi.com/replaceUnready": "true"},
                    ),
                    pod_labels={**labels, "app.kubernetes.io/name": "starwars-verify"},
                    env={
                        "SHIP": ship,
                        "POLICY": mode,
                        "DEATHSTAR": DEATHSTAR_URL,
                        "CILIUM_VERSION": args.cilium_version,
                    },
                    script=script,
                    opts=after(*before_checks),
                )

        self.namespace = namespace
        self.register_outputs({"namespace": namespace})


def verify_job(
    ship: str,
    *,
    metadata: k8s.meta.v1.ObjectMetaArgs,
    pod_labels: dict[str, str],
    env: dict[str, str],
    script: str,
    opts: pulumi.ResourceOptions,
) -> k8s.batch.v1.Job:
    """A Job running starwars_verify.sh from a pod labelled like `ship`.

    Its name carries the policy mode and its spec the Cilium version, so changing either
    replaces it and the checks run again. No TTL: a Job that deletes itself would show as
    drift on the next `pulumi up`. Pulumi waits for it to complete and fails the update
    if it fails.
    """
    return k8s.batch.v1.Job(
        f"verify-{ship}",
        metadata=metadata,
        spec=k8s.batch.v1.JobSpecArgs(
            # The script retries within one pod; a second pod gives a node hiccup a chance.
            backoff_limit=1,
            active_deadline_seconds=300,
            template=k8s.core.v1.PodTemplateSpecArgs(
                metadata=k8s.meta.v1.ObjectMetaArgs(labels=pod_labels),
                spec=k8s.core.v1.PodSpecArgs(
                    restart_policy="Never",
                    containers=[
                        k8s.core.v1.ContainerArgs(
                            name="verify",
                            image=SHIP_IMAGE,  # the ships' image: it has sh and curl
                            command=["sh", "-c", script],
                            env=[k8s.core.v1.EnvVarArgs(name=k, value=v) for k, v in env.items()],
                            # The failed checks become the pod's termination message.
                            termination_message_policy="FallbackToLogsOnError",
                        )
                    ],
                ),
            ),
        ),
        opts=opts,
    )
