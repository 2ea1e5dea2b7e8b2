"""Karpenter: nodes on demand that boot into Cilium (karpenter.enabled).

Done naively, Karpenter fights Cilium: it schedules onto nodes whose CNI is not ready and
launches more, its max pods ignores prefix delegation, and its instances outlive it on
destroy. So (Karpenter 1.14.1 docs and source, charts/karpenter, pkg/apis/crds):
- its NodePool carries Cilium's startup taint (Karpenter docs, "Cilium Startup Taint"),
  keeps to Nitro types when prefix delegation is on, and to the managed nodes' CPU
  architecture; its EC2NodeClass sets kubelet's maxPods from the same prefix rule as the
  managed nodes (Karpenter's own count has no prefix term: karpenter-provider-aws #8210);
- the controller runs on the managed nodes only (never on a node it launched), with an
  IRSA role of its own: the reference policy of its cloudformation.yaml, kept as a document
  (components/policies/karpenter-controller.json), iam:PassRole only for its node role,
  instance actions only on instances tagged for this cluster;
- its nodes have a role and an EC2_LINUX access entry of their own: EKS made the managed
  group's entry, and whether EKS deletes that entry with the group is not documented;
- on `pulumi destroy` the NodePool and EC2NodeClass go before the controller: the
  NodeClass's finalizer waits until Karpenter has drained and terminated every node it
  launched. The ENI sweep (components/teardown.py) then fails, naming them, if any
  Karpenter instance still runs.

IRSA rather than EKS Pod Identity: the cluster already has its OIDC provider, and Pod
Identity's agent address (169.254.170.23) is one Cilium has been reported to break
(cilium/cilium #35989, #40273).

Imports the config, the cluster's and the nodes' helpers; only components/stack.py imports
it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.cluster import irsa_trust_policy
from components.config import KarpenterConfig
from components.nodes import (
    CILIUM_AGENT_NOT_READY_TAINT,
    IMDS_OPTIONS,
    MAX_PODS_BELOW_30_VCPUS,
    node_role,
)

# The release pinned here: chart, CRDs and the IAM policies (DOCUMENTS) go together.
KARPENTER_VERSION = "1.14.1"
CHART = "oci://public.ecr.aws/karpenter/karpenter"
CRD_CHART = "oci://public.ecr.aws/karpenter/karpenter-crd"
NAMESPACE = "kube-system"  # the docs' choice: its FlowSchemas favour kube-system accounts
SERVICE_ACCOUNT = "karpenter"
NODE_CLASS = "default"
NODE_POOL = "default"
# An AL2023 EKS AMI release, pinned (amazon-eks-ami "AMI Release v20260714": 1.33-1.36);
# `latest` would change nodes under a running cluster ("not recommended for production").
AMI_ALIAS = "al2023@v20260714"
# What the private subnets carry for the NodeClass to find them (set by components/network.py).
DISCOVERY_TAG = "karpenter.sh/discovery"
# The tag EKS puts on the cluster security group it creates.
CLUSTER_SG_TAG = "aws:eks:cluster-name"
# With prefix delegation every type Karpenter may launch must honour kubelet's max pods
# (110): ENIs x (IPv4 per ENI - 1) x 16 + 2 >= 110 needs 7 address slots. The nano, micro
# and small sizes may have fewer (t3.micro 2, t3a.small 6), and so may 1-vCPU mediums
# (c7g.medium: 2 ENIs x 4 addresses, 6); from 2 vCPUs and medium up, types have 15 or more.
TOO_SMALL_FOR_PREFIX_MAX_PODS = ("nano", "micro", "small")
MIN_VCPUS_FOR_PREFIX_MAX_PODS = 2
# Karpenter's reference IAM policies for KARPENTER_VERSION, kept as documents beside this
# module (components/policies/) in the form of Karpenter's CloudFormation reference
# (website/content/en/docs/getting-started/getting-started-with-karpenter/cloudformation.yaml
# at the release's tag), CloudFormation's ${...} references and all, so that they diff
# against it: the controller's statements (NodeLifecycle, IAMIntegration, EKSIntegration,
# Interruption and ResourceDiscovery policies; ZonalShift is for settings.enableZonalShift,
# off here) and the interruption queue's policy. tests/test_karpenter.py names every
# difference from upstream and why.
DOCUMENTS = Path(__file__).parent / "policies"
CONTROLLER_POLICY = "karpenter-controller.json"
QUEUE_POLICY = "karpenter-interruption-queue.json"
CLOUDFORMATION_REFERENCE = re.compile(r"\$\{([^}]+)\}")
# The interruption queue keeps a message 5 minutes (cloudformation.yaml).
QUEUE_RETENTION_SECONDS = 300
# Karpenter's interruption events (cloudformation.yaml): name -> EventBridge pattern.
INTERRUPTION_EVENTS = {
    "scheduled-change": {"source": ["aws.health"], "detail-type": ["AWS Health Event"]},
    "spot-interruption": {
        "source": ["aws.ec2"],
        "detail-type": ["EC2 Spot Instance Interruption Warning"],
    },
    "rebalance": {"source": ["aws.ec2"], "detail-type": ["EC2 Instance Rebalance Recommendation"]},
    "instance-state-change": {
        "source": ["aws.ec2"],
        "detail-type": ["EC2 Instance State-change Notification"],
    },
    "capacity-reservation-interruption": {
        "source": ["aws.ec2"],
        "detail-type": ["EC2 Capacity Reservation Instance Interruption Warning"],
    },
}
# How the NodePool gives nodes back: consolidation, at most a tenth of them at a time, and
# a node's drain bounded (so that a destroy cannot wait on a PodDisruptionBudget forever).
DISRUPTION = {
    "consolidationPolicy": "WhenEmptyOrUnderutilized",
    "consolidateAfter": "1m",
    "budgets": [{"nodes": "10%"}],
}
EXPIRE_AFTER = "720h"
TERMINATION_GRACE_PERIOD = "1h"
# A NodeClass's delete waits for its nodes to drain (each up to the grace period above).
NODE_CLASS_DELETE_TIMEOUT = "75m"


def cloudformation_document(name: str, references: Mapping[str, str]) -> dict[str, Any]:
    """A policy document of components/policies/ with its CloudFormation references
    (`${AWS::Region}`, `${ClusterName}`, ...) filled in, in keys and values alike; a
    reference not given is an error (KeyError), never left in."""

    def fill(node: Any) -> Any:
        if isinstance(node, str):
            return CLOUDFORMATION_REFERENCE.sub(lambda m: references[m.group(1)], node)
        if isinstance(node, list):
            return [fill(item) for item in node]
        if isinstance(node, dict):
            return {fill(key): fill(value) for key, value in node.items()}
        return node

    return fill(json.loads((DOCUMENTS / name).read_text()))


def controller_policy(
    *,
    cluster: str,
    region: str,
    account: str,
    partition: str,
    node_role_arn: str,
    queue_arn: str,
) -> dict[str, Any]:
    """Karpenter's reference controller policy (CONTROLLER_POLICY), filled in."""
    return cloudformation_document(
        CONTROLLER_POLICY,
        {
            "AWS::Partition": partition,
            "AWS::Region": region,
            "AWS::AccountId": account,
            "ClusterName": cluster,
            "KarpenterNodeRole.Arn": node_role_arn,
            "KarpenterInterruptionQueue.Arn": queue_arn,
        },
    )


