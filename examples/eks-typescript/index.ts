// An EKS cluster of this program's own, with Cilium from the cilium-eks package as its only
// CNI: the package's Cilium component does on it what cilium-eks does on its own cluster
// (the operator's IAM role, aws-node and kube-proxy off, the Helm release in ENI mode with
// Hubble, the ENI sweep on destroy). README.md says what runs where.
import * as aws from "@pulumi/aws";
import * as awsx from "@pulumi/awsx";
import * as ciliumEks from "@pulumi/cilium-eks";
import * as eks from "@pulumi/eks";

const region = aws.config.requireRegion();

// Pods take VPC addresses in ENI mode: private subnets large enough for them.
const vpc = new awsx.ec2.Vpc("vpc", {
    cidrBlock: "10.0.0.0/16",
    numberOfAvailabilityZones: 3,
    natGateways: { strategy: awsx.ec2.NatGatewayStrategy.Single },
});

// EKS without the AWS VPC CNI and without kube-proxy: pulumi-eks installs neither as an
// add-on; EKS bootstraps both as plain DaemonSets, which the Cilium component switches off
// before any node exists. No node group here: the nodes come after Cilium, below.
// A fixed name: it is also Cilium's cluster.name (at most 32 of a-z, 0-9, '-'), which the
// Cilium component refuses otherwise; left unset, pulumi-eks auto-names the cluster
// `cluster-eksCluster-0123abcd` (its `name` input's doc), which Cilium would not take.
const cluster = new eks.Cluster("cluster", {
    name: "cilium-eks-ts",
    vpcId: vpc.vpcId,
    publicSubnetIds: vpc.publicSubnetIds,
    privateSubnetIds: vpc.privateSubnetIds,
    authenticationMode: eks.AuthenticationMode.Api,
    createOidcProvider: true, // IRSA for cilium-operator
    skipDefaultNodeGroup: true,
    bootstrapSelfManagedAddons: true,
    useDefaultVpcCni: true,
    corednsAddonOptions: { enabled: false }, // it needs nodes: added after them
    kubeProxyAddonOptions: { enabled: false }, // Cilium replaces kube-proxy
});

// The cluster's facts, its pod subnets, Cilium's settings (the `cilium` keys of cilium-eks's
// stack config), and the cluster's Kubernetes provider: the component refuses to run
// without one rather than use whatever cluster the ambient kubeconfig names.
const cilium = new ciliumEks.Cilium("cilium", {
    clusterName: cluster.eksCluster.name,
    oidcProviderArn: cluster.oidcProviderArn,
    clusterEndpoint: cluster.eksCluster.endpoint,
    vpcId: vpc.vpcId,
    podSubnetIds: vpc.privateSubnetIds,
    region: region,
    cilium: { version: "1.19.6", encryption: "wireguard", hubble: { relay: true, ui: true } },
}, { providers: [cluster.provider] });

const nodeRole = new aws.iam.Role("nodes", {
    assumeRolePolicy: aws.iam.assumeRolePolicyForPrincipal({ Service: "ec2.amazonaws.com" }),
});
const nodePolicies = ["AmazonEKSWorkerNodePolicy", "AmazonEC2ContainerRegistryReadOnly"].map(
    (policy) => new aws.iam.RolePolicyAttachment(`nodes-${policy}`, {
        role: nodeRole.name,
        policyArn: `arn:aws:iam::aws:policy/${policy}`,
    }),
);

// The nodes boot into Cilium: they wait for the whole Cilium component (the release, once
// aws-node is off), and carry Cilium's agent-not-ready taint, which the agent lifts once it
// runs on the node, so no pod starts before Cilium can give it an address. On destroy they
// go first, then Cilium's ENI sweep, then the cluster and the VPC.
const nodes = new eks.ManagedNodeGroup("nodes", {
    cluster: cluster,
    nodeRole: nodeRole,
    subnetIds: vpc.privateSubnetIds,
    instanceTypes: ["t3.medium"],
    scalingConfig: { desiredSize: 2, minSize: 2, maxSize: 4 },
    taints: [{ key: "node.cilium.io/agent-not-ready", value: "true", effect: "NO_EXECUTE" }],
}, { dependsOn: [cilium, ...nodePolicies] });

// CoreDNS as an EKS add-on once there are nodes to run it.
new aws.eks.Addon("coredns", {
    clusterName: cluster.eksCluster.name,
    addonName: "coredns",
}, { dependsOn: [nodes] });

export const kubeconfig = cluster.kubeconfig;
export const ciliumVersion = cilium.version;
export const ciliumOperatorRole = cilium.operatorRoleArn;
