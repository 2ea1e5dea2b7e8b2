"""components/cluster.py: what the program passes pulumi-eks's (remote) Cluster.

Under mocks a remote component's children are invisible and its own argument checks do
not run (they live in the provider plugin), so the rules of pulumi-eks's
nodejs/eks/cluster/cluster.ts that these inputs touch are checked here.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from components.cluster import access_entry_key
from tests.harness import Graph, Resource, mock_id, run_ok

CLUSTER = "eks:index:Cluster"
SUBNET = "aws:ec2/subnet:Subnet"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
ROLE = "aws:iam/role:Role"
ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"


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
    for prop in ("roleMappings", "userMappings", "instanceRoles"):
        assert not inputs.get(prop), prop
    assert inputs["subnetIds"]
    assert "publicSubnetIds" not in inputs and "privateSubnetIds" not in inputs


def control_plane_subnets(graph) -> list:
    return [s for s in graph.of_type(SUBNET) if s.name.startswith("control-plane-")]


def test_a_new_control_plane_gets_the_small_dedicated_subnets_of_every_az(dev):
    inputs = dev.one(CLUSTER).inputs
    dedicated = control_plane_subnets(dev)
    assert sorted(inputs["subnetIds"]) == sorted(mock_id(s) for s in dedicated)
    assert {s.inputs["availabilityZone"] for s in dedicated} == {
        s.inputs["availabilityZone"] for s in dev.of_type(SUBNET)
    }
    assert inputs["vpcId"] == "vpc-id"


# EKS user guide, "VPC and subnet requirements": "All subnets that you add must be in the
# same set of AZs as originally provided when you created the cluster"; a subnet update
# must still name one in each of them. So a live cluster keeps the subnets it has.
LIVE_CLUSTER = {
    "name": "cilium-eks-dev",
    "vpcId": "vpc-id",
    "subnetIds": ["control-plane-1-id", "control-plane-0-id", "control-plane-2-id"],
}


@pytest.mark.parametrize("az_count", [3, 4])
def test_a_live_control_plane_keeps_its_subnets_when_azs_are_added(az_count):
    graph = run_ok({"network.azCount": az_count}, world={"eksCluster": LIVE_CLUSTER})
    cluster = graph.one(CLUSTER)
    assert cluster.inputs["subnetIds"] == sorted(LIVE_CLUSTER["subnetIds"])
    # the new AZ is for nodes and pods
    assert len(graph.subnet_ids("private")) == az_count
    node_group = graph.one("eks:index:ManagedNodeGroup")
    assert sorted(node_group.inputs["subnetIds"]) == graph.subnet_ids("private")
    values = graph.one("kubernetes:helm.sh/v3:Release").inputs["values"]
    assert sorted(values["eni"]["subnetIDsFilter"]) == graph.subnet_ids("private")


def test_a_stack_from_before_the_dedicated_subnets_keeps_its_public_and_private_ones(dev):
    # an older stack's cluster was created in the public and private subnets: kept as is
    old = {**LIVE_CLUSTER, "subnetIds": [*dev.subnet_ids("public"), *dev.subnet_ids("private")]}
    cluster = run_ok(world={"eksCluster": old}).one(CLUSTER)
    assert cluster.inputs["subnetIds"] == sorted(old["subnetIds"])


def test_a_cluster_of_the_same_name_in_another_vpc_is_not_adopted(dev):
    other = {**LIVE_CLUSTER, "vpcId": "vpc-elsewhere"}
    cluster = run_ok(world={"eksCluster": other}).one(CLUSTER)
    assert sorted(cluster.inputs["subnetIds"]) == sorted(
        mock_id(s) for s in control_plane_subnets(dev)
    )


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


def test_viewers_get_read_only_access_entries_that_cannot_read_secrets():
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
    # EKS docs, "Review access policy permissions": AmazonEKSViewPolicy reads most objects
    # but no Secret; AmazonEKSAdminViewPolicy reads every resource ("*"), Secrets (every
    # token, the mesh's CA key) included. A preview needs none (docs/operations.md).
    assert policy["policyArn"] == "arn:aws:eks::aws:cluster-access-policy/AmazonEKSViewPolicy"
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
    logs = dev.one(LOG_GROUP)
    cluster = dev.one(CLUSTER)
    # the name EKS writes to, created before the cluster so EKS does not make its own
    # (unbounded)
    assert logs.inputs["name"] == f"/aws/eks/{cluster.inputs['name']}/cluster"
    # a value CloudWatch Logs accepts (PutRetentionPolicy refuses any other)
    assert logs.inputs["retentionInDays"] in {1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365}
    # a property dependency: it reaches inside pulumi-eks, where depends_on would not
    assert logs.urn in cluster.property_dependencies["name"]
    # nothing to adopt in a fresh account
    assert logs.import_id is None


def test_destroy_keeps_the_log_group_bounded_for_the_next_stack_of_the_name(dev):
    # EKS writes (and re-creates) the group until the cluster is gone: deleted with the
    # stack it could come back without retention (terraform-aws-eks #920). Kept, it keeps
    # its 30 days, and `make up` of the same name adopts it.
    assert dev.one(LOG_GROUP).retain_on_delete is True


@pytest.mark.parametrize("made_by", ["eks", "an earlier stack of the same name"])
def test_an_existing_log_group_is_adopted_not_created_again(made_by):
    # ResourceAlreadyExistsException otherwise (terraform-aws-eks #920, #2763). The import
    # is followed by an update to the declared retention (Pulumi 3.174+, which the
    # preflight requires), so EKS's unbounded group gets its bound in the same `up`.
    group = "/aws/eks/cilium-eks-dev/cluster"
    logs = run_ok(world={"logGroups": [group, group + "-other"]}).one(LOG_GROUP)
    assert logs.import_id == group
    assert logs.inputs["retentionInDays"] == 30
    # a group of a longer name that starts alike is not ours
    other = run_ok(world={"logGroups": [group + "-other"]}).one(LOG_GROUP)
    assert other.import_id is None


@pytest.mark.parametrize("encryption", ["wireguard", "none"])
def test_nodes_accept_each_others_wireguard_traffic_on_the_cluster_security_group(encryption):
    graph = run_ok({"cilium.encryption": encryption})
    rules = graph.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    wireguard = [r for r in rules if r.name == "wireguard"]
    if encryption == "none":
        assert wireguard == []
        return
    (rule,) = wireguard
    # the security group EKS made for the cluster: managed nodes, Karpenter's nodes and
    # Cilium's ENIs carry it (pulumi-eks's clusterSecurityGroupId, skipDefaultSecurityGroups)
    assert rule.inputs["securityGroupId"] == "sg-cluster"
    assert rule.inputs["referencedSecurityGroupId"] == "sg-cluster"
    # Cilium's WireGuard listen port (pkg/wireguard/types ListenPort), UDP
    assert (rule.inputs["ipProtocol"], rule.inputs["fromPort"], rule.inputs["toPort"]) == (
        "udp",
        51871,
        51871,
    )


def test_public_endpoint_is_limited_to_the_configured_cidrs():
    cidrs = ["203.0.113.0/24", "198.51.100.7/32"]
    inputs = run_ok({"access.publicAccessCidrs": cidrs}).one(CLUSTER).inputs
    assert inputs["endpointPublicAccess"] is True  # pulumi-eks: cidrs need a public endpoint
    assert inputs["publicAccessCidrs"] == cidrs


# --- the cluster's IAM role -------------------------------------------------------------------
#
# pulumi-eks makes the cluster's role itself unless handed one, with no boundary option; the
# program hands it its own. What pulumi-eks 4.x makes, from its source (pulumi/pulumi-eks
# nodejs/eks at 7bf0c1b1, unchanged since v4.3.0), which a live stack holds:
# - cluster/cluster.ts 513-546: `new ServiceRole(`${name}-eksRole`, {service:
#   "eks.amazonaws.com", description: "Allows EKS to manage clusters on your behalf.",
#   managedPolicyArns: ["AmazonEKSClusterPolicy"] as {id: arn:aws:iam::aws:policy/P, arn:
#   arn:<partition>:...}, assumeRoleActions: ["sts:AssumeRole", "sts:TagSession"]},
#   {parent, provider})`, the parent being the eks:index:Cluster;
# - servicerole.ts 73 (type eks:index:ServiceRole), 89-97 (the role `${name}-role`),
#   100-111 (`${name}-${sha1hash(policy.id)}`), 20-25 (sha1hash: 8 hex digits).
PULUMI_EKS_SERVICE_ROLE = "eks:index:Cluster$eks:index:ServiceRole"
CLUSTER_POLICY_ID = "arn:aws:iam::aws:policy/AmazonEKSClusterPolicy"


def engine_urn(urn: str) -> str:
    """A URN as the engine writes it: the mocks qualify a top-level resource's type with
    the stack's (pulumi:pulumi:Stack$...), the engine qualifies with every ancestor but it."""
    return urn.replace("::pulumi:pulumi:Stack$", "::")


