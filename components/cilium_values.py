"""The Cilium chart's values for ENI IPAM mode with Hubble, the tuned datapath and
ClusterMesh: `helm_values()`, each value explained where it is set, and the `clustermesh`
block (`clustermesh_values()`) from what a cluster joins a mesh with (`ClusterMesh`, an
input of the Cilium component: no `from __future__ import annotations` here, since Pulumi's
analyzer reads its annotations as objects).

Imports the config and the image cache's and teardown's helpers; components/cilium.py
installs the chart with these values, components/mesh.py makes a `ClusterMesh`.
"""

import hashlib
from typing import Any, TypedDict

import pulumi

from components.config import CiliumConfig, minor_of
from components.image_cache import CHART_IMAGES
from components.teardown import eni_gc_tags

NAMESPACE = "kube-system"


class ClusterMesh(TypedDict):
    """What a cluster joins a Cilium ClusterMesh with: its ID, its peers, the mesh's CA."""

    cluster_id: int
    """This cluster's ID, unique in the mesh: 1-127 (the chart refuses 128-255 with ENI IPAM)."""

    clusters: pulumi.Input[list[dict[str, Any]]]
    """The peers as the chart's clustermesh.config.clusters takes them: name, address, port."""

    ca_cert: pulumi.Input[str]
    """The mesh's CA certificate (PEM), the same in every cluster: cilium-ca's ca.crt."""

    ca_key: pulumi.Input[str]
    """The mesh CA's private key (PEM): the cilium-ca Secret's ca.key, kept secret."""

    native_routing_cidr: pulumi.Input[str]
    """A CIDR covering every cluster's VPC: pods of the mesh are routed natively."""

    endpoint_hosts: str
    """More names for the clustermesh-apiserver's certificate: the host names peers dial."""


def ca_fingerprint(cert_pem: str) -> str:
    """The CA certificate's sha256: what the stacks compare (no secret in it), and the pod
    label that re-issues the mesh's certificates when the CA changes (helm_values)."""
    return hashlib.sha256(cert_pem.encode()).hexdigest()


# ClusterMesh (helm_values): the pod label that carries the mesh CA's fingerprint, and the
# MTU that fits inter-region VPC peering.
MESH_CA_LABEL = "cilium-eks.io/mesh-ca"
MESH_MTU = 8500


