"""Cilium in ENI IPAM mode with Hubble: the operator's IAM role (IRSA) and the Helm release.

The Helm values are all in components/cilium_values.py, each explained where it is set.

Imports the config and the cluster's, mesh's, teardown's and chart values' helpers; never
__main__.py.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.cilium_values import NAMESPACE, helm_values
from components.cluster import irsa_trust_policy
from components.config import CiliumConfig
from components.mesh import MeshValues
from components.teardown import CLUSTER_NAME_TAG

CHART_REPOSITORY = "https://helm.cilium.io"
OPERATOR_SERVICE_ACCOUNT = "cilium-operator"

# The EC2 calls cilium-operator makes in ENI mode with prefix delegation, ENI garbage
# collection on (the default) and this stack's settings, read from its source (1.19:
# pkg/aws/ec2/ec2.go; 1.20: pkg/aws/api/api.go, same calls): action -> why. Cilium's docs
# ("IPAM: AWS ENI" > "Required Privileges") list these and some that this stack never
# triggers: UnassignPrivateIpAddresses (only with eni.awsReleaseExcessIPs), DescribeTags
# (only when cluster.name is "default" and no GC tags are set), DescribeInstances (only
# with eni.instanceTagsFilter or toGroups.aws). Resource "*": the Describe calls take
# nothing narrower, and the ENIs to create, attach and modify have no ARN yet.
ENI_IAM_ACTIONS = {
    "ec2:DescribeNetworkInterfaces": "every resync and ENI GC (describeNetworkInterfaces)",
    "ec2:DescribeVpcs": "every resync (GetVpcs)",
    "ec2:DescribeSubnets": "every resync, free IPs per subnet (GetSubnets)",
    "ec2:DescribeSecurityGroups": "every resync, the ENIs' groups (GetSecurityGroups)",
    "ec2:DescribeRouteTables": "every resync (GetRouteTables)",
    "ec2:DescribeInstanceTypes": "ENI and address limits; the allocator fails without it",
    "ec2:CreateNetworkInterface": "a node needs another ENI (Ipv4PrefixCount with prefixes)",
    "ec2:AttachNetworkInterface": "the new ENI onto its node",
    "ec2:ModifyNetworkInterfaceAttribute": "DeleteOnTermination on each new ENI",
    "ec2:DeleteNetworkInterface": "ENI GC (every 5 min), and rollback of a failed attach",
    "ec2:AssignPrivateIpAddresses": "/28 prefixes (AssignENIPrefixes) or single IPs",
}
# CreateTags is never called on its own: the GC tags ride on CreateNetworkInterface's
# TagSpecifications, which EC2 authorizes as CreateTags too ("Grant permission to tag
# resources during creation"), so it is allowed for exactly that.
ENI_TAG_ON_CREATE = "ec2:CreateTags"


# The one destructive call, DeleteNetworkInterface, only on this cluster's ENIs: Cilium
# deletes only interfaces it created itself, and creates every one with its GC tags
# (pkg/ipam/allocator/aws/aws.go Init: "Make sure GC tags are also used for ENI creation",
# sent as CreateNetworkInterface's TagSpecifications, pkg/aws/ec2/ec2.go). It deletes them
# in two places: the GC, which lists only `available` ENIs carrying the GC tags
# (GetDetachedNetworkInterfaces, filtered by tag), and the rollback of a failed attach of
# the ENI it has just created (pkg/aws/eni/node.go CreateInterface). Both carry
# io.cilium/cluster-name = this cluster's name (eni_gc_tags), so the condition holds for
# every call Cilium makes and refuses any other cluster's or anyone else's ENI. EC2 takes
# aws:ResourceTag on DeleteNetworkInterface's network-interface resource (Service
# Authorization Reference, Amazon EC2). The other calls stay on "*": Cilium also assigns
# prefixes on, and describes, the node's primary ENI, which carries none of its tags.
ENI_DELETE = "ec2:DeleteNetworkInterface"


def eni_policy(partition: str, cluster_name: str) -> dict[str, Any]:
    """The operator's whole IAM policy (see ENI_IAM_ACTIONS and ENI_DELETE)."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": sorted(set(ENI_IAM_ACTIONS) - {ENI_DELETE}),
                "Resource": "*",
            },
            {
                "Effect": "Allow",
                "Action": ENI_DELETE,
                "Resource": f"arn:{partition}:ec2:*:*:network-interface/*",
                "Condition": {
                    "StringEquals": {f"aws:ResourceTag/{CLUSTER_NAME_TAG}": cluster_name}
                },
            },
            {
                "Effect": "Allow",
                "Action": ENI_TAG_ON_CREATE,
                "Resource": f"arn:{partition}:ec2:*:*:network-interface/*",
                "Condition": {"StringEquals": {"ec2:CreateAction": "CreateNetworkInterface"}},
            },
        ],
    }


