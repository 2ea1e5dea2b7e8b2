"""tests/reference.py, without network: a fake `fetch` serves bytes (the real ones, taken
from a verified reference folder when there is one) or fails like an offline machine."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import urllib.error
from collections.abc import Callable
from pathlib import Path

import pytest

from tests import reference as upstream
from tests.harness import ROOT, dev_config

BY_URL = {a.url: a for a in upstream.MANIFEST if a.url}
ARCHIVES = [a for a in upstream.MANIFEST if a.path.endswith(".tgz")]
EXTRACTED = [a for a in upstream.MANIFEST if a.member]


def offline(url: str) -> bytes:
    raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")


def no_network(url: str) -> bytes:
    raise AssertionError(f"unexpected fetch of {url}")


@pytest.fixture(scope="session")
def real(reference: Path) -> Path:
    """The reference folder (conftest's), every file of it matching its pin."""
    if not all(
        upstream.sha256((reference / a.path).read_bytes()) == a.sha256 for a in upstream.MANIFEST
    ):
        pytest.skip(f"reference data at {reference} does not match its pins (`make reference`)")
    return reference


@pytest.fixture
def serve(real) -> Callable[[str], bytes]:
    """A fetch serving the real bytes of each pinned URL, recording the URLs asked for."""

    def fetch(url: str) -> bytes:
        fetch.calls.append(url)  # type: ignore[attr-defined]
        return (real / BY_URL[url].path).read_bytes()

    fetch.calls = []  # type: ignore[attr-defined]
    return fetch


@pytest.fixture
def complete(real, tmp_path) -> Path:
    dest = tmp_path / "reference"
    for a in upstream.MANIFEST:
        (dest / a.path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(real / a.path, dest / a.path)
    return dest


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.stat().st_ino)
        for p in sorted(folder.rglob("*"))
    }


def forbid_writes(monkeypatch) -> None:
    def refuse(path, data):
        raise AssertionError(f"unexpected write of {path}")

    monkeypatch.setattr(upstream, "_write_atomic", refuse)


# Location


def test_location_is_the_override_or_the_shared_folder_or_the_user_cache(monkeypatch, tmp_path):
    shared = tmp_path / "shared" / "reference"
    shared.mkdir(parents=True)
    monkeypatch.setattr(upstream, "SHARED", shared)
    monkeypatch.setenv("CILIUM_EKS_REFERENCE", str(tmp_path / "elsewhere"))
    assert upstream.location() == tmp_path / "elsewhere"

    monkeypatch.delenv("CILIUM_EKS_REFERENCE")
    assert upstream.location() == shared  # ../shared/reference, beside the checkout

    monkeypatch.setattr(upstream, "SHARED", tmp_path / "absent")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert upstream.location() == tmp_path / "xdg" / "cilium-eks" / "reference"

    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert upstream.location() == tmp_path / "home" / ".cache" / "cilium-eks" / "reference"


# The manifest


def test_every_pinned_url_is_immutable():
    for url in BY_URL:
        assert url.startswith("https://"), url
        assert not re.search(r"/(main|master|HEAD)/|latest", url), url
        if url.startswith("https://raw.githubusercontent.com/"):
            ref = url.split("/")[5]
            assert re.fullmatch(r"[0-9a-f]{40}|v\d+\.\d+\.\d+", ref), f"{url}: not a tag or commit"


def test_every_artifact_is_pinned_by_a_sha256_and_has_one_source():
    paths = [a.path for a in upstream.MANIFEST]
    assert len(paths) == len(set(paths))
    for a in upstream.MANIFEST:
        assert re.fullmatch(r"[0-9a-f]{64}", a.sha256), a.path
        assert (a.url is None) != (a.archive is None), a.path
        if a.archive:  # extracted from an archive pinned earlier in the manifest
            assert a.archive in paths[: paths.index(a.path)], a.path


def test_the_default_cilium_version_is_pinned():
    version = dev_config()["cilium"]["version"]
    assert version in upstream.CHART_VERSIONS
    assert f"v{version}" == upstream.STARWARS_TAG


# ensure()


