"""The stack's resource identities: what a live stack would delete and re-create if they
changed (tests/stack_urns.txt), with every optional feature on."""

from __future__ import annotations

from tests.harness import ROOT, run_ok

KNOWN = ROOT / "tests" / "stack_urns.txt"


def test_every_resource_keeps_its_identity(dev):
    known = {line for line in KNOWN.read_text().splitlines() if line and not line.startswith("#")}
    everything = {"network.vpcEndpoints": True, "karpenter.enabled": True, "mesh": {"clusterId": 1}}
    declared = {r.urn for r in dev.resources} | {r.urn for r in run_ok(everything).resources}
    renamed_or_gone = sorted(known - declared)
    new = sorted(declared - known)
    assert not renamed_or_gone, (
        "a live stack would delete (and re-create) these; add a pulumi.Alias, or update "
        f"tests/stack_urns.txt on purpose: {renamed_or_gone}"
    )
    assert not new, f"new resources: review their names, then add them to {KNOWN.name}: {new}"