# Hubble Relay serves TLS (helm_values): the CLI trusts the CA the chart's CronJob made
# (copied from the relay's server certificate Secret) and names a host its certificate,
# *.hubble-relay.cilium.io, covers (Cilium docs, "Configure TLS with Hubble": through a
# port-forward the server name must be given).
HUBBLE_CA_FILE = "hubble-ca.crt"
HUBBLE_RELAY_SERVER_NAME = "hubble.hubble-relay.cilium.io"
HUBBLE_RELAY_CERT_SECRET = "hubble-relay-server-certs"


def hubble_observe(filters: str) -> str:
    """`hubble observe` against the TLS relay that `cilium hubble port-forward` exposes."""
    tls = f"--tls --tls-ca-cert-files {HUBBLE_CA_FILE} --tls-server-name {HUBBLE_RELAY_SERVER_NAME}"
    return f"hubble observe {tls} {filters}"


def hubble_commands() -> dict[str, str]:
    """The Hubble commands for this stack, exact: relay behind TLS, UI on localhost:12000."""
    return {
        "hubbleCa": (
            f"kubectl -n {NAMESPACE} get secret {HUBBLE_RELAY_CERT_SECRET} "
            f"-o jsonpath='{{.data.ca\\.crt}}' | base64 -d > {HUBBLE_CA_FILE}"
        ),
        # the relay on localhost:4245 (cilium follows the Service to its TLS port, 443)
        "hubblePortForward": "cilium hubble port-forward",
        "hubbleObserve": hubble_observe("--follow"),
        "hubbleUi": "cilium hubble ui",
        "hubbleUiPortForward": f"kubectl -n {NAMESPACE} port-forward svc/hubble-ui 12000:80",
    }


# cilium-operator's pods are anti-affine (one per node): more replicas than nodes leaves
# one Pending forever. Two give a standby when there are two nodes or more.
MAX_OPERATOR_REPLICAS = 2


def operator_replicas(min_nodes: int) -> int:
    return min(MAX_OPERATOR_REPLICAS, min_nodes)


# The mesh CA's Secret: the name and keys certgen reads (chart templates, hubble/ and
# clustermesh-apiserver/tls-cronjob/_job-spec.tpl: --ca-secret-name=cilium-ca, in the
# release's namespace; certgen: ca.crt and ca.key).
MESH_CA_SECRET = "cilium-ca"
MESH_CA_ANNOTATIONS = {
    # A stack deployed before the CA left the values has a cilium-ca that Helm rendered
    # from tls.ca and owns. On the next up this Secret is applied first, then the release
    # is upgraded without it, and Helm deletes what left the chart unless the LIVE object
    # says keep (Helm 3 pkg/kube/client.go Update: for each object of the old manifest
    # not in the new one it reads the object and skips the delete on
    # helm.sh/resource-policy: keep; Helm docs, "Tell Helm Not To Uninstall a Resource").
    "helm.sh/resource-policy": "keep",
    # and this Secret takes over the fields Helm wrote (server-side apply conflicts with
    # another field manager's values otherwise, e.g. after cluster 1 made a new CA)
    "pulumi.com/patchForce": "true",
}


