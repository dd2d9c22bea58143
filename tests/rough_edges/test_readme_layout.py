"""The README is the short front door: what and why (three figures measured beside
python-socketio and FastAPI, from docs/benchmarks.md), install without claiming a registry,
one tested example, the two make commands, links into the site."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def sections() -> dict[str, str]:
    """title -> body of every ``## `` section of the README, code blocks skipped."""
    found: dict[str, list[str]] = {}
    fenced = False
    current: list[str] | None = None
    for line in README.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        if not fenced and line.startswith("## "):
            current = found.setdefault(line[3:].strip(), [])
        elif current is not None:
            current.append(line)
    return {title: "\n".join(body) for title, body in found.items()}


def test_the_readme_is_short() -> None:
    assert len(README.splitlines()) <= 200


def test_install_says_there_is_no_registry_package() -> None:
    body = sections()["Install"]
    assert "`pip install gatewayasgi` does **not** work" in body
    assert "](docs/get-started/install.md)" in body


def test_the_figures_are_the_benchmark_documents_own() -> None:
    """Each figure of the comparison table is in docs/benchmarks.md, in the row of the
    server the README names, and each row links to the benchmarks."""
    body = sections()["Why pick it"]
    assert "under uvicorn" in body
    rows = [line for line in body.splitlines() if line.startswith("| [")]
    assert len(rows) == 3
    document = (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    uvicorn = [line for line in document.splitlines() if line.startswith("| uvicorn |")]
    for row in rows:
        assert "](docs/benchmarks.md" in row
        figures = re.findall(r"\d[\d,.]*(?= ms|\*\*| \|)", row.split(")", 1)[1])
        assert len(figures) >= 2, row
        for figure in figures:
            assert any(figure in line for line in uvicorn), f"{figure} of {row!r}"
    assert "](../benchmarks/results/latest.png)" in document


def test_the_readme_links_into_the_site() -> None:
    for target in re.findall(r"\]\((docs/[^)#]+)", README):
        assert (ROOT / target).is_file(), target
    assert "](docs/recovery.md#security)" in README
