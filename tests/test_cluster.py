"""components/cluster.py: what the program passes pulumi-eks's (remote) Cluster.

Under mocks a remote component's children are invisible and its own argument checks do
not run (they live in the provider plugin), so the rules of pulumi-eks's
nodejs/eks/cluster/cluster.ts that these inputs touch are checked here.
"""

from __future__ import annotations

import pytest

from components.cluster import access_entry_key
from tests.harness import run_ok

CLUSTER = "eks:index:Cluster"


def test_cluster_has_no_node_group_and_no_managed_vpc_cni(dev):
    inputs = dev.one(CLUSTER).inputs
    assert inputs["skipDefaultNodeGroup"] is True
    # pulumi-eks enables its vpc-cni add-on unless useDefaultVpcCni is true, and ignores
    # vpcCniOptions when it is: neither may bring the AWS VPC CNI back under management.
    assert inputs["useDefaultVpcCni"] is True
    assert "vpcCniOptions" not in inputs
    # No CoreDNS add-on: with no nodes at creation it would time out DEGRADED.
    assert inputs["corednsAddonOptions"]["enabled"] is False


def test_no_security_groups_nobody_uses_and_no_silent_extended_support_bill(dev):
    inputs = dev.one(CLUSTER).inputs
    # pulumi-eks's own node and cluster security groups: no node carries them (managed
    # nodes and Cilium's ENIs use the security group EKS creates for the cluster)
    assert inputs["skipDefaultSecurityGroups"] is True
    assert "clusterSecurityGroup" not in inputs
    # EXTENDED (the default) bills $0.60/h instead of $0.10/h past standard support
    assert inputs["upgradePolicy"] == {"supportType": "STANDARD"}


@pytest.mark.parametrize("replaced", [True, False])
def test_kube_proxy_is_an_eks_addon_only_when_cilium_does_not_replace_it(replaced):
    inputs = run_ok({"cilium.kubeProxyReplacement": replaced}).one(CLUSTER).inputs
    assert inputs["kubeProxyAddonOptions"]["enabled"] is (not replaced)


def test_the_configured_cluster_name_names_the_cluster_everywhere():
    graph = run_ok({"clusterName": "team-a"})
    assert graph.one(CLUSTER).inputs["name"] == "team-a"
    values = graph.one("kubernetes:helm.sh/v3:Release").inputs["values"]
    assert values["cluster"]["name"] == "team-a"
    assert graph.one("pulumi-python:dynamic:EniSweeper").inputs["cluster_name"] == "team-a"
    assert graph.output("clusterName") == "team-a"


def test_cluster_security_settings(dev):
    inputs = dev.one(CLUSTER).inputs
    assert inputs["name"] == "cilium-eks-dev"
    assert inputs["version"] == "1.35"
    assert inputs["authenticationMode"] == "API"
    assert inputs["createOidcProvider"] is True
    assert inputs["endpointPrivateAccess"] is True
    assert {"api", "audit", "authenticator"} <= set(inputs["enabledClusterLogTypes"])
    assert dev.one("aws:kms/key:Key").inputs["enableKeyRotation"] is True


def test_secrets_are_encrypted_with_the_programs_kms_key(dev):
    cluster = dev.one(CLUSTER)
    key = dev.one("aws:kms/key:Key")
    # `pulumi destroy` schedules its deletion: the shortest wait AWS allows (7 to 30 days)
    assert key.inputs["deletionWindowInDays"] == 7
    assert cluster.property_dependencies["encryptionConfigKeyArn"] == [key.urn]
    assert cluster.inputs["encryptionConfigKeyArn"].startswith("arn:aws:kms:")


def test_api_mode_rules_of_pulumi_eks(dev):
    inputs = dev.one(CLUSTER).inputs
    # cluster.ts validateAuthenticationMode: in API mode roleMappings, userMappings and
    # instanceRoles must be empty; subnetIds excludes public/privateSubnetIds.
    for prop in ("roleMappings", "userMappings", "instanceRoles", "subnetIds"):
        assert not inputs.get(prop), prop


def test_cluster_gets_public_and_private_subnets(dev):
    inputs = dev.one(CLUSTER).inputs
    assert sorted(inputs["privateSubnetIds"]) == dev.subnet_ids("private")
    assert sorted(inputs["publicSubnetIds"]) == dev.subnet_ids("public")
    assert inputs["vpcId"] == "vpc-id"


def test_cluster_waits_for_its_subnets(dev):
    # (and not for NAT or routes: tests/test_order.py)
    cluster = dev.one(CLUSTER)
    for subnet in dev.of_type("aws:ec2/subnet:Subnet"):
        assert dev.waits_for(cluster, subnet)


