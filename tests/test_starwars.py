"""components/starwars.py: what each demo mode declares, its order, and its schemas.

The policy's content is a fact this program owns, asserted here as the runbook states it;
the comparison with Cilium's upstream files (reference data) comes on top.
"""

from __future__ import annotations

import json
import shlex
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from components.checks import VERIFY_SCRIPT
from tests.harness import Graph, run_ok

RELEASE = "kubernetes:helm.sh/v3:Release"
NODE_GROUP = "eks:index:ManagedNodeGroup"
CNP = "kubernetes:cilium.io/v2:CiliumNetworkPolicy"
JOB = "kubernetes:batch/v1:Job"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
DEMO = "cilium-eks:index:StarWarsDemo"
ACCOUNT = "kubernetes:core/v1:ServiceAccount"
ROLE = "kubernetes:rbac.authorization.k8s.io/v1:Role"
BINDING = "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding"
CLUSTER_ROLE = "kubernetes:rbac.authorization.k8s.io/v1:ClusterRole"
CLUSTER_BINDING = "kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding"
CRONJOB = "kubernetes:batch/v1:CronJob"
CORE = {  # the demo's objects in every mode, by Pulumi type
    "kubernetes:core/v1:Namespace": {"starwars"},
    "kubernetes:core/v1:Service": {"deathstar"},
    DEPLOYMENT: {"deathstar", "tiefighter", "xwing"},
    CNP: {"rule1"},
}
CHECKER = {
    ACCOUNT: {"starwars-verify"},
    ROLE: {"starwars-verify"},
    BINDING: {"starwars-verify"},
    CLUSTER_ROLE: {"starwars-verify"},
    CLUSTER_BINDING: {"starwars-verify"},
    # the checks again, at any time: `make verify` (scripts/day2.py)
    CRONJOB: {"verify-tiefighter", "verify-xwing"},
}
MODES = ["none", "l3l4", "l7"]
ORG = {"tiefighter": "empire", "xwing": "alliance"}


def mode(policy: str, **more: Any) -> Graph:
    return run_ok({"demo.policy": policy, **{f"demo.{k}": v for k, v in more.items()}})


def demo_resources(graph: Graph):
    (component,) = graph.of_type(DEMO)
    return list(graph.children(component))


def declared(graph: Graph) -> dict[str, set[str]]:
    """{type: {metadata.name}} of the demo's objects."""
    result: dict[str, set[str]] = {}
    for res in demo_resources(graph):
        result.setdefault(res.type, set()).add(res.inputs["metadata"]["name"])
    return result


@pytest.mark.parametrize("policy", MODES)
def test_each_mode_declares_the_demo_its_policy_and_its_checks(policy):
    jobs = {f"verify-tiefighter-{policy}", f"verify-xwing-{policy}"}
    assert declared(mode(policy)) == {**CORE, **CHECKER, JOB: jobs}


def test_verify_false_runs_no_checks_during_pulumi_up_but_keeps_make_verify():
    assert declared(mode("l7", verify=False)) == {**CORE, **CHECKER}


def test_disabled_demo_declares_nothing_and_leaves_the_platform_intact(dev):
    off = run_ok({"demo.enabled": False})
    assert not off.of_type(DEMO)
    assert not [r for r in off.resources if r.type in {*CORE, *CHECKER, JOB}]
    assert not off.of_type(CRONJOB)
    assert "demo" not in off.outputs
    platform = {
        r.urn: (r.inputs, sorted(r.dependencies))
        for r in dev.resources
        if r.type != DEMO and not (r.parent and dev.by_urn[r.parent].type == DEMO)
    }
    assert {r.urn: (r.inputs, sorted(r.dependencies)) for r in off.resources} == platform


# --- the policy ----------------------------------------------------------------------------

DEATHSTAR = {"matchLabels": {"org": "empire", "class": "deathstar"}}
EMPIRE_ON_PORT_80 = {
    "fromEndpoints": [{"matchLabels": {"org": "empire"}}],
    "toPorts": [{"ports": [{"port": "80", "protocol": "TCP"}]}],
}


