"""components/karpenter.py: nodes on demand that boot into Cilium, a controller with only
its documented permissions, and a teardown that leaves no instance behind.

Karpenter's chart is an OCI artifact on public.ecr.aws, outside every registry this
project's CI reaches, and no PyPI or npm package ships it or its CRDs: the chart is not
rendered here. What its CRDs (karpenter-provider-aws 1.14.1 pkg/apis/crds) and docs
require of the objects is written down below and checked on what the program declares.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import pytest
import yaml

from components.config import InstanceType, cpu_cores
from components.karpenter import DOCUMENTS
from components.nodes import MAX_PODS_BELOW_30_VCPUS, max_pods_with_prefix_delegation
from tests.harness import Graph, mock_id, run_ok
from tests.reference import location as reference_location

RELEASE = "kubernetes:helm.sh/v3:Release"
NODE_CLASS = "kubernetes:karpenter.k8s.aws/v1:EC2NodeClass"
NODE_POOL = "kubernetes:karpenter.sh/v1:NodePool"
ROLE = "aws:iam/role:Role"
POLICY = "aws:iam/rolePolicy:RolePolicy"
QUEUE = "aws:sqs/queue:Queue"
COMPONENT = "cilium-eks:index:Karpenter"
CLUSTER = "cilium-eks-dev"


@pytest.fixture(scope="module")
def on() -> Graph:
    return run_ok({"karpenter.enabled": True})


def karpenters(graph: Graph, type_: str, name: str | None = None):
    (component,) = graph.of_type(COMPONENT)
    found = [r for r in graph.children(component) if r.type == type_ and name in (None, r.name)]
    assert len(found) == 1, (type_, name, len(found))
    return found[0]


def test_off_by_default_and_the_default_stack_stays_as_it_is(dev):
    assert not dev.of_type(COMPONENT) and not dev.of_type(NODE_POOL)
    private = [s for s in dev.of_type("aws:ec2/subnet:Subnet") if s.name.startswith("private-")]
    assert private and all("karpenter.sh/discovery" not in s.inputs["tags"] for s in private)


# --- the controller ---------------------------------------------------------------------------


def test_the_controller_is_karpenters_own_chart_at_a_pinned_version(on):
    crds, controller = on.one(RELEASE, "karpenter-crd"), on.one(RELEASE, "karpenter")
    assert controller.inputs["chart"] == "oci://public.ecr.aws/karpenter/karpenter"
    assert crds.inputs["chart"] == "oci://public.ecr.aws/karpenter/karpenter-crd"
    assert controller.inputs["version"] == crds.inputs["version"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", controller.inputs["version"])  # pinned, exact
    assert controller.inputs["namespace"] == crds.inputs["namespace"] == "kube-system"
    # the CRDs are karpenter-crd's: Helm never upgrades a chart's crds/ folder
    assert controller.inputs["skipCrds"] is True
    assert on.waits_for(controller, crds)


def test_the_controller_is_configured_for_this_cluster(on):
    values = on.one(RELEASE, "karpenter").inputs["values"]
    queue = karpenters(on, QUEUE)
    assert values["settings"]["clusterName"] == CLUSTER
    # its name, not its URL or ARN (chart values.yaml: settings.interruptionQueue)
    assert values["settings"]["interruptionQueue"] == queue.inputs["name"]
    # a named account: the IRSA trust below names it
    assert values["serviceAccount"]["name"] == "karpenter"
    role = karpenters(on, ROLE, "controller")
    assert values["serviceAccount"]["annotations"] == {
        "eks.amazonaws.com/role-arn": f"arn:aws:iam::123456789012:role/{role.name}"
    }
    # the region from the environment: IMDS is out of its pods' reach (hop limit 1)
    assert {"name": "AWS_REGION", "value": "ap-northeast-2"} in values["controller"]["env"]


def test_the_controller_runs_on_the_managed_nodes_never_on_its_own(on):
    affinity = on.one(RELEASE, "karpenter").inputs["values"]["affinity"]
    (term,) = affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    # every node Karpenter launches carries karpenter.sh/nodepool
    assert term["matchExpressions"] == [
        {"key": "karpenter.sh/nodepool", "operator": "DoesNotExist"}
    ]


@pytest.mark.parametrize(("nodes", "replicas"), [(1, 1), (2, 2), (4, 2)])
def test_the_controllers_replicas_fit_the_managed_nodes(nodes, replicas):
    # one per node (required anti-affinity): more than the nodes leaves one Pending
    graph = run_ok({"karpenter.enabled": True, "nodes.minSize": nodes,
                    "nodes.desiredSize": nodes, "nodes.maxSize": 4})  # fmt: skip
    assert graph.one(RELEASE, "karpenter").inputs["values"]["replicas"] == replicas


def test_the_controller_waits_for_cilium_the_managed_nodes_its_permissions_and_its_queue(on):
    controller = on.one(RELEASE, "karpenter")
    for res in (
        on.one(RELEASE, "cilium"),
        on.one("eks:index:ManagedNodeGroup"),
        karpenters(on, POLICY, "controller"),
        karpenters(on, "aws:sqs/queuePolicy:QueuePolicy"),
        *[r for r in on.of_type("aws:cloudwatch/eventTarget:EventTarget")],
    ):
        assert on.waits_for(controller, res), res.type


# --- IAM ----------------------------------------------------------------------------------------

# Karpenter 1.14's reference controller policy (cloudformation.yaml), action by action.
DOCUMENTED_CONTROLLER_ACTIONS = {
    "ec2:RunInstances", "ec2:CreateFleet", "ec2:CreateLaunchTemplate", "ec2:CreateTags",
    "ec2:TerminateInstances", "ec2:DeleteLaunchTemplate", "iam:PassRole",
    "iam:CreateInstanceProfile", "iam:TagInstanceProfile", "iam:AddRoleToInstanceProfile",
    "iam:RemoveRoleFromInstanceProfile", "iam:DeleteInstanceProfile", "eks:DescribeCluster",
    "sqs:DeleteMessage", "sqs:GetQueueUrl", "sqs:ReceiveMessage",
    "ec2:DescribeCapacityReservations", "ec2:DescribeImages", "ec2:DescribeInstances",
    "ec2:DescribeInstanceStatus", "ec2:DescribeInstanceTypeOfferings",
    "ec2:DescribeInstanceTypes", "ec2:DescribeLaunchTemplates", "ec2:DescribePlacementGroups",
    "ec2:DescribeSecurityGroups", "ec2:DescribeSpotPriceHistory", "ec2:DescribeSubnets",
    "ssm:GetParameter", "pricing:GetProducts", "iam:ListInstanceProfiles",
    "iam:GetInstanceProfile",
}  # fmt: skip


def controller_statements(graph: Graph) -> list[dict[str, Any]]:
    return json.loads(karpenters(graph, POLICY, "controller").inputs["policy"])["Statement"]


def listed(statement: dict[str, Any]) -> list[str]:
    return [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]


def test_the_controller_may_do_what_karpenters_docs_list_and_nothing_more(on):
    actions = {a for s in controller_statements(on) for a in listed(s)}
    assert actions == DOCUMENTED_CONTROLLER_ACTIONS
    assert not [a for a in actions if "*" in a]


def test_the_controller_passes_only_the_node_role_to_ec2(on):
    (passing,) = [s for s in controller_statements(on) if "iam:PassRole" in listed(s)]
    node_role = karpenters(on, ROLE, "node")
    assert passing["Resource"] == f"arn:aws:iam::123456789012:role/{node_role.name}"
    assert set(passing["Condition"]["StringEquals"]["iam:PassedToService"]) == {
        "ec2.amazonaws.com", "ec2.amazonaws.com.cn",
    }  # fmt: skip


def test_instance_actions_are_scoped_by_this_clusters_tags(on):
    owned = f"kubernetes.io/cluster/{CLUSTER}"
    for statement in controller_statements(on):
        mutating = {"ec2:TerminateInstances", "ec2:DeleteLaunchTemplate", "ec2:CreateTags"}
        if mutating & set(listed(statement)):
            conditions = json.dumps(statement["Condition"])
            assert (
                f"aws:ResourceTag/{owned}" in conditions or f"aws:RequestTag/{owned}" in conditions
            )
    (describe,) = [
        s for s in controller_statements(on) if s["Sid"] == "AllowAPIServerEndpointDiscovery"
    ]
    assert describe["Resource"] == f"arn:aws:eks:ap-northeast-2:123456789012:cluster/{CLUSTER}"
    (queue,) = [s for s in controller_statements(on) if "sqs:ReceiveMessage" in listed(s)]
    assert queue["Resource"] == f"arn:aws:sqs:ap-northeast-2:123456789012:{CLUSTER}"


def test_the_controllers_role_trusts_its_service_account_only(on):
    role = karpenters(on, ROLE, "controller")
    (statement,) = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
    issuer = "oidc.eks.ap-northeast-2.amazonaws.com/id/CILIUM-EKS-DEV"
    assert statement["Condition"]["StringEquals"] == {
        f"{issuer}:sub": "system:serviceaccount:kube-system:karpenter",
        f"{issuer}:aud": "sts.amazonaws.com",
    }


# --- the policies mirrored from Karpenter's CloudFormation reference ---------------------------

KARPENTER_REPO = "aws/karpenter-provider-aws"
KARPENTER_TAG = "v1.14.1"
CFN_PATH = (
    "website/content/en/docs/getting-started/getting-started-with-karpenter/cloudformation.yaml"
)
CFN_SHA256 = "7ffeb01f04b5da482ef43087830de00a476098416e3b4576c38239ef1b0bef4b"
# Every policy statement of that file, in its order: (resource, Sid or position, sha256 of
# the statement's canonical JSON: keys sorted, no spaces; !GetAtt X read as ${X}).
UPSTREAM_STATEMENTS = [
    ("NodeLifecyclePolicy", "AllowScopedEC2InstanceAccessActions",
     "b4acbb9f4a02493f0f58080b4ce6fcdb6d53e6810c752c8f0590d658436ff838"),
    ("NodeLifecyclePolicy", "AllowScopedEC2LaunchTemplateAccessActions",
     "aacdf239ca18cd1b2fa285b99162d8481c6d4b5bcdb2e38d2ed2ab637b58dbdb"),
    ("NodeLifecyclePolicy", "AllowScopedEC2InstanceActionsWithTags",
     "97262d4cc707c8232f307a9bd3a35dbec526904259987af9b28b8e859719b3a4"),
    ("NodeLifecyclePolicy", "AllowScopedResourceCreationTagging",
     "44ba98e5c4a0cf2773605b51e636a3ded4a3762f2ba3cd76b1a1a7e7af7ce5cf"),
    ("NodeLifecyclePolicy", "AllowScopedResourceTagging",
     "d9d3ea3ca9e634e1133128c615688916baa4f43fef8829d378c7011576881187"),
    ("NodeLifecyclePolicy", "AllowScopedDeletion",
     "628edc8f81a7937009b6231eee58a92e0784fa550debca364f88ba04f453c2bd"),
    ("IAMIntegrationPolicy", "AllowPassingInstanceRole",
     "7751ded86d361630c16beb2f81b9e2e15dba8bb03245cd900f813e3716b02792"),
    ("IAMIntegrationPolicy", "AllowScopedInstanceProfileCreationActions",
     "48bf119c47a92f534aa158fecb8d45b862ecd7e50181f29747852e04e636df9e"),
    ("IAMIntegrationPolicy", "AllowScopedInstanceProfileTagActions",
     "5777193838685d304e312fd527aa6454b897dec047a813dc3942ddbb72bd437c"),
    ("IAMIntegrationPolicy", "AllowScopedInstanceProfileActions",
     "97b0bb25e73345c960f94df28ce677f51265b8d0c4904b1546f6dc624f37864d"),
    ("EKSIntegrationPolicy", "AllowAPIServerEndpointDiscovery",
     "b6f12a8559385d3d10c32f8c0119b61079676f682c848a371a68bc212f6a6634"),
    ("InterruptionPolicy", "AllowInterruptionQueueActions",
     "88392ee1a971eb0bb9393390dadff8408ac5e651e3ffef4fca71512b3b273f0a"),
    ("ZonalShiftPolicy", "AllowZonalShiftStatusReadOnly",
     "408582003665915cf6ec346793e538b5ebf334fde53f02c6b4c64968ff75334f"),
    ("ResourceDiscoveryPolicy", "AllowRegionalReadActions",
     "76aafcec5b490fb35d602d4f217f331a49e71f19c6d4a672ec031c919c76b107"),
    ("ResourceDiscoveryPolicy", "AllowSSMReadActions",
     "c86ca6677bb30436e62d2e3a321abb6419f18e39c7f32ae6fe31de353185cf6a"),
    ("ResourceDiscoveryPolicy", "AllowPricingReadActions",
     "4dc34fab60f60048d929c3578f7ab48662debc6613c17ea634c60dd6b848f3b3"),
    ("ResourceDiscoveryPolicy", "AllowUnscopedInstanceProfileListAction",
     "dba0f83910e754f4a040191911ab727ef930f659b2d2548afac6de6f5c9484c4"),
    ("ResourceDiscoveryPolicy", "AllowInstanceProfileReadActions",
     "9d842720c214c7e074b1b79c359f5ca972d1917b3041c2d38e8828b5cd7f9b8c"),
    ("KarpenterInterruptionQueuePolicy", "0",
     "326e123b240e1fc828a6b59ddf01e9cea041a52048060b20b2c7a2c009569d42"),
    ("KarpenterInterruptionQueuePolicy", "DenyHTTP",
     "7bf344b990ace1defa77314d54325ad63ade1d61c9993d3d2eddf970062555fe"),
]  # fmt: skip
# Which of upstream's policies each document of components/policies/ holds.
DOCUMENT_SOURCES = {
    "karpenter-controller.json": (
        "NodeLifecyclePolicy", "IAMIntegrationPolicy", "EKSIntegrationPolicy",
        "InterruptionPolicy", "ZonalShiftPolicy", "ResourceDiscoveryPolicy",
    ),
    "karpenter-interruption-queue.json": ("KarpenterInterruptionQueuePolicy",),
}  # fmt: skip
# Where the documents differ from upstream, and why; nothing else may.
LEFT_OUT = {
    "AllowZonalShiftStatusReadOnly": "arc-zonal-shift:GetManagedResource serves Karpenter's "
    "settings.enableZonalShift, which this program leaves off",
}
# statement -> (why, the change undone: upstream's statement again)
CHANGED: dict[str, tuple[str, Any]] = {
    "DenyHTTP": (
        'aws:SecureTransport is the JSON string "false", as IAM\'s grammar writes condition '
        "values; upstream's YAML has the boolean false. The same condition.",
        lambda s: {**s, "Condition": {"Bool": {"aws:SecureTransport": False}}},
    ),
}
# document -> top-level keys beyond upstream's, and why
ADDED_KEYS = {
    "karpenter-interruption-queue.json": {
        "Version": "upstream's queue policy has none, and IAM reads a document without one "
        "in the 2008-10-17 language (IAM User Guide, Version element); 2012-10-17 is "
        "current, as in every other document of the program",
    },
}


def digest(statement: dict[str, Any]) -> str:
    text = json.dumps(statement, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def label(position: int, statement: dict[str, Any]) -> str:
    return statement.get("Sid", str(position))


def test_the_mirrored_policies_are_upstreams_statement_for_statement():
    """components/policies/ against Karpenter's CloudFormation reference: upstream is
    aws/karpenter-provider-aws v1.14.1 (KARPENTER_VERSION), website/content/en/docs/
    getting-started/getting-started-with-karpenter/cloudformation.yaml, sha256
    7ffeb01f04b5da482ef43087830de00a476098416e3b4576c38239ef1b0bef4b (the same bytes as
    v1.13's and, on main, v1.14's copy), recorded statement by statement in
    UPSTREAM_STATEMENTS; the file itself is not copied into the repository. Each document
    holds upstream's statements in upstream's order, CloudFormation's ${...} references
    left in, except those LEFT_OUT and CHANGED, each with its reason."""
    for name, sources in DOCUMENT_SOURCES.items():
        document = json.loads((DOCUMENTS / name).read_text())
        ours = []
        for position, statement in enumerate(document["Statement"]):
            key = label(position, statement)
            undo = CHANGED[key][1] if key in CHANGED else (lambda s: s)
            ours.append((key, digest(undo(statement))))
        expected = [
            (key, sha)
            for source, key, sha in UPSTREAM_STATEMENTS
            if source in sources and key not in LEFT_OUT
        ]
        assert ours == expected, name
        assert set(document) - {"Version", "Id", "Statement"} == set()
        assert set(ADDED_KEYS.get(name, {})) <= set(document)


def upstream_statements(text: str) -> list[tuple[str, str, str]]:
    """UPSTREAM_STATEMENTS, worked out from cloudformation.yaml's text."""

    class CloudFormation(yaml.SafeLoader):
        pass

    CloudFormation.add_constructor("!Sub", lambda loader, node: loader.construct_scalar(node))
    CloudFormation.add_constructor(
        "!GetAtt", lambda loader, node: "${" + loader.construct_scalar(node) + "}"
    )
    CloudFormation.add_constructor(
        "!Ref", lambda loader, node: "${" + loader.construct_scalar(node) + "}"
    )
    found = []
    for name, resource in yaml.load(text, Loader=CloudFormation)["Resources"].items():
        if resource["Type"] in ("AWS::IAM::ManagedPolicy", "AWS::SQS::QueuePolicy"):
            document = resource["Properties"]["PolicyDocument"]
            document = json.loads(document) if isinstance(document, str) else document
            for position, statement in enumerate(document["Statement"]):
                found.append((name, label(position, statement), digest(statement)))
    return found


