"""The deploy role's policy (docs/iam/deploy-policy.json) against every AWS call the program
makes on `pulumi up` and `pulumi destroy`, and no more.

The calls come from the code, two ways:
- what the graph declares: each pulumi-aws resource type (and what pulumi-eks makes from
  its inputs) -> the API calls its create, read, update and delete make (CALLS, each row
  with its source), and every provider function the program invokes (INVOKE_ACTIONS);
- what the preflight asks (scripts/account.py: PREFLIGHT_ACTIONS), which the deploy and
  destroy jobs run with this role;
- what the dynamic providers call (the ENI sweep, the image cache's warm-up and clean-up,
  the mesh link's peering in both regions), recorded against moto through botocore's
  `before-call` event.
Each call carries what AWS evaluates the policy's conditions on: the tags of the resource it
acts on (the stack's: the provider's default tags and the resource's own), the tags it
sends, the role's boundary, the policy it attaches, the service a role is passed to.

Then: every call is allowed (a dropped action fails); every condition that lets a call
through is needed (the call without the fact the condition names is refused, so dropping
a condition fails); and every permission the policy grants is used by some call (no more).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from moto import mock_aws

from components import image_cache, mesh, teardown
from tests.harness import ROOT, Graph, run_ok
from tests.iam import (
    ACCOUNT,
    BOUNDARY_ARN,
    INVOKE_ACTIONS,
    PREFLIGHT_ACTIONS,
    allowing,
    allows,
    as_list,
    condition_keys,
    document,
    evaluate,
)

REGION = "ap-northeast-2"
PEER_REGION = "us-west-2"

# What a call acts on, for its conditions: "new" (the resource it creates: the tags it
# sends), "untagged" (the resource just made, tagged by a call of its own: the tags it
# sends, none it has yet), "self" (the resource itself: its tags), "resend" (the resource
# itself, the request sending its tags again), "none" (nothing of the stack's), an ARN (a
# resource AWS owns, untagged), or the input naming the resource it acts on ("role",
# "routeTableId", "securityGroupId").
# (action, on, extra context); in extra, "$x" is the resource's input x.
Row = tuple[str, str, dict[str, str]]
TAG_UPDATES_EC2: list[Row] = [("ec2:CreateTags", "self", {}), ("ec2:DeleteTags", "self", {})]
NAT_INTERFACE = f"arn:aws:ec2:{REGION}:{ACCOUNT}:network-interface/eni-nat"  # AWS's

# pulumi-aws type -> (its Terraform resource, the calls). The Terraform AWS provider is
# what pulumi-aws runs; each resource's page (registry.terraform.io/providers/hashicorp/aws,
# resources/<name without aws_>) and source (internal/service/<service>/) say what its
# create, read, update and delete do, and
# each call's IAM action is named after its API operation (AWS API references). EC2
# creates send their tags (TagSpecifications), which EC2 authorizes as ec2:CreateTags
# with ec2:CreateAction (EC2 user guide, "Grant permission to tag resources during
# creation"): added to every EC2 create below. That each create sends its tags was read
# in its source (internal/service/ec2: vpc_.go, vpc_subnet.go, vpc_internet_gateway.go,
# vpc_route_table.go, ec2_eip.go, vpc_nat_gateway.go, vpc_security_group.go,
# vpc_endpoint.go, ec2_launch_template.go pass the tags as TagSpecifications), but for one:
# a security group rule (vpc_security_group_rule.go, securityGroupRuleResource.Create) is
# authorized with no TagSpecifications, then tagged by a CreateTags of its own
# (`createTags(ctx, conn, data.ID.ValueString(), getTagsIn(ctx))`), which carries no
# ec2:CreateAction and finds the rule untagged. Of the other services, sqs/queue.go and
# events/rule.go send the tags with the create, and tag afterwards only where a partition
# has no tag-on-create ("Some partitions (e.g. ISO) may not support tag-on-create"); the
# IAM, KMS, CloudWatch Logs and EKS creates are taken to do the same from their pages.
CALLS: dict[str, tuple[str, list[Row]]] = {
    "aws:ec2/vpc:Vpc": ("aws_vpc", [
        ("ec2:CreateVpc", "new", {}),
        ("ec2:ModifyVpcAttribute", "self", {}),  # enable_dns_hostnames (not EC2's default)
        ("ec2:DescribeVpcs", "self", {}), ("ec2:DescribeVpcAttribute", "self", {}),
        ("ec2:DescribeNetworkAcls", "self", {}), ("ec2:DescribeRouteTables", "self", {}),
        ("ec2:DescribeSecurityGroups", "self", {}),  # the VPC's defaults, read
        ("ec2:DeleteVpc", "self", {}), *TAG_UPDATES_EC2,
    ]),
    "aws:ec2/subnet:Subnet": ("aws_subnet", [
        ("ec2:CreateSubnet", "new", {}), ("ec2:DescribeSubnets", "self", {}),
        ("ec2:DeleteSubnet", "self", {}), *TAG_UPDATES_EC2,
    ]),
    "aws:ec2/internetGateway:InternetGateway": ("aws_internet_gateway", [
        ("ec2:CreateInternetGateway", "new", {}), ("ec2:AttachInternetGateway", "self", {}),
        ("ec2:DescribeInternetGateways", "self", {}), ("ec2:DetachInternetGateway", "self", {}),
        ("ec2:DeleteInternetGateway", "self", {}), *TAG_UPDATES_EC2,
    ]),
    "aws:ec2/routeTable:RouteTable": ("aws_route_table (inline routes)", [
        ("ec2:CreateRouteTable", "new", {}), ("ec2:CreateRoute", "self", {}),
        ("ec2:ReplaceRoute", "self", {}),  # a new NAT gateway or peering for a CIDR
        ("ec2:DeleteRoute", "self", {}), ("ec2:DescribeRouteTables", "self", {}),
        ("ec2:DeleteRouteTable", "self", {}), *TAG_UPDATES_EC2,
    ]),
    "aws:ec2/routeTableAssociation:RouteTableAssociation": ("aws_route_table_association", [
        ("ec2:AssociateRouteTable", "routeTableId", {}),
        # a replaced route table is made first, then the association moved to it
        ("ec2:ReplaceRouteTableAssociation", "routeTableId", {}),
        ("ec2:DisassociateRouteTable", "routeTableId", {}),
    ]),
    "aws:ec2/eip:Eip": ("aws_eip", [
        ("ec2:AllocateAddress", "new", {}), ("ec2:DescribeAddresses", "self", {}),
        # delete disassociates first, which EC2 authorizes on the address and on the
        # interface it is associated with (Service Authorization Reference: elastic-ip,
        # network-interface): the NAT gateway's, which AWS owns
        ("ec2:DisassociateAddress", "self", {}),
        ("ec2:DisassociateAddress", NAT_INTERFACE, {}),
        ("ec2:ReleaseAddress", "self", {}), *TAG_UPDATES_EC2,
    ]),
    "aws:ec2/natGateway:NatGateway": ("aws_nat_gateway", [
        ("ec2:CreateNatGateway", "new", {}), ("ec2:DescribeNatGateways", "self", {}),
        ("ec2:DeleteNatGateway", "self", {}), *TAG_UPDATES_EC2,
    ]),
    "aws:ec2/securityGroup:SecurityGroup": ("aws_security_group (inline ingress)", [
        ("ec2:CreateSecurityGroup", "new", {}),
        ("ec2:RevokeSecurityGroupEgress", "self", {}),  # EC2's default egress, removed
        ("ec2:AuthorizeSecurityGroupIngress", "self", {}),
        ("ec2:DescribeSecurityGroups", "self", {}), ("ec2:DeleteSecurityGroup", "self", {}),
        *TAG_UPDATES_EC2,
    ]),
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule": (
        "aws_vpc_security_group_ingress_rule (on EKS's cluster security group)", [
            ("ec2:AuthorizeSecurityGroupIngress", "securityGroupId", {}),
            ("ec2:CreateTags", "untagged", {}),  # the new rule, tagged after (see above)
            ("ec2:DescribeSecurityGroupRules", "self", {}),
            # an update modifies the rule: EC2 authorizes the group and the rule
            ("ec2:ModifySecurityGroupRules", "securityGroupId", {}),
            ("ec2:ModifySecurityGroupRules", "self", {}),
            ("ec2:RevokeSecurityGroupIngress", "securityGroupId", {}), *TAG_UPDATES_EC2,
        ]),
    "aws:ec2/vpcEndpoint:VpcEndpoint": ("aws_vpc_endpoint", [
        ("ec2:CreateVpcEndpoint", "new", {}), ("ec2:DescribeVpcEndpoints", "self", {}),
        ("ec2:DescribePrefixLists", "self", {}),  # a gateway endpoint's prefix list
        ("ec2:ModifyVpcEndpoint", "self", {}),  # subnets or route tables change (azCount)
        ("ec2:DeleteVpcEndpoints", "self", {}), *TAG_UPDATES_EC2,
    ]),
    "aws:ec2/launchTemplate:LaunchTemplate": ("aws_launch_template", [
        ("ec2:CreateLaunchTemplate", "new", {}), ("ec2:DescribeLaunchTemplates", "self", {}),
        ("ec2:DescribeLaunchTemplateVersions", "self", {}),
        ("ec2:CreateLaunchTemplateVersion", "self", {}),  # new user data: a new version
        ("ec2:DeleteLaunchTemplate", "self", {}), *TAG_UPDATES_EC2,
    ]),
    "aws:eks/cluster:Cluster": ("aws_eks_cluster", [
        ("eks:CreateCluster", "new", {}),
        ("iam:PassRole", "roleArn", {"iam:PassedToService": "eks.amazonaws.com"}),
        # Secrets encryption: EKS asks KMS for a grant on the caller's behalf, and reads
        # the key (EKS user guide, "Encrypt Kubernetes secrets with KMS")
        ("kms:CreateGrant", "encryptionKey", {"kms:GrantIsForAWSResource": "true"}),
        ("kms:DescribeKey", "encryptionKey", {}),
        # EKS's service-linked role, made on the first cluster of the account
        ("iam:CreateServiceLinkedRole", "none", {"iam:AWSServiceName": "eks.amazonaws.com"}),
        ("eks:DescribeCluster", "self", {}), ("eks:DescribeUpdate", "self", {}),
        ("eks:UpdateClusterConfig", "self", {}), ("eks:UpdateClusterVersion", "self", {}),
        ("eks:TagResource", "self", {}), ("eks:UntagResource", "self", {}),
        ("eks:DeleteCluster", "self", {}),
    ]),
    "aws:eks/nodeGroup:NodeGroup": ("aws_eks_node_group", [
        ("eks:CreateNodegroup", "new", {}),
        ("iam:PassRole", "nodeRoleArn", {"iam:PassedToService": "eks.amazonaws.com"}),
        ("iam:CreateServiceLinkedRole", "none",
         {"iam:AWSServiceName": "eks-nodegroup.amazonaws.com"}),
        ("eks:DescribeNodegroup", "self", {}), ("eks:DescribeUpdate", "self", {}),
        ("eks:UpdateNodegroupConfig", "self", {}),  # sizes
        ("eks:UpdateNodegroupVersion", "self", {}),  # Kubernetes or launch template version
        ("eks:TagResource", "self", {}), ("eks:UntagResource", "self", {}),
        ("eks:DeleteNodegroup", "self", {}),
    ]),
    "aws:eks/addon:Addon": ("aws_eks_addon", [
        ("eks:CreateAddon", "new", {}), ("eks:DescribeAddon", "self", {}),
        ("eks:UpdateAddon", "self", {}), ("eks:DescribeUpdate", "self", {}),
        ("eks:TagResource", "self", {}), ("eks:UntagResource", "self", {}),
        ("eks:DeleteAddon", "self", {}),
    ]),
    "aws:eks/accessEntry:AccessEntry": ("aws_eks_access_entry", [
        ("eks:CreateAccessEntry", "new", {}), ("eks:DescribeAccessEntry", "self", {}),
        ("eks:UpdateAccessEntry", "self", {}), ("eks:TagResource", "self", {}),
        ("eks:UntagResource", "self", {}), ("eks:DeleteAccessEntry", "self", {}),
    ]),
    "aws:eks/accessPolicyAssociation:AccessPolicyAssociation": (
        "aws_eks_access_policy_association", [
            ("eks:AssociateAccessPolicy", "accessEntry", {}),
            ("eks:ListAssociatedAccessPolicies", "accessEntry", {}),
            ("eks:DisassociateAccessPolicy", "accessEntry", {}),
        ]),
    "aws:iam/role:Role": ("aws_iam_role", [
        # the boundary goes in CreateRole's PermissionsBoundary (iam/role.go
        # resourceRoleCreate), and the tags too, which IAM authorizes as iam:TagRole on
        # the role being made (iamlive #97; openshift/installer #1073: "not authorized to
        # perform: iam:TagRole on resource: ...role/...")
        ("iam:CreateRole", "new", {}), ("iam:TagRole", "new", {}), ("iam:GetRole", "self", {}),
        ("iam:ListRolePolicies", "self", {}), ("iam:ListAttachedRolePolicies", "self", {}),
        ("iam:UpdateAssumeRolePolicy", "self", {}),  # IRSA trust: a new OIDC issuer
        ("iam:UpdateRoleDescription", "self", {}),
        ("iam:TagRole", "self", {}), ("iam:UntagRole", "self", {}),
        ("iam:ListInstanceProfilesForRole", "self", {}),  # delete: leaves no profile behind
        ("iam:DeleteRole", "self", {}),
        # Not the deploy role's: a role made before its stack set
        # access.permissionsBoundaryArn gets it with iam:PutRolePermissionsBoundary
        # (resourceRoleUpdate), an administrator's call (ADMINISTRATORS_CALLS).
    ]),
    "aws:iam/rolePolicy:RolePolicy": ("aws_iam_role_policy", [
        ("iam:PutRolePolicy", "role", {}), ("iam:GetRolePolicy", "role", {}),
        ("iam:DeleteRolePolicy", "role", {}),
    ]),
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment": ("aws_iam_role_policy_attachment", [
        ("iam:AttachRolePolicy", "role", {"iam:PolicyARN": "$policyArn"}),
        ("iam:ListAttachedRolePolicies", "role", {}),
        ("iam:DetachRolePolicy", "role", {"iam:PolicyARN": "$policyArn"}),
    ]),
    "aws:iam/openIdConnectProvider:OpenIdConnectProvider": (
        "aws_iam_openid_connect_provider", [
            # its tags, authorized as iam:TagOpenIDConnectProvider on the provider made
            ("iam:CreateOpenIDConnectProvider", "new", {}),
            ("iam:TagOpenIDConnectProvider", "new", {}),
            ("iam:GetOpenIDConnectProvider", "self", {}),
            ("iam:UpdateOpenIDConnectProviderThumbprint", "self", {}),
            ("iam:TagOpenIDConnectProvider", "self", {}),
            ("iam:UntagOpenIDConnectProvider", "self", {}),
            ("iam:DeleteOpenIDConnectProvider", "self", {}),
        ]),
    "aws:kms/key:Key": ("aws_kms_key (no key policy set: KMS's default stays)", [
        ("kms:CreateKey", "new", {}),
        # tags sent with CreateKey need kms:TagResource, on every key (KMS developer
        # guide, "Controlling access to tags")
        ("kms:TagResource", "new", {}),
        ("kms:EnableKeyRotation", "self", {}), ("kms:DescribeKey", "self", {}),
        ("kms:GetKeyPolicy", "self", {}), ("kms:GetKeyRotationStatus", "self", {}),
        ("kms:ListResourceTags", "self", {}),
        ("kms:UpdateKeyDescription", "self", {}),  # the description names the cluster
        ("kms:TagResource", "self", {}), ("kms:UntagResource", "self", {}),
        ("kms:ScheduleKeyDeletion", "self", {}),
    ]),
    "aws:cloudwatch/logGroup:LogGroup": ("aws_cloudwatch_log_group (retained on delete)", [
        ("logs:CreateLogGroup", "new", {}), ("logs:TagResource", "new", {}),
        ("logs:PutRetentionPolicy", "self", {}), ("logs:DescribeLogGroups", "none", {}),
        ("logs:ListTagsForResource", "self", {}), ("logs:TagResource", "self", {}),
        ("logs:UntagResource", "self", {}),
    ]),
    "aws:sqs/queue:Queue": ("aws_sqs_queue", [
        # tags sent with CreateQueue need sqs:TagQueue (SQS API reference, CreateQueue)
        ("sqs:CreateQueue", "new", {}), ("sqs:TagQueue", "new", {}),
        ("sqs:GetQueueAttributes", "self", {}), ("sqs:ListQueueTags", "self", {}),
        ("sqs:SetQueueAttributes", "self", {}), ("sqs:TagQueue", "self", {}),
        ("sqs:UntagQueue", "self", {}), ("sqs:DeleteQueue", "self", {}),
    ]),
    "aws:sqs/queuePolicy:QueuePolicy": ("aws_sqs_queue_policy", [
        ("sqs:SetQueueAttributes", "queueUrl", {}), ("sqs:GetQueueAttributes", "queueUrl", {}),
    ]),
    "aws:cloudwatch/eventRule:EventRule": ("aws_cloudwatch_event_rule", [
        ("events:PutRule", "new", {}), ("events:TagResource", "new", {}),
        # an update puts the rule again, with its tags "For ABAC aws:RequestTag condition"
        # (events/rule.go resourceRuleUpdate)
        ("events:PutRule", "resend", {}),
        ("events:DescribeRule", "self", {}), ("events:ListTagsForResource", "self", {}),
        ("events:TagResource", "self", {}), ("events:UntagResource", "self", {}),
        ("events:DeleteRule", "self", {}),
    ]),
    "aws:cloudwatch/eventTarget:EventTarget": ("aws_cloudwatch_event_target", [
        ("events:PutTargets", "rule", {}), ("events:ListTargetsByRule", "rule", {}),
        ("events:RemoveTargets", "rule", {}),
    ]),
    "aws:ecr/pullThroughCacheRule:PullThroughCacheRule": ("aws_ecr_pull_through_cache_rule", [
        ("ecr:CreatePullThroughCacheRule", "none", {}),
        # its service-linked role (Service Authorization Reference: a dependent action)
        ("iam:CreateServiceLinkedRole", "none",
         {"iam:AWSServiceName": "pullthroughcache.ecr.amazonaws.com"}),
        ("ecr:DescribePullThroughCacheRules", "none", {}),
        ("ecr:DeletePullThroughCacheRule", "none", {}),
    ]),
}  # fmt: skip
# Interface endpoints with private DNS: EC2 associates the service's private hosted zone
# with the VPC on the caller's behalf (Service Authorization Reference, ec2:CreateVpcEndpoint:
# dependent action route53:AssociateVPCWithHostedZone).
PRIVATE_DNS: Row = ("route53:AssociateVPCWithHostedZone", "none", {})
# What EKS tags the cluster security group it makes with (EKS user guide, "View Amazon EKS
# security group requirements for clusters"): the rules the stack adds to it act on it.
EKS_SECURITY_GROUP_TAGS = {"aws:eks:cluster-name": "cilium-eks-dev"}
# Not taggable: the calls on them act on another resource (the "on" of their rows).
UNTAGGED = {
    "aws:ec2/routeTableAssociation:RouteTableAssociation", "aws:iam/rolePolicy:RolePolicy",
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment", "aws:sqs/queuePolicy:QueuePolicy",
    "aws:cloudwatch/eventTarget:EventTarget", "aws:ecr/pullThroughCacheRule:PullThroughCacheRule",
    "aws:eks/accessPolicyAssociation:AccessPolicyAssociation",
}  # fmt: skip
# pulumi-eks's children (remote: under mocks only its inputs show), from its source
# (nodejs/eks/cluster/cluster.ts, servicerole.ts, nodes/nodegroup.ts, authenticationMode.ts):
# the service role with AmazonEKSClusterPolicy unless handed `serviceRole`, the cluster,
# the OIDC provider with createOidcProvider, an access entry and its policy associations
# per accessEntries key, the kube-proxy add-on when enabled; a ManagedNodeGroup makes an
# aws.eks.NodeGroup (its AMI type from the instance types' names: no AWS call).
SERVICE_ROLE_POLICY = "arn:aws:iam::aws:policy/AmazonEKSClusterPolicy"
# Every feature on, admins and viewers with access entries, the kube-proxy add-on.
FULL = {
    "network.vpcEndpoints": True,
    "karpenter.enabled": True,
    "cilium.kubeProxyReplacement": False,
    "access.adminPrincipalArns": [f"arn:aws:iam::{ACCOUNT}:role/cilium-eks-deploy"],
    "access.viewerPrincipalArns": [f"arn:aws:iam::{ACCOUNT}:role/cilium-eks-preview"],
    # what a stack the deploy role deploys sets (docs/ci-iam.md)
    "access.permissionsBoundaryArn": BOUNDARY_ARN,
}

Call = tuple[str, str, dict[str, Any]]  # IAM action, resource ARN, request context
# EC2's resource types in ARNs (Service Authorization Reference, "Resource types defined by
# Amazon EC2"), by pulumi-aws module/type
EC2_ARN_TYPES = {
    "ec2/vpc": "vpc", "ec2/subnet": "subnet", "ec2/internetGateway": "internet-gateway",
    "ec2/routeTable": "route-table", "ec2/eip": "elastic-ip", "ec2/natGateway": "natgateway",
    "ec2/securityGroup": "security-group", "ec2/vpcEndpoint": "vpc-endpoint",
    "ec2/launchTemplate": "launch-template", "vpc/securityGroupIngressRule": "security-group-rule",
}  # fmt: skip
# The issuer EKS gives a cluster (https://oidc.eks.<region>.amazonaws.com/id/<id>), which
# pulumi-eks registers as the OIDC provider's url (nodejs/eks/cluster/cluster.ts:
# `url: eksCluster.identities[0].oidcs[0].issuer`); IAM names the provider after it.
EKS_ISSUER = f"oidc.eks.{REGION}.amazonaws.com/id/0123456789ABCDEF0123456789ABCDEF"


@dataclass
class Made:
    """A resource the stack makes: declared in the graph, or made by pulumi-eks."""

    type: str
    name: str
    inputs: dict[str, Any]
    tags: dict[str, str] | None  # None: not taggable
    refs: dict[str, Made] = field(default_factory=dict)

    @property
    def arn(self) -> str:
        service = self.type.split(":")[1].split("/")[0]
        kind = self.type.split("/")[1].split(":")[0]
        name = self.inputs.get("name", self.name)
        if f"{service}/{kind}" in EC2_ARN_TYPES:
            return f"arn:aws:ec2:{REGION}:{ACCOUNT}:{EC2_ARN_TYPES[f'{service}/{kind}']}/{name}-id"
        return {
            "iam/role": f"arn:aws:iam::{ACCOUNT}:role/{self.name}",
            "kms/key": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{self.name}-id",
            "cloudwatch/logGroup": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{name}",
            "cloudwatch/eventRule": f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{self.name}",
            "sqs/queue": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}",
            "iam/openIdConnectProvider": f"arn:aws:iam::{ACCOUNT}:oidc-provider/{EKS_ISSUER}",
        }.get(f"{service}/{kind}", f"arn:aws:{service}:{REGION}:{ACCOUNT}:{kind}/{self.name}")

    def facts(self) -> dict[str, Any]:
        """What AWS knows of it when a call acts on it."""
        found: dict[str, Any] = {f"aws:ResourceTag/{k}": v for k, v in (self.tags or {}).items()}
        if self.type == "aws:iam/role:Role":
            found["iam:PermissionsBoundary"] = boundary_of(self)
        return found


def boundary_of(role: Made) -> str | None:
    """The role's permissions boundary (access.permissionsBoundaryArn, FULL)."""
    return role.inputs.get("permissionsBoundary")


