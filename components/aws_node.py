"""Switch off the DaemonSets EKS bootstraps that Cilium replaces, before any node exists.

Always `aws-node` (the AWS VPC CNI), and `kube-proxy` when Cilium's kube-proxy replacement
is on. Cilium's EKS install guide does it with a nodeSelector no node carries rather than
by deleting the DaemonSet: it is reversible (remove the patch) and EKS does not undo it,
whereas a deleted self-managed DaemonSet could be recreated by an EKS platform update.

Imports no other module of the program; the Cilium component (components/cilium.py) uses
it, and hands it the cluster's Kubernetes provider as its parent.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

# The labels Cilium's docs use; no node has them, so the DaemonSets schedule nowhere.
AWS_NODE_SELECTOR = {"io.cilium/aws-node-enabled": "true"}
KUBE_PROXY_SELECTOR = {"io.cilium/kube-proxy-enabled": "true"}


@dataclass
class AwsNodeOffArgs:
    kube_proxy: bool  # also switch off kube-proxy (cilium.kubeProxyReplacement)


class AwsNodeOff(pulumi.ComponentResource):
    """Server-side-apply patches of kube-system/aws-node (and kube-proxy), owned by the stack.

    Ordering: they need only the cluster, through the Kubernetes provider they inherit from
    their parent (the Cilium component, which refuses to go without one). The release
    waits for them, and the nodes wait for the release, so no node ever runs aws-node, and
    a new node never depends on kube-proxy to reach the API server (cilium/cilium #28807:
    removing kube-proxy once nodes exist leaves them unable to).
    """

    patches: list[k8s.apps.v1.DaemonSetPatch]

    def __init__(
        self, name: str, args: AwsNodeOffArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("cilium-eks:index:AwsNodeOff", name, None, opts)
        selectors = {"aws-node": AWS_NODE_SELECTOR}
        if args.kube_proxy:
            selectors["kube-proxy"] = KUBE_PROXY_SELECTOR
        self.patches = [
            k8s.apps.v1.DaemonSetPatch(
                daemonset,
                metadata=k8s.meta.v1.ObjectMetaPatchArgs(
                    name=daemonset,
                    namespace="kube-system",
                    # EKS's bootstrap owns the DaemonSet's fields; take this one over rather
                    # than fail with a field-manager conflict.
                    annotations={"pulumi.com/patchForce": "true"},
                ),
                spec=k8s.apps.v1.DaemonSetSpecPatchArgs(
                    template=k8s.core.v1.PodTemplateSpecPatchArgs(
                        spec=k8s.core.v1.PodSpecPatchArgs(node_selector=selector)
                    )
                ),
                opts=pulumi.ResourceOptions(parent=self),
            )
            for daemonset, selector in selectors.items()
        ]
        self.register_outputs({})
