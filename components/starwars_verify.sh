#!/bin/sh
# The runbook's checks, run by a Job from a pod labelled like a Star Wars ship. First that
# the platform under the policy is the one declared, then the policy checks themselves:
#   1. Cilium has rolled out (with skipAwait, a Helm upgrade returns before that, and checks
#      would run against old agents): the `cilium` DaemonSet runs CILIUM_VERSION on every
#      node, the `cilium-operator` Deployment runs it on every replica, and `cilium-envoy`
#      (the L7 proxy, when the chart deploys it; its tag is Envoy's) runs its current
#      pod template everywhere;
#   2. with kube-proxy replacement on, no kube-proxy pod runs;
#   3. with WireGuard, every node's CiliumNode carries its public key;
#   4. with a Karpenter NodePool named, it is Ready;
#   5. the deathstar's name resolves (so that a curl timeout below can only be a drop);
#   6. each ship observes what POLICY requires when it asks to land (and, under l7, the
#      tiefighter is denied the exhaust port).
#
# Environment:
#   SHIP             tiefighter (org=empire) or xwing (org=alliance): whose labels this pod has
#   POLICY           none | l3l4 | l7: the CiliumNetworkPolicy mode the stack declared
#   DEATHSTAR        base URL of the deathstar Service (http://deathstar.starwars.svc.cluster.local)
#   CILIUM_VERSION   the Cilium release deployed (1.19.6): agents must run image tag v1.19.6
#   KUBE_PROXY_REPLACEMENT  true: no kube-proxy pod may run; false or unset: not checked
#   ENCRYPTION       wireguard: every CiliumNode must carry network.cilium.io/wg-pub-key;
#                    none or unset: not checked
#   KARPENTER_NODEPOOL  the NodePool that must be Ready; unset: not checked
#   MESH_WAITING     a ClusterMesh check (DEATHSTAR is a peer's) that cannot run yet, and
#                    why: printed as a SKIP, and nothing is checked; unset or empty: run
#   ATTEMPTS         tries per check and per DNS lookup before it fails (default 8)
#   DELAY            seconds between those tries (default 2)
#   CURL_TIMEOUT     seconds one call or lookup may take; a dropped packet shows as a
#                    timeout (default 5)
#   ROLLOUT_TIMEOUT  seconds to wait for Cilium's rollout, kube-proxy's absence, the
#                    WireGuard keys and the NodePool, all in one budget, so that the Job's
#                    deadline covers it once (default 600; the stack sizes it by its nodes)
#   ROLLOUT_POLL     seconds between looks at an object (default 5)
#   SA_DIR           the pod's ServiceAccount mount: token and ca.crt for the API server
#                    (default /var/run/secrets/kubernetes.io/serviceaccount)
#   TERMINATION_LOG  where Kubernetes reads the container's termination message
#   KUBERNETES_SERVICE_HOST, KUBERNETES_SERVICE_PORT  the API server (set in every pod)
#   KUBERNETES_VERSION, INSTANCE_TYPES, PREFIX_DELEGATION  printed only: the stack passes
#                    them so that changing one replaces the Job, and the checks run again
#
# Needs: the Job's ServiceAccount may get DaemonSets and Deployments in kube-system, and
# get/list CiliumNodes (and NodePools, with Karpenter) cluster-wide; the image has sh,
# curl, node, getent and coreutils (node:18-slim, Debian, has them all).
#
# Exits 0 when every check passes. Otherwise prints, and writes to the container's
# termination message, one line per failed check naming the check and what was expected
# and observed, and exits 1: the Job fails, and so does `pulumi up`. Exits 2 when the
# environment itself is wrong (unknown SHIP/POLICY, missing variable).
set -u
: "${SHIP:?}" "${POLICY:?}" "${DEATHSTAR:?}" "${CILIUM_VERSION:?}"
: "${KUBERNETES_SERVICE_HOST:?set by Kubernetes in every pod}" "${KUBERNETES_SERVICE_PORT:?}"
ATTEMPTS="${ATTEMPTS:-8}"
DELAY="${DELAY:-2}"
CURL_TIMEOUT="${CURL_TIMEOUT:-5}"
ROLLOUT_TIMEOUT="${ROLLOUT_TIMEOUT:-600}"
ROLLOUT_POLL="${ROLLOUT_POLL:-5}"
SA_DIR="${SA_DIR:-/var/run/secrets/kubernetes.io/serviceaccount}"
TERMINATION_LOG="${TERMINATION_LOG:-/dev/termination-log}"

