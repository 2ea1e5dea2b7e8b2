"""The `cilium` section: the Cilium chart's version and features, and Hubble
(components/cilium.py installs it).

Imports only the config package's own field types (never a component).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from components.config.fields import Flag, Section, refuse

DEFAULT_CILIUM_VERSION = "1.19.6"
# The oldest chart that installs with no node yet. In 1.16-1.18 `hubble.tls.auto.method:
# cronJob` makes the first certificate Job a Helm post-install hook; Helm waits for hooks
# even when the release does not wait for pods, the hook never runs without nodes, and the
# node group (which waits for the release) is never created. Fixed in 1.19 (cilium/cilium
# PR #42298); tests/test_cilium_chart.py renders 1.18.12 to show the hook.
MIN_CILIUM_VERSION = (1, 19, 0)
SEMVER_RE = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")
MINOR_RE = re.compile(r"^(\d+)\.(\d+)$")
# cilium.mapDynamicSizeRatio: the tuned share of node memory for the conntrack, NAT and
# neighbour maps (docs/performance.md says why 0.08), and the range the agent accepts:
# (0.0, 1.0] (pkg/maps/mapsize calculateBPFMapSizes, "must be > 0.0 and <= 1.0"; the
# chart's configmap says the same). 0 is no way out either: the chart reads it as unset
# and writes its own 0.0025 (cilium-configmap.yaml, bpf-map-dynamic-size-ratio).
DEFAULT_MAP_DYNAMIC_SIZE_RATIO = 0.08
# A decimal as text, the way `pulumi config set --path` leaves one (0.04, .04, 1): digits
# only, so neither nan, inf, 1e-2 nor true passes for a number.
DECIMAL_RE = re.compile(r"^-?([0-9]+(\.[0-9]*)?|\.[0-9]+)$")


class HubbleConfig(Section):
    """Hubble, Cilium's flow observability: its relay and UI (components/cilium_values.py)."""

    relay: Flag = Field(default=True, description="Hubble Relay, served over TLS.")
    ui: Flag = Field(default=True, validate_default=True, description="Hubble UI (requires relay).")

    @field_validator("ui", mode="after")
    @classmethod
    def _ui_needs_relay(cls, ui: bool, info: ValidationInfo) -> bool:
        if ui and info.data.get("relay") is False:
            raise refuse(
                "true requires cilium.hubble.relay: true (the UI reads flows from the relay)"
            )
        return ui