def test_the_recorded_statements_are_those_of_upstreams_file():
    """With upstream's cloudformation.yaml in the reference folder (karpenter/, as
    `git show v1.14.1:<CFN_PATH>` in a clone of aws/karpenter-provider-aws writes it): the
    file is the one recorded, and UPSTREAM_STATEMENTS is what it holds."""
    path = reference_location() / "karpenter" / "cloudformation.yaml"
    if not path.is_file():
        pytest.skip(
            f"{path} not found: `git show {KARPENTER_TAG}:{CFN_PATH}` in a clone of "
            f"{KARPENTER_REPO} writes it"
        )
    text = path.read_bytes()
    assert hashlib.sha256(text).hexdigest() == CFN_SHA256
    assert upstream_statements(text.decode()) == UPSTREAM_STATEMENTS


def test_the_declared_policies_have_every_reference_filled_in(on):
    for policy in (
        karpenters(on, POLICY, "controller").inputs["policy"],
        karpenters(on, "aws:sqs/queuePolicy:QueuePolicy").inputs["policy"],
    ):
        assert "${" not in policy and json.loads(policy)["Version"] == "2012-10-17"


# --- interruptions --------------------------------------------------------------------------------


def test_the_interruption_queue_and_the_rules_that_feed_it(on):
    queue = karpenters(on, QUEUE)
    assert queue.inputs["name"] == CLUSTER
    assert queue.inputs["messageRetentionSeconds"] == 300
    assert queue.inputs["sqsManagedSseEnabled"] is True
    policy = json.loads(karpenters(on, "aws:sqs/queuePolicy:QueuePolicy").inputs["policy"])
    send, deny = policy["Statement"]
    assert send["Action"] == "sqs:SendMessage"
    assert "events.amazonaws.com" in send["Principal"]["Service"]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {
        "Bool": {"aws:SecureTransport": "false"}
    }
    patterns = {
        r.name: json.loads(r.inputs["eventPattern"])
        for r in on.of_type("aws:cloudwatch/eventRule:EventRule")
    }
    kinds = {(p["source"][0], p["detail-type"][0]) for p in patterns.values()}
    for wanted in (
        ("aws.ec2", "EC2 Spot Instance Interruption Warning"),
        ("aws.ec2", "EC2 Instance Rebalance Recommendation"),
        ("aws.ec2", "EC2 Instance State-change Notification"),
        ("aws.health", "AWS Health Event"),  # scheduled changes
    ):
        assert wanted in kinds
    targets = on.of_type("aws:cloudwatch/eventTarget:EventTarget")
    assert sorted(t.inputs["rule"] for t in targets) == sorted(patterns)
    assert {t.inputs["arn"] for t in targets} == {
        f"arn:aws:sqs:ap-northeast-2:123456789012:{CLUSTER}"
    }