def stack_made(graph: Graph) -> list[Made]:
    default_tags = json.loads(graph.one("pulumi:providers:aws").inputs["defaultTags"])["tags"]

    def tags_of(type_: str, inputs: dict[str, Any]) -> dict[str, str] | None:
        return None if type_ in UNTAGGED else {**default_tags, **(inputs.get("tags") or {})}

    made = [
        Made(r.type, r.name, r.inputs, tags_of(r.type, r.inputs))
        for r in graph.resources
        if r.custom and r.type.startswith("aws:") and r.type != "pulumi:providers:aws"
    ]
    by_urn = {r.urn: m for r, m in zip([r for r in graph.resources if r.custom and
              r.type.startswith("aws:")], made, strict=True)}  # fmt: skip
    roles = {m.name: m for m in made if m.type == "aws:iam/role:Role"}
    key = next(m for m in made if m.type == "aws:kms/key:Key")
    for cluster in graph.of_type("eks:index:Cluster"):
        inputs = cluster.inputs
        if "serviceRole" in inputs:
            service_role = by_urn[inputs["serviceRole"]["$ref"]]
        else:
            service_role = Made("aws:iam/role:Role", "eks-eksRole-role", {}, dict(default_tags))
            made += [service_role, Made(
                "aws:iam/rolePolicyAttachment:RolePolicyAttachment", "eks-eksRole-policy",
                {"policyArn": SERVICE_ROLE_POLICY}, None, {"role": service_role},
            )]  # fmt: skip
        cluster_tags = {**default_tags, "Name": "eks-eksCluster"}
        made.append(Made("aws:eks/cluster:Cluster", inputs["name"], inputs, cluster_tags,
                         {"roleArn": service_role, "encryptionKey": key}))  # fmt: skip
        if inputs.get("createOidcProvider"):
            made.append(Made("aws:iam/openIdConnectProvider:OpenIdConnectProvider",
                             "eks-oidcProvider", {}, dict(default_tags)))  # fmt: skip
        for name, entry in (inputs.get("accessEntries") or {}).items():
            made_entry = Made("aws:eks/accessEntry:AccessEntry", name, entry, dict(default_tags))
            made.append(made_entry)
            made += [
                Made("aws:eks/accessPolicyAssociation:AccessPolicyAssociation", policy,
                     association, None, {"accessEntry": made_entry})
                for policy, association in entry.get("accessPolicies", {}).items()
            ]  # fmt: skip
        if (inputs.get("kubeProxyAddonOptions") or {}).get("enabled"):
            made.append(Made("aws:eks/addon:Addon", "kube-proxy", {}, dict(default_tags)))
    for group in graph.of_type("eks:index:ManagedNodeGroup"):
        role = by_urn[group.inputs["nodeRole"]["$ref"]]
        made.append(Made("aws:eks/nodeGroup:NodeGroup", group.name, group.inputs,
                         dict(default_tags), {"nodeRoleArn": role}))  # fmt: skip
    by_id = {(m.type, mock_id_of(m)): m for m in made}
    security_group = Made("aws:ec2/securityGroup:SecurityGroup", "eks-cluster-sg", {},
                          EKS_SECURITY_GROUP_TAGS)  # fmt: skip
    for m in made:
        if "routeTableId" in m.inputs:
            m.refs["routeTableId"] = by_id[
                "aws:ec2/routeTable:RouteTable", m.inputs["routeTableId"]
            ]
        if "securityGroupId" in m.inputs:  # EKS's, unless one of the stack's
            key = ("aws:ec2/securityGroup:SecurityGroup", m.inputs["securityGroupId"])
            m.refs["securityGroupId"] = by_id.get(key, security_group)
        if "role" in m.inputs:
            m.refs["role"] = roles[m.inputs["role"]]
        if m.type == "aws:sqs/queuePolicy:QueuePolicy":
            m.refs["queueUrl"] = next(q for q in made if q.type == "aws:sqs/queue:Queue")
        if m.type == "aws:cloudwatch/eventTarget:EventTarget":
            m.refs["rule"] = next(
                r for r in made if r.type == "aws:cloudwatch/eventRule:EventRule" and
                r.name == m.name
            )  # fmt: skip
    return made


