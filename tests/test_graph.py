"""Properties of the whole graph: providers, structure, determinism, outputs, speed."""

from __future__ import annotations

import json
import shlex

import pytest

from tests.harness import Graph, run_ok, run_program

STACK = "pulumi:pulumi:Stack"
STACK_COMPONENT = "cilium-eks:index:Stack"
COMPONENTS = {
    STACK_COMPONENT,
    "cilium-eks:index:Network",
    "cilium-eks:index:Cluster",
    "cilium-eks:index:AwsNodeOff",
    "cilium-eks:index:Cilium",
    "cilium-eks:index:NodeGroup",
    "cilium-eks:index:Teardown",
    "cilium-eks:index:StarWarsDemo",
}


def test_every_kubernetes_resource_uses_the_clusters_provider(dev):
    provider = dev.one("pulumi:providers:kubernetes")
    kube = [r for r in dev.resources if r.type.startswith("kubernetes:")]
    assert kube, "the program declares Kubernetes resources"
    for res in kube:
        assert res.provider == provider.urn, f"{res.type} {res.name} uses {res.provider}"
    # and that provider is the one built from this cluster's kubeconfig
    assert provider.property_dependencies["kubeconfig"] == [dev.one("eks:index:Cluster").urn]


def test_every_aws_call_and_resource_uses_the_stacks_aws_provider(dev):
    provider = dev.one("pulumi:providers:aws")
    aws = [r for r in dev.resources if r.type.startswith("aws:")]
    assert aws and all(r.provider == provider.urn for r in aws)
    # pulumi-eks's components hand it to everything they create
    for component in [r for r in dev.resources if r.remote]:
        assert component.providers == {"aws": provider.urn}, component.type
    calls = [i for i in dev.invokes if i["token"].startswith("aws:")]
    assert calls and all(i["provider"] == provider.urn for i in calls)


def test_the_aws_provider_is_the_stacks_region_with_derived_and_user_tags():
    tags = {"tags": {"cost-center": "platform", "stack": "mine"}}
    graph = run_ok({"aws:region": "eu-west-1", "aws:defaultTags": tags})
    provider = graph.one("pulumi:providers:aws")
    assert provider.inputs["region"] == "eu-west-1"
    # project and stack are derived (the stack's own name), never typed per stack
    tags = json.loads(provider.inputs["defaultTags"])["tags"]
    assert tags == {"cost-center": "platform", "project": "cilium-eks", "stack": "dev"}


def test_each_step_is_a_component_owning_its_resources(dev):
    # The whole stack is one Stack component (the package's, components/stack.py); under
    # it, a component per step, and the AWS provider they share; the Cilium component
    # owns aws-node's switch-off and the ENI sweep, as it does on a consumer's cluster.
    stack = dev.one(STACK)
    assert [r.type for r in dev.resources if r.parent == stack.urn] == [STACK_COMPONENT]
    steps = [r for r in dev.children(dev.one(STACK_COMPONENT))]
    assert {r.type for r in steps} >= COMPONENTS - {
        STACK_COMPONENT,
        "cilium-eks:index:AwsNodeOff",
        "cilium-eks:index:Teardown",
    }
    assert [r.type for r in steps if r.custom or r.remote] == ["pulumi:providers:aws"]
    cilium = dev.one("cilium-eks:index:Cilium")
    for part in ("cilium-eks:index:AwsNodeOff", "cilium-eks:index:Teardown"):
        assert dev.one(part).parent == cilium.urn
    # every cloud resource has an owner
    for res in dev.resources:
        if res.type != STACK:
            assert res.parent is not None, res.urn


@pytest.fixture(scope="module")
def cold(dev: Graph) -> Graph:
    """The dev stack run in a fresh interpreter, as `pulumi up` runs it.

    After `dev`: this worker's warm server has imported (and so byte-compiled) what the
    program imports, as a user's first `pulumi up` leaves it for every later one.
    """
    return run_program(cached=False)


