"""README.md is a newcomer's first hour: short, the quick start first, every link live."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.harness import ROOT

README = ROOT / "README.md"
QUICK_START_LINES = 90


def lines() -> list[str]:
    return README.read_text().splitlines()


def test_the_readme_is_at_most_300_lines():
    assert len(lines()) <= 300


@pytest.mark.parametrize(
    ("step", "text"),
    [
        ("install the Pulumi CLI", "get.pulumi.com"),
        ("install the AWS CLI v2", "getting-started-install"),
        ("v1 from pip will do, but not with SSO", "no `aws sso login`"),
        ("credentials", "aws sso login"),
        ("credentials checked", "aws sts get-caller-identity"),
        ("the passphrase", "export PULUMI_CONFIG_PASSPHRASE"),
        ("the region before the first up", "aws:region"),
        ("a stack that does not exist yet", "#a-second-stack"),
        ("deploy", "make up"),
        ("Hubble UI, one literal command", "make hubble"),
        ("where the UI is", "http://localhost:12000"),
        ("switch the policy", "pulumi config set --path demo.policy l3l4 && make up"),
        ("check again", "make verify"),
        ("tear down", "make destroy"),
        ("a new shell needs the passphrase again", "export it in every new shell"),
        ("which stack make and pulumi config set use", "stack Pulumi has selected"),
        ("cost per hour", "per hour"),
        ("cost per month", "per month"),
    ],
)
def test_the_quick_start_is_in_the_first_90_lines(step, text):
    assert text in "\n".join(lines()[:QUICK_START_LINES]), f"quick start lacks: {step}"


def test_quick_start_steps_come_in_the_order_a_newcomer_takes_them():
    head = "\n".join(lines()[:QUICK_START_LINES])
    order = [
        "get.pulumi.com",
        "aws sso login",
        "export PULUMI_CONFIG_PASSPHRASE",
        "aws:region",
        "\nmake up\n",
        "\nmake hubble\n",
        "demo.policy l3l4",
        "\nmake destroy\n",
    ]
    positions = [head.index(text) for text in order]  # the commands, in their blocks
    assert positions == sorted(positions)


def test_a_second_stack_names_the_key_it_needs():
    text = README.read_text()
    section = text[text.index("## A second stack") :]
    section = section[: section.index("\n## ", 1)]
    assert "pulumi stack init" in section
    assert "aws:region" in section and "STACK=" in section


def links(path: Path) -> list[str]:
    return re.findall(r"\]\(([^)\s]+)\)", path.read_text())


def anchors(path: Path) -> set[str]:
    """GitHub's anchors for a Markdown file's headings."""
    found = set()
    for heading in re.findall(r"^#+ (.+)$", path.read_text(), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(slug)
    return found


DOCS = [
    README,
    *sorted((ROOT / "docs").glob("*.md")),
    *sorted((ROOT / "examples").glob("*/README.md")),
]


@pytest.mark.parametrize("page", DOCS, ids=lambda p: p.name)
def test_every_relative_link_leads_somewhere(page):
    for link in links(page):
        if link.startswith(("http://", "https://")):
            continue
        target, _, anchor = link.partition("#")
        path = (page.parent / target).resolve() if target else page
        assert path.exists(), f"{page.name}: {link}"
        if anchor and path.suffix == ".md":
            assert anchor in anchors(path), f"{page.name}: {link} has no such heading"


def test_the_design_operations_and_testing_pages_are_linked_from_the_readme():
    linked = set(links(README))
    for page in ("design", "operations", "testing", "configuration", "ci-iam", "clustermesh"):
        assert f"docs/{page}.md" in linked, page


def test_every_make_target_the_readme_names_exists():
    targets = set(re.findall(r"^([a-z]+):", (ROOT / "Makefile").read_text(), re.M))
    named = set(re.findall(r"`make ([a-z]+)", README.read_text()))
    assert named and named <= targets, named - targets


def commands(block: str) -> set[str]:
    """The programs a shell block runs: the first word of each command in it."""
    found = set()
    for line in block.splitlines():
        code = line.split(" #", 1)[0]
        found |= set(re.findall(r"(?:^|&&|\||\$\()\s*([a-z][\w-]*)", code))
    return found


def test_the_clis_the_docs_use_are_named_among_the_tools():
    # cilium, hubble, jq: optional tools, each named with where it is used
    text = README.read_text()
    tools = text[text.index("**1. Install the tools**") : text.index("**2. AWS credentials**")]
    used = set()
    for page in DOCS:
        for block in re.findall(r"^```bash\n(.*?)^```", page.read_text(), re.M | re.S):
            used |= commands(block)
    # the shell's own, GitHub's CLI for the CI set-up (docs/ci-iam.md, an admin's once),
    # git for a release (docs/package.md, a maintainer's), npm in a consumer's TypeScript
    # program (examples/)
    clis = used - {"make", "export", "echo", "cat", "cd", "curl", "sh", "gh", "git", "npm"}
    assert {"cilium", "kubectl", "jq", "pulumi", "aws"} <= clis  # what the docs run today
    for tool in clis | {"hubble"}:  # hubble: `hubble observe` in docs/operations.md's text
        assert re.search(rf"`{tool}`|{tool} CLI", tools, re.I), tool


def test_pulumi_without_make_runs_what_the_targets_run():
    text = README.read_text()
    section = text[text.index("## Pulumi without make") :]
    section = section[: section.index("\n## ", 1)]
    makefile = (ROOT / "Makefile").read_text()
    for target in ("preview", "up"):
        (command,) = re.findall(
            rf"^\tpulumi {target} --stack \$\(STACK\) (--policy-pack \S+)", makefile, re.M
        )
        assert f"pulumi {target} {command}" in section
    (tools,) = re.findall(r"^TOOLS := (\S+)$", makefile, re.M)
    assert f"export PATH=$PWD/{tools}/bin:$PATH UV_LOCKED=1" in section
    assert "preview up destroy: export UV_LOCKED := 1" in makefile
    for added in ("make check", "preflight", "pulumi login --local", "pulumi stack select"):
        assert added in section, added


def test_every_readme_section_named_elsewhere_exists():
    headings = set(re.findall(r"^## (.+)$", README.read_text(), re.M))
    named = []
    for path in [ROOT / "pyproject.toml", ROOT / "Makefile", *ROOT.glob("*/*.py"), *DOCS]:
        text = " ".join(path.read_text().replace("#", " ").split())
        named += [(path.name, n) for n in re.findall(r'README,? "([^"]+)"', text)]
        named += [
            (path.name, n) for n in re.findall(r"see README, ([A-Z][a-z]+(?: [a-z]+)*)", text)
        ]
    assert named and not [(p, n) for p, n in named if n not in headings]
