"""`make mutate`: mutation testing of the components with cosmic-ray, in a copy of the checkout.

    make mutate                               # every mutant of components/ (hours)
    make mutate MODULE=components/cilium.py   # one module, or a folder
    make mutate SAMPLE=40 SEED=7              # 40 random mutants of MODULE (SEED repeats
                                              # them on the same code only)
    make mutate LIST=1                        # the mutants, nothing run
    make mutate SURVIVORS=1                   # the last run's survivors again, after new tests

cosmic-ray (cosmic-ray.toml) makes the mutants, applies each to its file, runs the test
command with a timeout, restores the file and records the outcome in a session database
(.cosmic-ray/session.sqlite: `cr-report --show-diff` and `cr-html` read it). Why cosmic-ray
and not mutmut: docs/testing.md. This script adds what the configuration cannot say:
- The working tree is never mutated. cosmic-ray writes each mutant into the file itself and
  restores it afterwards, which a killed run (SIGKILL, a closed terminal) never does. So the
  git-tracked files, plus untracked ones that are not ignored (uncommitted work counts), are
  copied to a temporary folder, with git's index, and the mutants run there;
  tests/harness.py finds the program as its own parent's parent: the copy's.
- Each mutant's tests: the test command, then every test file, the mutated module's first
  (named for it, then those that import it, then those that import its package). So this
  script runs each mutant through cosmic-ray's mutate_and_test, one after another as its
  local distributor does, rather than `cosmic-ray exec`, whose one command serves all.
- Left out: the operators the configuration excludes; "binary operators" that are none
  (cosmic-ray also swaps the `*` and `**` of signatures and unpacking); mutants that do
  not parse (the tests would "kill" a syntax error); mutants that change nothing (a float
  whose +1 rounds back to itself: 1e18); and mutants that change only annotations Python
  never evaluates (`unevaluated`). Then the sample is drawn: from this list, so a seed
  repeats a sample only on the same code and configuration.
- The unmutated suite runs first, in the copy: a red baseline would make every mutant look
  killed. Its time x3 (at least the configured timeout) is each mutant's timeout. The tests
  it skips (the reference data's, offline) can kill no mutant: their count is printed with
  the score, which is then this machine's, not the suite's.
- No stale bytecode: a mutant and the restored original can have the same size within the
  same second, which Python's bytecode check (mtime and size) cannot tell apart. cosmic-ray
  runs a mutant's tests with PYTHONDONTWRITEBYTECODE=1 (cosmic_ray/testing.py), this
  script the baseline too, and it removes the copy's __pycache__ folders before each
  mutant: the mock runs (tests/harness.py) turn bytecode back on for their own processes.
Each mutant prints KILLED, SURVIVED, TIMEOUT (counted apart, with the killed) or ERROR (the
mutation could not be applied); the end gives the score and each survivor's diff.

Imports cosmic-ray, nothing of the program: the mutants are made in a copy of the
checkout, and the suite there imports the program.
"""

from __future__ import annotations

import argparse
import ast
import os
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from cosmic_ray.commands import init as cosmic_ray_init
from cosmic_ray.config import ConfigDict, load_config
from cosmic_ray.mutating import mutate_and_test, mutate_code
from cosmic_ray.plugins import get_operator
from cosmic_ray.work_db import WorkDB, use_db
from cosmic_ray.work_item import TestOutcome, WorkerOutcome, WorkItem, WorkResult

ROOT = Path(__file__).resolve().parent.parent
SESSION = ROOT / ".cosmic-ray" / "session.sqlite"


def name(item: WorkItem) -> str:
    m = item.mutations[0]
    return f"{m.module_path.as_posix()}:{m.start_pos[0]} {m.operator_name} #{m.occurrence}"


def order(item: WorkItem) -> tuple:
    m = item.mutations[0]
    return (m.module_path.as_posix(), m.start_pos, m.operator_name, m.occurrence)


