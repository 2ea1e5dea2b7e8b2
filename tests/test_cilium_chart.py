"""The Helm values against the Cilium chart itself, for every pinned chart version.

values.schema.json checks types but accepts unknown keys, so every key the program sets
is also looked up in the chart's values.yaml: a key renamed or removed in a new chart
(as `tunnel` was in 1.15) fails here, before an upgrade is tried on a cluster. And the
chart is rendered with the program's exact values by Helm's own engine (helm-python-sdk):
what a real install depends on is asserted on the manifests Helm would apply.
"""

from __future__ import annotations

import fnmatch
import functools
import json
import re
import shlex
from pathlib import Path
from typing import Any, get_args

import helm_python
import jsonschema
import kubernetes_validate
import pytest
import yaml

from components.cilium_values import helm_values
from components.config import MIN_CILIUM_VERSION, CiliumConfig
from tests import reference as upstream
from tests.harness import Graph, dev_config, run_ok

RELEASE = "kubernetes:helm.sh/v3:Release"


def semver(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


# The pinned chart versions (the same tests on every checkout); without the reference data
# the `reference` fixture skips each with the reason. Config refuses the older ones.
ACCEPTED = [v for v in upstream.CHART_VERSIONS if semver(v) >= MIN_CILIUM_VERSION]
REFUSED = [v for v in upstream.CHART_VERSIONS if semver(v) < MIN_CILIUM_VERSION]


# Maps whose keys are ours, not the chart's: ENI tags, pod labels.
FREE_FORM = ("gcTags", "eniTags", "podLabels")


def leaf_paths(values: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = []
    for key, value in values.items():
        if isinstance(value, dict) and value and key not in FREE_FORM:
            paths.extend(leaf_paths(value, (*prefix, key)))
        else:
            paths.append((*prefix, key))
    return paths


def comment_above(values_yaml: str, path: tuple[str, ...]) -> str:
    """The comment block written above a key in values.yaml (the chart's documentation)."""
    lines = values_yaml.splitlines()
    start = 0
    for depth, key in enumerate(path):
        pattern = re.compile(rf"^{' ' * (2 * depth)}{re.escape(key)}:")
        start = next(i for i in range(start, len(lines)) if pattern.match(lines[i]))
    block = []
    for line in reversed(lines[:start]):
        if not line.strip().startswith("#"):
            break
        block.append(line)
    return "\n".join(reversed(block))


@pytest.fixture(scope="module")
def values(dev) -> dict[str, Any]:
    return dev.one(RELEASE).inputs["values"]


def chart_dir(reference: Path, version: str) -> Path:
    return reference / "cilium-chart" / version


def test_the_pinned_version_is_among_the_checked_charts():
    assert dev_config()["cilium"]["version"] in ACCEPTED
    assert REFUSED, "an older chart shows the hook the config refuses it for"


@pytest.mark.parametrize("version", ACCEPTED)
def test_values_are_valid_against_the_charts_schema(reference, values, version):
    schema = json.loads((chart_dir(reference, version) / "values.schema.json").read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [f"{'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(values)]
    assert not errors


@pytest.mark.parametrize("version", ACCEPTED)
def test_every_key_set_exists_in_the_charts_values_yaml(reference, values, version):
    missing = unknown_keys(reference, version, values)
    assert not missing, f"keys unknown to chart {version}: {missing}"


def chart_defaults(reference: Path, version: str) -> dict[str, Any]:
    """The chart's values.yaml, read by libyaml (CSafeLoader: yaml.safe_load's constructors,
    a parser in C; the pure Python one spends 0.6 s on its 4,000 lines)."""
    text = (chart_dir(reference, version) / "values.yaml").read_text()
    return yaml.load(text, Loader=yaml.CSafeLoader)


def unknown_keys(reference: Path, version: str, values: dict[str, Any]) -> list[str]:
    """The keys set in `values` (dotted) that the chart's values.yaml does not have, as a
    key or as a documented commented-out one (see `commented_out`)."""
    text = (chart_dir(reference, version) / "values.yaml").read_text()
    defaults = chart_defaults(reference, version)
    missing = []
    for path in leaf_paths(values):
        node: Any = defaults
        for key in path:
            if not isinstance(node, dict) or key not in node:
                if not commented_out(text, path):
                    missing.append(".".join(path))
                break
            node = node[key]
    return missing


def commented_out(values_yaml: str, path: tuple[str, ...]) -> bool:
    """A key the chart documents but leaves unset, as a comment in its parent's block:
    `loadBalancer:` ... `  # algorithm: random` (its templates read it with `hasKey`)."""
    *parents, leaf = path
    lines = values_yaml.splitlines()
    start = 0
    for depth, key in enumerate(parents):
        pattern = re.compile(rf"^{' ' * (2 * depth)}{re.escape(key)}:")
        found = [i for i in range(start, len(lines)) if pattern.match(lines[i])]
        if not found:
            return False
        start = found[0] + 1
    indent = " " * (2 * len(parents))
    for line in lines[start:]:
        if line.strip() and not line.startswith(indent):
            return False  # past the parent's block
        if re.match(rf"^{indent}#\s*{re.escape(leaf)}:", line):
            return True
    return False


@pytest.mark.parametrize("version", ACCEPTED)
@pytest.mark.parametrize("path", [("routingMode",), ("hubble", "tls", "auto", "method")])
def test_string_choices_are_among_those_the_chart_documents(reference, values, version, path):
    text = (chart_dir(reference, version) / "values.yaml").read_text()
    chosen: Any = values
    for key in path:
        chosen = chosen[key]
    assert re.search(rf"-\s+{re.escape(chosen)}\b", comment_above(text, path)), (
        f"{'.'.join(path)}={chosen!r} is not a documented choice in chart {version}"
    )


# --- the real chart, rendered --------------------------------------------------------------


@functools.cache
def render_all(reference: Path, version: str, values_json: str) -> dict[str, str]:
    """Every file `helm install cilium -n kube-system` renders with these values."""
    chart = helm_python.Chart.load(chart_dir(reference, version) / f"cilium-{version}.tgz")
    return chart.render(
        json.loads(values_json), name="cilium", namespace="kube-system", is_install=True
    )


def render(reference: Path, version: str, values_json: str) -> tuple[dict[str, Any], ...]:
    """The objects `helm install cilium -n kube-system` would create with these values.

    Read by libyaml (CSafeLoader: the same safe constructors, a parser in C): the pure
    Python parser spent about 0.4 s on each render's thousands of lines, most of this
    file's CPU."""
    return tuple(
        doc
        for template, text in sorted(render_all(reference, version, values_json).items())
        if template.endswith((".yaml", ".yml"))
        for doc in yaml.load_all(text, Loader=yaml.CSafeLoader)
        if doc
    )


def rendered(reference: Path, version: str, graph: Graph) -> tuple[dict[str, Any], ...]:
    return render(reference, version, json.dumps(graph.one(RELEASE).inputs["values"]))


def notes(reference: Path, version: str, graph: Graph) -> str:
    """What `helm install` prints after installing (NOTES.txt, with the chart's warnings)."""
    files = render_all(reference, version, json.dumps(graph.one(RELEASE).inputs["values"]))
    return files["cilium/templates/NOTES.txt"]


def find(objects, kind: str, name: str) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def blocking_hooks(objects) -> list[str]:
    """Helm hooks that need a node to finish: Helm waits for a hook Job or Pod to complete
    even when the release does not wait for its pods, and before the node group exists
    none can, so the install times out and the nodes (which wait for it) never come."""
    return [
        f"{o['kind']}/{o['metadata']['name']} ({hook})"
        for o in objects
        if o["kind"] in ("Job", "Pod")
        and (hook := (o["metadata"].get("annotations") or {}).get("helm.sh/hook"))
    ]


@pytest.mark.parametrize("version", ACCEPTED)
def test_the_chart_installs_with_no_node_yet(reference, dev, version):
    # rendering at all means the chart's own validate.yaml accepted the values
    assert not blocking_hooks(rendered(reference, version, dev))


@pytest.mark.parametrize("version", REFUSED)
def test_the_refused_charts_do_block_an_install_with_no_node(reference, dev, version):
    # why config refuses them: the same values make Hubble's first certificate Job a hook
    hooks = blocking_hooks(rendered(reference, version, dev))
    assert any("hubble-generate-certs" in hook and "post-install" in hook for hook in hooks)


@pytest.mark.parametrize("version", ACCEPTED)
def test_cilium_config_is_eni_ipam_native_routing_for_this_cluster(reference, dev, version):
    config = find(rendered(reference, version, dev), "ConfigMap", "cilium-config")["data"]
    assert config["ipam"] == "eni"
    assert config["routing-mode"] == "native"
    assert config["cluster-name"] == dev.one("eks:index:Cluster").inputs["name"]
    assert sorted(config["subnet-ids-filter"].split()) == dev.subnet_ids("private")
    assert config["enable-ipv4-masquerade"] == "false"
    assert config["kube-proxy-replacement"] == "true"
    assert config["aws-enable-prefix-delegation"] == "true"
    assert json.loads(config["eni-gc-tags"]) == {
        "io.cilium/cilium-managed": "true",
        "io.cilium/cluster-name": dev.one("eks:index:Cluster").inputs["name"],
    }


@pytest.mark.parametrize("version", ACCEPTED)
def test_the_operator_uses_irsa_the_aws_build_and_the_host_network(reference, dev, version):
    objects = rendered(reference, version, dev)
    account = find(objects, "ServiceAccount", "cilium-operator")
    role_arn = "arn:aws:iam::123456789012:role/operator"  # the mock's ARN of role "operator"
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == role_arn
    pod = find(objects, "Deployment", "cilium-operator")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert f"/operator-aws:v{version}@" in container["image"]
    # IMDS answers one hop only (the nodes' launch template): host-network pods reach it
    assert pod["hostNetwork"] is True


@pytest.mark.parametrize("version", ACCEPTED)
def test_the_agent_runs_everywhere_and_reaches_the_api_without_kube_proxy(reference, dev, version):
    agent = find(rendered(reference, version, dev), "DaemonSet", "cilium")["spec"]["template"]
    pod = agent["spec"]
    # it must start on nodes tainted node.cilium.io/agent-not-ready (and any other taint)
    assert {"operator": "Exists"} in pod["tolerations"]
    assert pod["hostNetwork"] is True
    (container,) = [c for c in pod["containers"] if c["name"] == "cilium-agent"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    host = dev.one(RELEASE).inputs["values"]["k8sServiceHost"]
    assert env["KUBERNETES_SERVICE_HOST"] == host and env["KUBERNETES_SERVICE_PORT"] == "443"
    assert f"/cilium:v{version}@" in container["image"]  # what the checks wait to see


@pytest.mark.parametrize("version", ACCEPTED)
def test_hubble_relay_and_ui_follow_config(reference, dev, version):
    objects = rendered(reference, version, dev)
    names = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert {("Deployment", "hubble-relay"), ("Deployment", "hubble-ui")} <= names
    # the stack output's port-forward reaches a Service the chart renders, on its port
    kubectl, flag, namespace, verb, target, ports = shlex.split(
        dev.output("commands")["hubbleUiPortForward"]
    )
    assert (kubectl, flag, verb, namespace) == ("kubectl", "-n", "port-forward", "kube-system")
    kind, name = target.split("/")
    service = find(objects, "Service", name)
    assert kind == "svc" and service["metadata"]["namespace"] == namespace
    assert int(ports.split(":")[1]) in [p["port"] for p in service["spec"]["ports"]]
    off = run_ok({"cilium.hubble.ui": False, "cilium.hubble.relay": False})
    names = {(o["kind"], o["metadata"]["name"]) for o in rendered(reference, version, off)}
    assert not {n for n in names if n[1] in ("hubble-relay", "hubble-ui")}


@pytest.mark.parametrize("version", ACCEPTED)
def test_every_rendered_object_is_valid_for_the_clusters_kubernetes_version(
    reference, dev, version
):
    kubernetes = dev.one("eks:index:Cluster").inputs["version"] + ".0"
    invalid = []
    for obj in rendered(reference, version, dev):
        try:
            kubernetes_validate.validate(obj, kubernetes, strict=True)
        except kubernetes_validate.ValidationError as err:
            invalid.append(f"{obj['kind']}/{obj['metadata']['name']}: {err.message}")
    assert not invalid


# --- encryption, relay TLS, upgrade compatibility -------------------------------------------


@pytest.mark.parametrize("version", ACCEPTED)
def test_wireguard_is_on_in_the_agents_config(reference, dev, version):
    config = find(rendered(reference, version, dev), "ConfigMap", "cilium-config")["data"]
    assert config["enable-wireguard"] == "true"
    off = run_ok({"cilium.encryption": "none"})
    config = find(rendered(reference, version, off), "ConfigMap", "cilium-config")["data"]
    assert config.get("enable-wireguard", "false") == "false"


def certgen_certificates(objects) -> dict[str, dict[str, Any]]:
    """The certificates the chart's CronJob method makes: {secret name: its spec}."""
    job = next(
        o for o in objects if o["kind"] == "Job" and "generate-certs" in o["metadata"]["name"]
    )
    (container,) = job["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    return {c["name"]: c for c in yaml.safe_load(env["CILIUM_CERTGEN_CONFIG"])["certs"]}


@pytest.mark.parametrize("version", ACCEPTED)
def test_hubble_relay_serves_tls_with_a_certificate_from_the_cronjob(reference, dev, version):
    objects = rendered(reference, version, dev)
    relay = yaml.safe_load(find(objects, "ConfigMap", "hubble-relay-config")["data"]["config.yaml"])
    assert relay["tls-relay-server-cert-file"] and "disable-server-tls" not in relay
    certs = certgen_certificates(objects)
    # made in the cluster (no diff on every `pulumi up`), and the UI gets a client one
    assert {"hubble-relay-server-certs", "hubble-ui-client-certs"} <= set(certs)
    # the stack's hubble commands: the secret they copy the CA from exists, and the server
    # name they give matches the relay certificate's host
    commands = dev.output("commands")
    assert "get secret hubble-relay-server-certs " in commands["hubbleCa"]
    server_name = shlex.split(commands["hubbleObserve"])[
        shlex.split(commands["hubbleObserve"]).index("--tls-server-name") + 1
    ]
    assert any(
        fnmatch.fnmatch(server_name, host) for host in certs["hubble-relay-server-certs"]["hosts"]
    )
    # `cilium hubble port-forward` takes the relay Service's first port: the TLS one
    (port,) = find(objects, "Service", "hubble-relay")["spec"]["ports"]
    assert port["port"] == 443


def test_the_1_20_chart_no_longer_warns_that_relay_serves_without_tls(reference, dev):
    # chart 1.20.0 templates/warnings.txt, printed after `helm install`
    assert "1.20.0" in ACCEPTED
    assert "TLS is not enabled for the Hubble Relay server" not in notes(reference, "1.20.0", dev)
    # the same values with relay TLS off: the warning is the chart's
    values = json.loads(json.dumps(dev.one(RELEASE).inputs["values"]))
    values["hubble"]["relay"]["tls"]["server"]["enabled"] = False
    files = render_all(reference, "1.20.0", json.dumps(values))
    assert "TLS is not enabled for the Hubble Relay server" in files["cilium/templates/NOTES.txt"]


def test_upgrade_compatibility_keeps_the_l7_proxy_mode_across_the_1_20_upgrade(reference):
    # chart 1.20.0 _helpers.tpl envoyXdsMode: "ads" unless upgradeCompatibility < 1.20
    def xds_mode(compatibility: str | None) -> str | None:
        graph = run_ok({"cilium.version": "1.20.0", "cilium.upgradeCompatibility": compatibility})
        config = find(rendered(reference, "1.20.0", graph), "ConfigMap", "cilium-config")
        return config["data"].get("envoy-xds-mode")

    assert xds_mode(None) == "ads"  # a fresh 1.20 install: the chart's new default
    assert xds_mode("1.19") is None  # upgraded from 1.19: the agent keeps its split mode


# --- the datapath, tuned (docs/performance.md) -----------------------------------------------

# Chart settings the rendered cilium-config must carry in both datapath modes. Each key is
# the agent option the chart writes (cilium-configmap.yaml), each value the tuning's.
TUNED = {
    "enable-host-legacy-routing": "false",  # eBPF host routing, stated
    "enable-bandwidth-manager": "true",
    "enable-bbr": "true",
    "bpf-lb-algorithm": "maglev",
    "bpf-distributed-lru": "true",
    # no iptables masquerading of either family: it would turn host routing legacy
    "enable-ipv4-masquerade": "false",
    "enable-ipv6-masquerade": "false",
}
# And the ones kept off, with the reason in docs/performance.md.
KEPT_OFF = {
    "enable-ipv4-big-tcp": "false",  # BIG TCP: no encryption, mlx4/mlx5/ice NICs only
    "enable-ipv6-big-tcp": "false",
    "bpf-lb-acceleration": "disabled",  # XDP: ENA's MTU limit, N-S traffic unencrypted
    "bpf-lb-mode": "snat",  # not DSR: needs the source/destination check off
}


# cilium.datapathMode's values, as the config allows them
DATAPATH_MODES = get_args(CiliumConfig.model_fields["datapath_mode"].annotation)


def chart_values(datapath_mode: str, cilium: dict[str, Any] | None = None) -> dict[str, Any]:
    """helm_values for the suite's stack (the mock's ARN, two subnets) with `cilium` config
    keys as in the stack file, and cilium.datapathMode set."""
    return helm_values(
        cluster_name="cilium-eks-dev",
        config=CiliumConfig.model_validate({**(cilium or {}), "datapathMode": datapath_mode}),
        operator_role_arn="arn:aws:iam::123456789012:role/operator",
        pod_subnet_ids=["subnet-0a", "subnet-0b"],
        operator_replicas=2,
        api_server_host="CILIUM-EKS-DEV.gr7.ap-northeast-2.eks.amazonaws.com",
        eni_tags={"project": "cilium-eks", "stack": "dev"},
    )


def cilium_config(reference: Path, version: str, values: dict[str, Any]) -> dict[str, str]:
    return find(render(reference, version, json.dumps(values)), "ConfigMap", "cilium-config")[
        "data"
    ]


def chart_default_ratio(reference: Path, version: str) -> float:
    """The chart's own bpf.mapDynamicSizeRatio (values.yaml `@default`, left unset there)."""
    text = (chart_dir(reference, version) / "values.yaml").read_text()
    comment = comment_above(text, ("bpf", "mapDynamicSizeRatio"))
    match = re.search(r"@default -- `([0-9.]+)`", comment)
    assert match, "the chart no longer documents its default ratio"
    return float(match.group(1))


@pytest.mark.parametrize("version", ACCEPTED)
def test_the_program_s_own_values_render_the_tuned_datapath(reference, dev, version):
    config = find(rendered(reference, version, dev), "ConfigMap", "cilium-config")["data"]
    assert {k: config.get(k) for k in TUNED} == TUNED
    assert {k: config.get(k) for k in KEPT_OFF} == KEPT_OFF
    assert config["datapath-mode"] == "veth"
    ratio = float(config["bpf-map-dynamic-size-ratio"])
    assert ratio >= 2 * chart_default_ratio(reference, version)


@pytest.mark.parametrize("mode", DATAPATH_MODES)
@pytest.mark.parametrize("version", ACCEPTED)
def test_both_datapath_modes_render_tuned_in_both_charts(reference, version, mode):
    values = chart_values(mode)
    assert not unknown_keys(reference, version, values)
    schema = json.loads((chart_dir(reference, version) / "values.schema.json").read_text())
    assert not list(jsonschema.validators.validator_for(schema)(schema).iter_errors(values))
    config = cilium_config(reference, version, values)
    assert config["datapath-mode"] == mode
    assert {k: config.get(k) for k in TUNED} == TUNED
    assert {k: config.get(k) for k in KEPT_OFF} == KEPT_OFF
    # the chart refuses TPROXY with netkit; it stays off in both modes
    assert config.get("enable-bpf-tproxy", "false") == "false"


@pytest.mark.parametrize("version", ACCEPTED)
def test_without_kube_proxy_replacement_routing_is_legacy_and_bbr_is_not_asked(reference, version):
    # Cilium: legacy host routing without kube-proxy replacement (pkg/kpr/initializer
    # InitKubeProxyReplacementOptions), and an agent that will not start with BBR on
    # legacy routing (pkg/datapath/linux/bandwidth probe): stated, and BBR left off.
    values = chart_values("veth", {"kubeProxyReplacement": False})
    config = cilium_config(reference, version, values)
    assert config["enable-host-legacy-routing"] == "true"
    assert config.get("enable-bbr", "false") == "false"
    assert config.get("enable-bandwidth-manager", "false") == "false"
    assert "bpf-lb-algorithm" not in config  # the agent balances no service without KPR


# Every `fail` of the charts' templates that the program's values could reach (the others
# test keys it never sets): the values that trip it, the chart's message, and what keeps
# the program clear of it. The line numbers are chart 1.20.0's (1.19.6 has the same rules).
CHART_REFUSALS = {
    # validate.yaml:246-253 ("see GH issue 39892"): bpf_sk_assign() is broken under netkit
    "tproxy with netkit": (
        {"bpf": {"datapathMode": "netkit", "tproxy": True}},
        ".Values.bpf.tproxy cannot be enabled with .Values.bpf.datapathMode=netkit",
    ),
    # validate.yaml:59-63; config refuses cilium.hubble.ui without cilium.hubble.relay
    "hubble ui without relay": (
        {"hubble": {"relay": {"enabled": False}}},
        "Hubble UI requires .Values.hubble.relay.enabled=true",
    ),
    # validate.yaml:164-169; config refuses mesh.clusterId above 127 (ENI mode)
    "cluster id 128-255 in ENI mode": (
        {"cluster": {"id": 128}},
        "if the cluster ID is 128-255",
    ),
}


def merged(values: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    result = json.loads(json.dumps(values))
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = value
    return result


@pytest.mark.parametrize("refusal", sorted(CHART_REFUSALS))
@pytest.mark.parametrize("version", ACCEPTED)
def test_the_charts_refuse_these_combinations(reference, version, refusal):
    change, message = CHART_REFUSALS[refusal]
    bad = merged(chart_values("netkit"), change)
    with pytest.raises(helm_python.HelmRenderError, match=re.escape(message)):
        render_all(reference, version, json.dumps(bad))


@pytest.mark.parametrize("mode", DATAPATH_MODES)
def test_the_program_never_asks_for_tproxy(mode):
    # the only key of CHART_REFUSALS' first rule the program sets is the mode: TPROXY stays
    # the chart's default (off) whatever the mode
    values = chart_values(mode)
    assert "tproxy" not in values["bpf"]


@pytest.mark.parametrize("version", ACCEPTED)
def test_the_program_renders_netkit_when_the_config_asks(reference, version):
    netkit = run_ok({"cilium.datapathMode": "netkit"})
    config = find(rendered(reference, version, netkit), "ConfigMap", "cilium-config")["data"]
    assert config["datapath-mode"] == "netkit"
    assert {k: config.get(k) for k in TUNED} == TUNED


# Each tuning off (its cilium.* key, docs/performance.md): the cilium-config the chart
# writes when the program leaves the chart value out, i.e. the chart's own default. The
# load balancing algorithm has none in the chart (it writes bpf-lb-algorithm only when
# set); random is the agent's default (values.yaml: "e.g. random or maglev").
TUNING_OFF = {
    # config keys: (the chart value the program would leave out, cilium-config keys)
    "bandwidthManager": (("bandwidthManager",), ("enable-bandwidth-manager", "enable-bbr")),
    "bbr": (("bandwidthManager", "bbr"), ("enable-bandwidth-manager", "enable-bbr")),
    "distributedLru": (("bpf", "distributedLRU"), ("bpf-distributed-lru",)),
    "mapDynamicSizeRatio": (("bpf", "mapDynamicSizeRatio"), ("bpf-map-dynamic-size-ratio",)),
}
TUNING_OFF_CONFIG = {
    "bandwidthManager": {"bandwidthManager": False, "bbr": False},
    "bbr": {"bbr": False},
    "distributedLru": {"distributedLru": False},
    "mapDynamicSizeRatio": {"mapDynamicSizeRatio": 0.0025},  # the chart's, documented
}


def left_out(values: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    result = json.loads(json.dumps(values))
    node = result
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return result


@pytest.mark.parametrize("key", sorted(TUNING_OFF))
@pytest.mark.parametrize("version", ACCEPTED)
def test_each_tuning_off_renders_the_chart_s_own_default(reference, version, key):
    path, written = TUNING_OFF[key]
    off = chart_values("veth", TUNING_OFF_CONFIG[key])
    schema = json.loads((chart_dir(reference, version) / "values.schema.json").read_text())
    assert not list(jsonschema.validators.validator_for(schema)(schema).iter_errors(off))
    config = cilium_config(reference, version, off)
    chart_default = cilium_config(reference, version, left_out(chart_values("veth"), path))
    assert {k: config.get(k) for k in written} == {k: chart_default.get(k) for k in written}
    # and the tuned value differs from it: the key does switch something
    tuned = cilium_config(reference, version, chart_values("veth"))
    assert {k: tuned.get(k) for k in written} != {k: config.get(k) for k in written}
    # the rest of the tuning stays
    rest = {k: v for k, v in TUNED.items() if k not in written}
    if key == "bbr":  # BBR off keeps the bandwidth manager, with CUBIC
        assert config["enable-bandwidth-manager"] == "true" and config["enable-bbr"] == "false"
    assert {k: config.get(k) for k in rest} == rest


@pytest.mark.parametrize("version", ACCEPTED)
def test_random_load_balancing_is_the_agent_s_default(reference, version):
    config = cilium_config(
        reference, version, chart_values("veth", {"loadBalancerAlgorithm": "random"})
    )
    assert config["bpf-lb-algorithm"] == "random"
    # the chart has no default of its own: left out, it writes nothing, and the agent's
    # default applies (values.yaml, loadBalancer.algorithm: "e.g. random or maglev")
    values = chart_values("veth")
    del values["loadBalancer"]["algorithm"]
    assert "bpf-lb-algorithm" not in cilium_config(reference, version, values)
    assert "# algorithm: random" in (chart_dir(reference, version) / "values.yaml").read_text()


# Combinations of the tuning keys the config accepts that come nearest to a `fail` of the
# charts' templates (validate.yaml has rules on the datapath mode, the load balancer and
# the bandwidth manager): (datapath mode, cilium config keys, what cilium-config then says).
ACCEPTED_TUNINGS = {
    "all five off": (
        "veth",
        {
            "bandwidthManager": False, "bbr": False, "loadBalancerAlgorithm": "random",
            "distributedLru": False, "mapDynamicSizeRatio": 0.0025,
        },
        {"bpf-lb-algorithm": "random", "bpf-distributed-lru": "false"},
    ),
    "bandwidth manager on legacy routing": (
        "veth",
        {"kubeProxyReplacement": False, "bandwidthManager": True, "bbr": False},
        {"enable-bandwidth-manager": "true", "enable-host-legacy-routing": "true"},
    ),
    "random with netkit": (
        "netkit", {"loadBalancerAlgorithm": "random"}, {"bpf-lb-algorithm": "random"}
    ),
    "no distributed LRU with netkit": (
        "netkit", {"distributedLru": False}, {"bpf-distributed-lru": "false"}
    ),
    "all memory for the maps": (
        "veth", {"mapDynamicSizeRatio": 1.0}, {"bpf-map-dynamic-size-ratio": "1"}
    ),
}  # fmt: skip


@pytest.mark.parametrize("combination", sorted(ACCEPTED_TUNINGS))
@pytest.mark.parametrize("version", ACCEPTED)
def test_the_charts_render_every_tuning_the_config_accepts(reference, version, combination):
    # chart_values validates the keys with the config's model first: each is accepted
    mode, keys, written = ACCEPTED_TUNINGS[combination]
    config = cilium_config(reference, version, chart_values(mode, keys))  # a `fail` raises
    assert {k: config.get(k) for k in written} == written


@pytest.mark.parametrize("version", ACCEPTED)
def test_the_charts_drop_bbr_without_the_manager(reference, version):
    # The chart writes enable-bbr only with the bandwidth manager, so the config refuses
    # that pair itself (tests/test_config.py): here is what the chart would do with it.
    values = chart_values("veth", {"bandwidthManager": False, "bbr": False})
    values["bandwidthManager"]["bbr"] = True
    config = cilium_config(reference, version, values)
    assert "enable-bbr" not in config and "enable-bandwidth-manager" not in config


# The pod templates a change of config must roll (rollOutCiliumPods, operator.rollOutPods):
# the agents and the operator read cilium-config only at start.
READERS_OF_CILIUM_CONFIG = (("DaemonSet", "cilium"), ("Deployment", "cilium-operator"))


@pytest.mark.parametrize("version", ACCEPTED)
def test_a_change_of_config_rolls_the_agents_and_the_operator_and_no_change_rolls_nothing(
    reference, version
):
    def templates(cilium: dict[str, Any] | None, *, fresh: bool = False) -> dict:
        values = json.dumps(chart_values("veth", cilium))
        files = (render_all.__wrapped__ if fresh else render_all)(reference, version, values)
        objects = [
            doc
            for template, text in files.items()
            if template.endswith(".yaml")
            for doc in yaml.safe_load_all(text)
            if doc
        ]
        return {key: find(objects, *key)["spec"]["template"] for key in READERS_OF_CILIUM_CONFIG}

    tuned = templates(None)
    # rendered again from scratch: the same config, the same templates (an up that changes
    # nothing restarts nothing)
    assert templates(None, fresh=True) == tuned
    # changes that touch only cilium-config: without the checksum the pods kept the old
    # config until they happened to restart, and `make verify` failed on every node
    for change in ({"bbr": False}, {"distributedLru": False}, {"mapDynamicSizeRatio": 0.04}):
        changed = templates(change)
        for key in READERS_OF_CILIUM_CONFIG:
            assert changed[key] != tuned[key], (change, key)
    # cilium-envoy and Hubble Relay roll with their own ConfigMaps
    objects = render(reference, version, json.dumps(chart_values("veth")))
    for kind, name, annotation in (
        ("DaemonSet", "cilium-envoy", "cilium.io/cilium-envoy-configmap-checksum"),
        ("Deployment", "hubble-relay", "cilium.io/hubble-relay-configmap-checksum"),
    ):
        template = find(objects, kind, name)["spec"]["template"]
        assert annotation in template["metadata"]["annotations"]
