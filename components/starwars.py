"""Cilium's Star Wars demo, its L3/L4 or L7 policy, and the checks that prove it holds.

The objects match Cilium's examples/minikube/http-sw-app.yaml (names, labels, images,
ports) in a namespace of their own, except that the ships are one-replica Deployments
rather than bare Pods, so they come back when the nodes are replaced. The policy for
each mode is in `policy_spec()`; the checks' pods, Jobs and CronJobs in components/checks.py.

Imports the config and the checks', Cilium's and mesh's helpers; components/stack.py uses it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.checks import PART_OF, Budget, check_cronjob, check_job, check_pod, checks_identity
from components.cilium import hubble_commands, hubble_observe
from components.config import DemoConfig, StackConfig, cpu_cores
from components.mesh import Peer

NAMESPACE = "starwars"
# Images exactly as upstream pins them (tag and digest), on quay.io or, with
# network.vpcEndpoints, through the stack's ECR cache of it (components/image_cache.py).
UPSTREAM_REGISTRY = "quay.io"
DEATHSTAR_PATH = (
    "cilium/starwars:v2.1@sha256:833d915ec68fca3ce83668fc5dae97c455b2134d8f23ef96586f55b894cfb1e8"
)
SHIP_PATH = (
    "cilium/json-mock:v1.3.8"
    "@sha256:5aad04835eda9025fe4561ad31be77fd55309af8158ca8663a72f6abb78c2603"
)
DEATHSTAR_IMAGE = f"{UPSTREAM_REGISTRY}/{DEATHSTAR_PATH}"
SHIP_IMAGE = f"{UPSTREAM_REGISTRY}/{SHIP_PATH}"
DEATHSTAR_LABELS = {"org": "empire", "class": "deathstar"}
SHIPS = {
    "tiefighter": {"org": "empire", "class": "tiefighter"},
    "xwing": {"org": "alliance", "class": "xwing"},
}
# ClusterMesh (Cilium docs, "Load-balancing & Service Discovery"): a Service so annotated,
# in every cluster, is one global Service, served by the backends of all of them. 1.20
# also needs the namespace to be global (clustermesh.defaultGlobalNamespace, or this
# annotation on the namespace; 1.19 ignores it).
GLOBAL_SERVICE = {"service.cilium.io/global": "true"}
GLOBAL_NAMESPACE = {"clustermesh.cilium.io/global": "true"}
# The label every endpoint carries with its cluster's name: what a policy names to admit
# another cluster's pods (policy-default-local-cluster keeps the others out otherwise).
CLUSTER_LABEL = "io.cilium.k8s.policy.cluster"
# A mesh check retries its calls for up to ~3 minutes: after the `pulumi up` that makes
# the mesh mutual, KVStoreMesh must first sync the peer's services and identities.
MESH_ATTEMPTS = 24
# The calls' share of a mesh check's deadline: a lookup and three calls of 24 tries of at
# most 7 s each, with room to spare.
MESH_CHECKS_SECONDS = 900
# In `none` mode the policy selects pods with this label, which none has: no pod is under
# any policy, as in the runbook before a policy is applied.
NO_POD_LABELS = {"cilium-eks.io/demo-policy": "none"}
# Karpenter's NodePool (components/karpenter.py), whose readiness the checks prove.
KARPENTER_NODEPOOL = "default"
# The fewest vCPUs of a node Karpenter may launch: its NodePool's budget in nodes.
KARPENTER_MIN_NODE_VCPUS = 2


def policy_spec(mode: str, clusters: Sequence[str] = ()) -> dict[str, Any]:
    """The CiliumNetworkPolicy spec for a mode (upstream sw_l3_l4_policy.yaml and
    sw_l3_l4_l7_policy.yaml; for `none`, a policy that selects no pod).

    In a ClusterMesh, `clusters` are this cluster and its peers: rule1 admits the empire's
    ships from each of them, as it would from the local cluster alone otherwise.

    The policy object exists in every mode so that a mode switch updates it in place, in
    the update's first phase, before the new checks run. Were it deleted in `none` mode,
    Pulumi would delete it only at the end, after the checks: `verify-xwing-none` would
    find xwing still blocked and fail the update every time.

    `description` sits inside `spec`, where the CRD defines it; the upstream L3/L4 file
    has it at the top level, where the CRD defines no field: the API server drops it.
    """
    if mode == "none":
        return {
            "description": "demo.policy=none: selects no pod and allows all, every ship lands",
            "endpointSelector": {"matchLabels": NO_POD_LABELS},
            # The CRD requires some rule; this one would allow everything anyway.
            "ingress": [{"fromEntities": ["all"]}],
        }
    empire: dict[str, Any] = {"matchLabels": {"org": "empire"}}
    if clusters:
        empire["matchExpressions"] = [
            {"key": CLUSTER_LABEL, "operator": "In", "values": list(clusters)}
        ]
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
        "ingress": [{"fromEndpoints": [empire], "toPorts": [port]}],
    }


def manual_checks(mode: str, cluster: str | None = None) -> dict[str, Any]:
    """The runbook's `kubectl exec` checks for this mode, with what each must print, and
    the Hubble commands that show the verdicts. In a mesh (`cluster` set) they call this
    cluster's own deathstar: the global one may answer from a peer, under its policy."""

    def curl(ship: str, method: str, path: str) -> str:
        return (
            f"kubectl -n {NAMESPACE} exec deploy/{ship} -- "
            f"curl -s -X{method} {deathstar_service(cluster)}.{NAMESPACE}.svc.cluster.local{path}"
        )

    hubble = hubble_commands()
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
            "dropped": hubble_observe(f"--namespace {NAMESPACE} --verdict DROPPED"),
            "http": hubble_observe(f"--namespace {NAMESPACE} --protocol http"),
            "ca": hubble["hubbleCa"],
            "portForward": hubble["hubblePortForward"],
            "ui": hubble["hubbleUi"],
        },
    }