def mock_id_of(m: Made) -> str:
    return m.name if m.type == "aws:iam/role:Role" else f"{m.name}-id"


def calls_of(m: Made) -> Iterator[Call]:
    _tf, rows = CALLS[m.type]
    if m.type == "aws:ec2/vpcEndpoint:VpcEndpoint" and m.inputs.get("privateDnsEnabled"):
        rows = [*rows, PRIVATE_DNS]
    for action, on, extra in rows:
        context = {k: m.inputs[v[1:]] if v.startswith("$") else v for k, v in extra.items()}
        if on in ("new", "untagged", "resend"):
            sent = m.tags or {}
            context |= {f"aws:RequestTag/{k}": v for k, v in sent.items()}
            context |= {"aws:TagKeys": list(sent)} if sent else {}
            if action == "iam:CreateRole":  # its parameter; the reference lists the key
                context["iam:PermissionsBoundary"] = boundary_of(m)  # for no TagRole
            target = m
            context |= m.facts() if on == "resend" else {}
        elif on == "none" or on.startswith("arn:"):
            target = None
        else:
            target = m if on == "self" else m.refs[on]
            context |= target.facts()
        arn = target.arn if target else on if on.startswith("arn:") else "*"
        if action == "kms:TagResource" and on == "new":
            arn = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/*"  # the key has no id yet
        yield action, arn, context
        if on == "new" and action.startswith("ec2:") and m.tags:
            yield "ec2:CreateTags", arn, {**context, "ec2:CreateAction": action.split(":")[1]}


def graph_calls(graph: Graph) -> list[Call]:
    unknown = {m.type for m in stack_made(graph)} - set(CALLS)
    assert not unknown, f"no row in CALLS for {sorted(unknown)}"
    calls = [c for m in stack_made(graph) for c in calls_of(m)]
    for invoke in graph.invokes:
        if invoke["token"].startswith("aws:"):
            action = INVOKE_ACTIONS[invoke["token"]]
            calls += [(action, "*", {})] if action else []
    return calls


# --- the dynamic providers, against moto -------------------------------------------------------


class Recorder:
    """The calls of every AWS operation the default boto3 session's clients make, taken
    from botocore's `before-parameter-build` event, which each API call emits with its
    parameters before anything is sent (a retried request emits `before-call` again, not
    this): the facts a condition reads (the tags of what it acts on) are looked up then,
    through `setup`'s clients, which are not recorded."""

    def __init__(self, setup: boto3.Session) -> None:
        self.setup = setup
        self.ec2: dict[str, Any] = {}
        self.calls: list[Call] = []

    def __call__(self, params: dict[str, Any], model: Any, context: dict, **_: Any) -> None:
        prefix = model.service_model.signing_name
        region = context["client_region"]
        self.calls += as_calls(self.client, prefix, model.name, region, dict(params))

    def client(self, region: str) -> Any:
        if region not in self.ec2:
            self.ec2[region] = self.setup.client("ec2", region_name=region)
        return self.ec2[region]


def tiny_chart() -> bytes:
    """A chart archive whose values name one quay.io image, as the warm-up reads it."""
    import io
    import tarfile

    values = b"image:\n  repository: quay.io/cilium/cilium\n  tag: v1.19.6\n"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("cilium/values.yaml")
        info.size = len(values)
        tar.addfile(info, io.BytesIO(values))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def provider_calls() -> list[Call]:
    with pytest.MonkeyPatch.context() as env:
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            env.setenv(key, "testing")
        env.setenv("AWS_DEFAULT_REGION", "eu-west-1")  # neither side's region
        env.delenv("AWS_PROFILE", raising=False)
        # no instance runs here: moto's stock AMIs (0.25 s per region's EC2) are not loaded
        env.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
        env.setattr(image_cache, "fetch_chart", lambda _version: tiny_chart())
        with mock_aws():
            setup = boto3.Session()  # not recorded: what already exists
            recorder = Recorder(setup)
            boto3.setup_default_session()
            assert boto3.DEFAULT_SESSION is not None
            boto3.DEFAULT_SESSION.events.register("before-parameter-build", recorder)
            try:
                yield from [run_providers(setup, recorder)]
            finally:
                boto3.DEFAULT_SESSION = None


def run_providers(setup: boto3.Session, recorder: Recorder) -> list[Call]:
    ec2 = setup.client("ec2", region_name=REGION)
    stack_tags = [{"Key": "project", "Value": "cilium-eks"}, {"Key": "stack", "Value": "dev"}]
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.0.0/24")["Subnet"]["SubnetId"]
    # a leaked ENI as Cilium makes them: its GC tags and the stack's (eni.eniTags)
    gc = [{"Key": k, "Value": v} for k, v in teardown.eni_gc_tags("cilium-eks-dev").items()]
    ec2.create_network_interface(SubnetId=subnet, TagSpecifications=[
        {"ResourceType": "network-interface", "Tags": [*gc, *stack_tags]}])  # fmt: skip
    teardown.EniSweeperProvider().delete("sweeper", {
        "region": REGION, "vpc_id": vpc, "cluster_name": "cilium-eks-dev", "subnet_ids": [subnet],
    })  # fmt: skip

    prefix = image_cache.cache_prefix("cilium-eks-dev")
    ecr = setup.client("ecr", region_name=REGION)
    ecr.create_repository(repositoryName=f"{prefix}/cilium/cilium")
    props = {"region": REGION, "registry_id": ACCOUNT, "prefix": prefix,
             "chart_version": "1.19.6", "images": ["cilium/json-mock:v1.3.8"]}  # fmt: skip
    with pytest.raises(RuntimeError, match="could not import"):  # moto has no upstream
        image_cache.CacheWarmupProvider().create(props)
    image_cache.CacheWarmupProvider().delete("warmup", props)

    peer_vpc = setup.client("ec2", region_name=PEER_REGION).create_vpc(CidrBlock="10.1.0.0/16")
    link = {"region": REGION, "vpc_id": vpc, "peer_region": PEER_REGION,
            "peer_vpc_id": peer_vpc["Vpc"]["VpcId"], "name_tag": "cilium-eks-dev-peer"}  # fmt: skip
    made = mesh.MeshLinkProvider().create(link)
    mesh.MeshLinkProvider().delete(made.id, made.outs)
    return recorder.calls


def as_calls(
    clients: Callable[[str], Any],
    prefix: str,
    operation: str,
    region: str,
    params: dict[str, Any],
) -> list[Call]:
    """The IAM calls of one API operation (its action is its name), with the tags of what
    it acts on where the deploy policy's conditions read them."""
    action = f"{prefix}:{operation}"
    if operation in ("BatchGetImage", "DeleteRepository"):
        arn = f"arn:aws:ecr:{region}:{ACCOUNT}:repository/{params['repositoryName']}"
        # a pull through the cache imports the image into a repository it creates (ECR user
        # guide, "IAM permissions required to sync an upstream registry")
        pulled = ["ecr:BatchImportUpstreamImage", "ecr:CreateRepository"]
        return [(a, arn, {}) for a in [action, *(pulled if operation == "BatchGetImage" else [])]]
    tags: list[dict[str, str]] = []
    if operation == "DeleteNetworkInterface":
        (eni,) = clients(region).describe_network_interfaces(
            NetworkInterfaceIds=[params["NetworkInterfaceId"]])["NetworkInterfaces"]  # fmt: skip
        tags = eni.get("TagSet", [])
    if operation in ("AcceptVpcPeeringConnection", "DeleteVpcPeeringConnection"):
        (peering,) = clients(region).describe_vpc_peering_connections(
            VpcPeeringConnectionIds=[params["VpcPeeringConnectionId"]]
        )["VpcPeeringConnections"]
        tags = peering.get("Tags", [])
    calls: list[Call] = [(action, "*", {f"aws:ResourceTag/{t['Key']}": t["Value"] for t in tags})]
    if params.get("TagSpecifications"):
        calls.append(("ec2:CreateTags", "*", {"ec2:CreateAction": operation}))
    return calls


# --- the tests ---------------------------------------------------------------------------------

DEPLOY = document("deploy-policy.json")
STATE = ("s3:",)  # the state backend's calls: Pulumi's, not the program's


@pytest.fixture(scope="module")
def calls(provider_calls) -> list[Call]:
    found = [*provider_calls, *graph_calls(run_ok(FULL))]
    asked = {
        action: resource.format(region=REGION, account=ACCOUNT, cluster="cilium-eks-dev")
        for action, resource in PREFLIGHT_ACTIONS.items()
    }
    return found + [(action, arn, {}) for action, arn in sorted(asked.items())]


def test_the_calls_cover_every_feature_and_provider(calls, provider_calls):
    graph = run_ok(FULL)
    dynamic = {r.type for r in graph.resources if r.type.startswith("pulumi-python:dynamic:")}
    assert dynamic <= {"pulumi-python:dynamic:EniSweeper", "pulumi-python:dynamic:CacheWarmup",
                       "pulumi-python:dynamic:MeshLink"}  # fmt: skip
    recorded = {a for a, _, _ in provider_calls}
    assert {"ec2:DeleteNetworkInterface", "ecr:BatchGetImage", "ecr:DeleteRepository",
            "ec2:CreateVpcPeeringConnection", "ec2:AcceptVpcPeeringConnection",
            "ec2:DeleteVpcPeeringConnection"} <= recorded  # fmt: skip
    assert {"iam:PassRole", "eks:CreateCluster", "kms:CreateGrant"} <= {a for a, _, _ in calls}


def test_the_deploy_role_allows_every_call_the_program_makes(calls):
    refused = sorted({(a, r) for a, r, ctx in calls if not allows(DEPLOY, a, r, ctx)})
    assert refused == []


def test_every_condition_that_lets_a_call_through_is_needed(calls):
    """Each call without a fact a condition of its statements names is refused: a dropped
    condition, or one that no longer holds back anything, fails here."""
    loose = set()
    for action, resource, context in calls:
        for statement in allowing(DEPLOY, action, resource, context):
            for key in condition_keys(statement) & set(context):
                without = {k: v for k, v in context.items() if k != key}
                if allows(DEPLOY, action, resource, without):
                    loose.add((action, key))
    assert sorted(loose) == []


# What the calls must meet, whatever the policy says (docs/ci-iam.md, "What the deploy role
# can and cannot do"): fact -> the actions that are refused without it.
MUST_MEET = {
    # changes and deletes only of what carries the project's tag
    "aws:ResourceTag/project": {
        "ec2:AssociateRouteTable", "ec2:AuthorizeSecurityGroupIngress",
        "ec2:CreateLaunchTemplateVersion", "ec2:CreateRoute", "ec2:CreateTags",
        "ec2:DeleteInternetGateway", "ec2:DeleteLaunchTemplate",
        "ec2:DeleteNatGateway", "ec2:DeleteNetworkInterface", "ec2:DeleteRoute",
        "ec2:DeleteRouteTable", "ec2:DeleteSecurityGroup", "ec2:DeleteSubnet", "ec2:DeleteTags",
        "ec2:DeleteVpc", "ec2:DeleteVpcEndpoints", "ec2:DetachInternetGateway",
        "ec2:DisassociateAddress", "ec2:DisassociateRouteTable", "ec2:ModifySecurityGroupRules",
        "ec2:ModifyVpcAttribute", "ec2:ModifyVpcEndpoint", "ec2:ReleaseAddress", "ec2:ReplaceRoute",
        "ec2:ReplaceRouteTableAssociation", "ec2:RevokeSecurityGroupEgress",
        "eks:AssociateAccessPolicy", "eks:DeleteAccessEntry", "eks:DeleteAddon",
        "eks:DeleteCluster", "eks:DeleteNodegroup", "eks:DisassociateAccessPolicy",
        "eks:TagResource", "eks:UntagResource", "eks:UpdateAccessEntry", "eks:UpdateAddon",
        "eks:UpdateClusterConfig", "eks:UpdateClusterVersion", "eks:UpdateNodegroupConfig",
        "eks:UpdateNodegroupVersion", "events:DeleteRule", "events:PutTargets",
        "events:RemoveTargets", "events:TagResource", "events:UntagResource",
        "iam:AttachRolePolicy", "iam:DeleteOpenIDConnectProvider",
        "iam:DeleteRole", "iam:DeleteRolePolicy", "iam:DetachRolePolicy", "iam:PassRole",
        "iam:PutRolePolicy", "iam:TagOpenIDConnectProvider",
        "iam:TagRole", "iam:UntagOpenIDConnectProvider", "iam:UntagRole",
        "iam:UpdateAssumeRolePolicy", "iam:UpdateOpenIDConnectProviderThumbprint",
        "iam:UpdateRoleDescription", "kms:ScheduleKeyDeletion", "kms:TagResource",
        "kms:UntagResource", "kms:UpdateKeyDescription", "logs:PutRetentionPolicy",
        "logs:TagResource", "logs:UntagResource", "sqs:DeleteQueue", "sqs:SetQueueAttributes",
        "sqs:TagQueue", "sqs:UntagQueue",
    },
    # the security groups EKS made, which the stack's rules change
    "aws:ResourceTag/aws:eks:cluster-name": {
        "ec2:AuthorizeSecurityGroupIngress", "ec2:ModifySecurityGroupRules",
        "ec2:RevokeSecurityGroupIngress",
    },
    # made (and tagged while made) only with the project's tag; roles only within the
    # boundary, granting only the AWS policies listed
    "aws:RequestTag/project": {
        "events:PutRule", "events:TagResource", "iam:CreateOpenIDConnectProvider",
        "iam:CreateRole", "iam:TagOpenIDConnectProvider", "iam:TagRole", "kms:CreateKey",
        "kms:TagResource", "logs:CreateLogGroup", "logs:TagResource", "sqs:CreateQueue",
        "sqs:TagQueue",
    },
    # every write on a role, only on one within the boundary: tagging a role of another
    # project `project=cilium-eks` (iam:TagRole above) gains nothing to change or delete
    "iam:PermissionsBoundary": {
        "iam:AttachRolePolicy", "iam:CreateRole", "iam:DeleteRole", "iam:DeleteRolePolicy",
        "iam:DetachRolePolicy", "iam:PutRolePolicy", "iam:UpdateAssumeRolePolicy",
        "iam:UpdateRoleDescription",
    },
    "iam:PolicyARN": {"iam:AttachRolePolicy"},
    "iam:PassedToService": {"iam:PassRole"},
    "iam:AWSServiceName": {"iam:CreateServiceLinkedRole"},
    # tags only while creating (or on the project's own, above)
    "ec2:CreateAction": {"ec2:CreateTags"},
    "kms:GrantIsForAWSResource": {"kms:CreateGrant"},
}  # fmt: skip


def test_every_call_meets_the_conditions_it_must(calls):
    """Each call without a fact MUST_MEET names for its action is refused: dropping such a
    condition from the policy fails here."""
    loose = set()
    for action, resource, context in calls:
        for fact, guarded in MUST_MEET.items():
            if action in guarded and fact in context:
                without = {k: v for k, v in context.items() if k != fact}
                if allows(DEPLOY, action, resource, without):
                    loose.add((action, fact))
    assert sorted(loose) == []
    # and each expectation is exercised by some call (none holds vacuously)
    met = {(f, a) for a, _, ctx in calls for f, g in MUST_MEET.items() if a in g and f in ctx}
    assert {(f, a) for f, g in MUST_MEET.items() for a in g} - met == set()


def test_the_deploy_role_allows_nothing_no_call_needs(calls):
    """Every action of every Allow statement, and every value its conditions list, is used
    by a call that statement lets through."""
    through: dict[str, list[Call]] = {}
    for call in calls:
        for statement in allowing(DEPLOY, *call):
            through.setdefault(statement["Sid"], []).append(call)
    unused = []
    for statement in DEPLOY["Statement"]:
        if statement["Effect"] != "Allow" or as_list(statement["Action"])[0].startswith(STATE):
            continue
        sid, used = statement["Sid"], through.get(statement["Sid"], [])
        for action in as_list(statement["Action"]):
            one = {"Statement": [{**statement, "Action": action}]}
            if not any(allows(one, *c) for c in used):
                unused.append((sid, action))
        for keys in statement.get("Condition", {}).values():
            for key, values in keys.items():
                if len(as_list(values)) > 1:
                    unused += [
                        (sid, f"{key}={v}") for v in as_list(values)
                        if not any(c[2].get(key) == v for c in used)
                    ]  # fmt: skip
    assert unused == []


def test_no_launch_template_resolves_its_image_from_ssm():
    """ec2:CreateLaunchTemplate (and CreateLaunchTemplateVersion) names ssm:GetParameters as
    a dependent action (Service Authorization Reference), which EC2 checks only for an image
    id given as `resolve:ssm:<parameter>` (EC2 user guide, "Use a Systems Manager parameter
    instead of an AMI ID"). The deploy role has no ssm:GetParameters: the node group's
    template names no image (EKS picks the AMI from the node group's AMI type)."""
    templates = run_ok(FULL).of_type("aws:ec2/launchTemplate:LaunchTemplate")
    assert templates
    for template in templates:
        image = template.inputs.get("imageId") or ""
        assert not image.startswith("resolve:ssm:"), (template.name, image)
    assert not allows(DEPLOY, "ssm:GetParameters", "*", {})


# What the program calls on a live stack that only an administrator may: the boundary set on
# roles made before the stack set access.permissionsBoundaryArn, and removed when it is
# unset (aws_iam_role: PutRolePermissionsBoundary, DeleteRolePermissionsBoundary when
# permissions_boundary changes, iam/role.go resourceRoleUpdate). docs/operations.md says so.
ADMINISTRATORS_CALLS = ("iam:PutRolePermissionsBoundary", "iam:DeleteRolePermissionsBoundary")


def test_what_only_an_administrator_does_is_denied_to_the_deploy_role():
    graph = run_ok(FULL)
    for role in (m for m in stack_made(graph) if m.type == "aws:iam/role:Role"):
        for action in ADMINISTRATORS_CALLS:
            assert evaluate(DEPLOY, action, role.arn, role.facts()) == "Deny", (action, role.name)
    assert not {a for a, _, _ in graph_calls(graph)} & set(ADMINISTRATORS_CALLS)
    row = next(line for line in (ROOT / "docs" / "operations.md").read_text().splitlines()
               if line.startswith("| `access.permissionsBoundaryArn`"))  # fmt: skip
    assert all(f"`{action}`" in row for action in ADMINISTRATORS_CALLS), row


def test_every_role_carries_the_boundary():
    graph = run_ok({**FULL, "access.permissionsBoundaryArn": BOUNDARY_ARN})
    roles = [m for m in stack_made(graph) if m.type == "aws:iam/role:Role"]
    assert roles and all(m.inputs.get("permissionsBoundary") == BOUNDARY_ARN for m in roles)
