"""components/cilium.py: the operator's IRSA role, its ENI policy, the Helm release."""

from __future__ import annotations

import json

import pytest

from components.cluster import host_of
from components.teardown import eni_gc_tags
from tests.harness import run_ok

RELEASE = "kubernetes:helm.sh/v3:Release"

# The EC2 calls cilium-operator makes in this stack's mode (ENI IPAM, prefix delegation,
# ENI GC on, cluster.name and GC tags set, no excess-IP release, no instance tag filter),
# each with the source that makes it: 1.19 pkg/aws/ec2/ec2.go, 1.20 pkg/aws/api/api.go
# (renamed, same calls), callers in pkg/aws/eni (1.19) / pkg/aws/ipam (1.20).
OPERATOR_EC2_CALLS = {
    "ec2:DescribeNetworkInterfaces": "describeNetworkInterfaces; GetDetachedNetworkInterfaces (GC)",
    "ec2:DescribeVpcs": "describeVpcs <- InstancesManager.syncInfrastructure",
    "ec2:DescribeSubnets": "describeSubnets <- syncInfrastructure",
    "ec2:DescribeSecurityGroups": "describeSecurityGroups <- syncInfrastructure",
    "ec2:DescribeRouteTables": "describeRouteTables <- syncInfrastructure",
    "ec2:DescribeInstanceTypes": "GetInstanceTypes <- limits.NewLimitsGetter (blocking at start)",
    "ec2:CreateNetworkInterface": "CreateNetworkInterface <- Node.CreateInterface (prefixes)",
    "ec2:AttachNetworkInterface": "AttachNetworkInterface <- Node.CreateInterface",
    "ec2:ModifyNetworkInterfaceAttribute": "ModifyNetworkInterface (DeleteOnTermination)",
    "ec2:DeleteNetworkInterface": "DeleteNetworkInterface <- eni_gc.go, attach rollback",
    "ec2:AssignPrivateIpAddresses": "AssignENIPrefixes / AssignPrivateIpAddresses <- AllocateIPs",
}
# Documented by Cilium but never called here (Required Privileges' conditions): granting
# them would be more than the operator needs.
NOT_CALLED_HERE = {
    "ec2:UnassignPrivateIpAddresses": "only with eni.awsReleaseExcessIPs (default false)",
    "ec2:DescribeTags": "only with cluster.name 'default' and no eni.gcTags",
    "ec2:DescribeInstances": "only with eni.instanceTagsFilter or toGroups.aws",
    "ec2:DescribeAvailabilityZones": "never (the AZ comes from DescribeSubnets)",
    "ec2:DetachNetworkInterface": "never",
}