def spec_of(graph: Graph) -> dict[str, Any]:
    spec = dict(graph.one(CNP).inputs["spec"])
    spec.pop("description")
    return spec


def test_l3l4_lets_only_the_empire_reach_the_deathstar_on_port_80():
    assert spec_of(mode("l3l4")) == {"endpointSelector": DEATHSTAR, "ingress": [EMPIRE_ON_PORT_80]}
    # `kubectl describe cnp rule1` says which policy it is (upstream's words)
    assert mode("l3l4").one(CNP).inputs["spec"]["description"].startswith("L3-L4 policy")


def test_l7_also_lets_the_empire_only_request_a_landing():
    rule = {
        **EMPIRE_ON_PORT_80,
        "toPorts": [
            {
                "ports": [{"port": "80", "protocol": "TCP"}],
                "rules": {"http": [{"method": "POST", "path": "/v1/request-landing"}]},
            }
        ],
    }
    assert spec_of(mode("l7")) == {"endpointSelector": DEATHSTAR, "ingress": [rule]}
    assert mode("l7").one(CNP).inputs["spec"]["description"].startswith("L7 policy")


def pod_labels(graph: Graph) -> list[dict[str, str]]:
    """The labels of every pod the demo makes: Deployments' and Jobs' templates."""
    return [
        r.inputs["spec"]["template"]["metadata"]["labels"]
        for r in demo_resources(graph)
        if r.type in (DEPLOYMENT, JOB)
    ]


def test_none_keeps_the_policy_object_but_it_selects_no_pod():
    graph = mode("none")
    spec = spec_of(graph)
    # a selector that matches none of the demo's pods, and a rule that would allow all
    assert spec["ingress"] == [{"fromEntities": ["all"]}]
    assert set(spec) == {"endpointSelector", "ingress"}
    wanted = spec["endpointSelector"]["matchLabels"]
    assert wanted and set(spec["endpointSelector"]) == {"matchLabels"}
    for labels in pod_labels(graph):
        assert not wanted.items() <= labels.items(), labels


def test_switching_modes_updates_the_one_policy_in_place():
    # Were the policy deleted in `none`, Pulumi would delete it only after the new checks
    # ran (deletes come last), and verify-xwing-none would fail every time.
    policies = [mode(p).one(CNP) for p in MODES]
    assert len({p.urn for p in policies}) == 1
    assert {p.inputs["metadata"]["name"] for p in policies} == {"rule1"}
    assert len({json.dumps(p.inputs["spec"], sort_keys=True) for p in policies}) == 3


# --- order ---------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", MODES)
def test_every_demo_object_itself_waits_for_cilium_and_the_nodes(policy):
    graph = mode(policy)
    release, node_group = graph.one(RELEASE), graph.one(NODE_GROUP)
    for res in demo_resources(graph):
        # its own dependencies, not inherited from the component (children inherit none)
        assert {release.urn, node_group.urn} <= set(res.dependencies), res.name
        assert res.provider == graph.one("pulumi:providers:kubernetes").urn


@pytest.mark.parametrize("policy", MODES)
def test_checks_wait_for_the_policy_the_deathstar_dns_and_their_permission(policy):
    graph = mode(policy)
    before = [
        graph.one(DEPLOYMENT, "deathstar"),
        graph.one("kubernetes:core/v1:Service"),
        graph.one(CNP),
        graph.one("aws:eks/addon:Addon", "coredns"),
        graph.one(BINDING),
        graph.one(CLUSTER_BINDING),
        graph.one(ACCOUNT),
    ]
    for job in graph.of_type(JOB):
        for res in before:
            assert graph.waits_for(job, res), (job.name, res.type)


# --- the checks ----------------------------------------------------------------------------


