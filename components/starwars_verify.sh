#!/bin/sh
# The runbook's checks, run by a Job from a pod labelled like a Star Wars ship. First that
# the platform under the policy is the one declared, then the policy checks themselves:
#   1. Cilium's DaemonSet has rolled out CILIUM_VERSION on every node (with skipAwait, a
#      Helm upgrade returns before that, and checks would run against old agents);
#   2. with kube-proxy replacement on, no kube-proxy pod runs;
#   3. the deathstar's name resolves (so that a curl timeout below can only be a drop);
#   4. each ship observes what POLICY requires when it asks to land (and, under l7, the
#      tiefighter is denied the exhaust port).
#
# Environment:
#   SHIP             tiefighter (org=empire) or xwing (org=alliance): whose labels this pod has
#   POLICY           none | l3l4 | l7: the CiliumNetworkPolicy mode the stack declared
#   DEATHSTAR        base URL of the deathstar Service (http://deathstar.starwars.svc.cluster.local)
#   CILIUM_VERSION   the Cilium release deployed (1.19.6): agents must run image tag v1.19.6
#   KUBE_PROXY_REPLACEMENT  true: no kube-proxy pod may run; false or unset: not checked
#   ATTEMPTS         tries per check and per DNS lookup before it fails (default 8)
#   DELAY            seconds between those tries (default 2)
#   CURL_TIMEOUT     seconds one call or lookup may take; a dropped packet shows as a
#                    timeout (default 5)
#   ROLLOUT_TIMEOUT  seconds to wait for Cilium's rollout and then kube-proxy's absence, both
#                    in one budget, so that the Job's deadline covers it once (default 600)
#   ROLLOUT_POLL     seconds between looks at a DaemonSet (default 5)
#   SA_DIR           the pod's ServiceAccount mount: token and ca.crt for the API server
#                    (default /var/run/secrets/kubernetes.io/serviceaccount)
#   TERMINATION_LOG  where Kubernetes reads the container's termination message
#   KUBERNETES_SERVICE_HOST, KUBERNETES_SERVICE_PORT  the API server (set in every pod)
#   KUBERNETES_VERSION, INSTANCE_TYPES, PREFIX_DELEGATION  printed only: the stack passes
#                    them so that changing one replaces the Job, and the checks run again
#
# Needs: the Job's ServiceAccount may get DaemonSets in kube-system; the image has sh,
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
line="$line KUBE_PROXY_REPLACEMENT=${KUBE_PROXY_REPLACEMENT:-false}"
for var in KUBERNETES_VERSION INSTANCE_TYPES PREFIX_DELEGATION; do
  eval "value=\${$var:-}"
  [ -n "$value" ] && line="$line $var=$value"
done
say "$line"

landing=$(expected_landing) || exit 2
case "${KUBE_PROXY_REPLACEMENT:-false}" in
  true | True | TRUE) kube_proxy_replacement=true ;;
  false | False | FALSE) kube_proxy_replacement=false ;;
  *) config_error "KUBE_PROXY_REPLACEMENT must be true or false, not '$KUBE_PROXY_REPLACEMENT'" ;;
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
daemonsets="https://$api_host:$KUBERNETES_SERVICE_PORT/apis/apps/v1/namespaces/kube-system/daemonsets"

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

# --- DaemonSets, read from the API server ----------------------------------------------

# Reads an API answer (JSON) on stdin and prints one line, "<state> <what was seen>".
# DS=cilium: "ready" when the rollout of WANT_TAG is complete, else "waiting" and what is
# not yet true. DS=kube-proxy: "ready" when it schedules no pod. DS=status: the message
# of an error Status, if any. The API server omits counts that are zero.
DS_STATE_JS='
let raw = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => { raw += chunk; });
process.stdin.on("end", () => {
  let ds = null;
  try { ds = JSON.parse(raw); } catch (e) { ds = null; }
  const kind = process.env.DS;
  if (kind === "status") {
    if (ds && typeof ds.message === "string") console.log(ds.message.slice(0, 300));
    return;
  }
  if (!ds || typeof ds !== "object") {
    console.log("waiting unreadable answer from the API server (not JSON)");
    return;
  }
  const num = (v) => (typeof v === "number" ? v : 0);
  const status = ds.status || {};
  const desired = num(status.desiredNumberScheduled);
  if (kind === "kube-proxy") {
    const current = num(status.currentNumberScheduled);
    const ready = num(status.numberReady);
    const seen = desired + " desired, " + current + " scheduled, " + ready + " ready";
    console.log((desired === 0 && current === 0 && ready === 0 ? "ready " : "waiting ") + seen);
    return;
  }
  const want = process.env.WANT_TAG;
  const generation = num((ds.metadata || {}).generation);
  const observed = num(status.observedGeneration);
  const updated = num(status.updatedNumberScheduled);
  const available = num(status.numberAvailable);
  const template = ((ds.spec || {}).template || {}).spec || {};
  const agent = (template.containers || []).find((c) => c && c.name === "cilium-agent");
  // The tag sits between the last ":" and any "@digest"; a ":" followed by a "/" is a
  // registry port, not a tag.
  const name = String((agent && agent.image) || "").split("@")[0];
  const colon = name.lastIndexOf(":");
  let tag = colon < 0 ? "" : name.slice(colon + 1);
  if (tag.includes("/")) tag = "";
  const notYet = [];
  if (observed < generation) {
    notYet.push("generation " + generation + " not yet observed (status at " + observed + ")");
  }
  if (desired === 0) notYet.push("no node scheduled");
  if (updated !== desired) notYet.push(updated + "/" + desired + " updated");
  if (available !== desired) notYet.push(available + "/" + desired + " available");
  if (!agent) notYet.push("no container cilium-agent in the pod template");
  else if (tag !== want) notYet.push("image " + (tag || "without a tag") + ", want " + want);
  if (notYet.length === 0) {
    console.log("ready " + want + " on " + desired + "/" + desired + " nodes, generation " + generation);
  } else {
    console.log("waiting " + notYet.join(", "));
  }
});
'