# --- its nodes ------------------------------------------------------------------------------------


def test_its_nodes_have_a_role_and_an_ec2_linux_access_entry_of_their_own(on):
    node_role = karpenters(on, ROLE, "node")
    entry = karpenters(on, "aws:eks/accessEntry:AccessEntry")
    assert entry.inputs["type"] == "EC2_LINUX"
    assert entry.inputs["principalArn"] == f"arn:aws:iam::123456789012:role/{node_role.name}"
    assert entry.inputs["clusterName"] == CLUSTER
    attached = {
        r.inputs["policyArn"].rsplit("/", 1)[1]
        for r in on.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
        if r.parent == node_role.parent
    }
    # what a node needs (EKS docs), not the VPC CNI's policy: Cilium's operator has its own
    assert attached == {"AmazonEKSWorkerNodePolicy", "AmazonEC2ContainerRegistryReadOnly"}


def node_class(graph: Graph) -> dict[str, Any]:
    return graph.one(NODE_CLASS).inputs["spec"]


def node_pool(graph: Graph) -> dict[str, Any]:
    return graph.one(NODE_POOL).inputs["spec"]


def test_the_nodeclass_pins_al2023_and_finds_the_private_subnets_and_cluster_sg_by_tag(on):
    spec = node_class(on)
    (term,) = spec["amiSelectorTerms"]
    # CRD: alias `family@version`, at most 30 characters; a release, never `latest`
    assert re.fullmatch(r"al2023@v\d{8}", term["alias"]) and len(term["alias"]) <= 30
    (subnets,) = spec["subnetSelectorTerms"]
    ((key, value),) = subnets["tags"].items()
    tagged = [s for s in on.of_type("aws:ec2/subnet:Subnet") if s.inputs["tags"].get(key) == value]
    assert sorted(mock_id(s) for s in tagged) == on.subnet_ids("private")
    # the security group EKS made for the cluster carries aws:eks:cluster-name
    assert spec["securityGroupSelectorTerms"] == [{"tags": {"aws:eks:cluster-name": CLUSTER}}]
    assert spec["role"] == karpenters(on, ROLE, "node").name


