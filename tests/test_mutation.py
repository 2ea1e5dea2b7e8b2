"""`make mutate` (scripts/mutation.py, cosmic-ray.toml): its plumbing, cheaply.

A campaign takes hours; here a tiny project (one function, its tests, its own git
repository as a fresh clone is) goes through the real script and configuration: copy,
mutants, baseline, one test run per mutant, the session, the score and the tests the
baseline skipped, no stale bytecode; which annotations' mutants are left out; and the
Makefile hands its variables to the script.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import ROOT

TINY = """\
from __future__ import annotations


def is_big(x: int | None, **options) -> bool | None:
    settings = {**options}  # unpacking: not a power
    return x > 10
"""
# 11 and 3 are told apart: the boundary (10 itself) is not, so `>=` and `9` survive.
# A test that cannot run here (the reference data's, offline) skips in every run. The
# mock runs write bytecode of the copy's modules (tests/harness.py turns it back on for
# them); no run may start with any (a mutant of the same size, written within the same
# second as the bytecode's source, would not be recompiled).
TINY_TEST = """\
import os
import subprocess
import sys
from pathlib import Path

import pytest

from components.tiny import is_big


def test_in_a_copy_of_what_git_tracks():  # kubeconfig.json is git-ignored
    assert not Path("kubeconfig.json").exists()


def test_with_git_s_index():  # as the tests of the shipped stack file read it
    shown = subprocess.run(["git", "show", ":components/tiny.py"], capture_output=True)
    assert b"def is_big" in shown.stdout


def test_no_bytecode_from_an_earlier_run():
    assert not list(Path("components").rglob("*.pyc"))


def test_is_big():
    assert is_big(11) and not is_big(3)


def test_without_the_reference_data():
    pytest.skip("no reference data here")


def test_in_a_mock_run_as_the_harness_starts_it():
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    code = "from components.tiny import is_big; assert is_big(11)"
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
"""


def git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    project = tmp_path / "tiny"
    for rel in ("scripts/mutation.py", "cosmic-ray.toml", ".gitignore"):
        (project / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, project / rel)
    (project / "components").mkdir()
    (project / "components" / "tiny.py").write_text(TINY)
    (project / "tests").mkdir()
    (project / "tests" / "test_tiny.py").write_text(TINY_TEST)
    (project / "kubeconfig.json").write_text("{}")
    git("init", "-q", cwd=project)
    git("add", ".", cwd=project)
    return project


def mutate(project: Path, *args: str) -> str:
    # as `make mutate` starts it (the Makefile unexports PYTHONDONTWRITEBYTECODE)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    proc = subprocess.run(
        [sys.executable, "scripts/mutation.py", *args], cwd=project, capture_output=True,
        text=True, timeout=240, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_a_run_scores_the_mutants_in_a_copy_and_survivors_run_again(tiny):
    out = mutate(tiny, "components/tiny.py")
    # `>` becomes == != < <= >=; 10 becomes 11 and 9. The type hints' `|` and the `**` of
    # {**options} are no arithmetic: left out, not counted as kills.
    assert "7 mutants; left out:" in out and "'not an operator': 6" in out
    assert "'types only': 4" in out
    assert "the unmutated suite skipped 1 tests, which kill no mutant here" in out
    assert (
        "7 mutants: 5 killed (0 by timeout), 2 survived, 0 errors; score 71.4 %; "
        "skipped by the unmutated suite: 1"
    ) in out
    survivors = out.split("\nSURVIVED ")[1:]
    assert sorted(s.splitlines()[0].split()[1] for s in survivors) == [
        "core/NumberReplacer",
        "core/ReplaceComparisonOperator_Gt_GtE",
    ]
    assert "+    return x >= 10" in out and "+    return x > 9" in out
    # the working tree was never mutated: every mutant ran in a copy (the first test)
    assert (tiny / "components" / "tiny.py").read_text() == TINY
    # cosmic-ray's own session, for cr-report and cr-html
    with sqlite3.connect(tiny / ".cosmic-ray" / "session.sqlite") as db:
        outcomes = sorted(r for (r,) in db.execute("select test_outcome from work_results"))
    assert outcomes == ["KILLED"] * 5 + ["SURVIVED"] * 2

    # the test the survivors ask for, and only they run again
    (tiny / "tests" / "test_tiny.py").write_text(
        TINY_TEST + "\n\ndef test_ten_is_not_big():\n    assert not is_big(10)\n"
    )
    again = mutate(tiny, "--survivors")
    assert "2 mutants: 2 killed (0 by timeout), 0 survived, 0 errors; score 100.0 %" in again


def test_a_red_baseline_stops_the_run_and_keeps_the_last_session(tiny):
    session = tiny / ".cosmic-ray" / "session.sqlite"
    session.parent.mkdir()
    session.write_bytes(b"the last run's results")
    (tiny / "tests" / "test_tiny.py").write_text(TINY_TEST.replace("not is_big(3)", "is_big(3)"))
    proc = subprocess.run(
        [sys.executable, "scripts/mutation.py", "components/tiny.py"], cwd=tiny,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1 and "the unmutated suite fails in the copy" in proc.stderr
    assert session.read_bytes() == b"the last run's results"


def test_a_sample_is_repeatable_by_its_seed_and_lists_without_running(tiny):
    first = mutate(tiny, "components/tiny.py", "--sample", "3", "--seed", "5", "--list")
    again = mutate(tiny, "components/tiny.py", "--sample", "3", "--seed", "5", "--list")
    assert first == again and "a sample of 3, seed 5" in first
    assert len([line for line in first.splitlines() if line.startswith("components/")]) == 3
    assert not (tiny / ".cosmic-ray" / "session.sqlite").exists()


# Which annotations run: pydantic evaluates a model's fields', even postponed (PEP 563);
# Python a function's signature as it defines it, unless postponed.
POSTPONED = """\
from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field