def modules(paths: list[str], excluded: Sequence[str] = ()) -> list[Path]:
    """The Python files of `paths`, relative to the checkout (cosmic-ray mutates a file by
    its path, and in the copy a relative path is the copy's), but those cosmic-ray.toml's
    `excluded-modules` patterns match."""
    found: set[Path] = set()
    for p in (Path(p).resolve() for p in paths):
        if not p.exists() or not p.is_relative_to(ROOT):
            sys.exit(f"{p}: not a file or folder of this checkout")
        found |= set(p.rglob("*.py")) if p.is_dir() else {p}
    relative = (p.relative_to(ROOT) for p in found)
    return sorted(p for p in relative if not any(p.match(pattern) for pattern in excluded))


def postponed(tree: ast.Module) -> bool:
    """Whether the module has `from __future__ import annotations` (PEP 563)."""
    return any(
        isinstance(node, ast.ImportFrom)
        and node.module == "__future__"
        and any(alias.name == "annotations" for alias in node.names)
        for node in tree.body
    )


def unevaluated(tree: ast.Module) -> str:
    """The module without the annotations Python never evaluates: in a module with `from
    __future__ import annotations`, those of functions' parameters and returns (PEP 563
    keeps them as strings, and nothing here reads them back: no pydantic validate_call or
    serializer, and Pulumi's analyzer reads only the hosted components' signatures, in
    components/stack.py and cilium.py, which postpone nothing). Kept: the annotations of a
    module that postpones none, which Python evaluates as it defines each function and
    class; and every variable's, e.g. a pydantic model's fields', which pydantic evaluates
    postponed or not (`Field(strict=False)`). cosmic-ray makes no operator mutant inside a
    variable's annotation; a local variable's (never evaluated, PEP 526) with a constant
    mutated in it would be kept, and survive."""
    if postponed(tree):
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                node.returns = None
                for arg in ast.walk(node.args):
                    if isinstance(arg, ast.arg):
                        arg.annotation = None
    return ast.dump(tree)


def operator_spans(tree: ast.AST) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Where each binary operator's token can be: between its operands."""
    return [
        ((n.left.end_lineno or 0, n.left.end_col_offset or 0), (n.right.lineno, n.right.col_offset))
        for n in ast.walk(tree)
        if isinstance(n, ast.BinOp)
    ]


def candidates(paths: list[Path], config: ConfigDict) -> tuple[list[WorkItem], dict[str, int]]:
    """cosmic-ray's mutants of `paths` that run (see the module's docstring), in file
    order; and how many were left out, by reason."""
    with tempfile.TemporaryDirectory() as tmp, use_db(f"{tmp}/all.sqlite") as db:
        cosmic_ray_init(paths, db, config.operators_config)
        items = sorted(db.work_items, key=order)
    excluded = config.sub("filters", "operators-filter").get("exclude-operators", [])
    excluded_re = re.compile("|".join(excluded) or "(?!)")
    sources = {p: p.read_text() for p in paths}
    spans = {p: operator_spans(ast.parse(text)) for p, text in sources.items()}
    original = {p: ast.dump(ast.parse(text)) for p, text in sources.items()}
    running = {p: unevaluated(ast.parse(text)) for p, text in sources.items()}
    reasons = ("excluded", "not an operator", "no parse", "no change", "types only")
    kept, left_out = [], dict.fromkeys(reasons, 0)
    for item in items:
        m = item.mutations[0]
        if excluded_re.match(m.operator_name):
            left_out["excluded"] += 1
            continue
        if "BinaryOperator" in m.operator_name and not any(
            a <= m.start_pos < b for a, b in spans[m.module_path]
        ):
            left_out["not an operator"] += 1
            continue
        operator = get_operator(m.operator_name)(**m.operator_args)
        mutated = mutate_code(sources[m.module_path], operator, m.occurrence)
        try:
            tree = ast.parse(mutated)
        except (SyntaxError, TypeError):  # TypeError: None, no mutation made
            left_out["no parse"] += 1
            continue
        if ast.dump(tree) == original[m.module_path]:
            left_out["no change"] += 1
            continue
        if unevaluated(tree) == running[m.module_path]:
            left_out["types only"] += 1
            continue
        kept.append(item)
    return kept, left_out