def test_the_nodeclass_has_the_managed_nodes_imds_settings(on):
    launch_template = on.one("aws:ec2/launchTemplate:LaunchTemplate").inputs["metadataOptions"]
    imds = node_class(on)["metadataOptions"]
    assert imds["httpTokens"] == launch_template["httpTokens"] == "required"
    assert imds["httpPutResponseHopLimit"] == launch_template["httpPutResponseHopLimit"] == 1
    assert imds["httpEndpoint"] == "enabled"


def test_the_nodeclass_tags_what_karpenter_launches_for_cost_allocation(on):
    tags = node_class(on)["tags"]
    assert tags == {"project": "cilium-eks", "stack": "dev"}
    # CRD: tags may not use the keys Karpenter sets itself
    assert not [k for k in tags if k.startswith(("kubernetes.io/cluster", "karpenter.", "eks:"))]


# EC2's published facts of the smallest size Karpenter may launch in each category, and of
# the sizes excluded: (architectures, Nitro, max ENIs, IPv4 per ENI, vCPUs).
SMALLEST_ALLOWED = {
    "t3.medium": (("x86_64",), True, 3, 6, 2),
    "t3a.medium": (("x86_64",), True, 3, 6, 2),
    "t4g.medium": (("arm64",), True, 3, 6, 2),
    "c5.large": (("x86_64",), True, 3, 10, 2),
    "m5.large": (("x86_64",), True, 3, 10, 2),
    "r5.large": (("x86_64",), True, 3, 10, 2),
    "c7g.large": (("arm64",), True, 3, 10, 2),
    "m7i.large": (("x86_64",), True, 3, 10, 2),
}
# (excluded by size, or by vCPUs: a 1-vCPU medium)
EXCLUDED = {
    "t3.nano": (("x86_64",), True, 2, 2, 2),
    "t3.micro": (("x86_64",), True, 2, 2, 2),
    "t3a.small": (("x86_64",), True, 2, 4, 2),
    "c7g.medium": (("arm64",), True, 2, 4, 1),
}