# http_problem CODE NAME: what an HTTP error from the API server means here.
http_problem() {
  case "$1" in
    401) say "HTTP 401 unauthorized: the API server rejected the ServiceAccount token" ;;
    403) say "HTTP 403 forbidden: the Job's ServiceAccount cannot read DaemonSets in kube-system" ;;
    404) say "HTTP 404 not found: no DaemonSet kube-system/$2" ;;
    5??) say "HTTP $1: the API server failed" ;;
    *) say "HTTP $1 from the API server" ;;
  esac
}

# look_at NAME: one bounded GET of DaemonSet kube-system/NAME. Sets `state` (ready,
# waiting, or absent for a 404), `seen` (for progress and FAIL lines) and `detail` (the
# API server's own words on an error, for progress lines only).
look_at() {
  detail=""
  # The token is read at each look: projected tokens are rotated.
  code=$(curl -sS --max-time "$CURL_TIMEOUT" --cacert "$SA_DIR/ca.crt" \
    -H "Authorization: Bearer $(cat "$SA_DIR/token")" \
    -o "$work/body" -w '%{http_code}' "$daemonsets/$1" 2>"$work/err")
  rc=$?
  if [ "$rc" -ne 0 ]; then
    state=waiting
    reason=$(head -n 1 "$work/err" | cut -c1-200) # "curl: (7) Failed to connect to ..."
    seen="curl error $rc: ${reason#curl: (*) }"
    return
  fi
  if [ "$code" != 200 ]; then
    state=waiting
    [ "$code" = 404 ] && state=absent
    seen=$(http_problem "$code" "$1")
    detail=$(DS=status node -e "$DS_STATE_JS" <"$work/body")
    return
  fi
  seen=$(DS=$1 WANT_TAG=$want_tag node -e "$DS_STATE_JS" <"$work/body")
  state=${seen%% *}
  seen=${seen#* }
  case "$state" in ready | waiting) ;; *) state=waiting seen="node could not read the answer" ;; esac
}

# wait_for NAME ABSENT_OK: look at DaemonSet kube-system/NAME every ROLLOUT_POLL seconds
# until it is ready (or, with ABSENT_OK=yes, absent); give up once ROLLOUT_TIMEOUT seconds
# have passed since `rollout_started` (a timeout of 0 means one look). HTTP and curl
# errors are retried like a rollout in progress: RBAC created alongside this Job may take
# a moment to apply.
wait_for() {
  while :; do
    look_at "$1"
    [ "$state" = ready ] && return 0
    [ "$state" = absent ] && [ "$2" = yes ] && return 0
    elapsed=$(($(date +%s) - rollout_started))
    say "waiting for DaemonSet kube-system/$1: $seen${detail:+ ($detail)} [${elapsed}s of ${ROLLOUT_TIMEOUT}s]"
    [ "$elapsed" -ge "$ROLLOUT_TIMEOUT" ] && return 1
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
rollout_started=$(date +%s) # the budget both DaemonSet waits share
if wait_for cilium no; then
  say "PASS cilium-rollout: DaemonSet kube-system/cilium runs $seen"
else
  fail "FAIL cilium-rollout: DaemonSet kube-system/cilium did not roll out $want_tag on every node within ${ROLLOUT_TIMEOUT}s (last seen: $seen)"
  finish
fi

# 2. No kube-proxy pod when Cilium replaces it. A failure here does not make the policy
# checks meaningless, so they still run and every failure is reported.
if [ "$kube_proxy_replacement" = true ]; then
  if ! wait_for kube-proxy yes; then
    fail "FAIL kube-proxy-absent: kube-proxy replacement is on, but DaemonSet kube-system/kube-proxy did not drop to zero pods within the ${ROLLOUT_TIMEOUT}s allowed for the rollout (last seen: $seen)"
  elif [ "$state" = absent ]; then
    say "PASS kube-proxy-absent: no DaemonSet kube-system/kube-proxy, so no kube-proxy pod runs"
  else
    say "PASS kube-proxy-absent: DaemonSet kube-system/kube-proxy runs no pod ($seen: its nodeSelector matches no node)"
  fi
else
  say "SKIP kube-proxy-absent: kube-proxy replacement is off, kube-proxy is expected to run"
fi

# 3. DNS. A lookup that fails must not reach the checks, where a timeout means "blocked".
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

# 4. The policy checks.
check "$SHIP-request-landing" POST /v1/request-landing "$landing"
# Only the L7 policy makes the exhaust port safe to call: without it a PUT there is the
# deathstar's self-destruct.
if [ "$POLICY" = l7 ] && [ "$SHIP" = tiefighter ]; then
  check tiefighter-exhaust-port PUT /v1/exhaust-port denied
fi

finish