def job_env(job) -> dict[str, str]:
    (container,) = job.inputs["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e["value"] for e in container["env"]}


def test_switching_modes_changes_the_jobs_so_they_run_again():
    specs = {p: {j.name: j.inputs for j in mode(p).of_type(JOB)} for p in MODES}
    for ship in ("verify-tiefighter", "verify-xwing"):
        names = {specs[p][ship]["metadata"]["name"] for p in specs}
        assert len(names) == 3


@pytest.mark.parametrize(
    ("change", "variable", "value"),
    [
        ({"cilium.version": "1.20.0"}, "CILIUM_VERSION", "1.20.0"),
        ({"cilium.encryption": "none"}, "ENCRYPTION", "none"),
        ({"cilium.kubeProxyReplacement": False}, "KUBE_PROXY_REPLACEMENT", "false"),
        ({"cilium.prefixDelegation": False}, "PREFIX_DELEGATION", "false"),
        ({"cilium.datapathMode": "netkit"}, "DATAPATH_MODE", "netkit"),
        ({"kubernetesVersion": "1.36"}, "KUBERNETES_VERSION", "1.36"),
        (
            {"nodes.instanceTypes": ["m5.large", "t3.medium"]},
            "INSTANCE_TYPES",
            "m5.large,t3.medium",
        ),
    ],
)
def test_a_platform_change_changes_the_jobs_so_they_prove_the_policy_again(
    dev, change, variable, value
):
    changed = run_ok(change)
    for job in dev.of_type(JOB):
        again = changed.one(JOB, job.name)
        assert job_env(again)[variable] == value
        assert job_env(job)[variable] != value
        assert again.inputs["spec"] != job.inputs["spec"]  # a Job's spec is immutable: replaced


def test_jobs_run_as_each_ship_with_bounded_time_and_no_ttl(dev):
    for job in dev.of_type(JOB):
        # after a failed check, the next `pulumi up` runs it again instead of re-awaiting
        assert job.inputs["metadata"]["annotations"]["pulumi.com/replaceUnready"] == "true"
        spec = job.inputs["spec"]
        assert "ttlSecondsAfterFinished" not in spec  # self-deleting Jobs show as drift
        env = job_env(job)
        # the rollout wait and the checks fit in the Job's deadline
        assert int(env["ROLLOUT_TIMEOUT"]) + 120 <= spec["activeDeadlineSeconds"] <= 1200
        assert env["ENCRYPTION"] == "wireguard"  # every node's WireGuard key is checked
        pod = spec["template"]
        ship = job.name.removeprefix("verify-")
        assert pod["metadata"]["labels"]["org"] == ORG[ship]
        assert env["SHIP"] == ship and env["POLICY"] == "l7"
        assert env["DEATHSTAR"] == "http://deathstar.starwars.svc.cluster.local"
        assert env["CILIUM_VERSION"] == "1.19.6"
        assert env["KUBE_PROXY_REPLACEMENT"] == "true"
        assert pod["spec"]["restartPolicy"] == "Never"
        assert pod["spec"]["serviceAccountName"] == "starwars-verify"
        (container,) = pod["spec"]["containers"]
        assert container["command"] == ["sh", "-c", VERIFY_SCRIPT.read_text()]
        assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
        assert spec["backoffLimit"] >= 1  # a node hiccup gets a second pod
        # Pulumi waits for the Job (its default wait is shorter than the Job's deadline)
        for operation in ("create", "update"):
            wait = job.custom_timeouts[operation]
            assert wait.endswith("m") and int(wait[:-1]) * 60 >= spec["activeDeadlineSeconds"]
        # `kubectl -n starwars get jobs,pods -l app.kubernetes.io/name=starwars-verify`
        assert job.inputs["metadata"]["labels"] == {"app.kubernetes.io/name": "starwars-verify"}
        assert pod["metadata"]["labels"]["app.kubernetes.io/name"] == "starwars-verify"


def test_the_checks_may_only_read_what_they_check(dev):
    role = dev.one(ROLE)
    assert role.inputs["metadata"]["namespace"] == "kube-system"
    # cilium, cilium-envoy, kube-proxy (DaemonSets) and cilium-operator (Deployment)
    assert role.inputs["rules"] == [
        {
            "apiGroups": ["apps"],
            "resources": ["daemonsets", "deployments"],
            "verbs": ["get", "list", "watch"],
        }
    ]
    binding = dev.one(BINDING)
    assert binding.inputs["metadata"]["namespace"] == "kube-system"
    assert binding.inputs["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "starwars-verify",
    }
    subjects = [{"kind": "ServiceAccount", "name": "starwars-verify", "namespace": "starwars"}]
    assert binding.inputs["subjects"] == subjects
    assert dev.one(ACCOUNT).inputs["metadata"]["namespace"] == "starwars"
    # cluster-wide, only get and list CiliumNodes (the WireGuard keys)
    assert dev.one(CLUSTER_ROLE).inputs["rules"] == [
        {"apiGroups": ["cilium.io"], "resources": ["ciliumnodes"], "verbs": ["get", "list"]}
    ]
    cluster_binding = dev.one(CLUSTER_BINDING)
    assert cluster_binding.inputs["roleRef"]["kind"] == "ClusterRole"
    assert cluster_binding.inputs["roleRef"]["name"] == "starwars-verify"
    assert cluster_binding.inputs["subjects"] == subjects


@pytest.mark.parametrize(("max_size", "at_least"), [(4, 600), (20, 700), (60, 1500), (100, 2300)])
def test_the_checks_budget_grows_with_the_nodes(max_size, at_least):
    # the chart rolls agents two at a time: ~20 s a node (60 nodes need 1,500 s at least)
    graph = run_ok({"nodes.maxSize": max_size})
    for job in graph.of_type(JOB):
        rollout = int(job_env(job)["ROLLOUT_TIMEOUT"])
        deadline = job.inputs["spec"]["activeDeadlineSeconds"]
        assert at_least <= rollout <= at_least + 100
        assert deadline >= rollout + 120  # then DNS and the calls
        wait = job.custom_timeouts["create"]
        # Pulumi outwaits the Job: its deadline, and the five minutes its pod may take to be
        # scheduled and to pull its image before the deadline's clock starts
        assert deadline + 300 <= int(wait.removesuffix("m")) * 60 < deadline + 300 + 60


def test_karpenters_nodes_count_in_the_budget_and_its_nodepool_is_checked():
    graph = run_ok({"karpenter.enabled": True, "karpenter.cpuLimit": "64"})
    job = graph.of_type(JOB)[0]
    # 4 managed nodes and at most 64 / 2 vCPUs' worth of Karpenter's
    assert int(job_env(job)["ROLLOUT_TIMEOUT"]) == 300 + 20 * (4 + 32)
    assert job_env(job)["KARPENTER_NODEPOOL"] == "default"
    rules = graph.one(CLUSTER_ROLE).inputs["rules"]
    assert {"apiGroups": ["karpenter.sh"], "resources": ["nodepools"], "verbs": ["get"]} in rules


def test_make_verify_runs_the_very_same_checks_from_suspended_cronjobs(dev):
    for job in dev.of_type(JOB):
        cronjob = dev.one(CRONJOB, job.name)
        spec = cronjob.inputs["spec"]
        assert spec["suspend"] is True  # never scheduled: a template for `kubectl create job`
        assert spec["jobTemplate"]["spec"] == job.inputs["spec"]
        # what scripts/day2.py finds them by, in any namespace
        part_of = {"app.kubernetes.io/part-of": "cilium-eks-checks"}
        assert part_of.items() <= cronjob.inputs["metadata"]["labels"].items()
        assert part_of.items() <= spec["jobTemplate"]["metadata"]["labels"].items()


# --- the ships -----------------------------------------------------------------------------


def test_the_ships_come_back_when_their_nodes_are_replaced(dev):
    for ship, org in ORG.items():
        deployment = dev.one(DEPLOYMENT, ship)
        spec = deployment.inputs["spec"]
        assert spec["replicas"] == 1
        labels = spec["template"]["metadata"]["labels"]
        assert labels["org"] == org and labels["class"] == ship
        selector = spec["selector"]["matchLabels"]
        assert selector.items() <= labels.items()
        # the verification pods (labelled like the ships) are not the Deployment's pods,
        # so `kubectl exec deploy/<ship>` never lands in one
        for job in dev.of_type(JOB):
            assert (
                not selector.items() <= job.inputs["spec"]["template"]["metadata"]["labels"].items()
            )


def test_demo_outputs_give_the_manual_checks_and_hubble_commands(dev):
    demo = dev.output("demo")
    assert demo["namespace"] == "starwars" and demo["policy"] == "l7"
    checks = demo["checks"]
    assert checks["tiefighterLands"]["command"].startswith(
        "kubectl -n starwars exec deploy/tiefighter -- curl"
    )
    assert checks["tiefighterLands"]["expect"] == "Ship landed"
    assert "times out" in checks["xwingLands"]["expect"]
    assert "--max-time" in checks["xwingLands"]["command"]
    assert checks["tiefighterExhaustPort"]["expect"] == "Access denied"
    assert "-XPUT" in checks["tiefighterExhaustPort"]["command"]
    # the relay serves TLS: each observe trusts its CA and names its certificate's host
    tls = "--tls --tls-ca-cert-files hubble-ca.crt --tls-server-name hubble.hubble-relay.cilium.io"
    assert demo["hubble"]["dropped"] == (
        f"hubble observe {tls} --namespace starwars --verdict DROPPED"
    )
    assert demo["hubble"]["http"] == f"hubble observe {tls} --namespace starwars --protocol http"
    assert demo["hubble"]["portForward"] == "cilium hubble port-forward"  # what observe reads
    assert demo["hubble"]["ca"] == dev.output("commands")["hubbleCa"]
    assert demo["hubble"]["ui"] == "cilium hubble ui"


# The runbook's calls: (ship, method, path) of each check, and its answer per mode.
RUNBOOK = {
    "tiefighterLands": ("tiefighter", "POST", "/v1/request-landing"),
    "xwingLands": ("xwing", "POST", "/v1/request-landing"),
    "tiefighterExhaustPort": ("tiefighter", "PUT", "/v1/exhaust-port"),
}


@pytest.mark.parametrize("policy", MODES)
def test_the_outputs_commands_make_the_runbook_s_calls_from_the_right_ship(policy):
    graph = mode(policy)
    deployments = {d.inputs["metadata"]["name"] for d in graph.of_type(DEPLOYMENT)}
    for name, check in graph.output("demo")["checks"].items():
        ship, method, path = RUNBOOK[name]
        words = shlex.split(check["command"])
        assert words[:5] == ["kubectl", "-n", "starwars", "exec", f"deploy/{ship}"], name
        assert ship in deployments
        curl = words[words.index("--") + 1 :]
        assert curl[0] == "curl" and f"-X{method}" in curl, name
        if "--max-time" in curl:  # a dropped call must end: a number of seconds
            assert float(curl[curl.index("--max-time") + 1]) > 0
        assert f"deathstar.starwars.svc.cluster.local{path}" in curl, name


@pytest.mark.parametrize(
    ("policy", "xwing", "exhaust_port"),
    [
        ("none", "Ship landed", None),
        ("l3l4", "times out", None),
        ("l7", "times out", "Access denied"),
    ],
)
def test_the_outputs_runbook_checks_match_each_mode(policy, xwing, exhaust_port):
    checks = mode(policy).output("demo")["checks"]
    assert checks["tiefighterLands"]["expect"] == "Ship landed"
    assert xwing in checks["xwingLands"]["expect"]
    if xwing == "Ship landed":
        assert checks["xwingLands"]["expect"] == xwing
    # without the L7 policy the exhaust port is the deathstar's self-destruct: never suggested
    if exhaust_port is None:
        assert not [c for c in checks.values() if "exhaust-port" in c["command"]]
    else:
        assert checks["tiefighterExhaustPort"]["expect"] == exhaust_port


# --- against upstream and the schemas ------------------------------------------------------


def upstream_docs(reference, name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((reference / "starwars" / name).read_text()) if d]


def test_objects_match_the_upstream_demo(reference, dev):
    upstream = {
        (d["kind"], d["metadata"]["name"]): d for d in upstream_docs(reference, "http-sw-app.yaml")
    }
    ours = {(r.inputs["kind"], r.inputs["metadata"]["name"]): r.inputs for r in demo_resources(dev)}
    for (kind, name), theirs in upstream.items():
        # a ship is a one-replica Deployment of upstream's Pod
        mine = ours["Deployment" if kind == "Pod" else kind, name]
        assert mine["metadata"]["namespace"] == "starwars"
        if kind == "Service":
            assert mine["metadata"].get("labels") == theirs["metadata"].get("labels")
            assert mine["spec"]["ports"] == theirs["spec"]["ports"]
            assert mine["spec"]["selector"] == theirs["spec"]["selector"]
        if kind == "Deployment":
            assert mine["metadata"].get("labels") == theirs["metadata"].get("labels")
            assert mine["spec"]["replicas"] == theirs["spec"]["replicas"]
            assert mine["spec"]["selector"] == theirs["spec"]["selector"]
            assert mine["spec"]["template"] == theirs["spec"]["template"]
        if kind == "Pod":
            template = mine["spec"]["template"]
            assert template["metadata"]["labels"] == theirs["metadata"]["labels"]
            assert template["spec"] == theirs["spec"]


@pytest.mark.parametrize(
    ("policy", "upstream"), [("l3l4", "sw_l3_l4_policy.yaml"), ("l7", "sw_l3_l4_l7_policy.yaml")]
)
def test_policy_is_the_upstream_policy_with_description_inside_spec(reference, policy, upstream):
    (theirs,) = upstream_docs(reference, upstream)
    mine = mode(policy).one(CNP).inputs
    description = theirs["spec"].pop("description", None) or theirs.pop("description")
    assert mine["spec"].pop("description") == description
    assert mine["spec"] == theirs["spec"]
    assert (mine["apiVersion"], mine["kind"], mine["metadata"]["name"]) == (
        theirs["apiVersion"],
        theirs["kind"],
        theirs["metadata"]["name"],
    )
    assert "description" not in mine  # top level: not in the CRD's schema


@pytest.mark.parametrize("policy", MODES)
def test_policy_is_valid_against_the_crd_schema(reference, policy):
    schema = json.loads((reference / "crds" / "ciliumnetworkpolicy_v2.json").read_text())
    validator = jsonschema.Draft7Validator(schema)
    policy_object = mode(policy).one(CNP).inputs
    assert not [e.message for e in validator.iter_errors(policy_object)]


def test_the_crd_schema_refuses_a_misspelt_key_in_the_spec(reference):
    # What makes the schema check above worth running: inside `spec` a key the CRD does
    # not define is an error, not silently dropped as the API server would.
    schema = json.loads((reference / "crds" / "ciliumnetworkpolicy_v2.json").read_text())
    (theirs,) = upstream_docs(reference, "sw_l3_l4_policy.yaml")
    theirs["spec"]["descripton"] = theirs.pop("description")
    errors = [e.message for e in jsonschema.Draft7Validator(schema).iter_errors(theirs)]
    assert errors == ["Additional properties are not allowed ('descripton' was unexpected)"]


@pytest.mark.parametrize("policy", MODES)
def test_core_objects_are_valid_for_the_clusters_kubernetes_version(policy):
    graph = mode(policy)
    version = graph.one("eks:index:Cluster").inputs["version"] + ".0"
    for res in demo_resources(graph):
        if res.type == CNP:
            continue  # a CRD: checked against its own schema above
        kubernetes_validate.validate(res.inputs, version, strict=True)