def facts(name: str, fact: tuple) -> InstanceType:
    return InstanceType(name, *fact)


def test_with_prefix_delegation_max_pods_is_the_managed_nodes_rule_and_every_type_honours_it(on):
    # Karpenter's own max pods ignores prefixes (karpenter-provider-aws #8210): set here,
    # by the managed nodes' rule (AWS's max-pods calculator, capped by kubelet's 110)
    assert node_class(on)["kubelet"] == {"maxPods": MAX_PODS_BELOW_30_VCPUS}
    for name, fact in SMALLEST_ALLOWED.items():
        assert max_pods_with_prefix_delegation([facts(name, fact)]) >= MAX_PODS_BELOW_30_VCPUS, name
    sizes = requirement(on, "karpenter.k8s.aws/instance-size")
    cpus = requirement(on, "karpenter.k8s.aws/instance-cpu")
    assert sizes and sizes["operator"] == "NotIn" and cpus and cpus["operator"] == "Gt"

    def allowed(name: str, vcpus: int) -> bool:
        return name.split(".")[1] not in sizes["values"] and vcpus > int(cpus["values"][0])

    for name, fact in SMALLEST_ALLOWED.items():
        assert allowed(name, fact[-1]), name
    for name, fact in EXCLUDED.items():
        assert max_pods_with_prefix_delegation([facts(name, fact)]) < MAX_PODS_BELOW_30_VCPUS, name
        assert not allowed(name, fact[-1]), name