def test_a_complete_read_only_folder_is_verified_without_fetch_or_write(complete, monkeypatch):
    for p in [complete, *complete.rglob("*")]:
        p.chmod(0o555 if p.is_dir() else 0o444)
    before = snapshot(complete)
    forbid_writes(monkeypatch)

    outcome = upstream.ensure(complete, fetch=no_network)

    assert outcome.verified == [a.path for a in upstream.MANIFEST]
    assert not outcome.written and not outcome.unavailable
    assert snapshot(complete) == before


def test_a_missing_artifact_is_fetched_verified_and_written_atomically(
    complete, serve, monkeypatch
):
    gone = ["crds/ciliumnetworkpolicy_v2.json", "starwars/http-sw-app.yaml"]
    for path in gone:
        (complete / path).unlink()
    replaced = []
    real_replace = upstream.os.replace

    def replace(src, dst):
        # The whole verified file is in place beside the target before the rename.
        assert Path(src).parent == Path(dst).parent and not Path(dst).exists()
        assert upstream.sha256(Path(src).read_bytes()) == next(
            a.sha256 for a in upstream.MANIFEST if complete / a.path == Path(dst)
        )
        replaced.append(str(Path(dst).relative_to(complete)))
        real_replace(src, dst)

    monkeypatch.setattr(upstream.os, "replace", replace)

    outcome = upstream.ensure(complete, fetch=serve)

    assert outcome.written == gone == replaced
    assert serve.calls == [a.url for a in upstream.MANIFEST if a.path in gone]
    assert not upstream.missing(complete)
    assert not [p for p in complete.rglob("*") if p.name.endswith(".part")]


def test_a_download_that_does_not_match_its_pin_is_refused_and_nothing_written(tmp_path):
    def tampered(url: str) -> bytes:
        return b"not what was pinned\n"

    with pytest.raises(upstream.IntegrityError) as raised:
        upstream.ensure(tmp_path, fetch=tampered)

    first = upstream.MANIFEST[0]
    message = str(raised.value)
    assert first.url in message and first.sha256 in message
    assert hashlib.sha256(b"not what was pinned\n").hexdigest() in message
    assert list(tmp_path.rglob("*")) == []


def test_an_existing_file_that_does_not_match_its_pin_is_an_error_naming_it(tmp_path, monkeypatch):
    crd = next(a for a in upstream.MANIFEST if a.path.startswith("crds/"))
    target = tmp_path / crd.path
    target.parent.mkdir(parents=True)
    target.write_text("{}\n")
    forbid_writes(monkeypatch)

    def fetch(url: str) -> bytes:
        if url == crd.url:
            raise AssertionError("a mismatched file is not silently replaced")
        raise urllib.error.URLError("offline")

    with pytest.raises(upstream.IntegrityError) as raised:
        upstream.ensure(tmp_path, fetch=fetch)

    message = str(raised.value)
    assert str(target) in message and crd.sha256 in message
    assert upstream.sha256(b"{}\n") in message
    assert target.read_text() == "{}\n"


def test_in_the_default_cache_a_mismatched_file_is_fetched_again(complete, serve):
    starwars = complete / "starwars" / "sw_l3_l4_policy.yaml"
    starwars.write_text("stale\n")

    outcome = upstream.ensure(complete, fetch=serve, replace_mismatched=True)

    assert outcome.written == ["starwars/sw_l3_l4_policy.yaml"]
    assert upstream.sha256(starwars.read_bytes()) == BY_URL[serve.calls[0]].sha256