# printf, not echo: dash's echo would interpret backslashes in what the API server says.
say() { printf '%s\n' "$*"; }
config_error() {
  say "config error: $*" >&2
  exit 2
}

# What each ship must observe when it asks to land, by policy mode (the seed runbook):
# the empire always lands; the alliance lands only when no policy is on, otherwise its
# packets are dropped and the call times out.
expected_landing() {
  case "$SHIP:$POLICY" in
    tiefighter:none | tiefighter:l3l4 | tiefighter:l7) echo landed ;;
    xwing:none) echo landed ;;
    xwing:l3l4 | xwing:l7) echo blocked ;;
    *) config_error "unknown SHIP/POLICY '$SHIP/$POLICY'" ;;
  esac
}

# --- Configuration ---------------------------------------------------------------------

line="verifying: SHIP=$SHIP POLICY=$POLICY CILIUM_VERSION=$CILIUM_VERSION"
line="$line KUBE_PROXY_REPLACEMENT=${KUBE_PROXY_REPLACEMENT:-false} ENCRYPTION=${ENCRYPTION:-none}"
for var in KUBERNETES_VERSION INSTANCE_TYPES PREFIX_DELEGATION; do
  eval "value=\${$var:-}"
  [ -n "$value" ] && line="$line $var=$value"
done
say "$line"
if [ -n "${MESH_WAITING:-}" ]; then
  say "SKIP mesh: $MESH_WAITING"
  exit 0
fi

landing=$(expected_landing) || exit 2
case "${KUBE_PROXY_REPLACEMENT:-false}" in
  true | True | TRUE) kube_proxy_replacement=true ;;
  false | False | FALSE) kube_proxy_replacement=false ;;
  *) config_error "KUBE_PROXY_REPLACEMENT must be true or false, not '$KUBE_PROXY_REPLACEMENT'" ;;
esac
case "${ENCRYPTION:-none}" in
  wireguard | none) ;;
  *) config_error "ENCRYPTION must be wireguard or none, not '$ENCRYPTION'" ;;
esac
# Arithmetic on a non-number would abort dash with a cryptic message, and a test of one
# would be false forever (a retry loop that never ends).
for count in "$ATTEMPTS" "$ROLLOUT_TIMEOUT"; do
  case "$count" in
    '' | *[!0-9]*) config_error "ATTEMPTS and ROLLOUT_TIMEOUT must be whole numbers, not '$count'" ;;
  esac
done
# The chart tags the agent's image with a leading v; accept the version either way.
want_tag="v${CILIUM_VERSION#v}"

# The deathstar's host and port, for the DNS lookup and curl's --resolve.
case "$DEATHSTAR" in
  http://*) default_port=80 ;;
  https://*) default_port=443 ;;
  *) config_error "DEATHSTAR must be an http:// or https:// URL, not '$DEATHSTAR'" ;;