def requirement(graph: Graph, key: str) -> dict[str, Any] | None:
    found = [r for r in node_pool(graph)["template"]["spec"]["requirements"] if r["key"] == key]
    assert len(found) <= 1
    return found[0] if found else None


def test_nitro_only_with_prefix_delegation(on):
    assert requirement(on, "karpenter.k8s.aws/instance-hypervisor") == {
        "key": "karpenter.k8s.aws/instance-hypervisor", "operator": "In", "values": ["nitro"],
    }  # fmt: skip
    off = run_ok({"karpenter.enabled": True, "cilium.prefixDelegation": False})
    assert requirement(off, "karpenter.k8s.aws/instance-hypervisor") is None
    # without prefixes Karpenter's own per-type ENI count is right: no max pods override
    assert "kubelet" not in node_class(off)


@pytest.mark.parametrize(("types", "arch"), [(["t3.medium"], "amd64"), (["m7g.large"], "arm64")])
def test_one_architecture_the_managed_nodes(types, arch):
    graph = run_ok({"karpenter.enabled": True, "nodes.instanceTypes": types})
    assert requirement(graph, "kubernetes.io/arch")["values"] == [arch]


def test_the_nodepool_boots_every_node_into_cilium(on):
    (taint,) = node_pool(on)["template"]["spec"]["startupTaints"]
    managed = on.one("eks:index:ManagedNodeGroup").inputs["taints"][0]
    # the managed nodes' taint, in the Kubernetes spelling (the EKS API says NO_EXECUTE)
    assert (taint["key"], taint["value"]) == (managed["key"], managed["value"])
    assert (taint["effect"], managed["effect"]) == ("NoExecute", "NO_EXECUTE")


