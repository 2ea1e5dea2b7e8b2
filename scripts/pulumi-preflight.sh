#!/usr/bin/env bash
# Everything `make preview|up|destroy` needs before Pulumi runs, checked up front with a
# fix for each gap (never a stack trace 10 minutes in), then the stack selected.
#   STACK                      stack to select or create (default dev)
#   PULUMI_BACKEND_URL         where state lives; unset and not logged in: local files
#   PULUMI_CONFIG_PASSPHRASE   encrypts secrets (the kubeconfig) in a self-managed backend
set -euo pipefail
STACK="${STACK:-dev}"

fail() {
  printf 'make: %s\n' "$*" >&2
  exit 1
}

command -v pulumi >/dev/null 2>&1 ||
  fail "the Pulumi CLI is not installed: see https://www.pulumi.com/docs/install/ (curl -fsSL https://get.pulumi.com | sh)"
command -v aws >/dev/null 2>&1 ||
  fail "the AWS CLI v2 is not installed (the kubeconfig runs 'aws eks get-token'): see https://docs.aws.amazon.com/cli/latest/userguide/getting-started-install.html"
aws_version="$(aws --version 2>&1)"
[[ "$aws_version" == aws-cli/2.* ]] || fail "AWS CLI v2 is required, found: $aws_version"
aws sts get-caller-identity >/dev/null 2>&1 ||
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

pulumi stack select --create "$STACK" >/dev/null
echo "make: stack $STACK on ${backend:-Pulumi Cloud}, AWS identity $(aws sts get-caller-identity --query Arn --output text)"
