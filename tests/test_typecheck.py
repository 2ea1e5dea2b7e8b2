"""The type check `pulumi preview` and `pulumi up` run first (Pulumi.yaml: typechecker
pyright). Pulumi's Python language host runs it as `python -m pyright <program directory>`
(pulumi/pulumi sdk/python/cmd/pulumi-language-python/main.go, since 3.112), and a path on
pyright's command line overrides the config's `include`: without an `exclude` the tests,
scripts and policy pack were checked too, and their errors would fail every `make up`.
Running pyright here takes ~20 s, too long for the suite; `make lint` runs it on the same
files."""

from __future__ import annotations

import fnmatch
import tomllib

import yaml

from tests.harness import ROOT


def test_pulumi_runs_pyright():
    runtime = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["runtime"]
    assert runtime["options"]["typechecker"] == "pyright"


def test_pulumis_type_check_covers_the_program_and_nothing_else():
    settings = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pyright"]
    include, exclude = settings["include"], settings.get("exclude", [])

    def excluded(path: str) -> bool:
        return any(fnmatch.fnmatch(path, p) or fnmatch.fnmatch(f"x/{path}", p) for p in exclude)

    sources = {
        top.name
        for top in ROOT.iterdir()
        if top.name not in ("venv", ".tools", ".git")
        and (top.suffix == ".py" or (top.is_dir() and next(top.rglob("*.py"), None)))
    }
    checked = {top for top in sources if not excluded(top)}
    assert checked == set(include), f"pulumi up would type-check {checked - set(include)}"
    assert not [top for top in include if excluded(top)]