def test_the_nodepool_follows_the_config():
    graph = run_ok({"karpenter": {"enabled": True, "capacityTypes": ["spot", "on-demand"],
                                  "instanceFamilies": ["m7i", "c7i"], "cpuLimit": "64",
                                  "memoryLimit": "256Gi"}})  # fmt: skip
    assert requirement(graph, "karpenter.sh/capacity-type")["values"] == ["spot", "on-demand"]
    assert requirement(graph, "karpenter.k8s.aws/instance-family")["values"] == ["m7i", "c7i"]
    assert requirement(graph, "karpenter.k8s.aws/instance-category") is None  # families win
    assert node_pool(graph)["limits"] == {"cpu": "64", "memory": "256Gi"}


def test_the_nodepool_meets_its_crds_rules(on):
    spec = node_pool(on)
    template = spec["template"]["spec"]
    assert template["nodeClassRef"] == {
        "group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default",
    }  # fmt: skip
    for req in template["requirements"]:
        assert req["operator"] in ("In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt")
        assert req["operator"] not in ("In",) or req["values"]
        assert (
            not req["key"].startswith("karpenter.sh/") or req["key"] == "karpenter.sh/capacity-type"
        )
    duration = r"^(([0-9]+(s|m|h))+|Never)$"
    assert re.match(duration, template["expireAfter"])
    assert re.match(r"^([0-9]+(s|m|h))+$", template["terminationGracePeriod"])
    disruption = spec["disruption"]
    assert re.match(duration, disruption["consolidateAfter"])  # required once disruption is set
    assert disruption["consolidationPolicy"] in (
        "WhenEmpty",
        "WhenEmptyOrUnderutilized",
        "Balanced",
    )
    assert all(re.match(r"^((100|[0-9]{1,2})%|[0-9]+)$", b["nodes"]) for b in disruption["budgets"])