def last_survivors() -> list[WorkItem]:
    if not SESSION.exists():
        sys.exit(f"no earlier run: {SESSION.relative_to(ROOT)} does not exist")
    with use_db(str(SESSION), WorkDB.Mode.open) as db:
        done = db.completed_work_items
    return sorted((i for i, r in done if r.test_outcome == TestOutcome.SURVIVED), key=order)


def test_files(module: Path | None) -> list[str]:
    """Every test file; with a module, those about it first."""
    files = sorted(Path("tests").glob("test_*.py"))
    if module:
        dotted = ".".join(module.with_suffix("").parts)
        package = dotted.rpartition(".")[0]

        def rank(f: Path) -> tuple[bool, bool, bool]:
            text = f.read_text()
            return (f.name != f"test_{module.stem}.py", dotted not in text, package not in text)

        files.sort(key=rank)
    return [f.as_posix() for f in files]


def git(*args: str, cwd: Path = ROOT, stdin: bytes | None = None) -> bytes:
    return subprocess.run(
        ["git", *args], cwd=cwd, input=stdin, capture_output=True, check=True
    ).stdout


def make_copy(where: Path) -> None:
    """The checkout's files, and git's index with them: the tests of the shipped stack file
    read it (tests/test_stack_file.py shipped_stack_file) and skip where there is none. The
    index's objects stay the checkout's (read through git's alternates)."""
    listed = git("ls-files", "-z", "--cached", "--others", "--exclude-standard").decode()
    for rel in filter(None, listed.split("\0")):
        src, dst = ROOT / rel, where / rel
        if src.exists() or src.is_symlink():  # a tracked file deleted in the tree is gone
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst, follow_symlinks=False)
    objects = (ROOT / git("rev-parse", "--git-path", "objects").decode().strip()).resolve()
    git("init", "-q", cwd=where)
    (where / ".git" / "objects" / "info" / "alternates").write_text(f"{objects}\n")
    git("update-index", "-z", "--index-info", cwd=where, stdin=git("ls-files", "-z", "--stage"))


def outcome(result: WorkResult) -> str:
    if result.worker_outcome != WorkerOutcome.NORMAL:
        return "ERROR"
    if result.test_outcome == TestOutcome.KILLED:
        return "TIMEOUT" if result.output == "timeout" else "KILLED"
    return "SURVIVED" if result.test_outcome == TestOutcome.SURVIVED else "ERROR"


def first_failure(output: str | None) -> str:
    found = re.search(r"^(?:FAILED|ERROR) (\S+)", output or "", re.M)
    return found.group(1) if found else ""


def skipped(output: str) -> tuple[int, list[str]]:
    """How many tests pytest's summary line says it skipped, and its reasons (with -ra)."""
    counts = re.findall(r"(\d+) skipped", output.splitlines()[-1] if output.strip() else "")
    return int(counts[0]) if counts else 0, re.findall(r"^SKIPPED .*", output, re.M)