def helm_values(
    *,
    cluster_name: pulumi.Input[str],
    config: CiliumConfig,
    operator_role_arn: pulumi.Input[str],
    pod_subnet_ids: pulumi.Input[list[str]],
    operator_replicas: int,
    api_server_host: pulumi.Input[str],
    eni_tags: pulumi.Input[dict[str, str]],
    image_registry: pulumi.Input[str] | None = None,
    mesh: ClusterMesh | None = None,
) -> dict[str, Any]:
    """The chart values (checked against the chart's values.schema.json and values.yaml,
    and rendered with the real chart, in tests). Everything the program relies on is set
    here, not left to a chart default that may change between minors."""
    kpr = config.kube_proxy_replacement
    values: dict[str, Any] = {
        # ENI garbage collection tags and Hubble's flows carry this name; it is the EKS
        # cluster's, so ENIs are traceable to it in the EC2 console.
        "cluster": {"name": cluster_name},
        # Each of Cilium's workloads restarts when the chart changes its ConfigMap: the
        # agents, the operator, cilium-envoy and Hubble Relay read theirs only at start, so
        # a change of config (a tuning, the encryption, datapathMode, a mesh) would reach a
        # node only when its agent happened to restart, and `make verify` would fail there
        # meanwhile. The chart then hashes the ConfigMap into the pod template
        # (templates/cilium-agent/daemonset.yaml, cilium-operator/deployment.yaml,
        # cilium-envoy/daemonset.yaml, hubble-relay/deployment.yaml; off by default); the
        # agents roll two nodes at a time (the DaemonSet's maxUnavailable: 2).
        "rollOutCiliumPods": True,
        "envoy": {"rollOutPods": True},
        "eni": {
            # IPs for pods come from ENIs that cilium-operator attaches to the nodes.
            "enabled": True,
            # The operator's AWS identity: the chart annotates its service account with
            # this role (IRSA), so no node-wide credentials are needed.
            "iamRole": operator_role_arn,
            # Pod ENIs only in the private subnets. Without a filter the operator takes
            # the subnet of the AZ with most free IPs, public ones included, and a pod
            # there has no route out (public subnets have no NAT for private addresses).
            "subnetIDsFilter": pod_subnet_ids,
            # The tags on every ENI Cilium creates, which its garbage collection (and this
            # stack's teardown sweep, components/teardown.py) selects by. Spelled out: the
            # chart's default "auto-detects" the cluster name.
            "gcTags": eni_gc_tags(cluster_name),
            # And the stack's own tags (project, stack, the user's aws:defaultTags), as on
            # every AWS resource of the stack: the deploy role's ENI sweep may delete only
            # interfaces tagged project=cilium-eks (docs/iam/deploy-policy.json), and cost
            # reports find pod ENIs with the rest. Cilium adds the GC tags to these.
            "eniTags": eni_tags,
            # /28 prefixes instead of single IPs per ENI slot: 16 times the pod addresses
            # per ENI (nodes.py raises kubelet's max pods to match). Nitro instances only.
            "awsEnablePrefixDelegation": config.prefix_delegation,
        },
        # Implied by eni.enabled from 1.19; set for readers.
        "ipam": {"mode": "eni"},
        # Pods use VPC addresses and VPC routing: no overlay (`tunnel` was removed in 1.15).
        "routingMode": "native",
        # No masquerading (the ENI-mode default since 1.18, before it on): pods have VPC
        # addresses, nodes are in private subnets, and the NAT gateway translates traffic
        # leaving the VPC.
        "enableIPv4Masquerade": False,
        # Cilium's eBPF service handling instead of kube-proxy's iptables, or not.
        "kubeProxyReplacement": config.kube_proxy_replacement,
        "operator": {"replicas": operator_replicas, "rollOutPods": True},
        # Pod traffic between nodes encrypted with WireGuard (UDP 51871, allowed between
        # the nodes by components/cluster.py), or not; stated either way.
        "encryption": (
            {"enabled": True, "type": "wireguard"}
            if config.encryption == "wireguard"
            else {"enabled": False}
        ),
        "hubble": {
            "enabled": True,
            "relay": {
                "enabled": config.hubble.relay,
                "rollOutPods": True,  # with its ConfigMap, as the agents (above)
                # Relay serves its gRPC API over TLS (certificate *.hubble-relay.cilium.io
                # from the same CronJob); the UI gets a client certificate from it too.
                "tls": {"server": {"enabled": config.hubble.relay}},
            },
            "ui": {"enabled": config.hubble.ui},
            # Certificates made in the cluster by a CronJob, not by Helm at render time:
            # Helm-made certificates change on every render, a diff on every `pulumi up`.
            "tls": {"auto": {"method": "cronJob"}},
        },
        # --- the datapath, tuned (Cilium's Tuning Guide; docs/performance.md) ---
        "bpf": {
            # eBPF host routing: pod traffic is routed in BPF, past iptables and the upper
            # host stack. Stated, not left to the agent: it falls back to legacy routing
            # silently (an Info log) with iptables masquerading, IPsec or without kube-proxy
            # replacement (pkg/kpr/initializer FinishKubeProxyReplacementInit and
            # InitKubeProxyReplacementOptions). Masquerading is off and IPsec is never used
            # here, so only kubeProxyReplacement: false makes it legacy: said so.
            "hostLegacyRouting": not kpr,
            # Per-CPU LRU lists for the conntrack and NAT maps: no lock shared by all CPUs
            # on every new flow. The chart recommends larger maps with it (the ratio below).
            # (cilium.distributedLru)
            "distributedLRU": {"enabled": config.distributed_lru},
            # Share of node memory for the conntrack, NAT and neighbour maps
            # (cilium.mapDynamicSizeRatio): 0.08 by default, the value of the Tuning Guide's
            # recommended profile, which pairs it with the distributed LRU (each CPU's LRU
            # list then holds only its share of the entries). The chart's 0.0025 is 10 MiB
            # on the default 4 GiB t3.medium, less than the default-sized conntrack maps
            # alone, so the agent clamps them to its floor (128Ki TCP entries; pkg/maps
            # mapsize getDynamicSizeCalculator). 0.08 is ~330 MiB of kernel memory there,
            # ~1.3 GiB on 16 GiB nodes (docs/performance.md).
            "mapDynamicSizeRatio": config.map_dynamic_size_ratio,
            # Pod devices: veth, or netkit (kernel 6.8+: AL2023 on Kubernetes 1.33+), which
            # needs eBPF host routing. bpf.tproxy stays unset (off): the chart refuses it
            # with netkit (validate.yaml), and the agent too (cilium/cilium #44048).
            "datapathMode": config.datapath_mode,
        },
        # No masquerading for IPv6 either (the chart's default is on; the agent ignores it
        # without IPv6, pkg/option Populate): stated, since iptables masquerading of any
        # family would turn host routing legacy.
        "enableIPv6Masquerade": False,
        # Bandwidth manager with BBR for pods (cilium.bandwidthManager, cilium.bbr): EDT
        # pacing and fq qdiscs on the node's devices, BBR congestion control for pod
        # sockets. BBR needs kernel 5.18+ (AL2023 has 6.12 on Kubernetes 1.34-1.35, 6.18 on
        # 1.36) and eBPF host routing: with legacy routing the agent refuses to start ("BBR
        # setup requires BPF host routing", pkg/datapath/linux/bandwidth probe), so the
        # config refuses it without kube-proxy replacement, and turns both off there unless
        # asked (components/config/cilium.py).
        "bandwidthManager": {"enabled": config.bandwidth_manager, "bbr": config.bbr},
        # Off, and stated (docs/performance.md says why): BIG TCP needs no encryption and
        # mlx4/mlx5/ice NICs (ENA is not among them); XDP acceleration needs ENA's MTU at
        # 3498 or less and leaves north-south traffic unencrypted with WireGuard.
        "enableIPv4BIGTCP": False,
        "enableIPv6BIGTCP": False,
        "loadBalancer": {"acceleration": "disabled"},
    }
    if kpr:
        # Service backends by Maglev consistent hashing, or random (cilium.
        # loadBalancerAlgorithm; the agent's own service load balancer exists only with
        # kube-proxy replacement): with Maglev the same backend for a flow on every node.
        # SNAT, not DSR: DSR needs the ENIs' source/destination check off.
        values["loadBalancer"] |= {"algorithm": config.load_balancer_algorithm, "mode": "snat"}
    if config.upgrade_compatibility:
        # The minor first installed: the chart keeps its defaults across minor upgrades
        # (e.g. 1.20 would switch the L7 proxy to envoy-xds-mode ads). Unset on a fresh
        # install, which takes the chart's own defaults.
        values["upgradeCompatibility"] = config.upgrade_compatibility
    if config.kube_proxy_replacement:
        # Without kube-proxy nothing translates the `kubernetes` Service's ClusterIP until
        # the agent runs, so agents reach the API server directly: the EKS endpoint's host
        # name (no scheme, not an IP), port 443.
        values["k8sServiceHost"] = api_server_host
        values["k8sServicePort"] = 443
    if mesh:
        # ClusterMesh names clusters by cluster.name (the EKS name, unique in the mesh, as
        # config.mesh_problems checks) and tells identities apart by cluster.id.
        values["cluster"]["id"] = mesh["cluster_id"]
        # Native routing must cover every cluster's pods (ClusterMesh setup; in ENI mode
        # Cilium would otherwise take its own VPC's CIDR only).
        values["ipv4NativeRoutingCIDR"] = mesh["native_routing_cidr"]
        # The mesh's one CA is NOT in these values (no tls.ca): it is the cilium-ca Secret
        # the stack applies before the release (Cilium, `mesh_ca_secret`), which the
        # certgen Jobs and CronJobs sign Hubble's and the clustermesh-apiserver's
        # certificates with (--ca-reuse-secret --ca-secret-name=cilium-ca), so each
        # cluster trusts the others'. In the values the key would sit in the Helm release
        # Secret and make the whole values block secret, hiding every diff of it in a
        # preview. And certgen makes no CA of its own (generateCA: false): without
        # cilium-ca it fails instead of signing with a CA no peer trusts (certgen
        # cmd/certgen.go: --ca-generate stores a new CA unless one exists; without it,
        # --ca-reuse-secret loads the Secret or fails).
        # certgen makes certificates only when its Job's name, a checksum of the Job's
        # spec, changes; the CA is not in that spec. Its fingerprint as a pod label is:
        # a new CA (cluster 1 re-created) re-issues every certificate at the next up.
        fingerprint = pulumi.Output.unsecret(
            pulumi.Output.from_input(mesh["ca_cert"]).apply(ca_fingerprint)
        )
        ca_label = {MESH_CA_LABEL: fingerprint.apply(lambda fp: fp[:16])}
        values["certgen"] = {"generateCA": False, "podLabels": ca_label}
        values["clustermesh"] = clustermesh_values(mesh, config.version, operator_replicas)
        values["clustermesh"]["apiserver"]["podLabels"] = ca_label
        # Peers may be in another region: inter-region VPC peering carries at most 8500
        # bytes (AWS EC2 user guide, "Network MTU": jumbo frames' limits) and drops larger
        # packets marked don't-fragment, while ENIs run 9001. Cilium derives its devices'
        # and routes' MTU from this instead (WireGuard's overhead is taken off it).
        values["MTU"] = MESH_MTU
    for path, upstream in CHART_IMAGES.items():
        if image_registry is None:
            break
        # Through a mirror of quay.io, e.g. the stack's ECR cache (components/image_cache.py);
        # tag and digest stay the chart's, so the images are still pulled by digest.
        node = values
        for key in path:
            node = node.setdefault(key, {})
        node["repository"] = pulumi.Output.concat(image_registry, "/", upstream)
    return values