def node_pool_requirements(
    config: KarpenterConfig, *, prefix_delegation: bool, architecture: str
) -> list[dict[str, Any]]:
    """What Karpenter may launch: the configured capacity types and instance categories
    (or families), one CPU architecture (the managed nodes'; the AMI alias resolves per
    architecture), and with prefix delegation only Nitro types big enough for its max pods
    (Cilium delegates prefixes on Nitro only: operator option AWSEnablePrefixDelegation)."""
    requirements: list[dict[str, Any]] = [
        {
            "key": "karpenter.sh/capacity-type",
            "operator": "In",
            "values": list(config.capacity_types),
        },
        {
            "key": "kubernetes.io/arch",
            "operator": "In",
            "values": ["arm64" if architecture == "arm64" else "amd64"],
        },
        {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]},
    ]
    if config.instance_families:
        requirements.append(
            {
                "key": "karpenter.k8s.aws/instance-family",
                "operator": "In",
                "values": list(config.instance_families),
            }
        )
    else:
        requirements.append(
            {
                "key": "karpenter.k8s.aws/instance-category",
                "operator": "In",
                "values": list(config.instance_categories),
            }
        )
    if prefix_delegation:
        requirements += [
            {"key": "karpenter.k8s.aws/instance-hypervisor", "operator": "In", "values": ["nitro"]},
            {
                "key": "karpenter.k8s.aws/instance-size",
                "operator": "NotIn",
                "values": list(TOO_SMALL_FOR_PREFIX_MAX_PODS),
            },
            {
                "key": "karpenter.k8s.aws/instance-cpu",
                "operator": "Gt",
                "values": [str(MIN_VCPUS_FOR_PREFIX_MAX_PODS - 1)],
            },
        ]
    return requirements