class CiliumConfig(Section):
    """The Cilium chart (components/cilium.py)."""

    version: str = Field(
        default=DEFAULT_CILIUM_VERSION,
        description="Exact chart version X.Y.Z, 1.19.0 or newer. Upgrade one minor at a "
        "time, with upgradeCompatibility set.",
    )
    kube_proxy_replacement: Flag = Field(
        default=True,
        description="Cilium's eBPF service handling replaces kube-proxy. Cannot be switched "
        "on a live cluster.",
    )
    prefix_delegation: Flag = Field(
        default=True,
        description="ENIs hand out /28 prefixes instead of single IPs (110 pods per "
        "t3.medium instead of 17); needs Nitro instance types.",
    )
    encryption: Literal["wireguard", "none"] = Field(
        default="wireguard",
        description="Transparent encryption of pod traffic between nodes: WireGuard "
        "(UDP 51871 between nodes), or none.",
    )
    upgrade_compatibility: str | None = Field(
        default=None,
        description='The Cilium minor first installed on this cluster (e.g. "1.19"): the '
        "chart keeps that minor's defaults across upgrades (Cilium's upgrade guide). Needed "
        "for a minor upgrade; unset on a fresh install.",
    )
    datapath_mode: Literal["veth", "netkit"] = Field(
        default="veth",
        description="Pods' network devices: veth pairs, or netkit (faster with eBPF host "
        "routing; kernel 6.8+, which AL2023 has on every version offered; Cilium's own EKS "
        "netkit CI jobs are quarantined, cilium/cilium #46621). Needs kubeProxyReplacement. "
        "On a live cluster only pods created afterwards switch: roll the nodes, then `make "
        "verify` (docs/performance.md).",
    )
    # The datapath tuning (docs/performance.md: each setting's source, cost and off switch).
    bandwidth_manager: Flag = Field(
        default=True,
        description="Cilium's bandwidth manager: EDT pacing and fq qdiscs on the nodes' "
        "devices, and pods' kubernetes.io/egress-bandwidth honoured (chart "
        "bandwidthManager.enabled). Unset with kubeProxyReplacement: false, it is off "
        "(legacy routing: Cilium warns of latency).",
    )
    bbr: Flag = Field(
        default=True,
        description="BBR congestion control for pods' TCP (chart bandwidthManager.bbr; "
        "kernel 5.18+, which AL2023 has). Needs bandwidthManager and eBPF host routing, "
        "i.e. kubeProxyReplacement: true (Cilium refuses to start BBR on legacy routing); "
        "unset, it is off without either. Applies to sockets opened afterwards.",
    )
    load_balancer_algorithm: Literal["maglev", "random"] = Field(
        default="maglev",
        description="How Cilium picks a Service's backend (chart loadBalancer.algorithm): "
        "maglev (consistent hashing: a flow keeps its backend on every node; a table per "
        "Service, more memory), or random. Needs kubeProxyReplacement: without it kube-proxy "
        "balances Services, not Cilium, so leave it unset there.",
    )
    distributed_lru: Flag = Field(
        default=True,
        description="Per-CPU LRU lists for the conntrack and NAT maps: no lock shared by "
        "all CPUs on each new flow (chart bpf.distributedLRU.enabled). Switching it on a "
        "live cluster recreates those maps at the agents' restart.",
    )
    map_dynamic_size_ratio: float = Field(
        default=DEFAULT_MAP_DYNAMIC_SIZE_RATIO,
        description="Share of node memory for the conntrack, NAT and neighbour maps, more "
        "than 0 and at most 1 (chart bpf.mapDynamicSizeRatio; the chart's own is 0.0025). "
        "0.08 is about 330 MiB on a 4 GiB node; a change resizes the maps at the agents' "
        'restart. The text `pulumi config set --path` writes (e.g. "0.04") is taken as the '
        "number.",
    )
    hubble: HubbleConfig = Field(default_factory=HubbleConfig)

    @model_validator(mode="before")
    @classmethod
    def _bandwidth_manager_off_on_legacy_routing(cls, data: Any) -> Any:
        # With kubeProxyReplacement: false Cilium routes the legacy way (see below), where
        # BBR stops the agent and the bandwidth manager adds latency (Cilium's bandwidth
        # manager guide): there, unset, both are off rather than refused, so a stack file
        # that only says kubeProxyReplacement: false keeps working. Likewise BBR, unset, is
        # off with bandwidthManager: false, which it runs on. The keys are the aliases: the
        # model validates by alias only (no validate_by_name), so a snake_case key never
        # gets here; it is refused as unknown (tests/test_config.py).
        if isinstance(data, dict) and data.get("kubeProxyReplacement") is False:
            data = {"bandwidthManager": False, "bbr": False, **data}
        if isinstance(data, dict) and data.get("bandwidthManager") is False:
            data = {"bbr": False, **data}
        return data

    @model_validator(mode="after")
    def _bbr_needs_the_bandwidth_manager(self) -> CiliumConfig:
        # The agent refuses to start BBR on legacy routing ("BPF bandwidth manager's BBR
        # setup requires BPF host routing.", pkg/datapath/linux/bandwidth probe).
        if self.bbr and not self.kube_proxy_replacement:
            raise refuse(
                "bbr: true needs eBPF host routing, which needs kubeProxyReplacement: true "
                "(Cilium refuses to start BBR on legacy routing); set cilium.bbr: false, or "
                "cilium.kubeProxyReplacement: true on a new stack"
            )
        # The chart writes enable-bbr only inside `if .Values.bandwidthManager.enabled`
        # (cilium-configmap.yaml, 1.19.6 and 1.20.0; values.yaml: the bandwidth manager is
        # the "prerequirement for BBR"): BBR without it would be dropped without a word.
        if self.bbr and not self.bandwidth_manager:
            raise refuse(
                "bbr: true needs bandwidthManager: true (BBR runs on the bandwidth "
                "manager; the chart drops it without); set cilium.bbr: false, or "
                "cilium.bandwidthManager: true"
            )
        return self

    @model_validator(mode="after")
    def _an_algorithm_needs_kube_proxy_replacement(self) -> CiliumConfig:
        # Without kube-proxy replacement kube-proxy balances Services, not Cilium, and the
        # program passes no algorithm to the chart (components/cilium_values.py): one
        # asked for would be dropped without a word. Left unset, the default is no ask.
        if "load_balancer_algorithm" in self.model_fields_set and not self.kube_proxy_replacement:
            raise refuse(
                f"loadBalancerAlgorithm: {self.load_balancer_algorithm} needs "
                "kubeProxyReplacement: true (without it kube-proxy balances Services, not "
                "Cilium, and the algorithm would be ignored); remove cilium."
                "loadBalancerAlgorithm, or set cilium.kubeProxyReplacement: true on a new stack"
            )
        return self

    @field_validator("map_dynamic_size_ratio", mode="before")
    @classmethod
    def _a_share_of_memory(cls, value: Any) -> Any:
        # `pulumi config set --path cilium.mapDynamicSizeRatio 0.04` stores the text "0.04":
        # the CLI makes a number only of base-10 digits (pulumi/pulumi sdk/go/common/
        # resource/config/object.go `coerce`, used by value.go `coerceObject` for a value
        # set without --type), so a decimal written as text is taken as its number. The
        # config's whole numbers never arrive as text that way (the CLI types them).
        number = float(value) if isinstance(value, str) and DECIMAL_RE.match(value) else value
        if isinstance(number, bool) or not isinstance(number, int | float) or not 0 < number <= 1:
            shown = getattr(value, "text", repr(value))
            raise refuse(
                f"{shown} is not allowed; use a number more than 0 and at most 1 (Cilium's "
                f"range), e.g. {DEFAULT_MAP_DYNAMIC_SIZE_RATIO}, or the chart's 0.0025"
            )
        return number

    @model_validator(mode="after")
    def _netkit_needs_host_routing(self) -> CiliumConfig:
        # Without kube-proxy replacement Cilium routes the legacy way (pkg/kpr/initializer
        # FinishKubeProxyReplacementInit), and 1.20 refuses to start netkit on legacy
        # routing (cilium/cilium #44713): refused here, before any resource.
        if self.datapath_mode == "netkit" and not self.kube_proxy_replacement:
            raise refuse(
                "datapathMode: netkit needs eBPF host routing, which needs "
                "kubeProxyReplacement: true (Cilium refuses netkit on legacy routing, "
                "cilium/cilium #44713); set cilium.datapathMode: veth, or "
                "cilium.kubeProxyReplacement: true on a new stack"
            )
        return self

    @field_validator("version", mode="after")
    @classmethod
    def _exact_and_recent(cls, version: str) -> str:
        match = SEMVER_RE.match(version)
        if not match:
            raise refuse(
                f"{version!r} is not an exact chart version; use X.Y.Z (e.g. "
                f"{DEFAULT_CILIUM_VERSION}) so every `pulumi up` installs the same chart"
            )
        if tuple(int(part) for part in match.groups()) < MIN_CILIUM_VERSION:
            raise refuse(
                f"{version!r} is too old; allowed: {'.'.join(map(str, MIN_CILIUM_VERSION))} or "
                "newer (before 1.19 the chart's Hubble certificate Job is a Helm hook that "
                "cannot run before nodes exist, so the install never finishes)"
            )
        return version

    @field_validator("upgrade_compatibility", mode="after")
    @classmethod
    def _a_minor_not_ahead(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return value
        if not MINOR_RE.match(value):
            raise refuse(f'{value!r} is not a Cilium minor; use X.Y, e.g. "1.19"')
        version = info.data.get("version")
        if version and minor_of(value) > minor_of(version):
            raise refuse(
                f"{value!r} is newer than cilium.version {version!r}; set it to the minor "
                "first installed on this cluster"
            )
        return value


def minor_of(version: str) -> tuple[int, int]:
    """(1, 20) for "1.20.0" or "1.20"."""
    major, minor = version.split(".")[:2]
    return int(major), int(minor)
