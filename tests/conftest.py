from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests import reference as upstream
from tests.harness import Graph, run_ok

# Upstream data (Cilium chart archives, values and schemas, the CRD schema, the Star Wars
# manifests), pinned in tests/reference.py and kept outside the repository: in
# $CILIUM_EKS_REFERENCE, or ../shared/reference beside the checkout, or the user's cache
# that `make reference` fills (tests/reference.py location()). Where it is absent, the
# tests that read it skip, each on its own, and the summary says so in one line.
REFERENCE, SOURCE = upstream.found()


def _absent() -> str | None:
    """Why the reference data cannot be read, or None."""
    if not REFERENCE.is_dir():
        return f"not found at {REFERENCE} ({SOURCE})"
    absent = upstream.missing(REFERENCE)
    if absent:
        more = f" and {len(absent) - 3} more" if len(absent) > 3 else ""
        return f"incomplete at {REFERENCE} ({SOURCE}): no {', '.join(absent[:3])}{more}"
    return None


ABSENT = _absent()
SKIPPED = (
    f"the tests that read upstream reference data (Cilium charts and schemas, the CRD schema, "
    f"the Star Wars manifests) skip: it is {ABSENT}. {upstream.HOW}"
)


@pytest.fixture(scope="session")
def reference() -> Path:
    if ABSENT:
        pytest.skip(SKIPPED)
    return REFERENCE


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """A test skipped for want of the reference data is reported at this file, not its own
    line: pytest folds skips by place and reason, so the summary has one line for them all
    (`SKIPPED [N] tests/conftest.py: ...`) instead of one per test."""
    report = yield
    longrepr = report.longrepr
    if report.skipped and isinstance(longrepr, tuple) and str(longrepr[2]).endswith(SKIPPED):
        report.longrepr = (__file__, None, longrepr[2])
    return report


@pytest.fixture(scope="session")
def dev() -> Graph:
    """The program as `pulumi up` on the dev stack would declare it."""
    return run_ok()


# The files that take longest (seconds of one worker in `make test` on the 2-core machine),
# started first. xdist hands out a file at a time (--dist loadfile), by default the files
# with the most tests first: test_mutation.py (7 tests, ~10 s) went last and the other
# core idled while it ran. With --no-loadscope-reorder (pyproject.toml) it keeps this
# order: these, then the rest, most tests first (xdist's own rule). A file that grows slow
# belongs here; one missing only costs an idle core at the end.
SLOWEST = (
    "test_graph.py",  # ~14 s: two runs in a fresh interpreter, and twenty configurations
    "test_mesh.py",  # ~13 s
    "test_mutation.py",  # ~10 s: cosmic-ray, each mutant a pytest run of its own
    "test_preflight.py",  # ~10 s
    "test_verify_script.py",  # ~9 s
    "test_cilium_chart.py",  # ~8 s
    "test_teardown.py",  # ~5 s
    "test_starwars.py",  # ~5 s
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(SLOWEST)}
    tests = Counter(item.path.name for item in items)
    items.sort(key=lambda item: (rank.get(item.path.name, len(rank)), -tests[item.path.name]))
