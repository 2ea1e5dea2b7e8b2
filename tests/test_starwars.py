"""components/starwars.py: what each demo mode declares, its order, and its schemas."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.harness import Graph, run_ok

RELEASE = "kubernetes:helm.sh/v3:Release"
NODE_GROUP = "eks:index:ManagedNodeGroup"
CNP = "kubernetes:cilium.io/v2:CiliumNetworkPolicy"
JOB = "kubernetes:batch/v1:Job"
DEMO = "cilium-eks:index:StarWarsDemo"
CORE = {  # the upstream demo's objects, by Pulumi type
    "kubernetes:core/v1:Namespace": {"starwars"},
    "kubernetes:core/v1:Service": {"deathstar"},
    "kubernetes:apps/v1:Deployment": {"deathstar"},
    "kubernetes:core/v1:Pod": {"tiefighter", "xwing"},
}


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


@pytest.mark.parametrize(
    ("policy", "policies", "jobs"),
    [
        ("none", set(), {"verify-tiefighter-none", "verify-xwing-none"}),
        ("l3l4", {"rule1"}, {"verify-tiefighter-l3l4", "verify-xwing-l3l4"}),
        ("l7", {"rule1"}, {"verify-tiefighter-l7", "verify-xwing-l7"}),
    ],
)
def test_each_mode_declares_exactly_the_demo_its_policy_and_its_checks(policy, policies, jobs):
    expected = {**CORE, JOB: jobs, **({CNP: policies} if policies else {})}
    assert declared(mode(policy)) == expected


def test_verify_false_declares_no_jobs():
    assert declared(mode("l7", verify=False)) == {**CORE, CNP: {"rule1"}}


def test_disabled_demo_declares_nothing_and_leaves_the_platform_intact(dev):
    off = run_ok({"demo.enabled": False})
    assert not off.of_type(DEMO)
    assert not [r for r in off.resources if r.type in CORE or r.type in (CNP, JOB)]
    assert "demo" not in off.outputs
    platform = {
        r.urn: (r.inputs, sorted(r.dependencies))
        for r in dev.resources
        if r.type != DEMO and not (r.parent and dev.by_urn[r.parent].type == DEMO)
    }
    assert {r.urn: (r.inputs, sorted(r.dependencies)) for r in off.resources} == platform


@pytest.mark.parametrize("policy", ["none", "l3l4", "l7"])
def test_every_demo_object_itself_waits_for_cilium_and_the_nodes(policy):
    graph = mode(policy)
    release, node_group = graph.one(RELEASE), graph.one(NODE_GROUP)
    for res in demo_resources(graph):
        # its own dependencies, not inherited from the component (children inherit none)
        assert {release.urn, node_group.urn} <= set(res.dependencies), res.name
        assert res.provider == graph.one("pulumi:providers:kubernetes").urn


@pytest.mark.parametrize("policy", ["none", "l3l4", "l7"])
def test_checks_wait_for_the_policy_and_a_running_deathstar(policy):
    graph = mode(policy)
    before = [graph.one("kubernetes:apps/v1:Deployment"), graph.one("kubernetes:core/v1:Service")]
    before += graph.of_type(CNP)
    for job in graph.of_type(JOB):
        for res in before:
            assert graph.waits_for(job, res), (job.name, res.type)


def test_switching_modes_changes_the_jobs_so_they_run_again():
    specs = {p: {j.name: j.inputs for j in mode(p).of_type(JOB)} for p in ("none", "l3l4", "l7")}
    for ship in ("verify-tiefighter", "verify-xwing"):
        names = {specs[p][ship]["metadata"]["name"] for p in specs}
        assert len(names) == 3


def test_a_cilium_upgrade_changes_the_jobs_so_they_run_again(dev):
    upgraded = run_ok({"cilium.version": "1.20.0"})
    for job in dev.of_type(JOB):
        assert upgraded.one(JOB, job.name).inputs["spec"] != job.inputs["spec"]


def test_jobs_run_as_each_ship_with_bounded_time_and_no_ttl(dev):
    for job in dev.of_type(JOB):
        # after a failed check, the next `pulumi up` runs it again instead of re-awaiting
        assert job.inputs["metadata"]["annotations"]["pulumi.com/replaceUnready"] == "true"
        spec = job.inputs["spec"]
        assert "ttlSecondsAfterFinished" not in spec  # self-deleting Jobs show as drift
        assert spec["activeDeadlineSeconds"] <= 600
        pod = spec["template"]
        ship = job.name.removeprefix("verify-")
        org = {"tiefighter": "empire", "xwing": "alliance"}[ship]
        assert pod["metadata"]["labels"]["org"] == org
        (container,) = pod["spec"]["containers"]
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env["SHIP"] == ship and env["POLICY"] == "l7"
        assert env["DEATHSTAR"] == "http://deathstar.starwars.svc.cluster.local"
        assert pod["spec"]["restartPolicy"] == "Never"


def upstream_docs(reference, name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((reference / "starwars" / name).read_text()) if d]


def test_objects_match_the_upstream_demo(reference, dev):
    upstream = {
        (d["kind"], d["metadata"]["name"]): d for d in upstream_docs(reference, "http-sw-app.yaml")
    }
    ours = {(r.inputs["kind"], r.inputs["metadata"]["name"]): r.inputs for r in demo_resources(dev)}
    for key, theirs in upstream.items():
        mine = ours[key]
        assert mine["metadata"]["namespace"] == "starwars"
        assert mine["metadata"].get("labels") == theirs["metadata"].get("labels"), key
        if key[0] == "Service":
            assert mine["spec"]["ports"] == theirs["spec"]["ports"]
            assert mine["spec"]["selector"] == theirs["spec"]["selector"]
        if key[0] == "Deployment":
            assert mine["spec"]["replicas"] == theirs["spec"]["replicas"]
            assert mine["spec"]["selector"] == theirs["spec"]["selector"]
            assert mine["spec"]["template"] == theirs["spec"]["template"]
        if key[0] == "Pod":
            assert mine["spec"] == theirs["spec"]


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


@pytest.mark.parametrize("policy", ["l3l4", "l7"])
def test_policy_is_valid_against_the_crd_schema(reference, policy):
    schema = json.loads((reference / "crds" / "ciliumnetworkpolicy_v2.json").read_text())
    validator = jsonschema.Draft7Validator(schema)
    policy_object = mode(policy).one(CNP).inputs
    assert not [e.message for e in validator.iter_errors(policy_object)]


def test_the_crd_schema_check_would_catch_the_upstream_l3l4_mistake(reference):
    # The schema is strict enough to reject what the upstream L3/L4 file does.
    schema = json.loads((reference / "crds" / "ciliumnetworkpolicy_v2.json").read_text())
    (theirs,) = upstream_docs(reference, "sw_l3_l4_policy.yaml")
    theirs["spec"]["description"] = theirs.pop("description")
    theirs["spec"]["descripton"] = "typo"
    assert list(jsonschema.Draft7Validator(schema).iter_errors(theirs))


@pytest.mark.parametrize("policy", ["none", "l3l4", "l7"])
def test_core_objects_are_valid_for_the_clusters_kubernetes_version(policy):
    graph = mode(policy)
    version = graph.one("eks:index:Cluster").inputs["version"] + ".0"
    for res in demo_resources(graph):
        if res.type == CNP:
            continue  # a CRD: checked against its own schema above
        kubernetes_validate.validate(res.inputs, version, strict=True)


def test_demo_outputs_give_the_manual_checks_and_hubble_commands(dev):
    demo = dev.output("demo")
    assert demo["namespace"] == "starwars" and demo["policy"] == "l7"
    checks = demo["checks"]
    assert checks["tiefighterLands"]["command"].startswith(
        "kubectl -n starwars exec tiefighter -- curl"
    )
    assert checks["tiefighterLands"]["expect"] == "Ship landed"
    assert (
        "timed out" in checks["xwingLands"]["expect"]
        or "times out" in checks["xwingLands"]["expect"]
    )
    assert checks["tiefighterExhaustPort"]["expect"] == "Access denied"
    assert demo["hubble"]["dropped"] == "hubble observe --namespace starwars --verdict DROPPED"


def test_without_the_l7_policy_the_outputs_do_not_suggest_the_self_destruct():
    for policy in ("none", "l3l4"):
        checks = mode(policy).output("demo")["checks"]
        assert not [c for c in checks.values() if "exhaust-port" in c["command"]]
    assert mode("none").output("demo")["checks"]["xwingLands"]["expect"] == "Ship landed"