def test_every_component_registers_its_outputs(dev):
    # register_outputs marks a component complete and shows its outputs in the stack
    components = [r for r in dev.resources if r.type.startswith("cilium-eks:index:")]
    assert {r.type for r in components} == COMPONENTS
    for component in components:
        assert component.urn in dev.component_outputs, component.type
    network = dev.one("cilium-eks:index:Network")
    outputs = dev.component_outputs[network.urn]
    assert outputs["vpcId"] == "vpc-id"
    assert sorted(outputs["privateSubnetIds"]) == dev.subnet_ids("private")
    assert sorted(outputs["publicSubnetIds"]) == dev.subnet_ids("public")
    cluster = dev.component_outputs[dev.one("cilium-eks:index:Cluster").urn]
    assert cluster["name"] == "cilium-eks-dev" and "cilium-eks-dev" in cluster["kubeconfig"]
    assert dev.component_outputs[dev.one("cilium-eks:index:Cilium").urn] == {
        "version": "1.19.6",
        "operatorRoleArn": "arn:aws:iam::123456789012:role/operator",  # the mock's
    }
    # the program exports what the Stack component outputs, and nothing else
    whole = dev.component_outputs[dev.one(STACK_COMPONENT).urn]
    assert {k: whole[k] for k in dev.outputs} == {k: dev.output(k) for k in dev.outputs}
    assert {k for k, v in whole.items() if v is not None} == set(dev.outputs)
    demo = dev.component_outputs[dev.one("cilium-eks:index:StarWarsDemo").urn]
    assert demo == {"namespace": "starwars"}


def test_two_runs_declare_the_identical_graph(dev, cold):
    assert cold.declared() == dev.declared()
    assert cold.outputs == dev.outputs


def test_stack_outputs(dev):
    assert dev.output("clusterName") == "cilium-eks-dev"
    assert dev.output("region") == "ap-northeast-2"
    assert dev.output("vpcId") == "vpc-id"
    assert dev.output("ciliumVersion") == "1.19.6"
    # the preflight judges a live stack by its state, never by outputs (which a failed
    # first run does not write): no output stands in for a deployed setting
    assert "ciliumKubeProxyReplacement" not in dev.outputs
    commands = dev.output("commands")
    # the kubeconfig command reads the secret output of that name
    assert "pulumi stack output kubeconfig --show-secrets" in commands["kubeconfig"]
    assert "kubeconfig" in dev.outputs
    # cilium CLI commands as its docs spell them (the port-forward's target: chart tests)
    assert shlex.split(commands["ciliumStatus"]) == ["cilium", "status", "--wait"]
    assert shlex.split(commands["hubbleUi"]) == ["cilium", "hubble", "ui"]
    assert shlex.split(commands["hubblePortForward"]) == ["cilium", "hubble", "port-forward"]
    # the relay serves TLS (its CA and certificate name: tests/test_cilium_chart.py)
    assert shlex.split(commands["hubbleObserve"]) == [
        "hubble", "observe", "--tls", "--tls-ca-cert-files", "hubble-ca.crt",
        "--tls-server-name", "hubble.hubble-relay.cilium.io", "--follow",
    ]  # fmt: skip
    ca = commands["hubbleCa"]
    assert ca.startswith("kubectl -n kube-system get secret hubble-relay-server-certs -o ")
    assert ca.endswith("| base64 -d > hubble-ca.crt")
    forward = shlex.split(commands["hubbleUiPortForward"])
    assert forward[:4] == ["kubectl", "-n", "kube-system", "port-forward"]
    # Only the kubeconfig is secret, and nothing else carries it.
    assert [k for k, v in dev.outputs.items() if v["secret"]] == ["kubeconfig"]
    kubeconfig = dev.output("kubeconfig")
    assert not [k for k, v in dev.outputs.items() if k != "kubeconfig" and kubeconfig in str(v)]


def test_the_program_evaluates_quickly_under_mocks(cold):
    # On the 2-core CI machine a fresh interpreter (imports included) spends about 2 s of
    # CPU. The suite runs a worker per core, so the wall clock of this run triples when the
    # other worker is busy: the CPU this process spent is what shows a regression (work
    # crept in); the loose wall-clock bound catches waiting instead (a sleep, a timeout, an
    # RPC that never answers). CPU time itself swells by half while the other core is
    # saturated (seen: 3.1 s once, in a clean clone's `make test` beside another suite), so
    # the better of two runs is judged: work that crept in shows in both.
    again = run_program(cached=False)
    assert min(cold.cpu_seconds, again.cpu_seconds) < 3
    assert min(cold.seconds, again.seconds) < 15


def test_components_carry_no_depends_on_their_children_would_not_inherit(dev):
    # Ordering lives on the resources that need it (see test_order.py); a depends_on on
    # a component would look like ordering and order nothing inside it.
    for res in dev.resources:
        if res.type.startswith("cilium-eks:index:"):
            assert res.dependencies == [], res.type