def proof_env(cfg: StackConfig) -> dict[str, str]:
    """What the checks prove the policy on, as the verification Jobs' environment: a change
    to any of it replaces the Jobs, so the next `pulumi up` proves the policy again."""
    env = {
        "CILIUM_VERSION": cfg.cilium.version,  # the version the rollout must reach
        "KUBE_PROXY_REPLACEMENT": str(cfg.cilium.kube_proxy_replacement).lower(),
        "ENCRYPTION": cfg.cilium.encryption,  # wireguard: every node's key is checked
        "PREFIX_DELEGATION": str(cfg.cilium.prefix_delegation).lower(),
        # veth or netkit: a switch affects new pods only; the checks' own pods are new, and
        # the L7 demo (what Cilium's netkit CI trips on) is proved again
        "DATAPATH_MODE": cfg.cilium.datapath_mode,
        "KUBERNETES_VERSION": cfg.kubernetes_version,
        "INSTANCE_TYPES": ",".join(cfg.nodes.instance_types),
    }
    if cfg.karpenter.enabled:
        env["KARPENTER_NODEPOOL"] = KARPENTER_NODEPOOL
    return env


def budget(cfg: StackConfig) -> Budget:
    """The checks' time bounds for the most nodes the stack may run: the managed group's
    maximum, and what Karpenter's CPU limit allows in its smallest nodes."""
    nodes = cfg.nodes.max_size
    if cfg.karpenter.enabled:
        nodes += math.ceil(cpu_cores(cfg.karpenter.cpu_limit) / KARPENTER_MIN_NODE_VCPUS)
    return Budget(max_nodes=nodes)


def deathstar_service(cluster: str | None = None) -> str:
    """The deathstar's Service name: `deathstar`, or the one only `cluster`'s serves."""
    return f"deathstar-{cluster}" if cluster else "deathstar"


def deathstar_url(cluster: str | None = None) -> str:
    return f"http://{deathstar_service(cluster)}.{NAMESPACE}.svc.cluster.local"


@dataclass
class DemoMesh:
    """The demo's part in a ClusterMesh: this cluster's name, its peers, and why each
    peer's checks cannot run yet ("" when they can: components/mesh.py waiting_reason)."""

    cluster_name: str
    peers: Sequence[Peer]
    waiting: Mapping[str, pulumi.Output[str]]  # by peer key


@dataclass
class StarWarsDemoArgs:
    config: DemoConfig
    proof_env: dict[str, str]  # see proof_env()
    budget: Budget  # see budget()
    provider: k8s.Provider
    cilium: pulumi.Resource  # the Cilium component (its release and everything before it)
    node_group: pulumi.Resource
    dns: pulumi.Resource  # CoreDNS: the checks resolve the deathstar's name
    # where the images' cilium/... paths live: quay.io, or the ECR cache's mirror of it
    registry: pulumi.Input[str] = UPSTREAM_REGISTRY
    # what else the checks prove, and so wait for (Karpenter's NodePool)
    checked: Sequence[pulumi.Resource] = ()
    mesh: DemoMesh | None = None  # ClusterMesh: global Services, clusters in rule1, checks


