"""components/aws_node.py: the DaemonSets EKS bootstraps and Cilium replaces, switched off
the way Cilium's EKS guide does: aws-node always, kube-proxy with kube-proxy replacement."""

from __future__ import annotations

import pytest

from tests.harness import run_ok

PATCH = "kubernetes:apps/v1:DaemonSetPatch"


def selector(patch) -> dict[str, str]:
    return patch.inputs["spec"]["template"]["spec"]["nodeSelector"]


@pytest.mark.parametrize("daemonset", ["aws-node", "kube-proxy"])
def test_each_bootstrap_daemonset_is_patched_onto_a_label_no_node_has(dev, daemonset):
    patch = dev.one(PATCH, daemonset)
    assert patch.inputs["metadata"]["name"] == daemonset
    assert patch.inputs["metadata"]["namespace"] == "kube-system"
    (key, value), *more = selector(patch).items()
    assert not more and key.startswith("io.cilium/") and value == "true"
    # no node carries it: the node group sets no labels at all
    assert not dev.one("eks:index:ManagedNodeGroup").inputs.get("labels")


def test_aws_node_keeps_the_label_of_cilium_s_guide(dev):
    # an existing stack's patch must not change (a changed selector would be re-applied)
    assert selector(dev.one(PATCH, "aws-node")) == {"io.cilium/aws-node-enabled": "true"}
    assert selector(dev.one(PATCH, "kube-proxy")) != selector(dev.one(PATCH, "aws-node"))


def test_kube_proxy_stays_when_cilium_does_not_replace_it():
    graph = run_ok({"cilium.kubeProxyReplacement": False})
    assert [p.name for p in graph.of_type(PATCH)] == ["aws-node"]


def test_the_patches_take_the_field_over_rather_than_fail_on_a_conflict(dev):
    for patch in dev.of_type(PATCH):
        assert patch.inputs["metadata"]["annotations"]["pulumi.com/patchForce"] == "true"


def test_the_daemonsets_it_patches_are_bootstrapped_by_eks(dev):
    # aws-node (with kube-proxy and CoreDNS) exists only if EKS bootstraps its
    # self-managed add-ons; a patch of a missing DaemonSet fails.
    assert dev.one("eks:index:Cluster").inputs["bootstrapSelfManagedAddons"] is True
