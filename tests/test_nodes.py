"""components/nodes.py: what the program passes pulumi-eks's (remote) ManagedNodeGroup, the
nodes' launch template, and the CoreDNS add-on.

The rules of pulumi-eks's nodejs/eks/nodes/nodegroup.ts (createManagedNodeGroup) that
these inputs touch are checked here, since under mocks the plugin never sees them.
"""

from __future__ import annotations

import base64
import email
import json

import pytest
import yaml

from components.config import InstanceType
from components.nodes import max_pods_with_prefix_delegation
from tests.harness import mock_id, run_ok

NODE_GROUP = "eks:index:ManagedNodeGroup"
TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"


def test_nodes_are_al2023_in_private_subnets(dev):
    inputs = dev.one(NODE_GROUP).inputs
    assert inputs["operatingSystem"] == "AL2023"
    assert inputs.get("amiType", "AL2023").startswith("AL2023")
    # Without subnetIds pulumi-eks uses every cluster subnet, public ones included.
    assert sorted(inputs["subnetIds"]) == dev.subnet_ids("private")


def test_nodes_use_the_stacks_launch_template_that_keeps_imds_from_pods(dev):
    template = dev.one(TEMPLATE)
    # IMDSv2 only, one hop: a pod's request (one hop further than the host) gets no answer
    assert template.inputs["metadataOptions"] == {
        "httpEndpoint": "enabled",
        "httpTokens": "required",
        "httpPutResponseHopLimit": 1,
    }
    reference = dev.one(NODE_GROUP).inputs["launchTemplate"]
    assert reference["id"] == mock_id(template)
    assert reference["version"] == "1"  # the template's latest version, as a string
    assert dev.one(NODE_GROUP).property_dependencies["launchTemplate"] == [template.urn]


def test_the_node_group_follows_the_clusters_kubernetes_version(dev):
    # With a custom launch template pulumi-eks no longer defaults the group's version to
    # the cluster's: without it an upgrade would leave the nodes behind.
    assert dev.one(NODE_GROUP).inputs["version"] == dev.one("eks:index:Cluster").inputs["version"]
    assert run_ok({"kubernetesVersion": "1.36"}).one(NODE_GROUP).inputs["version"] == "1.36"


def test_nodes_carry_the_cilium_agent_not_ready_taint(dev):
    taints = dev.one(NODE_GROUP).inputs["taints"]
    assert {
        "key": "node.cilium.io/agent-not-ready",
        "value": "true",
        "effect": "NO_EXECUTE",
    } in taints
    # nodegroup.ts mapMngTaintEffect accepts only these effects.
    assert all(t["effect"] in {"NO_SCHEDULE", "NO_EXECUTE", "PREFER_NO_SCHEDULE"} for t in taints)


def test_scaling_follows_config(dev):
    inputs = dev.one(NODE_GROUP).inputs
    assert inputs["scalingConfig"] == {"desiredSize": 2, "minSize": 2, "maxSize": 4}
    assert inputs["instanceTypes"] == ["t3.medium"]
    graph = run_ok({"nodes.minSize": 1, "nodes.desiredSize": 3, "nodes.maxSize": 5})
    assert graph.one(NODE_GROUP).inputs["scalingConfig"] == {
        "desiredSize": 3,
        "minSize": 1,
        "maxSize": 5,
    }


def test_pulumi_eks_managed_node_group_argument_rules(dev):
    inputs = dev.one(NODE_GROUP).inputs
    # "You cannot specify both nodeRole and nodeRoleArn"; one of them is required.
    assert ("nodeRole" in inputs) != ("nodeRoleArn" in inputs)
    # A custom launchTemplate excludes enableIMDSv2, userData, kubeletExtraArgs,
    # bootstrapExtraArgs, nodeadmExtraOptions, amiId and enableEfaSupport.
    assert "launchTemplate" in inputs
    for refused in (
        "enableIMDSv2",
        "userData",
        "kubeletExtraArgs",
        "bootstrapExtraArgs",
        "nodeadmExtraOptions",
        "amiId",
        "enableEfaSupport",
        "diskSize",
    ):
        assert refused not in inputs, refused
    assert inputs["cluster"] == {"$ref": dev.one("eks:index:Cluster").urn}


def test_node_role_has_worker_and_ecr_policies_but_not_the_vpc_cni_policy(dev):
    role = dev.one("aws:iam/role:Role", "node")
    assert dev.one(NODE_GROUP).inputs["nodeRole"] == {"$ref": role.urn}
    (stmt,) = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
    assert stmt["Principal"] == {"Service": "ec2.amazonaws.com"}
    assert (stmt["Effect"], stmt["Action"]) == ("Allow", "sts:AssumeRole")
    attached = {
        a.inputs["policyArn"]
        for a in dev.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
        if a.inputs["role"] == "node"
    }
    assert attached == {
        "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy",
        "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly",
    }
    # The node group must not start before its role can do its job.
    ng = dev.one(NODE_GROUP)
    for attachment in dev.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment"):
        assert dev.waits_for(ng, attachment)