def test_the_charts_values_are_extracted_from_the_verified_archive(real, tmp_path):
    for a in ARCHIVES:
        (tmp_path / a.path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(real / a.path, tmp_path / a.path)

    outcome = upstream.ensure(tmp_path, fetch=offline)

    assert outcome.written == [a.path for a in EXTRACTED]
    for a in EXTRACTED:
        assert upstream.sha256((tmp_path / a.path).read_bytes()) == a.sha256
    assert set(outcome.unavailable) == {a.path for a in upstream.MANIFEST} - {
        a.path for a in [*ARCHIVES, *EXTRACTED]
    }


def test_an_extracted_file_that_does_not_match_its_pin_is_refused(real, tmp_path, monkeypatch):
    archive = ARCHIVES[0]
    (tmp_path / archive.path).parent.mkdir(parents=True)
    shutil.copyfile(real / archive.path, tmp_path / archive.path)
    monkeypatch.setattr(upstream, "_extract", lambda data, member: b"edited\n")

    with pytest.raises(upstream.IntegrityError, match=EXTRACTED[0].sha256):
        upstream.ensure(tmp_path, fetch=offline)

    assert sorted(p.name for p in (tmp_path / archive.path).parent.iterdir()) == [
        Path(archive.path).name
    ]


# python -m tests.reference


def test_offline_each_missing_artifact_gets_a_line_and_the_exit_status_is_0(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("CILIUM_EKS_REFERENCE", str(tmp_path))
    calls = []

    def fetch(url: str) -> bytes:
        calls.append(url)
        return offline(url)

    assert upstream.main(fetch=fetch) == 0

    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert len(lines) == len(upstream.MANIFEST)
    for a, line in zip(upstream.MANIFEST, lines, strict=True):
        assert a.path in line and "unavailable" in line
    assert str(tmp_path) in out
    assert len(calls) == 2  # one attempt per unreachable host, not one timeout per file
    assert list(tmp_path.rglob("*")) == []


def test_a_mismatch_exits_non_zero_with_the_message(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CILIUM_EKS_REFERENCE", str(tmp_path))
    first = upstream.MANIFEST[0]
    (tmp_path / first.path).parent.mkdir(parents=True)
    (tmp_path / first.path).write_bytes(b"truncated")

    assert upstream.main(fetch=no_network) == 1

    err = capsys.readouterr().err
    assert first.path in err and first.sha256 in err


def test_missing_lists_what_the_reference_fixture_would_skip_for(tmp_path):
    assert upstream.missing(tmp_path) == [a.path for a in upstream.MANIFEST]


@pytest.mark.parametrize(
    ("where", "label"),
    [
        ("override", "($CILIUM_EKS_REFERENCE)"),
        ("shared", "(../shared/reference beside the checkout)"),
        ("cache", "(default cache; set $CILIUM_EKS_REFERENCE to use another folder)"),
    ],
)
def test_make_reference_names_the_source_it_really_uses(tmp_path, monkeypatch, capsys, where,
                                                        label):  # fmt: skip
    shared = tmp_path / "shared" / "reference"
    monkeypatch.setattr(upstream, "SHARED", shared)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("CILIUM_EKS_REFERENCE", raising=False)
    if where == "override":
        monkeypatch.setenv("CILIUM_EKS_REFERENCE", str(tmp_path / "elsewhere"))
    if where == "shared":
        shared.mkdir(parents=True)
    upstream.main(fetch=offline)
    first = capsys.readouterr().out.splitlines()[0]
    assert first == f"reference data: {upstream.location()} {label}"


def test_a_mismatched_file_in_the_shared_folder_is_reported_not_replaced(
    tmp_path, monkeypatch, capsys
):
    # ../shared/reference is provided, not owned: only the user cache is repaired
    shared = tmp_path / "shared" / "reference"
    crd = next(a for a in upstream.MANIFEST if a.path.startswith("crds/"))
    (shared / crd.path).parent.mkdir(parents=True)
    (shared / crd.path).write_text("{}\n")
    monkeypatch.setattr(upstream, "SHARED", shared)
    monkeypatch.delenv("CILIUM_EKS_REFERENCE", raising=False)
    forbid_writes(monkeypatch)
    assert upstream.main(fetch=offline) == 1
    assert crd.sha256 in capsys.readouterr().err
    assert (shared / crd.path).read_text() == "{}\n"


def test_offline_the_skips_for_missing_data_are_one_line_of_the_summary(tmp_path):
    # Each test that reads the data still skips on its own; the summary says what and why,
    # and how to get the data, once (pytest folds them: tests/conftest.py). Under xdist, as
    # `make test` runs, since the reports travel from the worker.
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/test_reference.py", "-q", "-n", "1", "-rs",
         "-p", "no:cacheprovider", "-k", "not one_line_of_the_summary"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "CILIUM_EKS_REFERENCE": str(tmp_path / "absent")},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:]
    (line,) = [x for x in proc.stdout.splitlines() if x.startswith("SKIPPED")]
    skipped = int(re.search(r"(\d+) skipped", proc.stdout.splitlines()[-1])[1])  # type: ignore[index]
    assert skipped >= 2 and line.startswith(f"SKIPPED [{skipped}] tests/conftest.py: ")
    assert f"not found at {tmp_path / 'absent'} ($CILIUM_EKS_REFERENCE)" in line
    assert "`make reference`" in line and "../shared/reference beside the checkout" in line