class Tags(BaseModel):
    tags: Annotated[dict[str, str], Field(strict=False)] = {}


def count(tags: Tags | None) -> int | None:
    return None if tags is None else len(tags.tags)
"""
EAGER = """\
LIMIT = 1e18


def count(tags: dict | None) -> int | None:
    return None if tags is None else len(tags)
"""


def test_only_mutants_of_annotations_never_evaluated_are_left_out(tiny):
    (tiny / "components" / "postponed.py").write_text(POSTPONED)
    (tiny / "components" / "eager.py").write_text(EAGER)
    out = mutate(tiny, "components/postponed.py", "components/eager.py", "--list")
    listed = {tuple(line.split()[:2]) for line in out.splitlines() if line.startswith("comp")}
    assert ("components/postponed.py:9", "core/ReplaceFalseWithTrue") in listed
    assert ("components/eager.py:4", "core/ReplaceBinaryOperator_BitOr_BitAnd") in listed
    assert "components/postponed.py:12" not in {line for line, _ in listed}
    # the signature's two `|` in postponed.py, each made & and ^
    assert "'types only': 4" in out
    # 1e18 + 1 and 1e18 - 1 are 1e18: the mutant is the same code
    assert "'no change': 2" in out


def test_the_program_s_modules_list_as_on_a_fresh_clone():
    # What `make mutate LIST=1 MODULE=...` runs, on a module of the real program.
    out = subprocess.run(
        [sys.executable, "scripts/mutation.py", "components/config/network.py", "--list"],
        cwd=ROOT, capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    listed = [line for line in out.splitlines() if line.startswith("components/")]
    assert listed and all(line.startswith("components/config/network.py:") for line in listed)


def test_the_generated_input_types_are_never_mutated():
    # components/inputs.py is make schema's output (scripts/schema.py); its drift test, not
    # a defect of the code, would kill each of its mutants, at a whole suite's cost apiece
    sys.path.insert(0, str(ROOT / "scripts"))
    import mutation
    from cosmic_ray.config import load_config

    config = load_config(str(ROOT / "cosmic-ray.toml"))
    listed = mutation.modules(["components"], config["excluded-modules"])
    assert Path("components/inputs.py") not in listed
    assert Path("components/stack.py") in listed and Path("components/config/network.py") in listed


def make_mutate(*variables: str) -> str:
    """The script's command line `make mutate` would run (make -n: nothing runs), whatever
    variables the make that runs these tests was given (make passes them on)."""
    ours = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MODULE", "SAMPLE", "SEED", "LIST", "SURVIVORS")
    env = {k: v for k, v in os.environ.items() if k not in ours}
    dry = subprocess.run(
        ["make", "-n", "mutate", *variables], cwd=ROOT, capture_output=True, text=True,
        check=True, env=env,
    ).stdout  # fmt: skip
    return next(" ".join(line.split()) for line in dry.splitlines() if "mutation.py" in line)


def test_make_mutate_hands_its_variables_to_the_script():
    assert make_mutate("MODULE=components/cilium.py", "SAMPLE=30", "SEED=7", "LIST=1").endswith(
        "scripts/mutation.py components/cilium.py --sample 30 --seed 7 --list"
    )
    assert make_mutate("SURVIVORS=1").endswith("scripts/mutation.py --survivors")
    assert make_mutate().endswith("scripts/mutation.py")
