"""components/nodes.py: what the program passes pulumi-eks's (remote) ManagedNodeGroup.

The rules of pulumi-eks's nodejs/eks/nodes/nodegroup.ts (createManagedNodeGroup) that
these inputs touch are checked here, since under mocks the plugin never sees them.
"""

from __future__ import annotations

import json

NODE_GROUP = "eks:index:ManagedNodeGroup"


def test_nodes_are_al2023_in_private_subnets_with_imdsv2(dev):
    inputs = dev.one(NODE_GROUP).inputs
    assert inputs["operatingSystem"] == "AL2023"
    assert inputs.get("amiType", "AL2023").startswith("AL2023")
    assert inputs["enableIMDSv2"] is True
    # Without subnetIds pulumi-eks uses every cluster subnet, public ones included.
    assert sorted(inputs["subnetIds"]) == dev.subnet_ids("private")


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


def test_pulumi_eks_managed_node_group_argument_rules(dev):
    inputs = dev.one(NODE_GROUP).inputs
    # "You cannot specify both nodeRole and nodeRoleArn"; one of them is required.
    assert ("nodeRole" in inputs) != ("nodeRoleArn" in inputs)
    # enableIMDSv2 makes pulumi-eks build the launch template: a custom launchTemplate
    # excludes it, as it excludes userData, kubeletExtraArgs, bootstrapExtraArgs, amiId.
    assert "launchTemplate" not in inputs
    # amiId excludes amiType and gpu.
    assert "amiId" not in inputs
    assert inputs["cluster"] == {"$ref": dev.one("eks:index:Cluster").urn}


def test_node_role_has_worker_and_ecr_policies_but_not_the_vpc_cni_policy(dev):
    role = dev.one("aws:iam/role:Role", "node")
    assert dev.one(NODE_GROUP).inputs["nodeRole"] == {"$ref": role.urn}
    (stmt,) = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
    assert stmt["Principal"] == {"Service": "ec2.amazonaws.com"}
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
