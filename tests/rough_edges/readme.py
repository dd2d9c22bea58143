"""The documentation's code blocks (the README, then the site's pages under docs/), as a
reader copies them."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").rglob("*.md"))]
_BLOCK = re.compile(r"```python\n(.*?)```\n", re.DOTALL)


def python_block(heading: str, containing: str) -> str:
    """The first python block under ``heading`` (a ``#`` to ``###`` title) that contains
    ``containing``, verbatim, in the README or a page of the site."""
    for page in PAGES:
        section = _section(page, heading)
        for block in _BLOCK.findall("".join(section)):
            if containing in block:
                return str(block)
    raise AssertionError(f"no python block with {containing!r} under {heading!r}")


def _section(page: Path, heading: str) -> list[str]:
    lines = page.read_text(encoding="utf-8").splitlines(keepends=True)
    section: list[str] = []
    fenced = inside = False
    for line in lines:
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and line.startswith("#"):
            if inside:
                break
            inside = line.rstrip("\n").lstrip("#").strip() == heading
            continue
        if inside:
            section.append(line)
    return section


def run_block(heading: str, containing: str) -> dict[str, object]:
    """Execute the block as a module would and return its globals."""
    namespace: dict[str, object] = {"__name__": f"readme_{abs(hash(heading))}"}
    exec(compile(python_block(heading, containing), str(README), "exec"), namespace)
    return namespace
