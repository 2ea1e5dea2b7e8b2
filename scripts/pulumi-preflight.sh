#!/usr/bin/env bash
# Everything `make preview|up|destroy` (and the CI workflows) need before Pulumi runs,
# checked up front with a fix for each gap (never a stack trace 10 minutes in), then the
# stack selected.
#   STACK                      stack to select (created by `up` when missing; default dev)
#   ACTION                     preview | up | destroy (default up)
#   PULUMI_BACKEND_URL         where state lives; unset and not logged in: local files
#   PULUMI_CONFIG_PASSPHRASE   encrypts secrets (the kubeconfig) in a self-managed backend
#
# When the stack's cluster exists it also checks what Pulumi cannot see until Kubernetes
# answers Unauthorized halfway through: that the caller has an EKS access entry on it
# (only the cluster's creator and access.adminPrincipalArns/viewerPrincipalArns do), and
# that the change does not switch kube-proxy replacement on a live cluster.
set -euo pipefail
STACK="${STACK:-dev}"
ACTION="${ACTION:-up}"

fail() {
  printf 'make: %s\n' "$@" >&2
  exit 1
}

case "$ACTION" in
  preview | up | destroy) ;;
  *) fail "ACTION=$ACTION: use preview, up or destroy" ;;
esac

command -v pulumi >/dev/null 2>&1 ||
  fail "the Pulumi CLI is not installed: see https://www.pulumi.com/docs/install/ (curl -fsSL https://get.pulumi.com | sh)"
command -v aws >/dev/null 2>&1 ||
  fail "the AWS CLI v2 is not installed (the kubeconfig runs 'aws eks get-token'): see https://docs.aws.amazon.com/cli/latest/userguide/getting-started-install.html"
aws_version="$(aws --version 2>&1)"
[[ "$aws_version" == aws-cli/2.* ]] || fail "AWS CLI v2 is required, found: $aws_version"
caller="$(aws sts get-caller-identity --query Arn --output text 2>/dev/null)" ||
  fail "no usable AWS credentials: run 'aws sso login' (or 'aws configure'), or set AWS_PROFILE"

# State backend: PULUMI_BACKEND_URL or an existing `pulumi login` wins; otherwise the
# embedded default, local files under ~/.pulumi.
if [[ -z "${PULUMI_BACKEND_URL:-}" ]] && ! pulumi whoami >/dev/null 2>&1; then
  echo "make: no Pulumi backend configured; using local state (pulumi login --local)"
  pulumi login --local >/dev/null
fi
backend="$(pulumi whoami --verbose 2>/dev/null | sed -n 's/^Backend URL: *//p')"
case "$backend" in
  file://* | s3://* | gs://* | azblob://* | postgres://*)
    if [[ -z "${PULUMI_CONFIG_PASSPHRASE+set}" && -z "${PULUMI_CONFIG_PASSPHRASE_FILE:-}" ]]; then
      fail "backend $backend encrypts secrets (the kubeconfig) with a passphrase: export PULUMI_CONFIG_PASSPHRASE=... (keep it: every later command needs the same one)"
    fi
    ;;
esac

if [[ "$ACTION" == up ]]; then
  pulumi stack select --create "$STACK" >/dev/null
else
  pulumi stack select "$STACK" >/dev/null 2>&1 ||
    fail "stack $STACK does not exist on ${backend:-Pulumi Cloud}: create it with 'make up' first"
fi
echo "make: stack $STACK on ${backend:-Pulumi Cloud}, AWS identity $caller"

# --- the live cluster ----------------------------------------------------------------

# The IAM principal EKS access entries name for the caller: a role session
# (arn:aws:sts::111122223333:assumed-role/Deployer/ci) is its role.
principal="$(printf '%s' "$caller" | sed -E 's#^arn:([^:]+):sts::([0-9]+):assumed-role/([^/]+)/.*$#arn:\1:iam::\2:role/\3#')"

