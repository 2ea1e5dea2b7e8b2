#!/bin/sh
# The runbook's policy checks, run by a Job from a pod labelled like a Star Wars ship.
#
# Environment:
#   SHIP          tiefighter (org=empire) or xwing (org=alliance): whose labels this pod has
#   POLICY        none | l3l4 | l7: the CiliumNetworkPolicy mode the stack declared
#   DEATHSTAR     base URL of the deathstar Service
#   ATTEMPTS      tries per check before it fails (policy propagation takes a few seconds)
#   DELAY         seconds between tries
#   CURL_TIMEOUT  seconds one call may take; a dropped packet shows as a timeout
#   TERMINATION_LOG  where Kubernetes reads the container's termination message
#
# Exits 0 when every check observes what POLICY requires. Otherwise prints, and writes to
# the container's termination message, one line per failed check naming the check, the
# expected and the observed result, and exits 1: the Job fails, and so does `pulumi up`.
set -u
: "${SHIP:?}" "${POLICY:?}" "${DEATHSTAR:?}"
ATTEMPTS="${ATTEMPTS:-8}"
DELAY="${DELAY:-2}"
CURL_TIMEOUT="${CURL_TIMEOUT:-5}"
TERMINATION_LOG="${TERMINATION_LOG:-/dev/termination-log}"

# What each ship must observe when it asks to land, by policy mode (the seed runbook):
# the empire always lands; the alliance lands only when no policy is on, otherwise its
# packets are dropped and the call times out.
expected_landing() {
  case "$SHIP:$POLICY" in
    tiefighter:none | tiefighter:l3l4 | tiefighter:l7) echo landed ;;
    xwing:none) echo landed ;;
    xwing:l3l4 | xwing:l7) echo blocked ;;
    *) echo "unknown SHIP/POLICY '$SHIP/$POLICY'" >&2; exit 2 ;;
  esac
}

# observe METHOD PATH: one bounded call, classified as a person reading the runbook would.
observe() {
  body=$(curl -s --max-time "$CURL_TIMEOUT" -X "$1" "$DEATHSTAR$2" 2>/dev/null)
  rc=$?
  case "$rc" in
    0)
      case "$body" in
        *"Ship landed"*) echo landed ;;
        *"Access denied"*) echo denied ;;
        *) echo "response '$(printf '%s' "$body" | tr '\n' ' ' | cut -c1-80)'" ;;
      esac
      ;;
    28) echo blocked ;; # curl: operation timed out
    *) echo "curl error $rc" ;;
  esac
}

failures=""

# check NAME METHOD PATH EXPECTED: retry until EXPECTED is observed or ATTEMPTS run out.
check() {
  name=$1 method=$2 path=$3 expected=$4
  try=1
  while :; do
    observed=$(observe "$method" "$path")
    if [ "$observed" = "$expected" ]; then
      echo "PASS $name: $observed (try $try)"
      return 0
    fi
    [ "$try" -ge "$ATTEMPTS" ] && break
    try=$((try + 1))
    sleep "$DELAY"
  done
  line="FAIL $name: expected $expected, observed $observed (after $ATTEMPTS tries)"
  echo "$line"
  failures="$failures$line
"
}

landing=$(expected_landing) || exit 2
check "$SHIP-request-landing" POST /v1/request-landing "$landing"
# Only the L7 policy makes the exhaust port safe to call: without it a PUT there is the
# deathstar's self-destruct.
if [ "$POLICY" = l7 ] && [ "$SHIP" = tiefighter ]; then
  check tiefighter-exhaust-port PUT /v1/exhaust-port denied
fi

if [ -n "$failures" ]; then
  printf 'policy %s is not enforced as declared:\n%s' "$POLICY" "$failures" 2>/dev/null >"$TERMINATION_LOG"
  exit 1
fi
echo "OK: $SHIP sees policy $POLICY enforced"
