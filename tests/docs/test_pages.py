"""The pages show the tested samples, and nothing else that looks runnable goes untested.

A sample is included with pymdownx.snippets (``--8<-- "docs/examples/..."``, or a section of
one: ``--8<-- "docs/examples/x.py:name"``); a formatter that rewrites that line leaves the
page showing the line itself instead of the code, and the build does not notice.
"""

from __future__ import annotations

import re
from pathlib import Path

import markdown
import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
INCLUDE = re.compile(r'^\s*--8<-- "(docs/examples/[^":]+)(?::([\w-]+))?"\s*$')


def _rendered(page: Path) -> str:
    """The page as MkDocs sees it after pymdownx.snippets (the site's settings)."""
    md = markdown.Markdown(
        extensions=["pymdownx.snippets"],
        extension_configs={"pymdownx.snippets": {"base_path": [str(ROOT)], "check_paths": True}},
    )
    return md.preprocessors["snippet"].run(page.read_text(encoding="utf-8").splitlines())


@pytest.mark.parametrize(
    "page", [p for p in PAGES if "docs/examples/" in p.read_text()], ids=lambda p: p.name
)
def test_every_sample_line_is_an_include_that_renders_the_file(page: Path) -> None:
    lines = page.read_text(encoding="utf-8").splitlines()
    mentions = [line for line in lines if "--8" in line or re.search(r"^\s*-+ *8 *<", line)]
    rendered = "\n".join(_rendered(page))
    for line in mentions:
        found = INCLUDE.match(line)
        assert found, f"{page.name}: {line!r} is not a pymdownx.snippets include"
        sample = (ROOT / found.group(1)).read_text(encoding="utf-8")
        if found.group(2):  # a section: the lines between its start and end markers
            start = f"--8<-- [start:{found.group(2)}]"
            assert start in sample, f"{found.group(1)} has no section {found.group(2)}"
            sample = sample.split(start, 1)[1].split("\n", 1)[1]
        # Its first line of code (section markers are not shown).
        first = next(
            line for line in sample.splitlines() if line.strip() and "--8<-- [" not in line
        )
        assert first in rendered, f"{page.name}: {found.group(0).strip()} renders no code"
        assert "--8<--" not in rendered, f"{page.name}: an include was left as text"


# Every page's every block is a tested sample or plainly not a program: shell sessions and
# commands (bash, console), wire frames, headers and layouts (json, text), diagrams
# (mermaid). A block of another language holds only includes of samples (whole files or
# sections) that tests in tests/docs run. There is no third kind: a fragment that shows an
# API call is a section of a sample that runs it.
README = ROOT / "README.md"
CHECKED = [*PAGES, README]
NOT_PROGRAMS = {"bash", "console", "json", "text", "mermaid"}
_FENCE = re.compile(r"^(\s*)```(\S*)\n(.*?)^\1```\s*$", re.DOTALL | re.MULTILINE)
_FENCE_LINE = re.compile(r"^\s*(```|~~~)", re.MULTILINE)


def _samples() -> dict[str, str]:
    """Every sample file's text, by its path from the repository root."""
    return {
        p.relative_to(ROOT).as_posix(): p.read_text(encoding="utf-8")
        for p in (DOCS / "examples").rglob("*.*")
        if "__pycache__" not in p.parts
    }


@pytest.mark.parametrize("page", CHECKED, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_block_is_a_tested_sample_or_not_a_program(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    blocks = _FENCE.findall(text)
    # Every fence line opens or closes a block the pattern found: none is skipped unchecked
    # (a ``~~~`` fence, a fence with attributes after its language, an unclosed one).
    assert len(_FENCE_LINE.findall(text)) == 2 * len(blocks), f"{page.name}: an unmatched fence"
    for _indent, language, body in blocks:
        assert language, f"{page.name}: a block without a language: {body[:60]!r}"
        if language in NOT_PROGRAMS:
            continue
        lines = [line for line in body.splitlines() if line.strip()]
        if page == README:  # GitHub shows it without includes: a sample file, verbatim
            assert body.strip() in [s.strip() for s in _samples().values()], (
                f"README.md: a {language} block that is not a whole sample file: {body[:80]!r}"
            )
            continue
        assert lines and all(INCLUDE.match(line) for line in lines), (
            f"{page.name}: a {language} block that is not a tested sample: {body[:80]!r}"
        )


def test_the_typescript_page_is_the_client_readme_whose_blocks_are_compiled() -> None:
    """docs/clients/typescript.md shows clients/js/README.md (docs/hooks.py). Its ts blocks
    compile against the packed client in tests/packaging/test_js_package.py; the rest are
    shell commands and tables."""
    assert "<!-- clients/js/README.md -->" in (DOCS / "clients" / "typescript.md").read_text()
    readme = (ROOT / "clients" / "js" / "README.md").read_text(encoding="utf-8")
    languages = [language for _i, language, _b in _FENCE.findall(readme)]
    assert set(languages) <= {"ts", "bash"}, languages
    compiled = (ROOT / "tests" / "packaging" / "test_js_package.py").read_text()
    assert "readme_blocks()" in compiled and "README_PRELUDES" in compiled