# How often the CronJob renews the clustermesh-apiserver's certificates (1.20's default;
# 1.19 has none and would keep its three-year certificates until they expire).
CLUSTERMESH_CERT_SCHEDULE = "0 0 1 */4 *"


def clustermesh_values(mesh: ClusterMesh, version: str, replicas: int) -> dict[str, Any]:
    """The chart's `clustermesh` values for a cluster of the mesh."""
    tls: dict[str, Any] = {
        # Made in the cluster by a CronJob, as Hubble's: no diff on every render.
        "auto": {"enabled": True, "method": "cronJob", "schedule": CLUSTERMESH_CERT_SCHEDULE}
    }
    # The certificate also names every NLB host of the region, which is what peers dial
    # (MeshEndpoint); 1.20 moved the key under tls.auto (1.19 has no such key).
    extra_names = {"extraDnsNames": [mesh["endpoint_hosts"]]}
    if minor_of(version) >= (1, 20):
        tls["auto"]["server"] = extra_names
    else:
        tls["server"] = extra_names
    return {
        # Each cluster runs a clustermesh-apiserver (etcd + KVStoreMesh); peers connect to
        # it, never to the cluster's Kubernetes API.
        "useAPIServer": True,
        # The same in every cluster of a mesh (ClusterMesh setup); 255 is the default,
        # stated: it bounds cluster.id (and 511 would halve the cluster-local identities).
        "maxConnectedClusters": 255,
        # Policies select local endpoints unless they name clusters (1.19's default,
        # stated): the demo's rule1 names them (components/starwars.py).
        "policyDefaultLocalCluster": True,
        "config": {
            # The chart writes each peer's endpoint for KVStoreMesh: https://<NLB host>:2379
            # (no `ips`: the host is dialled and its certificate checked by that name).
            "enabled": True,
            "clusters": mesh["clusters"],
        },
        "apiserver": {
            "replicas": replicas,
            # KVStoreMesh caches the peers' state in the local apiserver, so agents never
            # dial a peer (Cilium's recommended mode; the chart's default, stated).
            "kvstoremesh": {"enabled": True},
            # The local agents reach it in the cluster; peers through the stack's own
            # internal NLB Service (components/mesh.py), whose host Pulumi waits for.
            "service": {"type": "ClusterIP"},
            "tls": tls,
        },
    }
