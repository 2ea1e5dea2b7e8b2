"""The user's stack file and `make check`.

Pulumi.dev.yaml is the user's to edit (region, sizes, policy mode before the first `make
up`), by hand or with `pulumi config set`, which rewrites it without its comments. The
suite builds its configurations from tests/fixtures/stack.yaml, and checks the shipped
file, as committed (git's index), only for being valid and for listing every key a user
can set: never the working copy, so that any valid edit leaves `make test` green.
"""

from __future__ import annotations

import contextlib
import io
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.config import StackConfig
from components.config.messages import model_in
from scripts import check_config
from scripts.check_config import check
from tests.harness import ROOT

CHECK = [sys.executable, str(ROOT / "scripts" / "check_config.py")]


def shipped_stack_file(root: Path) -> str:
    """Pulumi.dev.yaml as shipped: git's index (HEAD, unless a change to it is staged). The
    working copy is the user's. Without git metadata (a copy of the sources), a skip."""
    git = shutil.which("git")
    top = subprocess.run([git or "git", "rev-parse", "--show-toplevel"], cwd=root,
                         capture_output=True, text=True) if git else None  # fmt: skip
    if top is None or top.returncode != 0 or Path(top.stdout.strip()).resolve() != root.resolve():
        pytest.skip(
            "no git metadata here to read the shipped Pulumi.dev.yaml from; the working copy "
            "is the user's to edit, so the tests of the shipped file need a git checkout"
        )
    proc = subprocess.run([git or "git", "show", ":Pulumi.dev.yaml"], cwd=root,
                          capture_output=True, text=True, check=True)  # fmt: skip
    return proc.stdout


@pytest.fixture(scope="module")
def shipped() -> str:
    return shipped_stack_file(ROOT)


def key_paths(model: Any = StackConfig, prefix: str = "") -> list[str]:
    """Every key a stack file can set, as `pulumi config set --path` spells it."""
    paths = []
    for name, field in model.model_fields.items():
        key = field.alias or name
        inner = model_in(field.annotation)
        if inner is not None:
            paths += key_paths(inner, f"{prefix}{key}.")
        else:
            paths.append(f"{prefix}{key}")
    return paths


def all_keys_uncommented(text: str) -> dict[str, Any]:
    """The stack file with every commented-out key line put back: the keys it lists."""
    known = {part for path in key_paths() for part in re.split(r"[.]", path)} | {
        f"cilium-eks:{p.split('.')[0]}" for p in key_paths()
    }
    lines = []
    for line in text.splitlines():
        found = re.match(r"^(\s*)# ?(\s*)([\w:-]+):(.*)$", line)
        lines.append(
            f"{found[1]}{found[2]}{found[3]}:{found[4]}" if found and found[3] in known else line
        )
    return yaml.safe_load("\n".join(lines))["config"]


def flat(config: dict[str, Any]) -> set[str]:
    paths = set()
    for key, value in config.items():
        key = key.removeprefix("cilium-eks:")
        if isinstance(value, dict):
            paths |= {f"{key}.{p}" for p in flat(value)}
        else:
            paths.add(key)
    return paths


