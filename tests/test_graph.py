"""Properties of the whole graph: providers, structure, determinism, outputs, speed."""

from __future__ import annotations

from tests.harness import run_program

STACK = "pulumi:pulumi:Stack"
COMPONENTS = {
    "cilium-eks:index:Network",
    "cilium-eks:index:Cluster",
    "cilium-eks:index:AwsNodeOff",
    "cilium-eks:index:Cilium",
    "cilium-eks:index:NodeGroup",
}


def test_every_kubernetes_resource_uses_the_clusters_provider(dev):
    provider = dev.one("pulumi:providers:kubernetes")
    kube = [r for r in dev.resources if r.type.startswith("kubernetes:")]
    assert kube, "the program declares Kubernetes resources"
    for res in kube:
        assert res.provider == provider.urn, f"{res.type} {res.name} uses {res.provider}"
    # and that provider is the one built from this cluster's kubeconfig
    assert provider.property_dependencies["kubeconfig"] == [dev.one("eks:index:Cluster").urn]


def test_each_step_is_a_component_owning_its_resources(dev):
    stack = dev.one(STACK)
    top = [r for r in dev.resources if r.parent == stack.urn]
    assert {r.type for r in top} >= COMPONENTS
    # Nothing but components hangs off the stack; every cloud resource has an owner.
    assert all(not r.custom and not r.remote for r in top)
    for res in dev.resources:
        if res.type != STACK:
            assert res.parent is not None, res.urn


def test_two_runs_declare_the_identical_graph(dev):
    again = run_program(cached=False)

    def declared(graph):
        # Registration order and the order of dependency sets vary with asyncio
        # scheduling; names, inputs and edges may not.
        return {
            r.urn: (
                r.parent,
                r.provider,
                sorted(r.dependencies),
                {k: sorted(v) for k, v in r.property_dependencies.items()},
                r.inputs,
            )
            for r in graph.resources
        }

    assert declared(again) == declared(dev)
    assert again.outputs == dev.outputs


def test_stack_outputs(dev):
    assert dev.output("clusterName") == "cilium-eks-dev"
    assert dev.output("region") == "ap-northeast-2"
    assert dev.output("vpcId") == "vpc-id"
    assert dev.output("ciliumVersion") == "1.19.6"
    commands = dev.output("commands")
    assert "cilium status" in commands["ciliumStatus"]
    assert "cilium hubble ui" in commands["hubbleUi"]
    assert "port-forward" in commands["hubbleUiPortForward"]
    # Only the kubeconfig is secret, and nothing else carries it.
    assert [k for k, v in dev.outputs.items() if v["secret"]] == ["kubeconfig"]
    kubeconfig = dev.output("kubeconfig")
    assert not [k for k, v in dev.outputs.items() if k != "kubeconfig" and kubeconfig in str(v)]


def test_the_program_evaluates_quickly_under_mocks(dev):
    # Measured around 1.5 s on the 2-core CI machine (imports included); a regression to
    # several seconds means something slow (an invoke, a loop of applies) crept in.
    assert dev.seconds < 6


def test_components_carry_no_depends_on_their_children_would_not_inherit(dev):
    # Ordering lives on the resources that need it (see test_order.py); a depends_on on
    # a component would look like ordering and order nothing inside it.
    for res in dev.resources:
        if res.type.startswith("cilium-eks:index:"):
            assert res.dependencies == [], res.type
