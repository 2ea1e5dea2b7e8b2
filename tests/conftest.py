from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.harness import ROOT, Graph, run_ok

# Upstream data (Cilium chart values and schemas, CRD schemas, Star Wars manifests) kept
# beside the repository, never in it; a user's checkout has none, and those tests skip.
REFERENCE = Path(os.environ.get("CILIUM_EKS_REFERENCE", ROOT.parent / "shared" / "reference"))


@pytest.fixture(scope="session")
def reference() -> Path:
    if not REFERENCE.is_dir():
        pytest.skip(
            f"reference data not found at {REFERENCE} (set CILIUM_EKS_REFERENCE to the folder "
            "holding cilium-chart/, crds/ and starwars/)"
        )
    return REFERENCE


@pytest.fixture(scope="session")
def dev() -> Graph:
    """The program as `pulumi up` on the dev stack would declare it."""
    return run_ok()