def mesh_ca_secret(
    mesh: MeshValues, provider: k8s.Provider, parent: pulumi.Resource
) -> k8s.core.v1.SecretPatch:
    """The mesh's CA as the cilium-ca Secret, applied before the Cilium release.

    A SecretPatch, i.e. a server-side apply that creates the Secret or takes over the
    existing one (pulumi-kubernetes provider/pkg/await/await.go Creation: Patch resources
    are always applied; a plain Secret is created with a client-side create since 4.29,
    which fails with AlreadyExists where Helm made cilium-ca, and its preview hides that
    failure). Its data is secret in the state and in previews.
    """
    return k8s.core.v1.SecretPatch(
        "mesh-ca",
        metadata=k8s.meta.v1.ObjectMetaPatchArgs(
            name=MESH_CA_SECRET, namespace=NAMESPACE, annotations=MESH_CA_ANNOTATIONS
        ),
        type="Opaque",
        data={"ca.crt": mesh.ca_cert, "ca.key": mesh.ca_key},
        opts=pulumi.ResourceOptions(parent=parent, provider=provider),
    )


@dataclass
class CiliumArgs:
    cluster_name: str
    config: CiliumConfig
    partition: str
    oidc_provider_arn: pulumi.Input[str]
    oidc_issuer: pulumi.Input[str]  # issuer URL without https://
    pod_subnet_ids: Sequence[pulumi.Input[str]]
    operator_replicas: int
    api_server_host: pulumi.Input[str]
    provider: k8s.Provider
    # aws-node (and kube-proxy, when replaced) must be off before Cilium is applied
    bootstrap_patches: Sequence[pulumi.Resource]
    # the ENI sweep: the release is deleted before it runs (components/teardown.py)
    eni_sweeper: pulumi.Resource
    # the stack's tags (components/provider.py stack_tags), put on every ENI Cilium makes
    eni_tags: Mapping[str, str]
    # the chart's image repositories through the ECR cache (network.vpcEndpoints)
    image_repositories: Mapping[tuple[str, ...], pulumi.Input[str]] | None = None
    mesh: MeshValues | None = None  # ClusterMesh (components/mesh.py)
    permissions_boundary: str | None = None  # access.permissionsBoundaryArn, on the role


class Cilium(pulumi.ComponentResource):
    """The operator's IRSA role and the `cilium` Helm release.

    Ordering: the release waits for aws-node (and kube-proxy) to be off, and does not wait
    for its own pods (`skip_await`): they cannot be Ready before nodes exist, and the node
    group waits for this release, so awaiting them would deadlock `pulumi up`. It also
    waits for the ENI sweeper, so that `pulumi destroy` removes it before the sweep runs.
    """

    release: k8s.helm.v3.Release
    operator_role: aws.iam.Role

    def __init__(
        self, name: str, args: CiliumArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("cilium-eks:index:Cilium", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        self.operator_role = aws.iam.Role(
            "operator",
            description=f"cilium-operator ENI IPAM in EKS cluster {args.cluster_name} (IRSA)",
            assume_role_policy=pulumi.Output.all(args.oidc_provider_arn, args.oidc_issuer).apply(
                lambda a: irsa_trust_policy(a[0], a[1], NAMESPACE, OPERATOR_SERVICE_ACCOUNT)
            ),
            permissions_boundary=args.permissions_boundary,
            opts=child,
        )
        operator_policy = aws.iam.RolePolicy(
            "operator-eni",
            role=self.operator_role.id,
            policy=json.dumps(eni_policy(args.partition, args.cluster_name)),
            opts=child,
        )

        mesh_ca = [mesh_ca_secret(args.mesh, args.provider, self)] if args.mesh else []
        self.release = k8s.helm.v3.Release(
            "cilium",
            name="cilium",
            chart="cilium",
            version=args.config.version,
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=CHART_REPOSITORY),
            namespace=NAMESPACE,
            values=helm_values(
                cluster_name=args.cluster_name,
                config=args.config,
                operator_role_arn=self.operator_role.arn,
                pod_subnet_ids=args.pod_subnet_ids,
                operator_replicas=args.operator_replicas,
                api_server_host=args.api_server_host,
                eni_tags=args.eni_tags,
                image_repositories=args.image_repositories,
                mesh=args.mesh,
            ),
            skip_await=True,
            opts=pulumi.ResourceOptions(
                parent=self,
                provider=args.provider,
                # The role's permissions must exist before the operator first calls EC2.
                # The mesh's CA too: certgen, which the release runs, signs with it.
                depends_on=[*args.bootstrap_patches, operator_policy, args.eni_sweeper, *mesh_ca],
            ),
        )
        self.register_outputs({"version": args.config.version})