class StarWarsDemo(pulumi.ComponentResource):
    """Namespace, deathstar Service + Deployment, the two ships, the policy, the checks.

    Ordering: Cilium's CRDs are registered at runtime by cilium-operator, not by the
    chart, and an agent turns Ready only after they exist. So every object here waits for
    the Cilium release and for the node group (nodes Ready => agents ready => CRDs
    registered); each carries that dependency itself, since children do not inherit a
    component's `depends_on`. The verification Jobs also wait for the policy, the
    deathstar, CoreDNS and their read access: before any curl they wait until Cilium has
    rolled out the configured version (a Helm upgrade with skipAwait returns before it
    has). The suspended CronJobs of the same checks (`make verify`) exist with the demo,
    whether or not `pulumi up` runs them.

    In a ClusterMesh the deathstar Service is global (served by every cluster's
    deathstar), and each cluster also has one global Service per cluster,
    `deathstar-<cluster>`, served by that cluster's deathstar alone (a selector there,
    none elsewhere): the mesh checks call a peer's through it, as both ships, with the
    peer's policy mode. The xwing's check waits for the tiefighter's: a timeout means a
    drop only once the peer is known to answer.
    """

    namespace: pulumi.Output[str]

    def __init__(
        self, name: str, args: StarWarsDemoArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("cilium-eks:index:StarWarsDemo", name, None, opts)
        mode = args.config.policy
        platform = [args.cilium, args.node_group]

        def after(*extra: pulumi.Resource) -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions(
                parent=self, provider=args.provider, depends_on=[*platform, *extra]
            )

        mesh = args.mesh
        ns = k8s.core.v1.Namespace(
            "namespace",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=NAMESPACE, annotations=GLOBAL_NAMESPACE if mesh else None
            ),
            opts=after(),
        )
        namespace = ns.metadata.name

        def meta(
            name: pulumi.Input[str],
            labels: dict[str, str] | None = None,
            annotations: dict[str, str] | None = None,
        ) -> k8s.meta.v1.ObjectMetaArgs:
            return k8s.meta.v1.ObjectMetaArgs(
                name=name, namespace=namespace, labels=labels, annotations=annotations
            )

        def service_of(
            name: str, k8s_name: pulumi.Input[str], *, local: bool, annotations: Any
        ) -> k8s.core.v1.Service:
            return k8s.core.v1.Service(
                name,
                metadata=meta(k8s_name, {"app.kubernetes.io/name": "deathstar"}, annotations),
                spec=k8s.core.v1.ServiceSpecArgs(
                    type="ClusterIP",
                    ports=[k8s.core.v1.ServicePortArgs(port=80)],
                    selector=DEATHSTAR_LABELS if local else None,
                ),
                opts=after(),
            )

        global_ = GLOBAL_SERVICE if mesh else None
        # what the local checks call: `deathstar`, or in a mesh this cluster's own
        service = shared = service_of("deathstar", "deathstar", local=True, annotations=global_)
        peer_services: dict[str, k8s.core.v1.Service] = {}
        if mesh:
            service = service_of(
                "deathstar-local", deathstar_service(mesh.cluster_name), local=True,
                annotations=global_,
            )  # fmt: skip
            peer_services = {
                peer.key: service_of(
                    f"deathstar-{peer.key}",
                    peer.fact("clusterName").apply(deathstar_service),
                    local=False,
                    annotations=global_,
                )
                for peer in mesh.peers
            }
        deathstar_image = pulumi.Output.concat(args.registry, "/", DEATHSTAR_PATH)
        ship_image = pulumi.Output.concat(args.registry, "/", SHIP_PATH)
        deathstar = deployment(
            "deathstar", meta("deathstar", {"app.kubernetes.io/name": "deathstar"}),
            replicas=2, labels=DEATHSTAR_LABELS, selector=DEATHSTAR_LABELS,
            container="deathstar", image=deathstar_image, opts=after(),
        )  # fmt: skip
        for ship, labels in SHIPS.items():
            named = {"app.kubernetes.io/name": ship}
            deployment(
                ship, meta(ship, named), replicas=1, labels=labels,
                # The selector names the ship: the verification pods are labelled like the
                # ships (but app.kubernetes.io/name=starwars-verify) and are not its pods.
                selector={**labels, **named},
                container="spaceship", image=ship_image, opts=after(),
            )  # fmt: skip

        policy = k8s.apiextensions.CustomResource(
            "policy",
            api_version="cilium.io/v2",
            kind="CiliumNetworkPolicy",
            metadata=meta("rule1"),
            spec=(
                pulumi.Output.all(*[p.fact("clusterName") for p in mesh.peers]).apply(
                    lambda peers: policy_spec(mode, [mesh.cluster_name, *peers])
                )
                if mesh
                else policy_spec(mode)
            ),
            opts=after(),
        )

        access = checks_identity(namespace, karpenter="KARPENTER_NODEPOOL" in args.proof_env,
                                 opts=after())  # fmt: skip
        for ship, labels in SHIPS.items():
            pod = check_pod(
                labels,
                env={
                    "SHIP": ship,
                    "POLICY": mode,
                    # In a mesh the global `deathstar` also answers from the peers, under
                    # their policies: the local checks call this cluster's own.
                    "DEATHSTAR": deathstar_url(mesh.cluster_name if mesh else None),
                    "ROLLOUT_TIMEOUT": str(args.budget.rollout),
                    **args.proof_env,
                },
                image=ship_image,
            )
            if args.config.verify:
                check_job(
                    f"verify-{ship}",
                    meta(
                        f"verify-{ship}-{mode}",
                        {"app.kubernetes.io/name": "starwars-verify"},
                        # A failed check is replaced, so run again, by the next `pulumi up`
                        # (by default Pulumi would only wait on the failed Job again).
                        {"pulumi.com/replaceUnready": "true"},
                    ),
                    pod,
                    args.budget,
                    opts=after(
                        service, shared, deathstar, policy, args.dns, *access, *args.checked
                    ),
                )
            check_cronjob(
                f"verify-{ship}",
                meta(f"verify-{ship}", {"app.kubernetes.io/name": "starwars-verify", **PART_OF}),
                pod,
                args.budget,
                opts=after(*access),
            )

        peers, waiting = (mesh.peers, mesh.waiting) if mesh else ((), {})
        for peer in peers:
            previous: list[pulumi.Resource] = []
            for ship, labels in SHIPS.items():
                # mesh-<ship>-<cluster>: at most 48 characters (a CronJob's limit is 52)
                check_name = peer.fact("clusterName").apply(
                    lambda cluster, s=ship: f"mesh-{s}-{cluster}"
                )
                pod = check_pod(
                    labels,
                    env={
                        "SHIP": ship,
                        "POLICY": peer.facts.apply(lambda f: f.get("demoPolicy") or "none"),
                        "DEATHSTAR": peer.fact("clusterName").apply(deathstar_url),
                        "MESH_WAITING": waiting[peer.key],
                        "ATTEMPTS": str(MESH_ATTEMPTS),
                        "ROLLOUT_TIMEOUT": str(args.budget.rollout),
                        **args.proof_env,
                    },
                    image=ship_image,
                )
                mesh_budget = dataclasses.replace(args.budget, checks_seconds=MESH_CHECKS_SECONDS)
                if args.config.verify:
                    job = check_job(
                        f"mesh-{ship}-{peer.key}",
                        meta(check_name, {"app.kubernetes.io/name": "starwars-verify"},
                             {"pulumi.com/replaceUnready": "true"}),
                        pod,
                        mesh_budget,
                        opts=after(peer_services[peer.key], policy, args.dns, *access,
                                   *previous),
                    )  # fmt: skip
                    previous = [job]
                check_cronjob(
                    f"mesh-{ship}-{peer.key}",
                    meta(check_name, {"app.kubernetes.io/name": "starwars-verify", **PART_OF}),
                    pod,
                    mesh_budget,
                    opts=after(*access),
                )

        self.namespace = namespace
        self.register_outputs({"namespace": namespace})


def deployment(
    name: str,
    metadata: k8s.meta.v1.ObjectMetaArgs,
    *,
    replicas: int,
    labels: dict[str, str],
    selector: dict[str, str],
    container: str,
    image: pulumi.Input[str],
    opts: pulumi.ResourceOptions,
) -> k8s.apps.v1.Deployment:
    """A Deployment of upstream's pod (its labels, container name and image)."""
    return k8s.apps.v1.Deployment(
        name,
        metadata=metadata,
        spec=k8s.apps.v1.DeploymentSpecArgs(
            replicas=replicas,
            selector=k8s.meta.v1.LabelSelectorArgs(match_labels=selector),
            template=k8s.core.v1.PodTemplateSpecArgs(
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    labels={**labels, "app.kubernetes.io/name": name}
                ),
                spec=k8s.core.v1.PodSpecArgs(
                    containers=[k8s.core.v1.ContainerArgs(name=container, image=image)]
                ),
            ),
        ),
        opts=opts,
    )