def service_role(graph: Graph) -> tuple[Resource, Resource]:
    """The cluster's IAM role and its one policy attachment (components/cluster.py)."""
    mine = graph.one("cilium-eks:index:Cluster").urn
    (role,) = [r for r in graph.of_type(ROLE) if r.parent == mine]
    (attachment,) = [a for a in graph.of_type(ATTACHMENT) if a.parent == mine]
    return role, attachment


def test_the_clusters_role_is_the_programs_as_pulumi_eks_would_make_it(dev):
    role, attachment = service_role(dev)
    assert role.inputs["description"] == "Allows EKS to manage clusters on your behalf."
    assert json.loads(role.inputs["assumeRolePolicy"]) == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Action": ["sts:AssumeRole", "sts:TagSession"],
                "Effect": "Allow",
                "Principal": {"Service": ["eks.amazonaws.com"]},
            }
        ],
    }
    # no name, no path (both would replace the role): a new stack's is auto-named, a live
    # stack's keeps the name it has (an aliased resource keeps its recorded name)
    assert "name" not in role.inputs and "path" not in role.inputs
    # the same inputs as pulumi-eks's attachment (its `role: role` reaches the provider as
    # the role's id, its name): anything else would replace it, and a replacement's delete,
    # which runs after the create, detaches the policy the new one found attached
    assert attachment.inputs == {"role": mock_id(role), "policyArn": CLUSTER_POLICY_ID}


