"""The upstream reference data the tests read: where it lives, what it must be, how to get it.

Every artifact is pinned by sha256 to the bytes the tests were validated against, and
fetched from its canonical source at an immutable ref: the chart archives from the Cilium
Helm repository (helm.cilium.io serves the cilium/charts repository), the chart's
values.yaml and values.schema.json extracted from the verified archive, the
CiliumNetworkPolicy JSON schema from datreeio/CRDs-catalog at a commit, and the Star Wars
demo from cilium/cilium's examples at the tag of the default Cilium version.

`python -m tests.reference` (what `make reference` runs) fills the folder that
`location()` names, never the repository. A file already there with the wrong sha256 is an
error (exit 1), as is a download that does not match its pin; in the default cache folder
a wrong file is fetched again instead. Without network, each artifact still missing gets
one line on stderr and the exit status is 0: the tests that need it skip with the reason.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import os
import sys
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ENV = "CILIUM_EKS_REFERENCE"
TIMEOUT = 20  # seconds, per download

# The newest patch release of each supported Cilium minor; the default
# (components/config/cilium.py) must be among them.
CHART_VERSIONS = ("1.18.12", "1.19.6", "1.20.0")
# The Star Wars demo at the tag of the default Cilium version.
STARWARS_TAG = "v1.19.6"
# datreeio/CRDs-catalog commit "feat: Update cilium to 1.18.2 (#658)"; the file is
# unchanged since, up to at least 7b1e26ef (August 2026).
CRDS_CATALOG_COMMIT = "ea03cc2abb64ddc0a927c1e3d48a3d0abf66a3de"

Fetch = Callable[[str], bytes]


@dataclass(frozen=True)
class Artifact:
    """One file under the reference folder: downloaded from `url`, or extracted from the
    archive artifact at `archive` (its `member`)."""

    path: str
    sha256: str
    url: str | None = None
    archive: str | None = None
    member: str | None = None

    @property
    def source(self) -> str:
        return self.url or f"{self.archive}:{self.member}"


_CHART_SHA256 = {
    "1.18.12": {
        "archive": "5923f9d9fcb11bc4692ad52353cc791b935d96e09ba0c535c5a8b88ea8a37572",
        "values.yaml": "8be6251e71714fdbb19e38e8c55284098d624da97dc375ec8cb820e0e3b5e020",
        "values.schema.json": "43f4ce043a0939f6671893cf6d63a55f63c40a282733b520c6cff12c5b672052",
    },
    "1.19.6": {
        "archive": "21c43cf53841f9ab0375047d95aa4c64051ea52bbd2c679416e6408f5f1c9179",
        "values.yaml": "78bfcf9cb632c18ae3bf21c6908ddbe8f6512e95fbe8942d93767c3427061c29",
        "values.schema.json": "86d324424c30bd12e9b6a20e5e8a95c9fd85a6a320f3b5297a3e755f3ce3e9f0",
    },
    "1.20.0": {
        "archive": "c5f013912360d1a334f44ef25f36da59ba3414cdb48f466ee12d0c4fdff27883",
        "values.yaml": "6d5723809e788b33ab4adc9f53e4522df1a6f6f5254b4444b585ea8cb2d71c38",
        "values.schema.json": "736bf1f53d6e86119aac2e872d92607c7414621e32cc9fdafb548c99f7255f56",
    },
}
_STARWARS_SHA256 = {
    "http-sw-app.yaml": "759cb09c48cb48c6a96adef039f2232899f34f700590b0d389178336dab279a7",
    "sw_l3_l4_policy.yaml": "27c086007a5c6ad5aa6e7936a4878179b04bb9ef7d4850c54770ca1432568d49",
    "sw_l3_l4_l7_policy.yaml": "e6dcc3114657c7df5bd2741f215609a8a0bfe5b99fe5233b423d0de84563066a",
}


def _manifest() -> tuple[Artifact, ...]:
    artifacts: list[Artifact] = []
    for version in CHART_VERSIONS:
        pins = _CHART_SHA256[version]
        archive = f"cilium-chart/{version}/cilium-{version}.tgz"
        artifacts.append(
            Artifact(archive, pins["archive"], url=f"https://helm.cilium.io/cilium-{version}.tgz")
        )
        for name in ("values.yaml", "values.schema.json"):
            artifacts.append(
                Artifact(
                    f"cilium-chart/{version}/{name}",
                    pins[name],
                    archive=archive,
                    member=f"cilium/{name}",
                )
            )
    artifacts.append(
        Artifact(
            "crds/ciliumnetworkpolicy_v2.json",
            "9261eccbea2468f399aa2f22495b5a1c2c54bd180d015925392afb4f17326c85",
            url="https://raw.githubusercontent.com/datreeio/CRDs-catalog/"
            f"{CRDS_CATALOG_COMMIT}/cilium.io/ciliumnetworkpolicy_v2.json",
        )
    )
    for name, sha256 in _STARWARS_SHA256.items():
        artifacts.append(
            Artifact(
                f"starwars/{name}",
                sha256,
                url="https://raw.githubusercontent.com/cilium/cilium/"
                f"{STARWARS_TAG}/examples/minikube/{name}",
            )
        )
    return tuple(artifacts)


# Archives come before the files extracted from them.
MANIFEST = _manifest()


class IntegrityError(Exception):
    """A file (on disk or downloaded) whose sha256 is not its pin."""


@dataclass
class Outcome:
    """What `ensure` did, by artifact path (unavailable: path -> reason)."""

    verified: list[str] = field(default_factory=list)
    written: list[str] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)


def default_location() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "cilium-eks" / "reference"


# Beside the checkout, where this project's CI machines provide the data (they have no
# general internet): the default when it exists.
SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "reference"


def location() -> Path:
    """$CILIUM_EKS_REFERENCE if set, else ../shared/reference beside the checkout if it
    exists, else ${XDG_CACHE_HOME:-~/.cache}/cilium-eks/reference (`make reference`)."""
    return found()[0]


def origin() -> str:
    """Which of location()'s sources it is, in words."""
    return found()[1]


