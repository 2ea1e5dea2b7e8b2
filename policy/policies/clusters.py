"""EKS clusters use the STANDARD upgrade policy, not extended support
(clusters-standard-upgrade-policy).

Imports pulumi_policy and this package's reading helpers only (never components/).
"""

from __future__ import annotations

from pulumi_policy import ReportViolation, ResourceValidationArgs

from .reading import get, shows_no_inputs

CLUSTER_TYPES = ("eks:index:Cluster", "aws:eks/cluster:Cluster")
STANDARD_SUPPORT = "STANDARD"


def clusters_use_the_standard_upgrade_policy(args: ResourceValidationArgs, report: ReportViolation):
    """EXTENDED, the default of EKS and pulumi-eks when unset, keeps a Kubernetes version
    past standard support at $0.60 per cluster-hour instead of $0.10, without anyone
    deciding it. STANDARD has EKS upgrade the control plane when standard support ends."""
    if args.resource_type not in CLUSTER_TYPES or shows_no_inputs(args):
        return
    support = get(args.props, "upgradePolicy", "supportType")
    if support != STANDARD_SUPPORT:
        report(
            "clusters must set upgradePolicy.supportType='STANDARD', not "
            f"{support!r} (unset is EXTENDED: $0.60 per hour instead of $0.10 once the "
            "version leaves standard support)"
        )
