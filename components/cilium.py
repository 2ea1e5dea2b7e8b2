"""Cilium for an EKS cluster, in ENI IPAM mode with Hubble: the `Cilium` component, a
component of the cilium-eks package any Pulumi language can use (components/package.py).

It does, on the cluster it is given, what this program does on its own: the operator's
IAM role (IRSA) and its ENI policy, aws-node (and kube-proxy) switched off, the mesh's CA
when in a ClusterMesh, the Helm release, and the ENI sweep that lets a destroy finish. The
Helm values are all in components/cilium_values.py, each explained where it is set.

No `from __future__ import annotations`: Pulumi's analyzer reads `CiliumArgs` and the
component's output annotations as objects (pulumi/provider/experimental/analyzer.py).

Imports the config, the generated input types, and the cluster's, aws-node's, teardown's
and chart values' helpers; the Stack component (components/stack.py) uses it.
"""

import base64
import json
from collections.abc import Mapping
from typing import Any, NotRequired, TypedDict

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components import inputs
from components.aws_node import AwsNodeOff, AwsNodeOffArgs
from components.cilium_values import NAMESPACE, ClusterMesh, helm_values
from components.cluster import host_of, irsa_trust_policy
from components.config import CLUSTER_NAME_RE, PROJECT, ConfigError, parse_cilium
from components.teardown import CLUSTER_NAME_TAG, Teardown, TeardownArgs

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


def mesh_ca_secret(mesh: ClusterMesh, parent: pulumi.Resource) -> k8s.core.v1.SecretPatch:
    """The mesh's CA as the cilium-ca Secret, applied before the Cilium release.

    A SecretPatch, i.e. a server-side apply that creates the Secret or takes over the
    existing one (pulumi-kubernetes provider/pkg/await/await.go Creation: Patch resources
    are always applied; a plain Secret is created with a client-side create since 4.29,
    which fails with AlreadyExists where Helm made cilium-ca, and its preview hides that
    failure). Its data is secret in the state and in previews.
    """

    def data(pem: pulumi.Input[str]) -> pulumi.Output[str]:
        text = pulumi.Output.from_input(pem)
        return pulumi.Output.secret(text.apply(lambda t: base64.b64encode(t.encode()).decode()))

    return k8s.core.v1.SecretPatch(
        "mesh-ca",
        metadata=k8s.meta.v1.ObjectMetaPatchArgs(
            name=MESH_CA_SECRET, namespace=NAMESPACE, annotations=MESH_CA_ANNOTATIONS
        ),
        type="Opaque",
        data={"ca.crt": data(mesh["ca_cert"]), "ca.key": data(mesh["ca_key"])},
        opts=pulumi.ResourceOptions(parent=parent),
    )


# The program's stacks before the package (0.2.0) had AwsNodeOff and Teardown at the stack's
# root; under this component an alias keeps their identities (and their children's, which
# the engine derives from their parent's), so a live stack updates rather than replaces.
# The root of THIS project's stack: an alias that names no project is the root of the
# deployment's, which in a consumer's program is the consumer's, where its own resources
# of the same name (its `aws.Provider("aws")`) would be claimed or refused as duplicates
# (pulumi/pulumi pkg/resource/deploy/step_generator.go collapseAliasToUrn, which takes
# the alias's project when it names one, and getOldResource). The config's namespace
# fixes the project's name (components/config/fields.py PROJECT). A consumer's project
# may have that name too (a mesh peer's must), so only this repository's program asks for
# the aliases (`adopt_program_urns`, through its Stack; not in the package's schema).
WAS_AT_THE_ROOT = pulumi.Alias(parent=pulumi.ROOT_STACK_RESOURCE, project=PROJECT)