esac
host_port=${DEATHSTAR#*://}
host_port=${host_port%%/*}
case "$host_port" in
  *:*) deathstar_host=${host_port%:*} deathstar_port=${host_port##*:} ;;
  *) deathstar_host=$host_port deathstar_port=$default_port ;;
esac

api_host=$KUBERNETES_SERVICE_HOST
case "$api_host" in *:*) api_host="[$api_host]" ;; esac # an IPv6 address
api="https://$api_host:$KUBERNETES_SERVICE_PORT"
# The objects the checks read: where each is, and what messages call it.
url_of() {
  case "$1" in
    agent) echo "$api/apis/apps/v1/namespaces/kube-system/daemonsets/cilium" ;;
    envoy) echo "$api/apis/apps/v1/namespaces/kube-system/daemonsets/cilium-envoy" ;;
    kube_proxy) echo "$api/apis/apps/v1/namespaces/kube-system/daemonsets/kube-proxy" ;;
    operator) echo "$api/apis/apps/v1/namespaces/kube-system/deployments/cilium-operator" ;;
    wireguard) echo "$api/apis/cilium.io/v2/ciliumnodes" ;;
    nodepool) echo "$api/apis/karpenter.sh/v1/nodepools/$KARPENTER_NODEPOOL" ;;
  esac
}
what_of() {
  case "$1" in
    agent) echo "DaemonSet kube-system/cilium" ;;
    envoy) echo "DaemonSet kube-system/cilium-envoy" ;;
    kube_proxy) echo "DaemonSet kube-system/kube-proxy" ;;
    operator) echo "Deployment kube-system/cilium-operator" ;;
    wireguard) echo "CiliumNodes" ;;
    nodepool) echo "NodePool $KARPENTER_NODEPOOL" ;;
  esac
}
# Whether a missing object (HTTP 404) counts as done: no cilium-envoy DaemonSet means the
# agents embed the L7 proxy, no kube-proxy DaemonSet means no kube-proxy pod.
absent_ok() {
  case "$1" in envoy | kube_proxy) return 0 ;; *) return 1 ;; esac
}

# Each API answer (body, curl's error) goes to a file: the body is parsed by node, and
# keeping curl's stderr apart from it lets a failure be reported in curl's own words.
work=$(mktemp -d) || exit 1
trap 'rm -rf "$work"' EXIT

# --- Failures --------------------------------------------------------------------------

failures=""

# fail LINE: print a failed check's line and keep it for the termination message.
fail() {
  say "$1"
  failures="$failures$1
"
}

# finish: exit 0 if nothing failed; else write every FAIL line to the termination message
# (what `kubectl describe pod` and Pulumi's error show) and exit 1.
finish() {
  if [ -n "$failures" ]; then
    printf '%s (policy %s, Cilium %s) failed:\n%s' "$SHIP" "$POLICY" "$want_tag" "$failures" \
      2>/dev/null >"$TERMINATION_LOG"
    exit 1
  fi
  say "OK: $SHIP sees policy $POLICY enforced on Cilium $want_tag"
  exit 0
}

# --- Cilium's objects, read from the API server ------------------------------------------

# Reads API answers (JSON), one per argument OBJ:LOOK:FILE, and prints a line per object,
# "OBJ <state> <what was seen>": "ready" when done, else "waiting" and what is not yet
# true; for LOOK=status (an error's body) "OBJ detail <the Status message>". LOOKs:
#   agent      the cilium DaemonSet rolled out, cilium-agent's image tagged WANT_TAG
#   operator   the cilium-operator Deployment rolled out, its image tagged WANT_TAG
#   envoy      a DaemonSet rolled out its current pod template (any image: Envoy's tag)
#   kube_proxy a DaemonSet that schedules no pod
#   wireguard  a CiliumNode list: at least WANT_NODES, each with a WireGuard public key
#   nodepool   a Karpenter NodePool whose Ready condition is True
# One node run for every object of a look: node's start costs more than the rest.
# The API server omits counts that are zero.
STATE_JS='
const fs = require("fs");
const num = (v) => (typeof v === "number" ? v : 0);
// The tag sits between the last ":" and any "@digest"; a ":" followed by a "/" is a
// registry port, not a tag.
const tagOf = (image) => {
  const name = String(image || "").split("@")[0];
  const colon = name.lastIndexOf(":");
  const tag = colon < 0 ? "" : name.slice(colon + 1);
  return tag.includes("/") ? "" : tag;
};
const judge = (look, doc) => {
  if (!doc || typeof doc !== "object") return "waiting unreadable answer from the API server (not JSON)";
  const status = doc.status || {};
  const verdict = (notYet, done) => (notYet.length ? "waiting " + notYet.join(", ") : "ready " + done);
  const generation = num((doc.metadata || {}).generation);
  const notYet = [];
  if (["agent", "envoy", "operator"].includes(look) && num(status.observedGeneration) < generation) {
    notYet.push("generation " + generation + " not yet observed (status at " + num(status.observedGeneration) + ")");
  }
  if (look === "kube_proxy") {
    const desired = num(status.desiredNumberScheduled);
    const current = num(status.currentNumberScheduled);
    const ready = num(status.numberReady);
    const seen = desired + " desired, " + current + " scheduled, " + ready + " ready";
    return (desired === 0 && current === 0 && ready === 0 ? "ready " : "waiting ") + seen;
  }
  if (look === "agent" || look === "envoy") {
    const desired = num(status.desiredNumberScheduled);
    const updated = num(status.updatedNumberScheduled);
    const available = num(status.numberAvailable);
    if (desired === 0) notYet.push("no node scheduled");
    if (updated !== desired) notYet.push(updated + "/" + desired + " updated");
    if (available !== desired) notYet.push(available + "/" + desired + " available");
    let what = "its current pod template";
    if (look === "agent") {
      const want = process.env.WANT_TAG;
      const template = ((doc.spec || {}).template || {}).spec || {};
      const agent = (template.containers || []).find((c) => c && c.name === "cilium-agent");
      if (!agent) notYet.push("no container cilium-agent in the pod template");
      else if (tagOf(agent.image) !== want) notYet.push("image " + (tagOf(agent.image) || "without a tag") + ", want " + want);
      what = want;
    }
    return verdict(notYet, what + " on " + desired + "/" + desired + " nodes, generation " + generation);
  }
  if (look === "operator") {
    const want = process.env.WANT_TAG;
    const replicas = num((doc.spec || {}).replicas);
    const updated = num(status.updatedReplicas);
    const available = num(status.availableReplicas);
    const total = num(status.replicas);
    const template = ((doc.spec || {}).template || {}).spec || {};
    const operator = (template.containers || []).find((c) => c && c.name === "cilium-operator");
    if (replicas === 0) notYet.push("no replica wanted");
    if (updated !== replicas) notYet.push(updated + "/" + replicas + " updated");
    if (available !== replicas) notYet.push(available + "/" + replicas + " available");
    if (total > replicas) notYet.push((total - replicas) + " old replica(s) still running");
    if (!operator) notYet.push("no container cilium-operator in the pod template");
    else if (tagOf(operator.image) !== want) notYet.push("image " + (tagOf(operator.image) || "without a tag") + ", want " + want);
    return verdict(notYet, want + " on " + replicas + "/" + replicas + " replicas, generation " + generation);
  }
  if (look === "wireguard") {
    const want = num(Number(process.env.WANT_NODES));
    const items = Array.isArray(doc.items) ? doc.items : [];
    const key = "network.cilium.io/wg-pub-key";
    const missing = items
      .filter((n) => !(((n.metadata || {}).annotations || {})[key]))
      .map((n) => (n.metadata || {}).name || "?");
    if (items.length < want) notYet.push(items.length + "/" + want + " CiliumNodes");
    if (missing.length) notYet.push("no " + key + " on " + missing.slice(0, 5).join(", "));
    return verdict(notYet, items.length + " CiliumNodes, each with " + key);
  }
  if (look === "nodepool") {
    const ready = (status.conditions || []).find((c) => c && c.type === "Ready");
    if (!ready) notYet.push("no Ready condition yet");
    else if (ready.status !== "True") notYet.push("Ready is " + ready.status + (ready.message ? " (" + String(ready.message).slice(0, 200) + ")" : ""));
    return verdict(notYet, "Ready");
  }
  return "waiting unknown look " + look;
};
for (const arg of process.argv.slice(1)) {
  const [obj, look, file] = arg.split(":");
  let doc = null;
  try { doc = JSON.parse(fs.readFileSync(file, "utf8")); } catch (e) { doc = null; }
  if (look === "status") {
    const message = doc && typeof doc.message === "string" ? doc.message.slice(0, 300) : "";
    console.log(obj + " detail " + message);
  } else {
    console.log(obj + " " + judge(look, doc));
  }
}
'

# http_problem CODE WHAT: what an HTTP error from the API server means here.
http_problem() {
  case "$1" in
    401) say "HTTP 401 unauthorized: the API server rejected the ServiceAccount token" ;;
    403) say "HTTP 403 forbidden: the Job's ServiceAccount cannot read $2" ;;
    404) say "HTTP 404 not found: no $2" ;;
    5??) say "HTTP $1: the API server failed" ;;
    *) say "HTTP $1 from the API server" ;;
  esac
}

# look_at OBJ...: one bounded GET of each object, then one node run that judges every
# answer. Sets, for each OBJ, `state_OBJ` (ready, waiting, or absent for a 404), `seen_OBJ`
# (for progress and FAIL lines) and `detail_OBJ` (the API server's own words on an error,
# for progress lines only).
look_at() {
  judge=""
  for obj in "$@"; do
    eval "detail_$obj=''"
    # The token is read at each look: projected tokens are rotated.
    code=$(curl -sS --max-time "$CURL_TIMEOUT" --cacert "$SA_DIR/ca.crt" \
      -H "Authorization: Bearer $(cat "$SA_DIR/token")" \
      -o "$work/$obj" -w '%{http_code}' "$(url_of "$obj")" 2>"$work/err")
    rc=$?
    if [ "$rc" -ne 0 ]; then
      reason=$(head -n 1 "$work/err" | cut -c1-200) # "curl: (7) Failed to connect to ..."
      seen="curl error $rc: ${reason#curl: (*) }"
      eval "state_$obj=waiting seen_$obj=\$seen"
    elif [ "$code" != 200 ]; then
      state=waiting
      [ "$code" = 404 ] && state=absent
      seen=$(http_problem "$code" "$(what_of "$obj")")
      eval "state_$obj=\$state seen_$obj=\$seen"
      judge="$judge $obj:status:$work/$obj"
    else
      judge="$judge $obj:$obj:$work/$obj"
    fi
  done
  [ -n "$judge" ] || return 0
  # shellcheck disable=SC2086 # one word per OBJ:LOOK:FILE (names and paths without spaces)
  WANT_TAG=$want_tag WANT_NODES=${nodes:-0} node -e "$STATE_JS" $judge >"$work/judged"
  while read -r obj state seen; do
    case "$state" in
      detail) eval "detail_$obj=\$seen" ;;
      ready | waiting) eval "state_$obj=\$state seen_$obj=\$seen" ;;
    esac
  done <"$work/judged"
  for obj in "$@"; do # an answer node could not judge is not done
    eval "state=\${state_$obj:-}"
    [ -n "$state" ] || eval "state_$obj=waiting seen_$obj='node could not read the answer'"
  done
}

# done_with OBJ: whether OBJ's last look found it done.
done_with() {
  eval "state=\$state_$1"
  [ "$state" = ready ] || { [ "$state" = absent ] && absent_ok "$1"; }
}

# wait_for OBJ...: look at the objects every ROLLOUT_POLL seconds until each is done
# (ready, or absent where that is fine), or ROLLOUT_TIMEOUT seconds have passed since
# `rollout_started` (a timeout of 0 means one look). Returns 1 on timeout; each object's
# state_/seen_ variables say where it stood. HTTP and curl errors are retried like a
# rollout in progress: RBAC created alongside this Job may take a moment to apply.
wait_for() {
  pending="$*"
  for obj in "$@"; do eval "state_$obj=''"; done
  while :; do
    # shellcheck disable=SC2086 # one word per object
    look_at $pending
    still=""
    for obj in $pending; do
      done_with "$obj" || still="$still $obj"
    done
    [ -z "$still" ] && return 0
    elapsed=$(($(date +%s) - rollout_started))
    for obj in $still; do
      eval "seen=\$seen_$obj detail=\$detail_$obj"
      say "waiting for $(what_of "$obj"): $seen${detail:+ ($detail)} [${elapsed}s of ${ROLLOUT_TIMEOUT}s]"
    done
    [ "$elapsed" -ge "$ROLLOUT_TIMEOUT" ] && return 1
    pending=$still
    sleep "$ROLLOUT_POLL"
  done
}

# --- DNS ---------------------------------------------------------------------------------

# lookup NAME: getent, bounded by coreutils' `timeout` (in the image: node:18-slim is
# Debian with coreutils). Unbounded, one lookup could last resolv.conf's timeout x
# attempts (glibc: 5s x 2) for each name of the pod's ndots:5 search list and each address
# family: over a minute. Without `timeout` we fall back on that bound rather than fail.
lookup() {
  if command -v timeout >/dev/null 2>&1; then
    timeout "$CURL_TIMEOUT" getent hosts "$1"
  else
    getent hosts "$1"
  fi
}

# resolve_deathstar: sets `address` to the deathstar's, retrying like the checks; returns
# 1 (with `seen` saying why) if it never resolves.
resolve_deathstar() {
  dns_try=1
  while :; do
    answer=$(lookup "$deathstar_host")
    rc=$?
    address=${answer%%[[:space:]]*}
    case "$rc:$address" in
      0:*[!0-9A-Fa-f.:]* | 0:) seen="unexpected answer '$(say "$answer" | head -n 1)'" ;;
      0:*) return 0 ;;
      2:*) seen="not found" ;;
      124:*) seen="lookup timed out after ${CURL_TIMEOUT}s" ;;
      *) seen="getent exit $rc" ;;
    esac
    say "dns: $deathstar_host: $seen (try $dns_try)"
    [ "$dns_try" -ge "$ATTEMPTS" ] && return 1
    dns_try=$((dns_try + 1))
    sleep "$DELAY"
  done
}

# --- Policy checks -----------------------------------------------------------------------

# observe METHOD PATH: one bounded call, classified as a person reading the runbook would.
# The name is pinned to the address resolved above, so curl does no lookup: its timeout
# (exit 28) can only be a dropped connection, never a DNS failure.
observe() {
  body=$(curl -s --max-time "$CURL_TIMEOUT" --resolve "$resolve" -X "$1" "$DEATHSTAR$2" 2>/dev/null)
  rc=$?
  case "$rc" in
    0)
      case "$body" in
        *"Ship landed"*) echo landed ;;
        *"Access denied"*) echo denied ;;
        *) say "response '$(printf '%s' "$body" | tr '\n' ' ' | cut -c1-80)'" ;;
      esac
      ;;
    28) echo blocked ;; # curl: operation timed out
    *) echo "curl error $rc" ;;
  esac
}

# check NAME METHOD PATH EXPECTED: retry until EXPECTED is observed or ATTEMPTS run out.
check() {
  name=$1 method=$2 path=$3 expected=$4
  try=1
  while :; do
    observed=$(observe "$method" "$path")
    if [ "$observed" = "$expected" ]; then
      say "PASS $name: $observed (try $try)"
      return 0
    fi
    [ "$try" -ge "$ATTEMPTS" ] && break
    try=$((try + 1))
    sleep "$DELAY"
  done
  fail "FAIL $name: expected $expected, observed $observed (after $ATTEMPTS tries)"
}

# --- The run -----------------------------------------------------------------------------

# 1. Cilium rolled out. Without it nothing below means anything: stop on failure.
if [ ! -r "$SA_DIR/token" ] || [ ! -r "$SA_DIR/ca.crt" ]; then
  fail "FAIL cilium-rollout: no ServiceAccount token and CA in $SA_DIR (the Job's pod must mount its ServiceAccount token)"
  finish
fi
rollout_started=$(date +%s) # the budget every wait below shares
# What look_at found of each object (it sets them by name, through eval).
seen_agent="" seen_operator="" state_envoy="" seen_envoy=""
state_kube_proxy="" seen_kube_proxy="" seen_wireguard="" seen_nodepool=""
# The agents, the operator and the L7 proxy roll at the same time: one wait for all three.
wait_for agent operator envoy
if done_with agent; then
  say "PASS cilium-rollout: DaemonSet kube-system/cilium runs $seen_agent"
  nodes=${seen_agent#* on } nodes=${nodes%%/*} # the agents' count: every node runs one
else
  fail "FAIL cilium-rollout: DaemonSet kube-system/cilium did not roll out $want_tag on every node within ${ROLLOUT_TIMEOUT}s (last seen: $seen_agent)"
  finish
fi
# A failure of the operator or the proxy does not make the policy checks meaningless, so
# they still run and every failure is reported.
if done_with operator; then
  say "PASS cilium-operator-rollout: Deployment kube-system/cilium-operator runs $seen_operator"
else
  fail "FAIL cilium-operator-rollout: Deployment kube-system/cilium-operator did not roll out $want_tag within the ${ROLLOUT_TIMEOUT}s allowed for the rollout (last seen: $seen_operator)"
fi
if ! done_with envoy; then
  fail "FAIL cilium-envoy-rollout: DaemonSet kube-system/cilium-envoy did not roll out its current pod template within the ${ROLLOUT_TIMEOUT}s allowed for the rollout (last seen: $seen_envoy)"
elif [ "$state_envoy" = absent ]; then
  say "SKIP cilium-envoy-rollout: no DaemonSet kube-system/cilium-envoy (the agents embed the L7 proxy)"
else
  say "PASS cilium-envoy-rollout: DaemonSet kube-system/cilium-envoy runs $seen_envoy"
fi

# 2. No kube-proxy pod when Cilium replaces it.
if [ "$kube_proxy_replacement" = true ]; then
  if ! wait_for kube_proxy; then
    fail "FAIL kube-proxy-absent: kube-proxy replacement is on, but DaemonSet kube-system/kube-proxy did not drop to zero pods within the ${ROLLOUT_TIMEOUT}s allowed for the rollout (last seen: $seen_kube_proxy)"
  elif [ "$state_kube_proxy" = absent ]; then
    say "PASS kube-proxy-absent: no DaemonSet kube-system/kube-proxy, so no kube-proxy pod runs"
  else
    say "PASS kube-proxy-absent: DaemonSet kube-system/kube-proxy runs no pod ($seen_kube_proxy: its nodeSelector matches no node)"
  fi
else
  say "SKIP kube-proxy-absent: kube-proxy replacement is off, kube-proxy is expected to run"
fi

# 3. A WireGuard key on every node: each agent publishes its public key on its CiliumNode
# (pkg/wireguard/agent), and peers encrypt to the keys they find there.
if [ "${ENCRYPTION:-none}" = wireguard ]; then
  if wait_for wireguard; then
    say "PASS wireguard-keys: $seen_wireguard"
  else
    fail "FAIL wireguard-keys: WireGuard is on, but not every node published a key within the ${ROLLOUT_TIMEOUT}s allowed for the rollout (last seen: $seen_wireguard)"
  fi
else
  say "SKIP wireguard-keys: transparent encryption is off"
fi

# 4. Karpenter can launch nodes: its NodePool is Ready (its EC2NodeClass resolved).
if [ -n "${KARPENTER_NODEPOOL:-}" ]; then
  if wait_for nodepool; then
    say "PASS karpenter-nodepool: NodePool $KARPENTER_NODEPOOL is $seen_nodepool"
  else
    fail "FAIL karpenter-nodepool: NodePool $KARPENTER_NODEPOOL was not Ready within the ${ROLLOUT_TIMEOUT}s allowed for the rollout (last seen: $seen_nodepool)"
  fi
fi

# 5. DNS. A lookup that fails must not reach the checks, where a timeout means "blocked".
if ! resolve_deathstar; then
  fail "FAIL dns: cannot resolve $deathstar_host (CoreDNS or Cilium's DNS path is broken): $seen after $ATTEMPTS tries"
  finish
fi
case "$address" in *:*) resolve="$deathstar_host:$deathstar_port:[$address]" ;; *) resolve="$deathstar_host:$deathstar_port:$address" ;; esac
if [ "$kube_proxy_replacement" = true ]; then
  how="with kube-proxy replacement, Cilium's eBPF service handling answers on it"
else
  how="kube-proxy or Cilium translates it to a deathstar pod"
fi
say "dns: $deathstar_host is $address, the Service's ClusterIP ($how); every call below goes there (curl --resolve $resolve)"

# 6. The policy checks.
check "$SHIP-request-landing" POST /v1/request-landing "$landing"
# Only the L7 policy makes the exhaust port safe to call: without it a PUT there is the
# deathstar's self-destruct.
if [ "$POLICY" = l7 ] && [ "$SHIP" = tiefighter ]; then
  check tiefighter-exhaust-port PUT /v1/exhaust-port denied
fi

finish
