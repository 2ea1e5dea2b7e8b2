"""The layout explains itself: modules small enough to read in one sitting, each opening
with what it owns and what it imports, and layers that import only downwards.

The layers, lowest first (docs/design.md draws them):
- config: components/config/, the stack's configuration and what AWS's data says of it;
  imports only its own modules. Read by `make check` and the preflight without the program.
- aws_api: components/aws_api.py, the AWS API clients of the dynamic providers; imports
  nothing of the program.
- components: the other modules of components/, which declare resources; import the layers
  below and each other.
- program: __main__.py, which declares the whole stack (the Stack component) and exports
  it, or hosts the package's components for other programs.
Beside them: scripts/ import only the lower layers (config, aws_api) and each other: they
run before or without the program; but for the package's schema generator
(scripts/schema.py), which reads the components, since their annotations are the schema;
the policy pack (policy/) imports nothing of the program at all, so that it judges the
program independently.

The docs keep up with the layout: docs/design.md's map names every module, and every file
(or function in a file) README.md and docs/ point to is there.

The two lower layers declare no resources: no module-level import of a Pulumi SDK that
declares resources and no ComponentResource; an SDK imported inside a function (an invoke,
as config's EC2 lookup) is allowed.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.harness import ROOT

MAX_LINES = 500

LOWER = ("config", "aws_api")
# Importing these at module level, or subclassing ComponentResource, is declaring resources.
RESOURCE_SDKS = ("pulumi_aws", "pulumi_eks", "pulumi_kubernetes", "pulumi_tls", "pulumi.dynamic")


def layer_of(path: Path) -> str:
    rel = path.relative_to(ROOT).as_posix()
    if rel.startswith("components/config/"):
        return "config"
    if rel == "components/aws_api.py":
        return "aws_api"
    if rel.startswith("components/"):
        return "components"
    if rel == "__main__.py":
        return "program"
    if rel == "scripts/schema.py":
        return "schema"
    if rel.startswith("scripts/"):
        return "scripts"
    assert rel.startswith("policy/"), rel
    return "policy"


# What each layer may import of the program, by module name prefix.
MAY_IMPORT = {
    "config": ("components.config",),
    "aws_api": (),
    "components": ("components",),
    "program": ("components",),
    "scripts": ("components.config", "components.aws_api", "scripts"),
    "schema": ("components", "scripts"),
    "policy": (),
}


def modules() -> list[Path]:
    found = [ROOT / "__main__.py"]
    for folder in ("components", "scripts", "policy"):
        found += sorted((ROOT / folder).rglob("*.py"))
    return found


def program_imports(tree: ast.Module) -> list[str]:
    """Every module of the program this one imports, anywhere in it (functions included)."""
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.append(node.module)
    return [n for n in names if n == "__main__" or n.split(".")[0] in ("components", "scripts")]


def declares_resources(tree: ast.Module) -> bool:
    for node in tree.body:  # module level only
        if isinstance(node, ast.Import) and any(
            a.name.startswith(RESOURCE_SDKS) for a in node.names
        ):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(RESOURCE_SDKS):
            return True
        if isinstance(node, ast.ClassDef) and any(
            "ComponentResource" in ast.unparse(base) for base in node.bases
        ):
            return True
    return False


MODULES = modules()


def test_every_layer_imports_only_what_it_may():
    wrong = []
    for path in MODULES:
        layer = layer_of(path)
        for name in program_imports(ast.parse(path.read_text())):
            if not any(name == p or name.startswith(p + ".") for p in MAY_IMPORT[layer]):
                wrong.append(f"{path.relative_to(ROOT)} ({layer}) imports {name}")
    assert wrong == []


def test_the_lower_layers_declare_no_resources_and_the_components_do():
    declaring = {
        p.relative_to(ROOT).as_posix()
        for p in MODULES
        if declares_resources(ast.parse(p.read_text()))
    }
    assert [p for p in declaring if layer_of(ROOT / p) in LOWER] == []
    # the rule sees what it is meant to: these are the modules that declare resources
    assert {"components/cluster.py", "components/mesh.py", "components/mesh_link.py"} <= declaring


@pytest.mark.parametrize(
    ("source", "allowed"),
    [
        ("from components.cluster import irsa_trust_policy", False),
        ("def f():\n    import components.mesh", False),  # inside a function too
        ("from components.config.fields import refuse", True),
        ("import boto3", True),
    ],
)
def test_the_import_rule_sees_every_spelling_for_the_config_layer(source, allowed):
    names = program_imports(ast.parse(source))
    assert all(n.startswith("components.config") for n in names) is allowed


def test_no_module_is_longer_than_one_sitting():
    long = {
        p.relative_to(ROOT).as_posix(): n
        for p in MODULES
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


def test_every_module_says_what_it_owns_and_what_it_imports():
    """A docstring first, with a paragraph on its imports: in the program, the scripts and
    the policy pack alike."""
    missing = []
    for path in MODULES:
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        if not re.search(r"^Imports\b", doc, re.M):
            missing.append(path.relative_to(ROOT).as_posix())
    assert missing == []


def test_a_module_that_says_it_imports_nothing_of_the_program_does_not():
    imports = {}
    for path in MODULES:
        tree = ast.parse(path.read_text())
        if re.search(r"^Imports nothing of the program\b", ast.get_docstring(tree) or "", re.M):
            imports[path.relative_to(ROOT).as_posix()] = program_imports(tree)
    assert {"components/aws_api.py", "scripts/pulumi_session.py"} <= imports.keys()
    assert {module: names for module, names in imports.items() if names} == {}


# A file of the project as the docs write it, and a name with its file: `name()` (path),
# `name()` in `path`, `path` (`name`), path:name.
DOC_PATH = r"(?:components|scripts|policy|tests)/[\w/.-]*\w\.(?:py|sh|json|ya?ml)"
NAME_IN_PATH = [
    re.compile(rf"`(?P<name>\w+)\(\)`,?\s+(?:\(|in\s+|of\s+)`?(?P<path>{DOC_PATH})"),
    re.compile(rf"`?(?P<path>{DOC_PATH})`?\s+\(`(?P<name>\w+)(?:\(\))?`"),
    re.compile(rf"(?P<path>{DOC_PATH}):(?P<name>[A-Za-z_]\w*)"),
]
DOC_PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# docs/testing.md's record of earlier mutation samples names the tool they were made with,
# since deleted.
GONE = {"scripts/mutate.py"}


def doc_text(page: Path) -> str:
    """A page's text with a path broken over two lines (`scripts/` + `account.py`) joined."""
    return re.sub(r"/\s*\n\s*(?=\w+\.)", "/", page.read_text())