@dataclass
class KarpenterArgs:
    config: KarpenterConfig
    cluster_name: str
    region: str
    partition: str
    architecture: str  # the managed nodes' (x86_64 or arm64)
    prefix_delegation: bool
    replicas: int  # the controller's (anti-affine: at most one per managed node)
    tags: Mapping[str, str]  # put on the instances Karpenter launches (cost allocation)
    oidc_provider_arn: pulumi.Input[str]
    oidc_issuer: pulumi.Input[str]
    provider: k8s.Provider
    # the controller waits for Cilium and the managed nodes it runs on; the Cilium
    # component's ENI sweeper is deleted after Karpenter on destroy: the sweep then finds
    # none of its instances
    cilium: pulumi.Resource
    node_group: pulumi.Resource
    # inline policies of the node role beyond NODE_POLICIES (the image cache's)
    node_policies: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    # access.permissionsBoundaryArn: on the node and the controller roles
    permissions_boundary: str | None = None


class Karpenter(pulumi.ComponentResource):
    """Node role and access entry, interruption queue and its rules, the controller's IRSA
    role, the CRD and controller charts, the EC2NodeClass and the NodePool.

    Ordering: the controller waits for Cilium and the managed node group (it runs there),
    its role's policy and the queue; the NodeClass and NodePool wait for the controller
    (its CRDs) and the node role's access entry. So `pulumi destroy` deletes the NodePool,
    then the NodeClass (whose delete waits until Karpenter has terminated every node it
    launched), then the controller, and only then the sweep and the cluster.
    """

    node_pool: pulumi.Resource

    def __init__(
        self, name: str, args: KarpenterArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("cilium-eks:index:Karpenter", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        cfg = args.config

        instance_role, node_access = node_role(
            f"Nodes Karpenter launches in EKS cluster {args.cluster_name}",
            args.partition,
            args.node_policies,
            self,
            args.permissions_boundary,
        )
        # In API authentication mode a node joins only with an access entry of its role.
        node_access.append(
            aws.eks.AccessEntry(
                "node",
                cluster_name=args.cluster_name,
                principal_arn=instance_role.arn,
                type="EC2_LINUX",
                opts=child,
            )
        )

        queue = aws.sqs.Queue(
            "interruptions",
            name=args.cluster_name,
            message_retention_seconds=QUEUE_RETENTION_SECONDS,
            sqs_managed_sse_enabled=True,
            opts=child,
        )
        queue_policy = aws.sqs.QueuePolicy(
            "interruptions",
            queue_url=queue.url,
            policy=queue.arn.apply(
                lambda arn: json.dumps(
                    cloudformation_document(QUEUE_POLICY, {"KarpenterInterruptionQueue.Arn": arn})
                )
            ),
            opts=child,
        )
        feeds: list[pulumi.Resource] = [queue_policy]
        for event, pattern in INTERRUPTION_EVENTS.items():
            rule = aws.cloudwatch.EventRule(
                event,
                description=f"Karpenter interruption events of {args.cluster_name}: {event}",
                event_pattern=json.dumps(pattern),
                opts=child,
            )
            feeds.append(
                aws.cloudwatch.EventTarget(
                    event, rule=rule.name, arn=queue.arn, target_id="KarpenterQueue", opts=child
                )
            )

        controller_role = aws.iam.Role(
            "controller",
            description=f"Karpenter controller of EKS cluster {args.cluster_name} (IRSA)",
            assume_role_policy=pulumi.Output.all(args.oidc_provider_arn, args.oidc_issuer).apply(
                lambda a: irsa_trust_policy(a[0], a[1], NAMESPACE, SERVICE_ACCOUNT)
            ),
            permissions_boundary=args.permissions_boundary,
            opts=child,
        )
        account = aws.get_caller_identity(opts=pulumi.InvokeOptions(parent=self)).account_id
        controller_access = aws.iam.RolePolicy(
            "controller",
            role=controller_role.id,
            policy=pulumi.Output.all(instance_role.arn, queue.arn).apply(
                lambda arns: json.dumps(
                    controller_policy(
                        cluster=args.cluster_name,
                        region=args.region,
                        account=account,
                        partition=args.partition,
                        node_role_arn=arns[0],
                        queue_arn=arns[1],
                    )
                )
            ),
            opts=child,
        )

        on_cluster = pulumi.ResourceOptions(parent=self, provider=args.provider)
        platform = [args.cilium, args.node_group]
        crds = k8s.helm.v3.Release(
            "karpenter-crd",
            name="karpenter-crd",
            chart=CRD_CHART,
            version=KARPENTER_VERSION,
            namespace=NAMESPACE,
            opts=pulumi.ResourceOptions.merge(
                on_cluster, pulumi.ResourceOptions(depends_on=platform)
            ),
        )
        controller = k8s.helm.v3.Release(
            "karpenter",
            name="karpenter",
            chart=CHART,
            version=KARPENTER_VERSION,
            namespace=NAMESPACE,
            # the CRDs are karpenter-crd's (Helm never upgrades a chart's crds/ folder)
            skip_crds=True,
            values=controller_values(
                cluster_name=args.cluster_name,
                region=args.region,
                role_arn=controller_role.arn,
                queue_name=queue.name,
                replicas=args.replicas,
            ),
            opts=pulumi.ResourceOptions.merge(
                on_cluster,
                pulumi.ResourceOptions(depends_on=[*platform, crds, controller_access, *feeds]),
            ),
        )

        node_class = k8s.apiextensions.CustomResource(
            "node-class",
            api_version="karpenter.k8s.aws/v1",
            kind="EC2NodeClass",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=NODE_CLASS),
            spec=node_class_spec(
                cluster_name=args.cluster_name,
                role=instance_role.name,
                max_pods=MAX_PODS_BELOW_30_VCPUS if args.prefix_delegation else None,
                tags=args.tags,
            ),
            opts=pulumi.ResourceOptions.merge(
                on_cluster,
                pulumi.ResourceOptions(
                    depends_on=[controller, *node_access],
                    custom_timeouts=pulumi.CustomTimeouts(delete=NODE_CLASS_DELETE_TIMEOUT),
                ),
            ),
        )
        self.node_pool = k8s.apiextensions.CustomResource(
            "node-pool",
            api_version="karpenter.sh/v1",
            kind="NodePool",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=NODE_POOL),
            spec={
                "template": {
                    "spec": {
                        "nodeClassRef": {
                            "group": "karpenter.k8s.aws",
                            "kind": "EC2NodeClass",
                            "name": NODE_CLASS,
                        },
                        "requirements": node_pool_requirements(
                            cfg,
                            prefix_delegation=args.prefix_delegation,
                            architecture=args.architecture,
                        ),
                        "startupTaints": [
                            {
                                "key": CILIUM_AGENT_NOT_READY_TAINT.key,
                                "value": CILIUM_AGENT_NOT_READY_TAINT.value,
                                "effect": "NoExecute",  # the EKS API's NO_EXECUTE
                            }
                        ],
                        "expireAfter": EXPIRE_AFTER,
                        "terminationGracePeriod": TERMINATION_GRACE_PERIOD,
                    }
                },
                "limits": {"cpu": cfg.cpu_limit, "memory": cfg.memory_limit},
                "disruption": DISRUPTION,
            },
            opts=pulumi.ResourceOptions.merge(
                on_cluster, pulumi.ResourceOptions(depends_on=[controller, node_class])
            ),
        )
        self.register_outputs({"nodePool": NODE_POOL, "version": KARPENTER_VERSION})