def test_admin_principals_get_cluster_admin_access_entries():
    arns = ["arn:aws:iam::123456789012:role/ci/deployer", "arn:aws:iam::123456789012:user/alice"]
    entries = run_ok({"access.adminPrincipalArns": arns}).one(CLUSTER).inputs["accessEntries"]
    assert sorted(e["principalArn"] for e in entries.values()) == sorted(arns)
    for entry in entries.values():
        (policy,) = entry["accessPolicies"].values()
        assert policy["policyArn"] == (
            "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
        )
        assert policy["accessScope"] == {"type": "cluster"}


def test_viewers_get_read_only_access_entries_that_can_read_secrets():
    admin = "arn:aws:iam::123456789012:role/ci/deployer"
    viewer = "arn:aws:iam::123456789012:role/ci/previewer"
    entries = (
        run_ok({"access.adminPrincipalArns": [admin], "access.viewerPrincipalArns": [viewer]})
        .one(CLUSTER)
        .inputs["accessEntries"]
    )
    by_arn = {e["principalArn"]: e for e in entries.values()}
    assert set(by_arn) == {admin, viewer}
    # the keys name the association resources inside pulumi-eks: renamed, they are replaced
    assert list(by_arn[viewer]["accessPolicies"]) == ["cluster-viewer"]
    assert list(by_arn[admin]["accessPolicies"]) == ["cluster-admin"]
    (policy,) = by_arn[viewer]["accessPolicies"].values()
    # a preview reads the Helm release's Secret; AmazonEKSViewPolicy does not show Secrets
    assert policy["policyArn"] == "arn:aws:eks::aws:cluster-access-policy/AmazonEKSAdminViewPolicy"
    assert policy["accessScope"] == {"type": "cluster"}
    (policy,) = by_arn[admin]["accessPolicies"].values()
    assert policy["policyArn"].endswith("/AmazonEKSClusterAdminPolicy")


def test_access_entry_keys_are_stable_and_distinct():
    role = "arn:aws:iam::123456789012:role/ci/deployer"
    user = "arn:aws:iam::123456789012:user/ci/deployer"
    assert access_entry_key(role) == "role-ci-deployer"
    assert access_entry_key(role) != access_entry_key(user)
    assert access_entry_key("arn:aws:iam::123456789012:user/max") == "user-max"
    assert access_entry_key("arn:aws:iam::123456789012:role/a.b@c") == "role-a-b-c"


def test_no_admin_principals_means_no_access_entries(dev):
    assert not dev.one(CLUSTER).inputs.get("accessEntries")


def test_kubernetes_provider_is_built_from_the_clusters_kubeconfig(dev):
    provider = dev.one("pulumi:providers:kubernetes")
    cluster = dev.one(CLUSTER)
    assert provider.property_dependencies["kubeconfig"] == [cluster.urn]
    assert "cilium-eks-dev" in provider.inputs["kubeconfig"]


def test_kubernetes_provider_applies_server_side(dev):
    # DaemonSetPatch (aws-node, kube-proxy) exists only with server-side apply
    assert dev.of_type("kubernetes:apps/v1:DaemonSetPatch")
    assert dev.one("pulumi:providers:kubernetes").inputs["enableServerSideApply"] == "true"


def test_kubeconfig_is_exported_only_as_a_secret(dev):
    assert dev.outputs["kubeconfig"]["secret"] is True
    assert "cilium-eks-dev" in dev.output("kubeconfig")


def test_control_plane_logs_go_to_a_log_group_the_stack_owns(dev):
    logs = dev.one("aws:cloudwatch/logGroup:LogGroup")
    cluster = dev.one(CLUSTER)
    # the name EKS writes to, created before the cluster so EKS does not make its own
    # (unbounded, and left behind by `pulumi destroy`)
    assert logs.inputs["name"] == f"/aws/eks/{cluster.inputs['name']}/cluster"
    # a value CloudWatch Logs accepts (PutRetentionPolicy refuses any other)
    assert logs.inputs["retentionInDays"] in {1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365}
    # a property dependency: it reaches inside pulumi-eks, where depends_on would not
    assert logs.urn in cluster.property_dependencies["name"]


def test_public_endpoint_is_limited_to_the_configured_cidrs():
    cidrs = ["203.0.113.0/24", "198.51.100.7/32"]
    inputs = run_ok({"access.publicAccessCidrs": cidrs}).one(CLUSTER).inputs
    assert inputs["endpointPublicAccess"] is True  # pulumi-eks: cidrs need a public endpoint
    assert inputs["publicAccessCidrs"] == cidrs