# --- order: the nodes go before the controller ----------------------------------------------------


def test_destroy_deletes_the_nodepool_and_nodeclass_before_the_controller(on):
    controller, node_class_, pool = (
        on.one(RELEASE, "karpenter"),
        on.one(NODE_CLASS),
        on.one(NODE_POOL),
    )
    # destroy deletes a resource only after everything that depends on it
    assert on.waits_for(pool, node_class_) and on.waits_for(node_class_, controller)
    assert on.waits_for(node_class_, karpenters(on, "aws:eks/accessEntry:AccessEntry"))
    # the NodeClass's delete waits for Karpenter to terminate its nodes (its finalizer)
    assert node_class_.custom_timeouts["delete"].endswith("m")
    assert int(node_class_.custom_timeouts["delete"][:-1]) >= 60


def test_the_eni_sweep_runs_after_karpenter_is_gone(on):
    sweeper = on.one("pulumi-python:dynamic:EniSweeper")
    assert on.waits_for(on.one(RELEASE, "karpenter"), sweeper)
    assert on.waits_for(on.one(RELEASE, "karpenter-crd"), sweeper)


def test_with_the_image_cache_karpenters_nodes_may_pull_through_it():
    graph = run_ok({"karpenter.enabled": True, "network.vpcEndpoints": True})
    policy = karpenters(graph, POLICY, "node-image-cache")
    assert "ecr:BatchImportUpstreamImage" in policy.inputs["policy"]


# Kubernetes quantities: decimal SI suffixes m, k, M, G, T, P, E and binary ones Ki, Mi, Gi,
# Ti, Pi, Ei, powers of 1024 (kubernetes.io/docs/reference/kubernetes-api/common-definitions/
# quantity/). The checks' time budget counts Karpenter's nodes from its CPU limit.
@pytest.mark.parametrize(
    ("quantity", "cores"),
    [
        ("500m", 0.5), ("64", 64), ("1.5", 1.5), ("2k", 2000), ("1M", 10**6), ("1G", 10**9),
        ("1T", 10**12), ("1P", 10**15), ("1E", 10**18), ("1Ki", 1024), ("1Mi", 1024**2),
        ("1Gi", 1024**3), ("1Ti", 1024**4), ("1Pi", 1024**5), ("2Ei", 2 * 1024**6),
    ],
)  # fmt: skip
def test_a_cpu_limit_counts_the_cores_kubernetes_reads_in_it(quantity, cores):
    assert cpu_cores(quantity) == pytest.approx(cores)
