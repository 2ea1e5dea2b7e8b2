from __future__ import annotations

from pathlib import Path

import pytest

from tests import reference as upstream
from tests.harness import Graph, run_ok

# Upstream data (Cilium chart archives, values and schemas, the CRD schema, the Star Wars
# manifests), pinned in tests/reference.py and kept outside the repository: in
# $CILIUM_EKS_REFERENCE, or ../shared/reference beside the checkout, or the user's cache
# that `make reference` fills (tests/reference.py location()). Where it is absent, the
# tests that read it skip.
REFERENCE = upstream.location()


@pytest.fixture(scope="session")
def reference() -> Path:
    how = (
        "run `make reference` to fetch it, or set CILIUM_EKS_REFERENCE to a folder holding "
        "cilium-chart/, crds/ and starwars/"
    )
    if not REFERENCE.is_dir():
        pytest.skip(f"reference data not found at {REFERENCE}: {how}")
    absent = upstream.missing(REFERENCE)
    if absent:
        more = f" and {len(absent) - 3} more" if len(absent) > 3 else ""
        pytest.skip(f"reference data at {REFERENCE} lacks {', '.join(absent[:3])}{more}: {how}")
    return REFERENCE


@pytest.fixture(scope="session")
def dev() -> Graph:
    """The program as `pulumi up` on the dev stack would declare it."""
    return run_ok()