def test_operator_role_trusts_only_the_cilium_operator_service_account(dev):
    role = dev.one("aws:iam/role:Role", "operator")
    (stmt,) = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
    issuer = "oidc.eks.ap-northeast-2.amazonaws.com/id/CILIUM-EKS-DEV"  # the mock's issuer
    assert stmt["Effect"] == "Allow" and stmt["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert stmt["Principal"] == {"Federated": f"arn:aws:iam::123456789012:oidc-provider/{issuer}"}
    assert stmt["Condition"] == {
        "StringEquals": {
            f"{issuer}:sub": "system:serviceaccount:kube-system:cilium-operator",
            f"{issuer}:aud": "sts.amazonaws.com",
        }
    }
    assert dev.waits_for(role, dev.one("eks:index:Cluster"))


def test_operator_policy_grants_exactly_the_ec2_calls_it_makes(dev):
    policy = dev.one("aws:iam/rolePolicy:RolePolicy", "operator-eni")
    assert policy.inputs["role"] == "operator"
    calls, delete, tag_on_create = json.loads(policy.inputs["policy"])["Statement"]
    granted = {*calls["Action"], delete["Action"]}
    assert granted == set(OPERATOR_EC2_CALLS)
    assert not granted & set(NOT_CALLED_HERE)
    assert calls["Effect"] == "Allow" and not [a for a in granted if "*" in a]
    # EC2's Describe calls take no narrower resource, and the ENIs the operator creates
    # have no ARN yet: anything else and the operator gets AccessDenied on its first ENI
    assert calls["Resource"] == "*"
    # the GC tags are sent with CreateNetworkInterface (TagSpecifications), which EC2
    # authorizes as CreateTags too: allowed for that, on network interfaces only
    assert tag_on_create == {
        "Effect": "Allow",
        "Action": "ec2:CreateTags",
        "Resource": "arn:aws:ec2:*:*:network-interface/*",
        "Condition": {"StringEquals": {"ec2:CreateAction": "CreateNetworkInterface"}},
    }


def test_operator_deletes_only_this_cluster_s_enis(dev):
    """Cilium deletes only ENIs it created, each with its GC tags (components/cilium.py
    ENI_DELETE cites where): the delete carries the cluster-name GC tag as a condition,
    with the value the chart is given, so another cluster's ENI (or anyone's) is refused."""
    policy = json.loads(dev.one("aws:iam/rolePolicy:RolePolicy", "operator-eni").inputs["policy"])
    (delete,) = [s for s in policy["Statement"] if "ec2:DeleteNetworkInterface" in s["Action"]]
    assert delete["Action"] == "ec2:DeleteNetworkInterface"  # alone under its condition
    assert delete["Resource"] == "arn:aws:ec2:*:*:network-interface/*"
    gc_tags = dev.one(RELEASE).inputs["values"]["eni"]["gcTags"]
    cluster_tag = "io.cilium/cluster-name"
    assert delete["Condition"] == {
        "StringEquals": {f"aws:ResourceTag/{cluster_tag}": gc_tags[cluster_tag]}
    }
    assert gc_tags[cluster_tag] == "cilium-eks-dev"
    # the other ENI calls stay unconditioned: the node's primary ENI carries no Cilium tag
    others = [s for s in policy["Statement"] if "Condition" not in s]
    assert [s["Resource"] for s in others] == ["*"]


def test_every_cilium_eni_carries_the_stack_s_tags(dev):
    """The deploy role's ENI sweep may delete only ENIs tagged project=cilium-eks
    (docs/iam/deploy-policy.json): Cilium puts eni.eniTags (and its GC tags) on every ENI
    it creates, so the chart gets the stack's tags, the ones the AWS provider puts on
    everything else."""
    values = dev.one(RELEASE).inputs["values"]
    provider = dev.one("pulumi:providers:aws")
    assert values["eni"]["eniTags"] == json.loads(provider.inputs["defaultTags"])["tags"]
    assert values["eni"]["eniTags"]["project"] == "cilium-eks"


def test_operator_policy_arns_follow_the_partition():
    policy = run_ok({"aws:region": "cn-north-1"}).one("aws:iam/rolePolicy:RolePolicy")
    (_, delete, tag_on_create) = json.loads(policy.inputs["policy"])["Statement"]
    assert tag_on_create["Resource"].startswith("arn:aws-cn:ec2:")
    assert delete["Resource"].startswith("arn:aws-cn:ec2:")


def test_release_is_the_pinned_cilium_chart_without_awaiting_pods(dev):
    release = dev.one(RELEASE)
    assert release.inputs["chart"] == "cilium"
    assert release.inputs["version"] == "1.19.6"
    assert release.inputs["repositoryOpts"] == {"repo": "https://helm.cilium.io"}
    assert release.inputs["namespace"] == "kube-system"
    assert release.inputs["name"] == "cilium"  # no random suffix: `helm -n kube-system ls`
    # The node group waits for this release; awaiting pods that need nodes would deadlock.
    assert release.inputs["skipAwait"] is True


def test_release_values_for_eni_ipam_native_routing_and_hubble(dev):
    values = dev.one(RELEASE).inputs["values"]
    assert values["eni"]["enabled"] is True
    assert values["ipam"]["mode"] == "eni"
    assert values["routingMode"] == "native"
    assert values["cluster"]["name"] == dev.one("eks:index:Cluster").inputs["name"]
    assert values["hubble"]["enabled"] is True
    assert values["hubble"]["relay"]["enabled"] is True
    assert values["hubble"]["ui"]["enabled"] is True
    # The seed's egressMasqueradeInterfaces=eth0 is wrong on AL2023 (ens*); not set.
    assert "egressMasqueradeInterfaces" not in values
    assert "tunnel" not in values  # removed from the chart in 1.15


def test_values_that_changed_between_minors_are_set_explicitly(dev):
    values = dev.one(RELEASE).inputs["values"]
    # ENI mode masqueraded before 1.18 and does not since: pods keep their VPC addresses
    assert values["enableIPv4Masquerade"] is False
    assert values["enableIPv6Masquerade"] is False  # the chart's default is on
    # the ENI garbage-collection tags ("auto-detected" cluster name by default), which
    # the teardown sweep selects by: Cilium's documented keys, this cluster's name
    assert values["eni"]["gcTags"] == {
        "io.cilium/cilium-managed": "true",
        "io.cilium/cluster-name": "cilium-eks-dev",
    }
    assert values["eni"]["gcTags"] == eni_gc_tags("cilium-eks-dev")  # one fact, two users


def test_hubble_certificates_are_made_by_the_chart_s_cronjob(dev):
    # Helm-made certificates (method helm) change on every render: a diff on every
    # `pulumi up`. certmanager needs cert-manager, which this stack does not install.
    assert dev.one(RELEASE).inputs["values"]["hubble"]["tls"]["auto"]["method"] == "cronJob"


def test_kube_proxy_replacement_reaches_the_api_server_by_its_host_name(dev):
    release = dev.one(RELEASE)
    values = release.inputs["values"]
    assert values["kubeProxyReplacement"] is True
    # the mock's endpoint is https://<NAME>.gr7.<region>.eks.amazonaws.com
    assert values["k8sServiceHost"] == "CILIUM-EKS-DEV.gr7.ap-northeast-2.eks.amazonaws.com"
    assert values["k8sServicePort"] == 443
    assert dev.one("eks:index:Cluster").urn in release.property_dependencies["values"]


def test_without_kube_proxy_replacement_cilium_leaves_services_to_kube_proxy():
    values = run_ok({"cilium.kubeProxyReplacement": False}).one(RELEASE).inputs["values"]
    assert values["kubeProxyReplacement"] is False
    assert "k8sServiceHost" not in values and "k8sServicePort" not in values


@pytest.mark.parametrize("enabled", [True, False])
def test_prefix_delegation_follows_config(enabled):
    values = run_ok({"cilium.prefixDelegation": enabled}).one(RELEASE).inputs["values"]
    assert values["eni"]["awsEnablePrefixDelegation"] is enabled


@pytest.mark.parametrize(
    ("endpoint", "host"),
    [
        (
            "https://ABC123.gr7.eu-west-1.eks.amazonaws.com",
            "ABC123.gr7.eu-west-1.eks.amazonaws.com",
        ),
        (
            "https://abc.yl4.cn-north-1.eks.amazonaws.com.cn:443",
            "abc.yl4.cn-north-1.eks.amazonaws.com.cn",
        ),
    ],
)
def test_the_api_server_host_has_no_scheme_and_no_port(endpoint, host):
    assert host_of(endpoint) == host


@pytest.mark.parametrize("endpoint", ["https://10.0.1.5", "http://abc.eks.amazonaws.com", "abc"])
def test_an_endpoint_that_is_not_https_and_a_name_is_refused(endpoint):
    with pytest.raises(ValueError, match="not https://<DNS name>"):
        host_of(endpoint)


def test_operator_uses_its_irsa_role(dev):
    release = dev.one(RELEASE)
    role = dev.one("aws:iam/role:Role", "operator")
    assert release.inputs["values"]["eni"]["iamRole"] == "arn:aws:iam::123456789012:role/operator"
    assert role.urn in release.property_dependencies["values"]


def test_pod_enis_are_kept_in_the_private_subnets(dev):
    values = dev.one(RELEASE).inputs["values"]
    assert sorted(values["eni"]["subnetIDsFilter"]) == dev.subnet_ids("private")


@pytest.mark.parametrize(("nodes", "replicas"), [(1, 1), (2, 2), (3, 2), (4, 2)])
def test_operator_replicas_never_exceed_the_node_count_but_keep_a_standby(nodes, replicas):
    # anti-affine (one per node), leader-elected: one works, one stands by, more is waste
    graph = run_ok({"nodes.minSize": nodes, "nodes.desiredSize": nodes, "nodes.maxSize": 4})
    assert graph.one(RELEASE).inputs["values"]["operator"]["replicas"] == replicas


@pytest.mark.parametrize(
    ("encryption", "expected"),
    [("wireguard", {"enabled": True, "type": "wireguard"}), ("none", {"enabled": False})],
)
def test_pod_traffic_encryption_follows_config(encryption, expected):
    values = run_ok({"cilium.encryption": encryption}).one(RELEASE).inputs["values"]
    assert values["encryption"] == expected


def test_wireguard_is_the_default(dev):
    assert dev.one(RELEASE).inputs["values"]["encryption"]["type"] == "wireguard"


def test_hubble_relay_serves_over_tls(dev):
    relay = dev.one(RELEASE).inputs["values"]["hubble"]["relay"]
    assert relay["tls"]["server"]["enabled"] is True


@pytest.mark.parametrize("compatibility", [None, "1.19"])
def test_upgrade_compatibility_reaches_the_chart_only_when_set(compatibility):
    overrides = {"cilium.version": "1.20.0", "cilium.upgradeCompatibility": compatibility}
    values = run_ok(overrides).one(RELEASE).inputs["values"]
    # a fresh install sets nothing (the chart's defaults of its own minor)
    assert values.get("upgradeCompatibility") == compatibility


def test_hubble_ui_and_relay_follow_config():
    values = run_ok({"cilium.hubble.ui": False}).one(RELEASE).inputs["values"]["hubble"]
    assert values["ui"]["enabled"] is False and values["relay"]["enabled"] is True


def test_chart_version_follows_config():
    assert run_ok({"cilium.version": "1.20.0"}).one(RELEASE).inputs["version"] == "1.20.0"


# --- the datapath, tuned (docs/performance.md; rendered in tests/test_cilium_chart.py) ---

# The chart's own bpf.mapDynamicSizeRatio (values.yaml `@default`, 1.19 and 1.20); the
# tuning asks for at least twice that.
CHART_MAP_DYNAMIC_SIZE_RATIO = 0.0025


def test_the_datapath_is_tuned_by_default(dev):
    values = dev.one(RELEASE).inputs["values"]
    bpf = values["bpf"]
    assert bpf["hostLegacyRouting"] is False  # eBPF host routing, stated
    assert bpf["distributedLRU"] == {"enabled": True}
    assert bpf["mapDynamicSizeRatio"] >= 2 * CHART_MAP_DYNAMIC_SIZE_RATIO
    assert bpf["datapathMode"] == "veth"  # netkit is an option, not the default
    assert values["bandwidthManager"] == {"enabled": True, "bbr": True}
    assert values["loadBalancer"]["algorithm"] == "maglev"


def test_what_is_kept_off_is_stated(dev):
    values = dev.one(RELEASE).inputs["values"]
    assert values["enableIPv4BIGTCP"] is False and values["enableIPv6BIGTCP"] is False
    assert values["loadBalancer"]["acceleration"] == "disabled"  # no XDP
    assert values["loadBalancer"]["mode"] == "snat"  # no DSR
    assert "tproxy" not in values["bpf"]  # off: the chart refuses it with netkit
    # nothing that would make Cilium fall back to legacy routing: no iptables masquerading
    # (pkg/kpr/initializer FinishKubeProxyReplacementInit), no IPsec
    assert values["enableIPv4Masquerade"] is False
    assert values["encryption"].get("type") != "ipsec"


def test_without_kube_proxy_replacement_the_tuning_cilium_would_refuse_is_not_asked():
    values = run_ok({"cilium.kubeProxyReplacement": False}).one(RELEASE).inputs["values"]
    # Cilium routes the legacy way without kube-proxy replacement: said so, and BBR (which
    # then stops the agent) and the bandwidth manager are not asked for
    assert values["bpf"]["hostLegacyRouting"] is True
    assert values["bandwidthManager"] == {"enabled": False, "bbr": False}
    assert "algorithm" not in values["loadBalancer"]
    assert values["bpf"]["distributedLRU"] == {"enabled": True}  # independent of routing