class CiliumArgs(TypedDict):
    """The EKS cluster Cilium goes on (its facts, as pulumi-eks or aws.eks give them), its
    VPC's pod subnets, and the Cilium settings."""

    cluster_name: pulumi.Input[str]
    """The EKS cluster's name (its output: the ENI sweep waits for it), Cilium's cluster.name."""

    oidc_provider_arn: pulumi.Input[str]
    """The cluster's IAM OIDC provider ARN: cilium-operator's role trusts it (IRSA)."""

    cluster_endpoint: pulumi.Input[str]
    """The cluster's API endpoint, https://<host>: Cilium reaches it without kube-proxy."""

    vpc_id: pulumi.Input[str]
    """The cluster's VPC: where the ENI sweep looks for Cilium's leftover ENIs on destroy."""

    pod_subnet_ids: pulumi.Input[list[str]]
    """The subnets Cilium's ENIs (the pods' addresses) go in: the nodes' private subnets."""

    region: pulumi.Input[str]
    """The cluster's AWS region, where the ENI sweep runs."""

    cilium: NotRequired[inputs.CiliumConfig]
    """The `cilium` section of the stack config: its keys, with their defaults."""

    operator_replicas: NotRequired[int]
    """cilium-operator replicas, 1 or 2: at most the nodes (one each). Default: 2."""

    eni_tags: NotRequired[pulumi.Input[dict[str, str]]]
    """Tags for every ENI Cilium creates, besides its garbage-collection tags. Default: none."""

    image_registry: NotRequired[pulumi.Input[str]]
    """What stands for quay.io in the chart's images (an ECR pull-through cache). Default: none."""

    cluster_mesh: NotRequired[ClusterMesh]
    """The ClusterMesh this cluster joins (the Stack makes it from `mesh`). Default: none."""

    permissions_boundary_arn: NotRequired[pulumi.Input[str]]
    """An IAM managed policy put as permissions boundary on the operator's role. Default: none."""


class Cilium(pulumi.ComponentResource):
    """Cilium as an EKS cluster's only CNI, in ENI IPAM mode with Hubble: cilium-operator's
    IAM role (IRSA) with exactly the EC2 calls it makes, aws-node (and kube-proxy, with
    kube-proxy replacement) switched off, the Helm release, and a sweep of the ENIs
    Cilium leaves behind, which runs when the component is destroyed.

    Pass the cluster's Kubernetes provider in the resource options' `providers` (its
    children use it; there is no falling back to the ambient kubeconfig); an AWS provider
    there too, or the default one is used.

    Ordering: the release waits for aws-node (and kube-proxy) to be off, and does not wait
    for its own pods (`skip_await`): they cannot be Ready before nodes exist. So every
    node group must wait for this component (depends on it: on all its children), and
    carry Cilium's agent-not-ready taint (node.cilium.io/agent-not-ready=true:NoExecute),
    which the agent lifts once it runs on the node: a node that boots before the release,
    or a pod scheduled before the agent, would get an address from no CNI or from the
    wrong one. On destroy the release and the nodes go first, then the sweep, then the
    cluster and its subnets.
    """

    operator_role_arn: pulumi.Output[str]
    """The IAM role cilium-operator assumes (IRSA): the ENI calls it makes, no more."""

    version: str
    """The Cilium chart version installed."""

    def __init__(
        self,
        name: str,
        args: CiliumArgs,
        opts: pulumi.ResourceOptions | None = None,
        *,
        adopt_program_urns: bool = False,
    ) -> None:
        """`adopt_program_urns`: this repository's program only, through its Stack; the
        URNs its stacks had before the package are aliased (WAS_AT_THE_ROOT)."""
        # Refused before anything is declared: settings the stack config would refuse, and
        # a missing Kubernetes provider (which would put Cilium on whatever cluster the
        # ambient kubeconfig names).
        config = parse_cilium(args.get("cilium") or {})
        if kubernetes_provider(opts) is None:
            raise ValueError(
                f"Cilium {name!r}: no Kubernetes provider for the cluster; pass the one built "
                "from its kubeconfig (pulumi-eks: cluster.provider) in the resource options' "
                "providers, e.g. {providers: [cluster.provider]} in TypeScript or providers="
                "[cluster.provider] in Python, rather than let the ambient kubeconfig pick "
                "a cluster"
            )
        super().__init__("cilium-eks:index:Cilium", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        was = [WAS_AT_THE_ROOT] if adopt_program_urns else []
        cluster_name = pulumi.Output.from_input(args["cluster_name"]).apply(cilium_cluster_name)
        provider_arn = pulumi.Output.from_input(args["oidc_provider_arn"])

        teardown = Teardown(
            "teardown",
            TeardownArgs(
                region=args["region"],
                vpc_id=args["vpc_id"],
                cluster_name=cluster_name,
                subnet_ids=args["pod_subnet_ids"],
            ),
            opts=pulumi.ResourceOptions(parent=self, aliases=was),
        )
        bootstrap = AwsNodeOff(
            "aws-node-off",
            AwsNodeOffArgs(kube_proxy=config.kube_proxy_replacement),
            opts=pulumi.ResourceOptions(parent=self, aliases=was),
        )
        operator_role = aws.iam.Role(
            "operator",
            description=pulumi.Output.concat(
                "cilium-operator ENI IPAM in EKS cluster ", cluster_name, " (IRSA)"
            ),
            assume_role_policy=provider_arn.apply(
                lambda arn: irsa_trust_policy(
                    arn, oidc_issuer(arn), NAMESPACE, OPERATOR_SERVICE_ACCOUNT
                )
            ),
            permissions_boundary=args.get("permissions_boundary_arn"),
            opts=child,
        )
        operator_policy = aws.iam.RolePolicy(
            "operator-eni",
            role=operator_role.id,
            policy=pulumi.Output.all(provider_arn, cluster_name).apply(
                lambda a: json.dumps(eni_policy(partition_of(a[0]), a[1]))
            ),
            opts=child,
        )
        mesh = args.get("cluster_mesh")
        mesh_ca = [mesh_ca_secret(mesh, self)] if mesh else []
        replicas = args.get("operator_replicas", MAX_OPERATOR_REPLICAS)
        if replicas not in range(1, MAX_OPERATOR_REPLICAS + 1):  # 2.0 from the wire is 2
            raise ValueError(f"operatorReplicas: {replicas!r} is not allowed; use 1 or 2")
        k8s.helm.v3.Release(
            "cilium",
            name="cilium",
            chart="cilium",
            version=config.version,
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=CHART_REPOSITORY),
            namespace=NAMESPACE,
            values=helm_values(
                cluster_name=cluster_name,
                config=config,
                operator_role_arn=operator_role.arn,
                pod_subnet_ids=args["pod_subnet_ids"],
                operator_replicas=int(replicas),
                api_server_host=pulumi.Output.from_input(args["cluster_endpoint"]).apply(host_of),
                eni_tags=args.get("eni_tags", {}),
                image_registry=args.get("image_registry"),
                mesh=mesh,
            ),
            skip_await=True,
            opts=pulumi.ResourceOptions(
                parent=self,
                # The role's permissions must exist before the operator first calls EC2.
                # The mesh's CA too: certgen, which the release runs, signs with it. And
                # the sweeper: `pulumi destroy` removes the release before the sweep runs.
                depends_on=[*bootstrap.patches, operator_policy, teardown.sweeper, *mesh_ca],
            ),
        )
        self.operator_role_arn = operator_role.arn
        self.version = config.version
        self.register_outputs({"version": self.version, "operatorRoleArn": self.operator_role_arn})


