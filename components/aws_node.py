"""Switch off the AWS VPC CNI (the aws-node DaemonSet) before any node exists.

Cilium's EKS install guide does it with a nodeSelector no node carries rather than by
deleting the DaemonSet: it is reversible (remove the patch) and EKS does not undo it,
whereas a deleted self-managed aws-node could be recreated by an EKS platform update.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

# The label Cilium's docs use; no node has it, so aws-node schedules nowhere.
AWS_NODE_SELECTOR = {"io.cilium/aws-node-enabled": "true"}


@dataclass
class AwsNodeOffArgs:
    provider: k8s.Provider  # the cluster's provider; through it the patch waits for the cluster


class AwsNodeOff(pulumi.ComponentResource):
    """A server-side-apply patch of kube-system/aws-node, owned by this stack.

    Ordering: it needs only the cluster (through the provider). The Cilium release waits
    for it, and the nodes wait for the release, so no node ever runs aws-node.
    """

    patch: k8s.apps.v1.DaemonSetPatch

    def __init__(
        self, name: str, args: AwsNodeOffArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("cilium-eks:index:AwsNodeOff", name, None, opts)
        self.patch = k8s.apps.v1.DaemonSetPatch(
            "aws-node",
            metadata=k8s.meta.v1.ObjectMetaPatchArgs(
                name="aws-node",
                namespace="kube-system",
                # EKS's bootstrap owns the DaemonSet's fields; take this one over rather
                # than fail with a field-manager conflict.
                annotations={"pulumi.com/patchForce": "true"},
            ),
            spec=k8s.apps.v1.DaemonSetSpecPatchArgs(
                template=k8s.core.v1.PodTemplateSpecPatchArgs(
                    spec=k8s.core.v1.PodSpecPatchArgs(node_selector=AWS_NODE_SELECTOR)
                )
            ),
            opts=pulumi.ResourceOptions(parent=self, provider=args.provider),
        )
        self.register_outputs({})
