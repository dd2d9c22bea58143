"""MkDocs hooks: the benchmark chart lives in benchmarks/results (written by `make bench`);
the site takes it from there, so the page and the chart never drift apart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[1]
CHART = "../benchmarks/results/latest.png"
SITE_CHART = "assets/benchmarks-latest.png"


def on_files(files: Files, config: Any) -> Files:
    files.append(
        File.generated(config, SITE_CHART, abs_src_path=str(ROOT / "benchmarks/results/latest.png"))
    )
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    depth = page.file.src_uri.count("/")
    markdown = markdown.replace(CHART, "../" * depth + SITE_CHART)
    if page.file.src_uri == "clients/typescript.md":
        markdown = markdown.replace(JS_README_MARK, _js_readme())
    return markdown


JS_README_MARK = "<!-- clients/js/README.md -->"


def _js_readme() -> str:
    """clients/js/README.md less its title, with its links (relative to clients/js)
    pointing into the site."""
    text = (ROOT / "clients/js/README.md").read_text().split("\n", 2)[2]
    return text.replace("](../../docs/", "](../").replace("](../../README.md)", "](../index.md)")