def kubernetes_provider(opts: pulumi.ResourceOptions | None) -> pulumi.ProviderResource | None:
    """The Kubernetes provider a component's children would use: from `providers` (a list
    or, as the package's provider hands them over, a map by package), `provider`, or the
    parent's."""
    opts = opts or pulumi.ResourceOptions()
    given = opts.providers
    if isinstance(given, Mapping):
        found = given.get("kubernetes")
    else:
        found = next((p for p in given or [] if p.package == "kubernetes"), None)
    if found is None and opts.provider is not None and opts.provider.package == "kubernetes":
        found = opts.provider
    if found is None and opts.parent is not None:
        found = opts.parent.get_provider("kubernetes::")
    return found


def cilium_cluster_name(name: str) -> str:
    """The cluster's name, if Cilium takes it as its cluster.name (the chart's rule)."""
    if not CLUSTER_NAME_RE.match(name):
        raise ConfigError(
            f"clusterName: {name!r} is not a valid Cilium cluster name; Cilium's cluster.name "
            "takes at most 32 characters of a-z, 0-9 and '-', starting and ending with a "
            "letter or digit"
        )
    return name


def oidc_issuer(provider_arn: str) -> str:
    """The issuer (URL without https://) an IAM OIDC provider's ARN names: IAM makes the
    ARN from it (arn:<partition>:iam::<account>:oidc-provider/<issuer>; IAM User Guide,
    "Create an OpenID Connect (OIDC) identity provider in IAM"), and IRSA's trust
    conditions are keyed by it."""
    prefix, separator, issuer = provider_arn.partition(":oidc-provider/")
    if not separator or not prefix.startswith("arn:"):
        raise ConfigError(
            f"oidcProviderArn: {provider_arn!r} is not an IAM OIDC provider's ARN "
            "(arn:aws:iam::123456789012:oidc-provider/oidc.eks.<region>.amazonaws.com/id/...)"
        )
    return issuer


def partition_of(arn: str) -> str:
    """aws, aws-cn or aws-us-gov: the partition an ARN is in (its second field)."""
    return arn.split(":")[1]