def found() -> tuple[Path, str]:
    override = os.environ.get(ENV)
    if override:
        return Path(override).expanduser(), f"${ENV}"
    if SHARED.is_dir():
        return SHARED, "../shared/reference beside the checkout"
    return default_location(), DEFAULT_CACHE


DEFAULT_CACHE = "default cache"
# How to get the data, for the line that says it is missing.
HOW = (
    "`make reference` fetches it where helm.cilium.io and raw.githubusercontent.com can be "
    "reached (each pinned file checked), or put a copy in ../shared/reference beside the "
    "checkout, or set $CILIUM_EKS_REFERENCE to a folder holding cilium-chart/, crds/ and "
    "starwars/"
)


def missing(dest: Path) -> list[str]:
    """The manifest's artifacts absent from `dest` (presence only; `ensure` checks hashes)."""
    return [a.path for a in MANIFEST if not (dest / a.path).is_file()]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def download(url: str) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "cilium-eks-tests"})
    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
        return response.read()


def _write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, then rename it over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _mismatch(subject: str, artifact: Artifact, actual: str) -> IntegrityError:
    return IntegrityError(
        f"{subject} has sha256 {actual}, expected {artifact.sha256} (pinned for {artifact.path})"
    )


def _extract(archive: bytes, member: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        f = tar.extractfile(member)
        if f is None:
            raise KeyError(member)
        return f.read()


def ensure(dest: Path, *, fetch: Fetch = download, replace_mismatched: bool = False) -> Outcome:
    """Make `dest` hold every artifact of the manifest, each matching its sha256.

    Present and matching: only read. Absent: fetched (or extracted from its verified
    archive), checked, then written atomically. Present with another hash: IntegrityError,
    unless `replace_mismatched` (the default cache folder), then fetched again. A download
    that does not match raises IntegrityError before anything is written. Network
    failures are not errors: the artifact is reported in `Outcome.unavailable`.
    """
    outcome = Outcome()
    verified: dict[str, bytes] = {}  # archives known good in this run, by path
    unreachable: dict[str, str] = {}  # host -> why, so an offline run waits once per host

    for artifact in MANIFEST:
        target = dest / artifact.path
        wrong: IntegrityError | None = None
        if target.is_file():
            data = target.read_bytes()
            actual = sha256(data)
            if actual == artifact.sha256:
                outcome.verified.append(artifact.path)
                if artifact.member is None:
                    verified[artifact.path] = data
                continue
            wrong = _mismatch(str(target), artifact, actual)
            if not replace_mismatched:
                raise wrong

        if artifact.url is not None:
            host = urllib.parse.urlsplit(artifact.url).netloc
            try:
                if host in unreachable:
                    raise urllib.error.URLError(unreachable[host])
                data = fetch(artifact.url)
            except (OSError, http.client.HTTPException) as e:  # URLError, timeouts, resets
                why = getattr(e, "reason", None) or e
                if not isinstance(e, urllib.error.HTTPError):
                    unreachable[host] = str(why)
                reason = f"cannot fetch {artifact.url}: {why}"
                if wrong:
                    raise IntegrityError(f"{wrong}; {reason}") from e
                outcome.unavailable[artifact.path] = reason
                continue
            subject = f"download of {artifact.url}"
        else:
            assert artifact.archive is not None and artifact.member is not None
            if artifact.archive not in verified:
                reason = f"not extracted: its archive {artifact.archive} is unavailable"
                if wrong:
                    raise IntegrityError(f"{wrong}; {reason}")
                outcome.unavailable[artifact.path] = reason
                continue
            data = _extract(verified[artifact.archive], artifact.member)
            subject = f"{artifact.member} in {artifact.archive}"
        actual = sha256(data)
        if actual != artifact.sha256:
            raise IntegrityError(f"{_mismatch(subject, artifact, actual)}; nothing written")
        _write_atomic(target, data)
        outcome.written.append(artifact.path)
        if artifact.member is None:
            verified[artifact.path] = data
    return outcome


def main(*, fetch: Fetch = download) -> int:
    dest, source = found()
    default = source == DEFAULT_CACHE
    more = f"; set ${ENV} to use another folder" if default else ""
    print(f"reference data: {dest} ({source}{more})")
    try:
        # only the cache this command owns is repaired; a folder it was given is reported
        outcome = ensure(dest, fetch=fetch, replace_mismatched=default)
    except (IntegrityError, OSError) as e:
        print(f"reference: error: {e}", file=sys.stderr)
        return 1
    for path, reason in outcome.unavailable.items():
        print(f"reference: {path} unavailable ({reason}); tests needing it skip", file=sys.stderr)
    print(
        f"  {len(outcome.verified)} verified, {len(outcome.written)} fetched and verified, "
        f"{len(outcome.unavailable)} unavailable, of {len(MANIFEST)} pinned files"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