def test_the_shipped_stack_file_is_valid(shipped, tmp_path):
    shutil.copy(ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    (tmp_path / "Pulumi.dev.yaml").write_text(shipped)
    assert check("dev", tmp_path) == []


def test_the_shipped_stack_file_lists_every_key_set_or_commented(shipped):
    listed = flat(all_keys_uncommented(shipped))
    assert not set(key_paths()) - listed, "keys a user cannot see in Pulumi.dev.yaml"
    assert not listed - set(key_paths()), "keys the program does not know"
    # and with every commented key put back, it still holds valid values
    config = all_keys_uncommented(shipped)
    assert config["cilium-eks:mesh"]["clusterId"] == 1


def test_the_shipped_stack_file_names_the_stack_nowhere_it_can_be_derived(shipped):
    values = yaml.safe_load(shipped)["config"]
    assert "dev" not in yaml.safe_dump(values), "a value names the stack by hand"


def test_no_test_reads_the_users_stack_file():
    # the working copy is the user's; the shipped one is read from git, here alone
    readers = [
        p.name
        for p in (ROOT / "tests").glob("*.py")
        if re.search(r"[\"']Pulumi\.(dev\.yaml|\{)", p.read_text())
        and p.name != "test_stack_file.py"
    ]
    assert readers == []
    here = Path(__file__).read_text()
    assert not re.search(r"ROOT / [\"']Pulumi\.dev", here)


def test_the_configuration_reference_is_the_models_own():
    # every key with its type, default and meaning, from the one place they are defined
    from scripts.config_reference import DOC, with_table

    assert DOC.read_text() == with_table(DOC.read_text()), (
        "docs/configuration.md is stale: venv/bin/python scripts/config_reference.py --write"
    )
    assert all(f"| `{path}` |" in DOC.read_text() for path in key_paths())


# --- make check -------------------------------------------------------------------------------


def stack_dir(tmp_path: Path, config: dict[str, Any], name: str = "dev") -> Path:
    shutil.copy(ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    (tmp_path / f"Pulumi.{name}.yaml").write_text(yaml.safe_dump({"config": config}))
    return tmp_path


def test_make_check_lists_every_mistake_once_naming_the_key(tmp_path):
    config = {
        "aws:region": "us-east-11",
        "cilium-eks:nodess": {"minSize": 1},
        "cilium-eks:nodes": {"instanceTypes": ["t3.mediun"], "minSize": 0},
        "cilium-eks:demo": {"policy": "l4"},
    }
    proc = subprocess.run([*CHECK, "dev", "--dir", str(stack_dir(tmp_path, config))],
                          capture_output=True, text=True, timeout=30)  # fmt: skip
    assert proc.returncode == 1 and proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert lines[0] == "config check: Pulumi.dev.yaml has 5 mistake(s):"
    body = "\n".join(lines[1:])
    for fragment in (
        "aws:region: 'us-east-11' is not a region",
        "cilium-eks: unknown key 'nodess'; did you mean nodes? allowed: clusterName",
        "nodes.instanceTypes: t3.mediun not known to the AWS SDK",
        "nodes.minSize: 0 is not allowed; use a whole number 1 or more",
        "demo.policy: 'l4' is not allowed; did you mean l3l4? allowed: none, l3l4, l7",
    ):
        assert body.count(fragment) == 1, fragment
    assert "Traceback" not in proc.stderr and len(lines) == 6


def check_file(tmp_path: Path, text: str, name: str = "dev") -> subprocess.CompletedProcess[str]:
    """`make check` on a stack file of this text, beside the project's Pulumi.yaml (in this
    process: the tests above run it as a command)."""
    shutil.copy(ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    (tmp_path / f"Pulumi.{name}.yaml").write_text(text)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = check_config.main(["check_config.py", name, "--dir", str(tmp_path)])
    return subprocess.CompletedProcess(CHECK, code, out.getvalue(), err.getvalue())


def test_make_check_names_a_missing_file(tmp_path):
    shutil.copy(ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    proc = subprocess.run([*CHECK, "acme/cilium-eks/prod", "--dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=30)  # fmt: skip
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "Pulumi.prod.yaml: no such file; create the stack with `pulumi stack" in proc.stderr


BROKEN = """config:
  aws:region: eu-west-1
  cilium-eks:demo:
    policy: l7
   verify: true
"""


def test_a_yaml_error_is_shown_with_file_line_and_column_as_the_parser_reports_it(tmp_path):
    proc = check_file(tmp_path, BROKEN)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[:2] == [
        "config check: Pulumi.dev.yaml has 1 mistake(s):",
        "  - Pulumi.dev.yaml: not valid YAML:",
    ]
    # PyYAML's own report, line for line: where the mapping began, where it broke, and the
    # line itself with a caret under the column
    assert lines[2:] == [
        "    while parsing a block mapping",
        '      in "Pulumi.dev.yaml", line 2, column 3:',
        "          aws:region: eu-west-1",
        "          ^",
        "    expected <block end>, but found '<block mapping start>'",
        '      in "Pulumi.dev.yaml", line 5, column 4:',
        "           verify: true",
        "           ^",
    ]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("config:\n  aws:region: eu-west-1\n  cilium-eks:demo:\n    policy: l7\n"
         "    verify: true\n    policy: none\n",
         "demo.policy: given twice in Pulumi.dev.yaml, on lines 4 and 6"),
        ("config:\n  aws:region: eu-west-1\n  aws:region: eu-west-2\n",
         "aws:region: given twice in Pulumi.dev.yaml, on lines 2 and 3"),
        ("config:\n  aws:region: eu-west-1\nconfig:\n  cilium-eks:demo: {policy: l7}\n",
         "config: given twice in Pulumi.dev.yaml, on lines 1 and 3"),
        ("config:\n  aws:region: eu-west-1\n  cilium-eks:nodes:\n    instanceTypes:\n"
         "      - {name: a, name: b}\n",
         "nodes.instanceTypes[0].name: given twice in Pulumi.dev.yaml, on lines 5 and 5"),
    ],
    ids=["nested", "provider-key", "top-level", "in-a-list"],
)  # fmt: skip
def test_a_key_given_twice_is_refused_naming_it_and_both_lines(tmp_path, text, fragment):
    # YAML keys are unique (YAML 1.2.2, 3.2.1.1); PyYAML would keep the last one silently
    proc = check_file(tmp_path, text)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert fragment in proc.stderr and "delete one of them" in proc.stderr


def test_a_key_given_twice_hides_no_other_mistake(tmp_path):
    # `make check` lists every mistake at once (README): a repeated key among them
    text = (
        "config:\n  aws:regoin: eu-west-1\n  cilium-eks:kubernetesVersion: 1.30\n"
        "  cilium-eks:demo:\n    policy: l7\n    policy: none\n"
    )
    proc = check_file(tmp_path, text)
    assert proc.returncode == 1
    assert "demo.policy: given twice in Pulumi.dev.yaml, on lines 5 and 6" in proc.stderr
    assert "aws:regoin: unknown key; did you mean aws:region?" in proc.stderr
    assert "kubernetesVersion: 1.30 is read as the number 1.3" in proc.stderr
    assert "3 mistake(s)" in proc.stderr


ESC_FILE = """environment:
  - cilium-eks/platform
  - cilium-eks/dev
config:
  cilium-eks:demo:
    policy: l3l4
"""


def test_an_esc_stack_file_is_checked_for_what_it_holds_naming_what_esc_must_provide(tmp_path):
    proc = check_file(tmp_path, ESC_FILE)
    assert proc.returncode == 0, proc.stderr
    out = " ".join(proc.stdout.split())
    assert (
        "Pulumi.dev.yaml imports the ESC environment(s) cilium-eks/platform, cilium-eks/dev, "
        "which must provide aws:region;" in out
    )
    assert "the preflight of `make preview` and `make up` checks the config as Pulumi " in out
    assert "config check: Pulumi.dev.yaml holds valid values" in out
    assert "aws:region: not set" not in proc.stderr


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        # what the file holds is still checked, every mistake named
        (ESC_FILE.replace("l3l4", "l4"), "demo.policy: 'l4' is not allowed"),
        (ESC_FILE + "  aws:region: eu-west-9\n", "aws:region: 'eu-west-9' is not a region"),
    ],
)  # fmt: skip
def test_an_esc_stack_file_with_a_mistake_of_its_own_is_refused(tmp_path, text, fragment):
    proc = check_file(tmp_path, text)
    assert proc.returncode == 1 and fragment in proc.stderr
    assert "imports the ESC environment(s)" in proc.stdout


def test_an_inline_esc_environment_is_recognised(tmp_path):
    text = "environment:\n  imports:\n    - cilium-eks/dev\nconfig:\n  aws:region: eu-west-1\n"
    proc = check_file(tmp_path, text)
    assert proc.returncode == 0, proc.stderr
    assert "imports the ESC environment(s) cilium-eks/dev, which must provide no key this " in (
        " ".join(proc.stdout.split())
    )


def test_every_key_without_a_default_has_a_stand_in_for_esc():
    # a key the program requires, left to an ESC environment, must not fail `make check`
    from components.config import StackConfig
    from scripts.check_config import STAND_INS

    required = {
        field.alias or name
        for name, field in StackConfig.model_fields.items()
        if field.is_required() and "default" not in (field.json_schema_extra or {})  # type: ignore[operator]
    }
    assert required == set(STAND_INS)


def test_make_check_passes_a_valid_file_in_one_line(tmp_path):
    config = {"aws:region": "eu-west-1", "cilium-eks:nodes": {"instanceTypes": ["m7i-flex.large"]}}
    proc = subprocess.run([*CHECK, "staging", "--dir", str(stack_dir(tmp_path, config, "staging"))],
                          capture_output=True, text=True, timeout=30)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("config check: Pulumi.staging.yaml is valid")


def test_make_up_and_preview_check_the_config_before_the_preflight():
    makefile = (ROOT / "Makefile").read_text()
    for target in ("up", "preview"):
        prerequisites = re.search(rf"^{target}: (.*)$", makefile, re.M)
        assert prerequisites and "check" in prerequisites[1].split()


# --- a user's edits, and the suite ------------------------------------------------------------


class PulumiYaml(yaml.SafeDumper):
    """YAML as the CLI writes a stack file (go-yaml v3 with SetIndent(2), sdk/go/common/util/
    yamlutil/encode.go): keys sorted, sequences indented under their key, no comments."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        return super().increase_indent(flow, False)


def config_set(config: dict[str, Any], key: str, value: str, *, path: bool = False) -> None:
    """`pulumi config set [--path] KEY VALUE` on a stack file's `config:`, typed as the CLI
    types it (`pulumi config set --help`): with --path, true/false are booleans and integers
    numbers, everything else a string; a top-level value is always a string."""
    if not path:
        config[key if ":" in key else f"cilium-eks:{key}"] = value
        return
    typed: Any = {"true": True, "false": False}.get(value, value)
    typed = int(value) if re.fullmatch(r"-?\d+", value) else typed
    head, *rest = [
        int(p[1:-1]) if p.startswith("[") else p for p in re.findall(r"\[\d+\]|[^.\[\]]+", key)
    ]
    parent: Any = config
    step: Any = head if ":" in head else f"cilium-eks:{head}"
    for part in rest:
        empty: Any = [] if isinstance(part, int) else {}
        if isinstance(parent, list):
            parent.extend([None] * (step + 1 - len(parent)))
            parent[step] = parent[step] if parent[step] is not None else empty
        else:
            parent.setdefault(step, empty)
        parent, step = parent[step], part
    if isinstance(parent, list):
        parent.extend([None] * (step + 1 - len(parent)))
    parent[step] = typed


# A user's first days, with the CLI: values changed, a key written out with its default,
# the commented aws:defaultTags example and a commented block set; the file comes back
# without a comment.
USER_SETS = [
    ("aws:region", "eu-west-1", False),
    ("clusterName", "cilium-eks-dev", False),  # its default, written out
    ("kubernetesVersion", "1.35", False),
    ("nodes.instanceTypes[0]", "m7i-flex.large", True),  # a type the tests' EC2 facts lack
    ("nodes.desiredSize", "3", True),
    ("nodes.maxSize", "6", True),
    ("demo.policy", "l3l4", True),
    ("aws:defaultTags.tags.cost-center", "platform", True),
    ("karpenter.enabled", "false", True),
]


def sources_copy(tmp_path: Path) -> Path:
    """A copy of the checkout's sources, without its git metadata, venvs or caches."""
    copy = tmp_path / "checkout"
    skipped = ("venv", ".venv", ".tools", ".git", "__pycache__", ".pytest_cache", ".ruff_cache")
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(*skipped))
    return copy


def pytest_in(copy: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider", "-rs", *args],
        cwd=copy, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_the_users_edits_by_pulumi_config_set_leave_the_suite_green(shipped, tmp_path):
    # A copy of the checkout, its shipped Pulumi.dev.yaml committed (staged) and the working
    # copy rewritten as `pulumi config set` leaves it: `make check` accepts it, and the
    # tests that concern the stack file pass, none of them skipped.
    copy = sources_copy(tmp_path)
    (copy / "Pulumi.dev.yaml").write_text(shipped)
    git = ["git", "-C", str(copy)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "Pulumi.dev.yaml"], check=True)
    config = yaml.safe_load(shipped)["config"]
    for key, value, path in USER_SETS:
        config_set(config, key, value, path=path)
    edited = yaml.dump({"config": config}, Dumper=PulumiYaml, sort_keys=True)
    assert "#" not in edited and "    - m7i-flex.large" in edited
    (copy / "Pulumi.dev.yaml").write_text(edited)
    assert check("dev", copy) == []
    # the tests that read it (no other does: test_no_test_reads_the_users_stack_file), and
    # the README's
    proc = pytest_in(copy, "tests/test_stack_file.py", "tests/test_readme.py",
                     "-k", "shipped_stack_file or reads or readme")  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert re.search(r"^\d+ passed, \d+ deselected in ", proc.stdout.splitlines()[-1]), proc.stdout


def test_without_git_metadata_the_tests_of_the_shipped_file_skip_saying_why(tmp_path):
    copy = sources_copy(tmp_path)
    (copy / "Pulumi.dev.yaml").write_text("config: {}\n")
    with pytest.raises(pytest.skip.Exception, match="no git metadata here to read the shipped"):
        shipped_stack_file(copy)
    # and with it, the file as staged, whatever the working copy holds
    subprocess.run(["git", "-C", str(copy), "init", "-q"], check=True)
    with pytest.raises(subprocess.CalledProcessError):
        shipped_stack_file(copy)  # nothing staged: an error, not a silent read of the file
    subprocess.run(["git", "-C", str(copy), "add", "Pulumi.dev.yaml"], check=True)
    (copy / "Pulumi.dev.yaml").write_text("config: {edited: by the user}\n")
    assert shipped_stack_file(copy) == "config: {}\n"