def test_the_node_role_can_join_the_cluster(dev):
    # nodegroup.ts: outside API/API_AND_CONFIG_MAP modes a managed node group whose role
    # is not in the cluster's instanceRoles is refused. In API mode EKS itself creates the
    # role's EC2_LINUX access entry when the managed node group is created.
    cluster = dev.one("eks:index:Cluster").inputs
    role = dev.one(NODE_GROUP).inputs["nodeRole"]
    assert cluster["authenticationMode"] in ("API", "API_AND_CONFIG_MAP") or role in cluster.get(
        "instanceRoles", []
    )


# --- max pods under prefix delegation ------------------------------------------------------


def node_config(graph) -> dict | None:
    """The NodeConfig in the launch template's MIME user data, None without user data."""
    user_data = graph.one(TEMPLATE).inputs.get("userData")
    if user_data is None:
        return None
    message = email.message_from_string(base64.b64decode(user_data).decode())
    assert message.is_multipart()  # EKS merges a MIME part into its own user data
    (part,) = [p for p in message.walk() if p.get_content_type() == "application/node.eks.aws"]
    return yaml.safe_load(part.get_payload())


# AWS's max-pods calculator with prefix delegation, from EC2's published limits:
# min(ENIs x (IPv4 per ENI - 1) x 16 + 2, 110 below 30 vCPUs else 250).
@pytest.mark.parametrize(
    ("types", "max_pods"),
    [
        (["t3.medium"], 110),  # 3 x 5 x 16 + 2 = 242, capped at 110 (2 vCPUs)
        (["t3.nano"], 34),  # 2 x 1 x 16 + 2 = 34, under the cap
        (["m5.8xlarge"], 250),  # 8 x 29 x 16 + 2, capped at 250 (32 vCPUs)
        (["c5.18xlarge", "m5.8xlarge"], 250),
        (["t3.nano", "t3.medium"], 34),  # every type of the group must honour it
        (["m7g.large"], 110),
    ],
)
def test_kubelet_max_pods_is_what_prefix_delegation_allows(types, max_pods):
    config = node_config(run_ok({"nodes.instanceTypes": types}))
    assert config is not None
    assert config["apiVersion"] == "node.eks.aws/v1alpha1" and config["kind"] == "NodeConfig"
    assert config["spec"] == {"kubelet": {"config": {"maxPods": max_pods}}}


@pytest.mark.parametrize(("vcpus", "cap"), [(29, 110), (30, 250)])
def test_the_cap_steps_up_at_30_vcpus(vcpus, cap):
    # the calculator's own boundary: below 30 vCPUs 110 pods, from 30 on 250
    big = InstanceType("x.large", ("x86_64",), True, max_enis=8, ipv4_per_eni=30, vcpus=vcpus)
    assert max_pods_with_prefix_delegation([big]) == cap


def test_without_prefix_delegation_eks_computes_max_pods():
    graph = run_ok({"cilium.prefixDelegation": False})
    assert node_config(graph) is None
    # the template still keeps IMDS from pods
    assert graph.one(TEMPLATE).inputs["metadataOptions"]["httpPutResponseHopLimit"] == 1


# --- CoreDNS -------------------------------------------------------------------------------


def test_coredns_is_an_eks_addon_that_adopts_the_bootstrap_copy(dev):
    addon = dev.one("aws:eks/addon:Addon", "coredns")
    assert addon.inputs["addonName"] == "coredns"
    assert addon.inputs["clusterName"] == "cilium-eks-dev"
    assert addon.inputs["resolveConflictsOnCreate"] == "OVERWRITE"
    # pinned to the version EKS names the default for the cluster's Kubernetes version
    # (the mock: v1.12.<minor>-eksbuild.1; the newest would be .3), so an upgrade moves it
    # along and nothing else does
    assert addon.inputs["addonVersion"] == "v1.12.35-eksbuild.1"
    upgraded = run_ok({"kubernetesVersion": "1.36"}).one("aws:eks/addon:Addon", "coredns")
    assert upgraded.inputs["addonVersion"] == "v1.12.36-eksbuild.1"
    # and pulumi-eks makes none of its own (it would be created before any node)
    assert dev.one("eks:index:Cluster").inputs["corednsAddonOptions"]["enabled"] is False