def defined_names(path: Path) -> set[str]:
    """The functions and classes a module defines (methods too), and its module constants."""
    tree = ast.parse(path.read_text())
    names = {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
    }
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return names


def stale_references(page: Path) -> list[str]:
    text, stale = doc_text(page), []
    for match in re.finditer(rf"(?<![\w/.-])({DOC_PATH})", text):
        if match.group(1) not in GONE and not (ROOT / match.group(1)).is_file():
            stale.append(f"{match.group(1)}: no such file")
    for pattern in NAME_IN_PATH:
        for match in pattern.finditer(text):
            path, name = ROOT / match["path"], match["name"]
            if path.suffix == ".py" and path.is_file() and name not in defined_names(path):
                stale.append(f"{match['path']} defines no {name}")
    return stale


@pytest.mark.parametrize("page", DOC_PAGES, ids=lambda p: p.name)
def test_every_module_and_name_the_docs_point_to_is_there(page):
    """A doc that sends the reader to a file, or to a function in one, is not stale."""
    assert stale_references(page) == []
    assert not [p for p in GONE if (ROOT / p).exists()]  # gone indeed


def test_the_docs_reference_check_sees_each_spelling(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "Set in `helm_values()` (components/cilium.py), `parse()` in `scripts/\n"
        "preflight.py`, `components/stack.py` (`Stack`), components/mesh.py:nothing_here,\n"
        "and components/gone.py. Not a name: `make` (`scripts/preflight.py`).\n"
    )
    assert stale_references(page) == [
        "components/gone.py: no such file",
        "components/cilium.py defines no helm_values",
        "scripts/preflight.py defines no parse",
        "components/mesh.py defines no nothing_here",
    ]


def design_map_blocks() -> list[str]:
    """docs/design.md's "Where things are": its table rows and paragraphs, one block each."""
    text = (ROOT / "docs" / "design.md").read_text()
    section = text[text.index("## Where things are") :]
    section = section[: section.index("\n## ", 1)]
    blocks = re.split(r"\n\s*\n|\n(?=\|)", section)
    return [" ".join(block.split()) for block in blocks]


def unmapped(blocks: list[str]) -> list[str]:
    """The modules of components/, scripts/ and policy/ no block names: by its path
    (`components/aws_api.py`), or by its name in a block that names its folder
    (`components/config/` ... `fields`)."""
    missing = []
    for path in MODULES:
        rel = path.relative_to(ROOT)
        if rel.parts[0] == "__main__.py" or rel.name == "__init__.py":
            continue
        folder = f"`{rel.parent.as_posix()}/`"
        if not any(
            f"`{rel.as_posix()}`" in block or (folder in block and f"`{rel.stem}`" in block)
            for block in blocks
        ):
            missing.append(rel.as_posix())
    return missing


def test_the_design_map_names_every_module():
    """docs/design.md's map is where a newcomer looks a module up: none is left out."""
    assert unmapped(design_map_blocks()) == []


@pytest.mark.parametrize(
    ("dropped", "module"),
    [
        ("`stack_file`", "components/config/stack_file.py"),
        # `stack` is still in the components row: that names components/stack.py
        ("`stack`", "components/config/stack.py"),
    ],
)
def test_the_design_map_check_reads_a_name_with_its_own_folder(dropped, module):
    blocks = design_map_blocks()
    config_row = next(b for b in blocks if b.startswith("| config |"))
    without = [b.replace(dropped, "") if b == config_row else b for b in blocks]
    assert unmapped(without) == [module]