# --- every configuration dimension's edges, through the whole program ---------------------

EDGES = {
    "dev": {},
    "china": {"aws:region": "cn-north-1"},
    "govcloud": {"aws:region": "us-gov-west-1"},
    "hubble-off": {"cilium.hubble.relay": False, "cilium.hubble.ui": False},
    "min-below-desired": {"nodes.minSize": 1, "nodes.desiredSize": 3, "nodes.maxSize": 6},
    "one-node": {"nodes.minSize": 1, "nodes.desiredSize": 1, "nodes.maxSize": 1},
    "all-region-azs": {"network.azCount": 4},  # the mock region has four
    "two-azs-per-az-nat": {"network.azCount": 2, "network.natGateways": "perAz"},
    "small-vpc": {"network.cidr": "172.16.0.0/17"},
    "endpoints": {"network.vpcEndpoints": True},
    "kube-proxy": {"cilium.kubeProxyReplacement": False},
    "no-prefix-delegation": {"cilium.prefixDelegation": False},
    "arm64": {"nodes.instanceTypes": ["m7g.large", "t4g.medium"]},
    "no-demo": {"demo.enabled": False},
    "no-checks": {"demo.verify": False},
    "policy-none": {"demo.policy": "none"},
    "newest-cilium": {"cilium.version": "1.20.0"},
    "newest-kubernetes": {"kubernetesVersion": "1.36"},
    "admins-and-viewers": {
        "access.adminPrincipalArns": ["arn:aws:iam::123456789012:role/admin"],
        "access.viewerPrincipalArns": ["arn:aws:iam::123456789012:role/ci/preview"],
    },
}


@pytest.mark.parametrize("overrides", EDGES.values(), ids=EDGES.keys())
def test_every_edge_of_the_config_declares_a_sound_graph(overrides):
    graph = run_ok(overrides)
    provider = graph.one("pulumi:providers:kubernetes")
    for res in graph.resources:
        assert res.urn not in graph.upstream(res), res.urn
        if res.type.startswith("kubernetes:"):
            assert res.provider == provider.urn, res.name
    release, nodes = (
        graph.one("kubernetes:helm.sh/v3:Release"),
        graph.one("eks:index:ManagedNodeGroup"),
    )
    assert graph.waits_for(nodes, release) and not graph.waits_for(release, nodes)
    patches = graph.of_type("kubernetes:apps/v1:DaemonSetPatch")
    assert patches and all(graph.waits_for(release, p) for p in patches)


@pytest.mark.parametrize(
    ("region", "partition"), [("cn-north-1", "aws-cn"), ("us-gov-west-1", "aws-us-gov")]
)
def test_other_partitions_get_their_own_arns(region, partition):
    admin = f"arn:{partition}:iam::123456789012:role/admin"
    graph = run_ok({"aws:region": region, "access.adminPrincipalArns": [admin]})
    attached = [
        a.inputs["policyArn"]
        for a in graph.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    ]
    assert attached and all(arn.startswith(f"arn:{partition}:iam::aws:policy/") for arn in attached)
    (entry,) = graph.one("eks:index:Cluster").inputs["accessEntries"].values()
    assert entry["principalArn"] == admin
    (policy,) = entry["accessPolicies"].values()
    assert policy["policyArn"].startswith(f"arn:{partition}:eks::aws:cluster-access-policy/")
    assert graph.output("region") == region


def test_six_azs_in_a_region_that_has_six():
    azs = ",".join(f"us-east-1{z}" for z in "abcdef")
    graph = run_ok({"network.azCount": 6, "network.cidr": "172.16.0.0/17"}, azs=azs)
    assert len(graph.subnet_ids("private")) == 6


def policy_documents(graph: Graph) -> list[tuple[str, dict]]:
    """Every IAM policy document the program writes: trust and permission policies."""
    found = []
    for res in graph.resources:
        for key in ("assumeRolePolicy", "policy"):
            if res.type.startswith("aws:iam/") and isinstance(res.inputs.get(key), str):
                found.append((f"{res.name}.{key}", json.loads(res.inputs[key])))
    return found


def test_every_iam_policy_uses_the_current_policy_language(dev):
    # without Version, IAM reads a document as 2008-10-17: no policy variables, and
    # conditions on variables silently never match
    documents = policy_documents(dev)
    assert len(documents) >= 3
    for name, document in documents:
        assert document.get("Version") == "2012-10-17", name