def controller_values(
    *,
    cluster_name: str,
    region: str,
    role_arn: pulumi.Input[str],
    queue_name: pulumi.Input[str],
    replicas: int,
) -> dict[str, Any]:
    """The karpenter chart's values: everything the program relies on is set here."""
    return {
        "settings": {
            "clusterName": cluster_name,  # required by the chart
            "interruptionQueue": queue_name,  # the queue's name, not its URL or ARN
        },
        "serviceAccount": {
            # named, so the IRSA trust's subject does not depend on the release's name
            "name": SERVICE_ACCOUNT,
            "annotations": {"eks.amazonaws.com/role-arn": role_arn},
        },
        "replicas": replicas,
        "controller": {
            # Without it the controller asks IMDS for its region, which the nodes' hop
            # limit of 1 keeps from pods (components/nodes.py IMDS_OPTIONS).
            "env": [{"name": "AWS_REGION", "value": region}],
            "resources": {
                "requests": {"cpu": "500m", "memory": "512Mi"},
                "limits": {"memory": "1Gi"},
            },
        },
        # On the managed nodes only: never on a node it launched (which it could remove).
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {"key": "karpenter.sh/nodepool", "operator": "DoesNotExist"}
                            ]
                        }
                    ]
                }
            },
            "podAntiAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [
                    {"topologyKey": "kubernetes.io/hostname"}
                ]
            },
        },
    }


def node_class_spec(
    *,
    cluster_name: str,
    role: pulumi.Input[str],
    max_pods: int | None,
    tags: Mapping[str, str],
) -> dict[str, Any]:
    """The EC2NodeClass: pinned AL2023, the private subnets and the cluster security group
    by tag, IMDSv2 with hop limit 1 as the managed nodes, max pods by the prefix rule."""
    spec: dict[str, Any] = {
        "role": role,  # Karpenter makes and owns the instance profile
        "amiSelectorTerms": [{"alias": AMI_ALIAS}],
        "subnetSelectorTerms": [{"tags": {DISCOVERY_TAG: cluster_name}}],
        "securityGroupSelectorTerms": [{"tags": {CLUSTER_SG_TAG: cluster_name}}],
        "metadataOptions": {
            "httpEndpoint": IMDS_OPTIONS.http_endpoint,
            "httpTokens": IMDS_OPTIONS.http_tokens,
            "httpPutResponseHopLimit": IMDS_OPTIONS.http_put_response_hop_limit,
            "httpProtocolIPv6": "disabled",
        },
        "tags": dict(tags),
    }
    if max_pods is not None:
        spec["kubelet"] = {"maxPods": max_pods}
    return spec
