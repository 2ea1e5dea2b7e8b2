"""Mutation testing for this project: apply one realistic defect at a time, run the suite.

    venv/bin/python scripts/mutate.py --list             # candidate mutants, nothing run
    venv/bin/python scripts/mutate.py --sample 12        # 12 random mutants (see --seed)
    venv/bin/python scripts/mutate.py --all --jobs 2     # the full campaign
    venv/bin/python scripts/mutate.py --only ID,ID       # given mutants; `--only @REPORT`
                                                         # reruns a report's survivors

Why our own tool: mutmut and cosmic-ray choose a mutant's tests by coverage, but this
suite runs the program in forked subprocesses (tests/mock_run.py) where no coverage is
recorded, so every mutant would look untested. Here each mutant runs the whole suite
(`pytest -x`, the test files that name the mutated file first): exact, only slower.

The working tree is never touched. Git-tracked files, plus untracked ones that are not
ignored (so uncommitted work counts), are copied once per job to a temporary folder; per
mutant the one mutated file is written there, the suite runs there (tests/harness.py finds
the program as its own parent's parent: the copy's) and the file is restored. The
unmutated suite runs first: a red baseline would make every mutant look killed.

Mutants are single edits a person could plausibly make, generated deterministically.
Python, from the AST: flip a bool; int n -> n+1 (and 1 -> 0); a value string swapped for
the most similar string of the same module, else given a "-x" suffix; == != < <= > >= in
is swapped; and/or swapped; a `not` dropped; one element of a list/tuple/set/dict literal
(so one `depends_on` item), one keyword argument, or one `if`, call statement or dict-key
assignment deleted; `return X` -> `return None`. Shell, line by line: -eq/-ne, -lt/-ge,
-gt/-le, =/!=, &&/||, a number n -> n+1 (and 1 -> 0), a line deleted; the JavaScript that
starwars_verify.sh hands to node gets ===/!==, &&/||, comparisons, numbers, statements.
Left alone: comments, docstrings, annotations, decorators, imports, f-strings, assert and
raise, messages (strings passed to ConfigError, report, print, log, echo..., `description`
values, prose of 5+ words), zip's strict=, defaults of unused parameters, and lines
marked `# pragma: no mutate`. A mutant must still parse (Python: to a different AST;
shell: `sh -n`), so no syntax error passes for a kill.

A finished mutant prints KILLED, SURVIVED or TIMEOUT (the suite hung, counted apart);
the end lists the survivors and the kill rate. The JSON report (--report) holds every
result, with the first failing test, and is rewritten as mutants finish.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import difflib
import glob
import hashlib
import json
import os
import queue
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_FILES = ["components/*.py", "components/starwars_verify.sh", "__main__.py"]
DEFAULT_FILES += ["policy/policies.py", "scripts/pulumi-preflight.sh"]
PRAGMA = b"pragma: no mutate"
# Calls whose whole subtree is output or typing, not behaviour.
SILENT_CALLS = {"print", "info", "debug", "warning", "warn", "error", "log", "TypeVar", "cast"}
# Calls whose string arguments are messages (other edits inside them still count).
MESSAGE_CALLS = {"ConfigError", "ValueError", "TypeError", "RuntimeError", "SweepError"}
MESSAGE_CALLS |= {"KeyError", "Exception", "report", "fail"}
MESSAGE_KEYS = {"description", "help", "message"}
SWAPS = {ast.Eq: ("==", "!="), ast.NotEq: ("!=", "=="), ast.Lt: ("<", "<="),
         ast.LtE: ("<=", "<"), ast.Gt: (">", ">="), ast.GtE: (">=", ">"),
         ast.In: ("in", "not in"), ast.NotIn: ("not in", "in"),
         ast.Is: ("is", "is not"), ast.IsNot: ("is not", "is")}  # fmt: skip
OP_RE = {"==": rb"==", "!=": rb"!=", "<": rb"<(?![<=])", "<=": rb"<=", ">": rb"(?<![-=])>(?![>=])",
         ">=": rb">=", "in": rb"(?<!not )\bin\b", "not in": rb"\bnot\s+in\b",
         "is": rb"\bis\b(?!\s+not\b)", "is not": rb"\bis\s+not\b"}  # fmt: skip
NOT_CODE = ("annotation", "returns", "decorator_list")  # AST fields left alone
Span = tuple[int, int]


@dataclass
class Mutant:
    desc: str
    start: int  # byte offsets of the replaced span in the file
    end: int
    new: str
    file: str = ""
    line: int = 0
    id: str = ""
    diff: str = ""
    status: str = ""
    seconds: float = 0.0
    killed_by: str = ""
    data: bytes = field(default=b"", repr=False)  # the mutated file


def flat(text: bytes | str) -> str:
    return re.sub(r"\s+", " ", text.decode(errors="replace") if isinstance(text, bytes) else text)


def short(text: bytes | str, n: int = 50) -> str:
    text = flat(text).strip()
    return text if len(text) <= n else text[: n - 3] + "..."


def finish(path: str, data: bytes, raw: list[Mutant], valid: Callable[[bytes], bool]):
    """The mutants whose file is still valid, in file order, with id, line, diff, contents."""
    kept, seen = [], set()
    for m in sorted(raw, key=lambda m: (m.start, m.end)):
        new = data[: m.start] + m.new.encode() + data[m.end :]
        line_start = data.rfind(b"\n", 0, m.start) + 1
        line_end = data.find(b"\n", m.end - (m.end > m.start)) % (len(data) + 1)
        if new in seen or PRAGMA in data[line_start:line_end] or not valid(new):
            continue
        seen.add(new)
        m.file, m.data, m.line = path, new, data.count(b"\n", 0, m.start) + 1
        m.id = hashlib.sha1(f"{path}\0{m.start}\0{m.end}\0{m.new}".encode()).hexdigest()[:8]
        before = flat(data[line_start : m.start]).lstrip()[-35:]
        after = flat(data[m.end : line_end]).rstrip()[:35]
        old = f"[-{short(data[m.start : m.end], 60)}-]" if m.end > m.start else ""
        m.diff = before + old + (f"{{+{m.new}+}}" if m.new else "") + after
        kept.append(m)
    return kept


# --- Python ------------------------------------------------------------------------------


def python_mutants(path: str, data: bytes) -> list[Mutant]:
    tree, starts = ast.parse(data), [0]
    for line in data.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    out: list[Mutant] = []
    strings: list[ast.Constant] = []
    skip: set[int] = set()  # ids of subtrees not to mutate
    quiet: set[int] = set()  # ids of subtrees whose strings are messages
    depends_on: set[int] = set()  # ids of depends_on lists

    def span(n: ast.AST) -> Span:
        s = starts[n.lineno - 1] + n.col_offset  # type: ignore[attr-defined]
        return s, starts[n.end_lineno - 1] + n.end_col_offset  # type: ignore[attr-defined]

    def add(where: Span | None, new: str, desc: str) -> None:
        if where:
            out.append(Mutant(desc, *where, new))

    def token(start: int, end: int, pattern: bytes) -> Span | None:
        m = re.search(pattern, data[start:end])
        return (start + m.start(), start + m.end()) if m else None

    def drop_item(spans: list[Span], i: int) -> Span:
        """The text to delete to remove item i of a comma-separated sequence."""
        s, e = spans[i]
        if i + 1 < len(spans):
            return s, spans[i + 1][0]
        if i > 0:
            return spans[i - 1][1], e
        comma = re.match(rb"\s*,", data[e:])
        return s, e + (comma.end() if comma else 0)

    def drop_each(spans: list[Span], what: str) -> None:
        for i, (s, e) in enumerate(spans):
            add(drop_item(spans, i), "", f"delete {what} {short(data[s:e], 40)}")

    def call_name(node: ast.AST) -> str | None:
        f = getattr(node, "func", None) if isinstance(node, ast.Call) else None
        return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""

    def skip_unused_defaults(a: ast.arguments, body: list[ast.AST]) -> None:
        used = {n.id for stmt in body for n in ast.walk(stmt) if isinstance(n, ast.Name)}
        positional = (a.posonlyargs + a.args)[len(a.posonlyargs + a.args) - len(a.defaults) :]
        pairs = list(zip(positional, a.defaults, strict=True))
        pairs += list(zip(a.kwonlyargs, a.kw_defaults, strict=True))
        skip.update(id(d) for p, d in pairs if d and p.arg not in used)

    def visit(node: ast.AST, quiet_here: bool = False) -> None:
        if id(node) in skip or isinstance(node, ast.Assert | ast.Raise | ast.JoinedStr):
            return
        if isinstance(node, ast.Import | ast.ImportFrom) or call_name(node) in SILENT_CALLS:
            return
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            return  # docstrings
        if isinstance(node, ast.Assign) and "__all__" in [
            getattr(t, "id", "") for t in node.targets
        ]:
            return
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            skip_unused_defaults(
                node.args, node.body if isinstance(node.body, list) else [node.body]
            )
        quiet_here = quiet_here or id(node) in quiet or call_name(node) in MESSAGE_CALLS
        mutate(node, quiet_here)
        delete_statements(node)
        for name, value in ast.iter_fields(node):
            for child in value if isinstance(value, list) else [value]:
                if isinstance(child, ast.AST) and name not in NOT_CODE:
                    visit(child, quiet_here)

    def mutate(node: ast.AST, quiet_here: bool) -> None:
        if isinstance(node, ast.Constant) and isinstance(node.value, bool):
            add(span(node), str(not node.value), f"{node.value} -> {not node.value}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, int):
            add(span(node), str(node.value + 1), f"{node.value} -> {node.value + 1}")
            if node.value == 1:
                add(span(node), "0", "1 -> 0")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and not quiet_here:
            if len(node.value.split()) < 5:
                strings.append(node)
        elif isinstance(node, ast.Compare):
            lefts = [node.left, *node.comparators]
            for left, op, right in zip(lefts, node.ops, node.comparators):  # noqa: B905
                old, new = SWAPS[type(op)]
                add(token(span(left)[1], span(right)[0], OP_RE[old]), new, f"{old} -> {new}")
        elif isinstance(node, ast.BoolOp):
            old, new = ("and", "or") if isinstance(node.op, ast.And) else ("or", "and")
            for left, right in zip(node.values, node.values[1:]):  # noqa: B905
                where = token(span(left)[1], span(right)[0], rb"\b%s\b" % old.encode())
                add(where, new, f"{old} -> {new}")
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            (s, e), o = span(node), span(node.operand)[0]
            add(token(s, o, rb"^not\b\s*"), "", f"drop `not` before {short(data[o:e], 30)}")
        elif isinstance(node, ast.Dict) and len(node.keys) >= 2:
            starts_ = [span(k)[0] if k else data.rfind(b"**", 0, span(v)[0]) for k, v in
                       zip(node.keys, node.values, strict=True)]  # fmt: skip
            drop_each([(s, span(v)[1]) for s, v in zip(starts_, node.values, strict=True)], "item")
        elif isinstance(node, ast.List | ast.Set | ast.Tuple) and len(node.elts) >= 2:
            if not isinstance(getattr(node, "ctx", None), ast.Store):
                what = "depends_on item" if id(node) in depends_on else "element"
                drop_each([span(e) for e in node.elts], what)
        elif isinstance(node, ast.Call):
            args = sorted([span(a) for a in node.args] + [span(k) for k in node.keywords])
            for kw in node.keywords:
                if kw.arg == "depends_on":
                    depends_on.add(id(kw.value))
                if kw.arg in MESSAGE_KEYS:
                    quiet.add(id(kw.value))
                elif kw.arg != "strict":
                    (s, e), desc = span(kw), f"drop keyword {short(data[slice(*span(kw))], 40)}"
                    add(drop_item(args, args.index((s, e))), "", desc)
        elif isinstance(node, ast.Return) and node.value and ast.unparse(node.value) != "None":
            add(span(node.value), "None", f"return {short(ast.unparse(node.value), 30)} -> None")
        if isinstance(node, ast.Dict):
            for k, v in zip(node.keys, node.values, strict=True):
                if isinstance(k, ast.Constant) and k.value in MESSAGE_KEYS:
                    quiet.add(id(v))

    def delete_statements(node: ast.AST) -> None:
        """Delete one `if`, call statement or dict-key assignment of a block of 2+."""
        for block in [getattr(node, name, None) for name in ("body", "orelse", "finalbody")]:
            if isinstance(node, ast.ClassDef) or not isinstance(block, list) or len(block) < 2:
                continue
            for stmt in block:
                targets = getattr(stmt, "targets", [getattr(stmt, "target", None)])
                call = isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call)
                keyed = isinstance(stmt, ast.Assign | ast.AugAssign) and any(
                    isinstance(t, ast.Subscript) for t in targets
                )
                (s, e), first = span(stmt), starts[stmt.lineno - 1]
                last = starts[stmt.end_lineno]  # type: ignore[index]
                alone = not data[first:s].strip() and not data[e:last].split(b"#")[0].strip()
                silent = call and call_name(getattr(stmt, "value", None)) in SILENT_CALLS
                if alone and not silent and (isinstance(stmt, ast.If) or keyed or call):
                    add((first, last), "", f"delete statement {short(data[s:e], 40)}")

    visit(tree)
    values = sorted({c.value for c in strings if len(c.value) < 200})
    for c in strings:
        ratio = lambda v: difflib.SequenceMatcher(None, c.value, v).ratio()  # noqa: E731, B023
        near = max((v for v in values if v != c.value), key=ratio, default="")
        new = near if len(c.value) < 200 and near and ratio(near) >= 0.6 else c.value + "-x"
        add(span(c), repr(new), f"{short(repr(c.value), 30)} -> {short(repr(new), 30)}")
    original = ast.dump(tree)

    def valid(new: bytes) -> bool:
        with contextlib.suppress(SyntaxError):
            return ast.dump(ast.parse(new)) != original
        return False

    return finish(path, data, out, valid)


# --- Shell -------------------------------------------------------------------------------

SH_SWAPS = [(b" -eq ", b" -ne "), (b" -ne ", b" -eq "), (b" -lt ", b" -ge "),
            (b" -ge ", b" -lt "), (b" -gt ", b" -le "), (b" -le ", b" -gt "),
            (b" = ", b" != "), (b" == ", b" != "), (b" != ", b" = "),
            (b"&&", b"||"), (b"||", b"&&")]  # fmt: skip
JS_SWAPS = [(b"===", b"!=="), (b"!==", b"==="), (b"&&", b"||"), (b"||", b"&&"),
            (b" < ", b" <= "), (b" <= ", b" < "), (b" > ", b" >= "), (b" >= ", b" > ")]  # fmt: skip
SH_NUMBER = rb"(?:(?<=:-)|(?<![-\w.$&/]))\d+(?![\w.>])"  # not $1, 2>, -c1-80, 1.19
SH_MESSAGE = rb"\b(say|echo|printf|fail|config_error)\b"  # the rest of the line is text
SH_STRUCTURE = re.compile(  # lines whose deletion breaks the syntax rather than behaviour
    rb"[\w-]+\(\)\s*\{.*|\}|(case|if|elif|for|while|until)\b.*|esac|then|else|fi|do|done|;;"
    rb"|[^\s()]+(\s*\|\s*[^\s()]+)*\)"
)
CONTINUED = rb"(\\|\|\||&&|\|)$"
PAIRS = (b"()", b"{}", b"[]")


def shell_states(data: bytes) -> bytes:
    """Per byte: N (code), D (in double quotes), S (in single quotes), C (comment)."""
    states, state, i = bytearray(), "N", 0
    while i < len(data):
        c, prev = chr(data[i]), chr(data[i - 1]) if i else "\n"
        n = 2 if c == "\\" and state in "ND" else 1
        if state == "C" and c == "\n":
            state = "N"
        elif state == "N" and c == "#" and prev in " \t\n;(":
            state = "C"
        elif state == "N" and c in "\"'":
            state = "D" if c == '"' else "S"
        elif (state, c) in (("D", '"'), ("S", "'")):
            states.append(ord(state))
            state, i = "N", i + 1
            continue
        states += state.encode() * n
        i += n
    return bytes(states[: len(data)])


def shell_mutants(path: str, data: bytes) -> list[Mutant]:
    states, out, pos, prev_code = shell_states(data), [], 0, b""

    def add(desc: str, start: int, end: int, new: str) -> None:
        out.append(Mutant(desc, start, end, new))

    for line in data.splitlines(keepends=True):
        st, body, begin = states[pos : pos + len(line)], line.rstrip(b"\n"), pos
        before, pos = states[begin - 1 : begin] if begin else b"N", pos + len(line)
        js = before == b"S" and set(st) == {ord("S")}  # a line of node's script
        if js:  # its double-quoted strings blanked
            ops = nums = re.sub(rb'"(\\.|[^"\\])*"', lambda m: b"\0" * len(m[0]), body)
        elif before in (b"N", b"C") and st[-1:] in (b"N", b"C") and not body.startswith(b"#!"):
            ops = bytes(b if s == ord("N") else 0 for b, s in zip(body, st, strict=False))
            nums = bytes(b if s in b"ND" else 0 for b, s in zip(body, st, strict=False))
            message = re.search(SH_MESSAGE, nums)
            nums = nums[: message.start()] if message else nums
        else:
            continue  # opens or closes a string that spans lines
        for old, new in JS_SWAPS if js else SH_SWAPS:
            for m in re.finditer(re.escape(old), ops):
                desc = f"{old.strip().decode()} -> {new.strip().decode()}"
                add(desc, begin + m.start(), begin + m.end(), new.decode())
        for m in re.finditer(SH_NUMBER, nums):
            for n in [int(m[0]) + 1] + ([0] if m[0] == b"1" else []):
                add(f"{m[0].decode()} -> {n}", begin + m.start(), begin + m.end(), str(n))
        code = bytes(b for b, s in zip(body, st, strict=False) if s != ord("C")).strip()
        if js:  # a whole statement
            deletable = code.endswith(b";") and all(
                code.count(a) == code.count(b) for a, b in PAIRS
            )
        else:
            continued = re.search(CONTINUED, code) or re.search(CONTINUED, prev_code)
            deletable = bool(code) and not continued and not SH_STRUCTURE.fullmatch(code)
        if deletable:
            add(f"delete line {short(code, 40)}", begin, pos, "")
        prev_code = code or prev_code
    shell = "bash" if data.split(b"\n", 1)[0].endswith(b"bash") else "sh"

    def valid(new: bytes) -> bool:
        return subprocess.run([shell, "-n"], input=new, capture_output=True).returncode == 0

    return finish(path, data, out, valid)


# --- Running -----------------------------------------------------------------------------


def candidates(paths: list[str], root: Path) -> list[Mutant]:
    found: list[Mutant] = []
    for path in paths:
        kind = python_mutants if path.endswith(".py") else shell_mutants
        found += kind(path, (root / path).read_bytes())
    return found


def make_copy(where: Path) -> Path:
    """The git-tracked files, and untracked ones not ignored, copied to `where`."""
    git = ["git", "ls-files", "-z"]
    listed = subprocess.run(git, cwd=REPO, capture_output=True, check=True).stdout
    listed += subprocess.run([*git, "--others", "--exclude-standard"], cwd=REPO,
                             capture_output=True, check=True).stdout  # fmt: skip
    for f in sorted({f for f in listed.decode().split("\0") if f and (REPO / f).is_file()}):
        (where / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / f, where / f, follow_symlinks=False)
    return where


ACTIVE: set[int] = set()  # process groups of suite runs under way


def run_suite(copy: Path, timeout: float, mutated: str = "") -> tuple[int | None, float, str]:
    """The suite's exit code (None on timeout), seconds and output, run in `copy`. With
    `mutated`, every test file is named, those that name that file first: the same tests,
    but a kill comes sooner (-x stops there)."""
    for cache in list(copy.rglob("__pycache__")):
        shutil.rmtree(cache, ignore_errors=True)
    # one process per suite run (-n 0): --jobs runs several at once
    cmd = [str(REPO / "venv/bin/python"), "-m", "pytest", "-x", "-q", "-n", "0"]
    cmd += ["-p", "no:cacheprovider"]
    if mutated:
        stem = Path(mutated).stem
        tests = sorted(p.relative_to(copy).as_posix() for p in (copy / "tests").rglob("test_*.py"))
        cmd += sorted(
            tests, key=lambda t: (t != f"tests/test_{stem}.py", stem not in (copy / t).read_text())
        )
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    started = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=copy, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    ACTIVE.add(proc.pid)
    code: int | None = None
    try:
        out, _ = proc.communicate(timeout=timeout)
        code = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # whatever the suite left behind
        ACTIVE.discard(proc.pid)
    return code, time.monotonic() - started, out.decode(errors="replace")


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--files", nargs="+", help="files or globs to mutate (default: the program)")
    pick = p.add_mutually_exclusive_group()
    pick.add_argument("--all", action="store_true", help="run every candidate mutant")
    pick.add_argument("--sample", type=int, metavar="N", help="run N mutants picked at random")
    pick.add_argument("--only", metavar="ID,...|@REPORT", help="these ids, or a report's survivors")
    p.add_argument("--seed", type=int, default=1, help="for --sample (default 1)")
    p.add_argument("--list", action="store_true", help="print the mutants and stop")
    p.add_argument("--jobs", type=int, default=1, help="mutants run in parallel (default 1)")
    p.add_argument("--timeout", type=float, default=300, help="seconds per suite run (default 300)")
    p.add_argument("--report", type=Path, help="JSON report (default: in the temp folder)")
    args = p.parse_args()
    if not (args.all or args.sample or args.only or args.list):
        p.error("choose --all, --sample N, --only ID,... or --list")
    wanted, paths = set(), []
    if args.only and args.only.startswith("@"):  # a report: its survivors, in its files
        report = json.loads(Path(args.only[1:]).read_text())
        wanted = {m["id"] for m in report["mutants"] if m["status"] == "SURVIVED"}
        args.files = args.files or report["files"]
    elif args.only:
        wanted = set(args.only.split(","))
    for pattern in args.files or DEFAULT_FILES:
        paths += [f for f in sorted(glob.glob(pattern, root_dir=REPO)) if f not in paths]
    if args.list:
        mutants = select(args, candidates(paths, REPO), wanted)
        for m in mutants:
            print(f"{m.id}  {m.file}:{m.line}  {m.desc}")
        print(f"{len(mutants)} mutants", file=sys.stderr)
        return 0
    base = Path(tempfile.mkdtemp(prefix="cilium-eks-mutate-"))
    try:
        return campaign(args, paths, wanted, base)
    finally:
        for copy in base.glob("copy*"):
            shutil.rmtree(copy, ignore_errors=True)
        with contextlib.suppress(OSError):
            base.rmdir()  # unless the report is in it


def select(args: argparse.Namespace, mutants: list[Mutant], wanted: set[str]) -> list[Mutant]:
    """The mutants --sample or --only picks, in file order."""
    if args.sample:
        sample = random.Random(args.seed).sample(mutants, min(args.sample, len(mutants)))
        wanted = {m.id for m in sample}
    elif wanted - {m.id for m in mutants}:
        unknown = ", ".join(sorted(wanted - {m.id for m in mutants}))
        print(f"no such mutant (has its file changed?): {unknown}", file=sys.stderr)
    return [m for m in mutants if m.id in wanted] if wanted or args.only else mutants


def campaign(args: argparse.Namespace, paths: list[str], wanted: set[str], base: Path) -> int:
    jobs, copies = max(1, args.jobs), queue.Queue[Path]()
    for j in range(jobs):
        copies.put(make_copy(base / f"copy{j}"))
    # Mutants are made from the copy: the working tree may change under a long run.
    mutants = select(args, candidates(paths, base / "copy0"), wanted)
    report_path = args.report or base / "mutation-report.json"
    print(f"{len(mutants)} mutants, {jobs} job(s), copies in {base}", flush=True)
    code, baseline, output = run_suite(base / "copy0", args.timeout)
    if code != 0:
        print(output)
        print(f"the unmutated suite fails in the copy (exit {code})", file=sys.stderr)
        return 2
    summary = output.strip().splitlines()[-1] if output.strip() else ""
    print(f"baseline: green in {baseline:.0f} s ({summary})", flush=True)
    lock, stopping, done = threading.Lock(), threading.Event(), []

    def write_report() -> None:
        counts = {s: sum(m.status == s for m in done) for s in ("KILLED", "TIMEOUT", "SURVIVED")}
        rows = [{k: v for k, v in asdict(m).items() if k != "data"} for m in done]
        report = {"repo": str(REPO), "files": paths, "baseline_seconds": round(baseline, 1),
                  "counts": counts, "mutants": rows}  # fmt: skip
        report_path.write_text(json.dumps(report, indent=1) + "\n")

    def run(m: Mutant) -> None:
        copy = copies.get()
        target = copy / m.file
        original = target.read_bytes()
        try:
            target.write_bytes(m.data)
            code, m.seconds, output = run_suite(copy, args.timeout, m.file)
        finally:
            target.write_bytes(original)
            copies.put(copy)
        if stopping.is_set():
            return  # killed by the interruption, not by a test
        m.status = "TIMEOUT" if code is None else "SURVIVED" if code == 0 else "KILLED"
        failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", output, re.M)
        m.killed_by = failed[0] if failed else f"exit {code}" if code else ""
        with lock:
            done.append(m)
            write_report()
            print(f"[{len(done)}/{len(mutants)}] {m.status:8} {m.file}:{m.line}  {m.desc}"
                  f"  ({m.seconds:.0f} s)  {m.id}", flush=True)  # fmt: skip

    pool = ThreadPoolExecutor(max_workers=jobs)
    try:
        for future in as_completed([pool.submit(run, m) for m in mutants]):
            future.result()
    except KeyboardInterrupt:
        stopping.set()
        pool.shutdown(wait=False, cancel_futures=True)
        for group in list(ACTIVE):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
        print("interrupted: the summary covers the mutants that finished", file=sys.stderr)
    pool.shutdown(wait=True)

    done.sort(key=mutants.index)
    write_report()
    killed = sum(m.status == "KILLED" for m in done)
    timeouts = sum(m.status == "TIMEOUT" for m in done)
    survivors = [m for m in done if m.status == "SURVIVED"]
    rate = 100 * (killed + timeouts) / max(1, len(done))
    mean = sum(m.seconds for m in done) / max(1, len(done))
    print(f"\n{len(done)} mutants: {killed} killed, {timeouts} timed out, {len(survivors)} "
          f"survived; kill rate {rate:.1f}%; {mean:.1f} s per mutant")  # fmt: skip
    for m in survivors:
        print(f"  SURVIVED {m.id}  {m.file}:{m.line}  {m.desc}\n      {m.diff}")
    print(f"report: {report_path}  (rerun the survivors: --only @{report_path})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