def run(items: list[WorkItem], config: ConfigDict) -> int:
    """Run `items` in a copy of the checkout; the unmutated suite's skipped tests."""
    command = shlex.split(config.test_command)
    copy = Path(tempfile.mkdtemp(prefix="cilium-eks-mutate-"))
    try:
        make_copy(copy)
        os.chdir(copy)
        started = time.monotonic()
        baseline = subprocess.run([*command, *test_files(None)], capture_output=True, text=True)
        seconds = time.monotonic() - started
        if baseline.returncode != 0:  # before the last run's session is replaced
            sys.exit(f"the unmutated suite fails in the copy:\n{baseline.stdout[-3000:]}")
        timeout = max(config.timeout, 3 * seconds)
        print(f"unmutated suite: {seconds:.0f} s; timeout per mutant {timeout:.0f} s", flush=True)
        skips, reasons = skipped(baseline.stdout)
        if skips:
            print(f"the unmutated suite skipped {skips} tests, which kill no mutant here:")
            print(*reasons, sep="\n")
        SESSION.parent.mkdir(exist_ok=True)
        SESSION.unlink(missing_ok=True)
        with use_db(str(SESSION)) as db:
            db.add_work_items(items)
            for n, item in enumerate(items, 1):
                tests = [*command, *test_files(item.mutations[0].module_path)]
                for cache in Path(".").rglob("__pycache__"):  # see the module's docstring
                    shutil.rmtree(cache)
                started = time.monotonic()
                result = mutate_and_test(item.mutations, shlex.join(tests), timeout)
                db.set_result(item.job_id, result)
                took = f"{time.monotonic() - started:.0f} s"
                line = f"[{n}/{len(items)}] {outcome(result):8} {name(item)}  {took}"
                print(f"{line}  {first_failure(result.output)}", flush=True)
    finally:
        os.chdir(ROOT)
        shutil.rmtree(copy, ignore_errors=True)
    return skips


def summary(skips: int) -> None:
    with use_db(str(SESSION), WorkDB.Mode.open) as db:
        done = sorted(db.completed_work_items, key=lambda d: order(d[0]))
    counts = {k: 0 for k in ("KILLED", "TIMEOUT", "SURVIVED", "ERROR")}
    for item, result in done:
        counts[outcome(result)] += 1
        if outcome(result) in ("SURVIVED", "ERROR"):
            print(f"\n{outcome(result)} {name(item)}\n{result.diff or result.output}")
    killed = counts["KILLED"] + counts["TIMEOUT"]
    tested = killed + counts["SURVIVED"]
    score = f"{100 * killed / tested:.1f} %" if tested else "n/a"
    print(
        f"\n{len(done)} mutants: {killed} killed ({counts['TIMEOUT']} by timeout), "
        f"{counts['SURVIVED']} survived, {counts['ERROR']} errors; score {score}; "
        f"skipped by the unmutated suite: {skips}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", help="modules or folders (default: module-path)")
    parser.add_argument("--sample", type=int, help="this many random mutants")
    parser.add_argument(
        "--seed", type=int, help="the sample's seed (default: random, printed); it repeats a "
        "sample on the same code only: another commit makes other mutants",
    )  # fmt: skip
    parser.add_argument("--list", action="store_true", help="list the mutants, run nothing")
    parser.add_argument("--survivors", action="store_true", help="the last run's survivors")
    args = parser.parse_args(argv)
    os.chdir(ROOT)
    config = load_config(str(ROOT / "cosmic-ray.toml"))
    if args.survivors:
        items = last_survivors()
    else:
        paths = modules(args.paths or [config["module-path"]], config["excluded-modules"])
        items, left_out = candidates(paths, config)
        print(f"{len(items)} mutants; left out: {left_out}", flush=True)
        if args.sample is not None:
            seed = args.seed if args.seed is not None else random.randrange(1000)
            items = sorted(
                random.Random(seed).sample(items, min(args.sample, len(items))), key=order
            )
            print(f"a sample of {len(items)}, seed {seed}")
    if args.list:
        print("\n".join(map(name, items)))
        return 0
    # The test command's `python` is this one, and the copy finds the reference data
    # (tests/reference.py) where the checkout would: ../shared/reference beside it.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    shared = ROOT.parent / "shared" / "reference"
    if shared.is_dir():
        os.environ.setdefault("CILIUM_EKS_REFERENCE", str(shared))
    # The baseline writes no bytecode either (see the module's docstring).
    os.environ["PYTHONDONTWRITEBYTECODE"] = "1"
    # `kill` as Ctrl-C: the copy is removed and the session keeps what finished
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    summary(run(items, config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
