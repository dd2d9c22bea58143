"""The README starts with Install and keeps benchmarks to a summary linking their document."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def sections() -> list[tuple[str, str]]:
    """(title, body) of every ``## `` section of the README, code blocks skipped."""
    found: list[tuple[str, list[str]]] = []
    fenced = False
    for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
        if not fenced and line.startswith("## "):
            found.append((line[3:].strip(), []))
        elif found:
            found[-1][1].append(line)
    return [(title, "\n".join(body)) for title, body in found]


def test_install_is_the_first_section() -> None:
    title, body = sections()[0]
    assert title == "Install"
    assert "pip install gatewayasgi" in body


def test_benchmarks_are_a_short_summary_linking_their_document() -> None:
    (section,) = [body for title, body in sections() if title == "Benchmarks"]
    # Only the summary: a subsection appended later (e.g. "Session recovery cost") belongs
    # in docs/benchmarks.md too, but is its author's to move.
    body = re.split(r"^### ", section, maxsplit=1, flags=re.MULTILINE)[0]
    assert "](docs/benchmarks.md)" in body
    assert len(body.strip().splitlines()) < 25
    assert not re.search(r"^\|", body, re.MULTILINE), "tables belong in docs/benchmarks.md"
    document = (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    assert "**Echo round trips/s, 50 connections (ratio to raw)**" in document
    assert "](../benchmarks/results/latest.png)" in document
