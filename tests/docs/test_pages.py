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
            body = sample.split(start, 1)[1].split("\n", 1)[1]
            first = next(line for line in body.splitlines() if line.strip())
        else:
            first = next(line for line in sample.splitlines() if line.strip())
        assert first in rendered, f"{page.name}: {found.group(0).strip()} renders no code"
        assert "--8<--" not in rendered, f"{page.name}: an include was left as text"
