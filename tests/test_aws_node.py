"""components/aws_node.py: the AWS VPC CNI switched off the way Cilium's EKS guide does."""

from __future__ import annotations

PATCH = "kubernetes:apps/v1:DaemonSetPatch"


def test_aws_node_is_patched_onto_a_label_no_node_has(dev):
    patch = dev.one(PATCH)
    assert patch.inputs["metadata"]["name"] == "aws-node"
    assert patch.inputs["metadata"]["namespace"] == "kube-system"
    assert patch.inputs["spec"]["template"]["spec"]["nodeSelector"] == {
        "io.cilium/aws-node-enabled": "true"
    }


def test_the_patch_takes_the_field_over_rather_than_fail_on_a_conflict(dev):
    annotations = dev.one(PATCH).inputs["metadata"]["annotations"]
    assert annotations["pulumi.com/patchForce"] == "true"


def test_the_daemonset_it_patches_is_bootstrapped_by_eks(dev):
    # aws-node (with kube-proxy and CoreDNS) exists only if EKS bootstraps its
    # self-managed add-ons; a patch of a missing DaemonSet fails.
    assert dev.one("eks:index:Cluster").inputs["bootstrapSelfManagedAddons"] is True
