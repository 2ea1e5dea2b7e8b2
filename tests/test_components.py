"""The package's components as another language uses them: constructed by the package's
provider (`ComponentProvider.construct`, tests/mock_run.py construct) from camelCase inputs
as they cross the wire (numbers as doubles, enums as their values), under the mocks.

Cilium, on a cluster whose facts a consumer hands over, declares what the program declares
for its part of the dev stack; it refuses to go without a Kubernetes provider, or with
settings the config would refuse, before declaring anything. Stack, from the dev stack's
config as inputs, declares the program's graph.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pytest

from tests.harness import (
    Graph,
    Resource,
    construct,
    dev_config,
    on_the_wire,
    run_ok,
    stack_inputs,
)

CILIUM = "cilium-eks:index:Cilium"
STACK = "cilium-eks:index:Stack"
SWEEPER = "pulumi-python:dynamic:EniSweeper"
KUBERNETES_PROVIDER = "pulumi:providers:kubernetes"
ISSUER = "oidc.eks.ap-northeast-2.amazonaws.com/id/CILIUM-EKS-DEV"  # the mocks' cluster's
# Cilium's part of the program: the operator's role and policy, aws-node and kube-proxy
# off, the release, the ENI sweeper, and the components that hold the last two.
CILIUMS_PART = {
    ("aws:iam/role:Role", "operator"),
    ("aws:iam/rolePolicy:RolePolicy", "operator-eni"),
    ("kubernetes:apps/v1:DaemonSetPatch", "aws-node"),
    ("kubernetes:apps/v1:DaemonSetPatch", "kube-proxy"),
    ("kubernetes:helm.sh/v3:Release", "cilium"),
    (SWEEPER, "eni-sweeper"),
    ("cilium-eks:index:AwsNodeOff", "aws-node-off"),
    ("cilium-eks:index:Teardown", "teardown"),
}


def nothing_declared(graph: Graph) -> bool:
    """Nothing but the stack itself (which a run registers once it registers anything)."""
    return {r.type for r in graph.resources} <= {"pulumi:pulumi:Stack"}


def dev_cluster(dev: Graph) -> dict[str, Any]:
    """The dev stack's cluster as a consumer hands it to Cilium: its facts (the values the
    mocks give pulumi-eks's outputs), the pod subnets, the stack's ENI tags."""
    values = dev.one("kubernetes:helm.sh/v3:Release").inputs["values"]
    return on_the_wire(
        {
            "clusterName": "cilium-eks-dev",
            "oidcProviderArn": f"arn:aws:iam::123456789012:oidc-provider/{ISSUER}",
            "clusterEndpoint": "https://CILIUM-EKS-DEV.gr7.ap-northeast-2.eks.amazonaws.com",
            "vpcId": "vpc-id",
            "podSubnetIds": dev.subnet_ids("private"),
            "region": "ap-northeast-2",
            "cilium": dev_config()["cilium"],
            "operatorReplicas": 2,
            "eniTags": values["eni"]["eniTags"],
        }
    )


def part(graph: Graph, keys: set[tuple[str, str]]) -> dict[tuple[str, str], Resource]:
    return {(r.type, r.name): r for r in graph.resources if (r.type, r.name) in keys}


def test_cilium_declares_what_the_program_declares_for_its_part(dev):
    graph = construct(CILIUM, "cilium", dev_cluster(dev))
    assert graph.error is None, graph.error["traceback"]
    theirs, ours = part(graph, CILIUMS_PART), part(dev, CILIUMS_PART)
    assert theirs.keys() == ours.keys() == CILIUMS_PART
    for key, res in theirs.items():
        # the same inputs: the values of the release, the role's trust, the ENI policy,
        # the patches, the sweeper's record
        assert res.inputs == ours[key].inputs, key
    # in the same places: aws-node's switch-off and the sweep under the component
    cilium = graph.one(CILIUM)
    for component in ("cilium-eks:index:AwsNodeOff", "cilium-eks:index:Teardown"):
        assert graph.one(component).parent == cilium.urn
    # and in the same order: the release after the patches, the policy and the sweeper
    release = graph.one("kubernetes:helm.sh/v3:Release")
    before = ("kubernetes:apps/v1:DaemonSetPatch", "aws:iam/rolePolicy:RolePolicy", SWEEPER)
    for (type_, name), res in theirs.items():
        if type_ in before:
            assert graph.waits_for(release, res), name
    # the component's outputs, as the provider returns them
    assert graph.output("version") == "1.19.6"
    assert graph.output("operatorRoleArn") == "arn:aws:iam::123456789012:role/operator"


def test_every_kubernetes_resource_of_cilium_uses_the_consumers_provider(dev):
    graph = construct(CILIUM, "cilium", dev_cluster(dev))
    provider = graph.one(KUBERNETES_PROVIDER).urn
    kube = [r for r in graph.resources if r.type.startswith("kubernetes:")]
    assert kube and all(r.provider == provider for r in kube)


def test_cilium_finds_the_kubernetes_provider_however_a_python_consumer_passes_it():
    # A Python program passes ResourceOptions itself: `providers` as a list or a map, or a
    # single `provider`; the wire hands over a map (above). The first kubernetes one wins.
    from types import SimpleNamespace

    from components.cilium import kubernetes_provider

    kube, other = SimpleNamespace(package="kubernetes"), SimpleNamespace(package="aws")
    options = pulumi.ResourceOptions
    assert kubernetes_provider(options(providers=[other, kube])) is kube
    assert kubernetes_provider(options(providers={"kubernetes": kube})) is kube
    assert kubernetes_provider(options(provider=kube)) is kube
    assert kubernetes_provider(options(providers=[other], provider=kube)) is kube
    assert kubernetes_provider(options(provider=other)) is None
    assert kubernetes_provider(None) is None


def test_cilium_refuses_to_fall_back_to_the_ambient_kubeconfig(dev):
    graph = construct(CILIUM, "cilium", dev_cluster(dev), kubernetes=False)
    assert graph.error and "no Kubernetes provider" in graph.error["message"]
    assert "providers" in graph.error["message"]  # and says where to pass one
    assert nothing_declared(graph)


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"cilium": {"version": "1.18.12"}}, "cilium.version: '1.18.12' is too old"),
        ({"cilium": {"datapathMode": "netkit", "kubeProxyReplacement": False}}, "netkit"),
        ({"cilium": {"bandwidthManager": False, "bbr": True}}, "bbr: true needs bandwidthManager"),
        ({"cilium": {"mapDynamicSizeRatio": 2.0}}, "cilium.mapDynamicSizeRatio: 2.0 is not"),
        # the provider SDK's own refusal of a value its enum does not have
        ({"cilium": {"encryption": "ipsec"}}, "('cilium.encryption', \"Invalid value ipsec"),
        ({"operatorReplicas": 3.0}, "operatorReplicas: 3.0 is not allowed"),
    ],
)
def test_cilium_refuses_what_the_config_refuses_before_declaring_anything(dev, change, fragment):
    graph = construct(CILIUM, "cilium", {**dev_cluster(dev), **change})
    assert graph.error and fragment in graph.error["message"], graph.error
    assert {r.type for r in graph.resources} <= {"pulumi:pulumi:Stack", KUBERNETES_PROVIDER}


def test_a_cluster_name_cilium_cannot_take_fails_the_run(dev):
    graph = construct(CILIUM, "cilium", {**dev_cluster(dev), "clusterName": "My_Cluster"})
    assert graph.error and "'My_Cluster' is not a valid Cilium cluster name" in str(graph.error)


# components/cilium.py WAS_AT_THE_ROOT, as the mocks record it: the program's alias to the
# URNs its stacks had before the package, which a consumer's construct does not make
# (tests/test_identity.py tells why).
PROGRAMS_ALIAS = {"project": "cilium-eks", "noParent": True}


def declared(graph: Graph) -> dict[str, Any]:
    """What a graph declares, but the program's own aliases to its stacks' old URNs."""
    return graph.declared(but_aliases=(PROGRAMS_ALIAS,))


def test_only_the_program_aliases_its_stacks_old_urns(dev):
    # the program's Stack aliases its components to the root they had (every one that sat
    # there); the package's, constructed for a consumer, none
    program = {r.name for r in dev.resources if PROGRAMS_ALIAS in r.aliases}
    assert {"network", "cluster", "cilium", "nodes", "starwars", "aws"} <= program
    graph = construct(STACK, "cilium-eks", stack_inputs(), kubernetes=False)
    assert graph.error is None, graph.error["traceback"]
    assert not [r.urn for r in graph.resources if PROGRAMS_ALIAS in r.aliases]


def test_the_stack_from_camel_case_inputs_declares_the_programs_graph(dev):
    graph = construct(STACK, "cilium-eks", stack_inputs(), kubernetes=False)
    assert graph.error is None, graph.error["traceback"]
    assert declared(graph) == declared(dev)
    # and returns what the program exports
    assert {k: graph.output(k) for k in dev.outputs} == {k: dev.output(k) for k in dev.outputs}
    assert graph.outputs["kubeconfig"]["secret"]


def test_the_stack_takes_every_feature_as_the_program_does():
    everything = {"network.vpcEndpoints": True, "karpenter.enabled": True, "mesh": {"clusterId": 1}}
    program = run_ok(everything)
    inputs = {**stack_inputs(), "network": {**stack_inputs()["network"], "vpcEndpoints": True}}
    inputs |= {"karpenter": {"enabled": True}, "mesh": {"clusterId": 1.0}}
    graph = construct(STACK, "cilium-eks", inputs, kubernetes=False)
    assert graph.error is None, graph.error["traceback"]
    assert declared(graph) == declared(program)


def test_the_stack_refuses_bad_inputs_before_declaring_itself():
    inputs = {**stack_inputs(), "network": {"azCount": 7.0}}
    graph = construct(STACK, "cilium-eks", inputs, kubernetes=False)
    assert graph.error and "network.azCount: 7 is not allowed" in graph.error["message"]
    assert nothing_declared(graph)
    # a double that is not a whole number stays one, and is refused as such
    inputs = {**stack_inputs(), "nodes": {"minSize": 1.5}}
    graph = construct(STACK, "cilium-eks", inputs, kubernetes=False)
    assert graph.error and "nodes.minSize: 1.5 is not allowed" in graph.error["message"]


# The datapath tuning, each key off (docs/performance.md), as another language sends it
TUNING_OFF = {
    "bandwidthManager": False,
    "bbr": False,
    "loadBalancerAlgorithm": "random",
    "distributedLru": False,
    "mapDynamicSizeRatio": 0.0025,
}


def test_cilium_takes_the_tuning_from_its_cilium_input(dev):
    inputs = dev_cluster(dev)
    graph = construct(CILIUM, "cilium", {**inputs, "cilium": {**inputs["cilium"], **TUNING_OFF}})
    assert graph.error is None, graph.error["traceback"]
    values = graph.one("kubernetes:helm.sh/v3:Release").inputs["values"]
    assert values["bandwidthManager"] == {"enabled": False, "bbr": False}
    assert values["loadBalancer"]["algorithm"] == "random"
    assert values["bpf"]["distributedLRU"] == {"enabled": False}
    assert values["bpf"]["mapDynamicSizeRatio"] == 0.0025


def test_the_stack_takes_the_tuning_as_the_program_does():
    program = run_ok({f"cilium.{key}": value for key, value in TUNING_OFF.items()})
    inputs = stack_inputs()
    inputs["cilium"] = {**inputs["cilium"], **TUNING_OFF}
    graph = construct(STACK, "cilium-eks", inputs, kubernetes=False)
    assert graph.error is None, graph.error["traceback"]
    assert declared(graph) == declared(program)
    values = graph.one("kubernetes:helm.sh/v3:Release").inputs["values"]
    assert values["bandwidthManager"] == {"enabled": False, "bbr": False}