# is_listed PRINCIPAL ARN...: whether one of the ARNs names PRINCIPAL. A role's ARN may
# carry a path (role/ci/Deployer) that the session's ARN leaves out.
is_listed() {
  local want=$1 arn
  shift
  for arn in "$@"; do
    [[ "$arn" == "$want" ]] && return 0
    if [[ "$want" == arn:*:iam::*:role/* ]]; then
      [[ "$arn" == "${want%%:role/*}:role/"* && "$arn" == */"${want##*/}" ]] && return 0
    fi
  done
  return 1
}

region="$(pulumi config get aws:region --stack "$STACK" 2>/dev/null || true)"
# The deployed cluster's name (the stack's output), else the one config names or that
# components/config.py derives: cilium-eks-<stack name>, lower case, without the
# org/project/ a fully qualified STACK carries.
cluster="$(pulumi stack output clusterName --stack "$STACK" 2>/dev/null ||
  pulumi config get clusterName --stack "$STACK" 2>/dev/null ||
  printf 'cilium-eks-%s' "${STACK##*/}" | tr '[:upper:]' '[:lower:]')"

if ! described="$(aws eks describe-cluster --name "$cluster" --region "$region" 2>&1 >/dev/null)"; then
  if [[ "$described" != *ResourceNotFoundException* ]]; then
    echo "make: could not look up cluster $cluster in $region ($described); skipping the access checks" >&2
    exit 0
  fi
  # No cluster yet: this run creates it, and its creator becomes admin on its own.
  # shellcheck disable=SC2046 # one word per ARN in the access config
  if [[ "$ACTION" == up ]] && is_listed "$principal" $(pulumi config get access --stack "$STACK" 2>/dev/null | grep -o 'arn:[^"]*'); then
    fail "you ($principal) are about to create cluster $cluster and so become its admin (EKS access entry of the creator);" \
      "listing yourself in access.adminPrincipalArns or access.viewerPrincipalArns as well would fail the create with 409 ResourceInUseException." \
      "Remove the ARN from the config, then run make up again."
  fi
  exit 0
fi

entries="$(aws eks list-access-entries --cluster-name "$cluster" --region "$region" --query accessEntries --output text 2>&1)" || {
  echo "make: could not list the access entries of $cluster ($entries); skipping the access check" >&2
  entries=""
}
# shellcheck disable=SC2086 # one word per ARN
if [[ -n "$entries" ]] && ! is_listed "$principal" $entries; then
  fail "you ($principal) have no EKS access entry on cluster $cluster: every Kubernetes call of this $ACTION would fail with Unauthorized." \
    "Admins are the identity that created the cluster and access.adminPrincipalArns; access.viewerPrincipalArns may preview." \
    "Fix: an admin adds you and deploys, e.g. pulumi config set --path 'access.adminPrincipalArns[0]' $principal (viewerPrincipalArns for a preview-only role), then make up."
fi

if [[ "$ACTION" != destroy ]]; then
  # A stack deployed before this output existed ran kube-proxy (the replacement was off).
  deployed="$(pulumi stack output ciliumKubeProxyReplacement --stack "$STACK" 2>/dev/null || echo false)"
  wanted="$(pulumi config get cilium.kubeProxyReplacement --path --stack "$STACK" 2>/dev/null || echo true)"
  if [[ "$deployed" != "$wanted" ]]; then
    fail "cilium.kubeProxyReplacement: $wanted, but cluster $cluster runs with $deployed; switching it on a live cluster is refused." \
      "On: kube-proxy would be switched off before every agent runs the replacement, so Services break on nodes until Cilium rolls." \
      "Off: kube-proxy's add-on would fight the patch that keeps it off. Keep $deployed (pulumi config set --path cilium.kubeProxyReplacement $deployed)," \
      "or re-create the stack (make destroy, then make up) to change it. See README, Day-2 operations."
  fi
fi