def test_a_live_stack_adopts_the_role_pulumi_eks_made_with_its_attachment(dev):
    role, attachment = service_role(dev)
    prefix = "urn:pulumi:dev::cilium-eks::cilium-eks:index:Cluster$" + PULUMI_EKS_SERVICE_ROLE
    digest = hashlib.sha1(CLUSTER_POLICY_ID.encode()).hexdigest()[:8]
    assert [engine_urn(a) for a in role.aliases] == [f"{prefix}${ROLE}::eks-eksRole-role"]
    assert [engine_urn(a) for a in attachment.aliases] == [
        f"{prefix}${ATTACHMENT}::eks-eksRole-{digest}"
    ]
    assert digest == "4b490823"
    # pulumi-eks names them after the eks:index:Cluster the aliases count on
    assert dev.one(CLUSTER).name == "eks"


def test_the_cluster_is_handed_its_role_once_the_policy_is_attached(dev):
    # pulumi-eks sets the EKS cluster's roleArn from `pulumi.output(args.serviceRole).arn`
    # (cluster.ts 691-693) and, with a role handed in, makes its aws.eks.Cluster wait for
    # nothing else of it (758): the wait rides on this input's dependencies
    cluster, (role, attachment) = dev.one(CLUSTER), service_role(dev)
    assert cluster.inputs["serviceRole"] == {"$ref": role.urn}
    assert set(cluster.property_dependencies["serviceRole"]) == {role.urn, attachment.urn}


def test_pulumi_eks_makes_no_other_role(dev):
    # cluster.ts: the instance role only with a default node group or createInstanceRole
    # (944-947), the Auto Mode node role only with autoMode (627), the Fargate role only
    # with fargate (1116-1122), the creator role only with creationRoleProvider (340);
    # ManagedNodeGroup takes the node role it is handed (nodegroup.ts 1916-1920)
    inputs = dev.one(CLUSTER).inputs
    assert inputs["skipDefaultNodeGroup"] is True
    for unset in ("createInstanceRole", "autoMode", "fargate", "creationRoleProvider"):
        assert unset not in inputs, unset
    assert dev.one("eks:index:ManagedNodeGroup").inputs["nodeRole"]["$ref"].endswith("::node")


EVERY_FEATURE = {"karpenter.enabled": True, "network.vpcEndpoints": True, "mesh": {"clusterId": 1}}
BOUNDARY = "arn:aws:iam::123456789012:policy/cilium-eks-boundary"


@pytest.mark.parametrize("boundary", [BOUNDARY, None])
def test_every_role_the_program_makes_carries_the_boundary_when_set(boundary):
    graph = run_ok({**EVERY_FEATURE, "access.permissionsBoundaryArn": boundary})
    boundaries = {r.urn: r.inputs.get("permissionsBoundary") for r in graph.of_type(ROLE)}
    assert boundaries == dict.fromkeys(
        [
            f"urn:pulumi:dev::cilium-eks::cilium-eks:index:{role}"
            for role in (
                "Cluster$aws:iam/role:Role::service-role",
                "Cilium$aws:iam/role:Role::operator",
                "NodeGroup$aws:iam/role:Role::node",
                "Karpenter$aws:iam/role:Role::node",
                "Karpenter$aws:iam/role:Role::controller",
            )
        ],
        boundary,
    )
