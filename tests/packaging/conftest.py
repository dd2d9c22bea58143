"""What the packaging tests share: a copy of the checkout as a clean clone has it, and the
one way to skip them.

They build the artifacts a user installs and install them as a user would, so they need
pip's index (for the build backend and the dependencies) and npm's registry or cache. They
are never skipped on their own: without network, set ``GATEWAYASGI_SKIP_PACKAGING`` to the
reason (``GATEWAYASGI_SKIP_PACKAGING="offline: no package index"``), or deselect them with
``-m "not packaging"``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    reason = os.environ.get("GATEWAYASGI_SKIP_PACKAGING", "").strip()
    for item in items:
        if item.path.parent == Path(__file__).parent:
            item.add_marker(pytest.mark.packaging)
            if reason:
                item.add_marker(pytest.mark.skip(reason=f"GATEWAYASGI_SKIP_PACKAGING: {reason}"))


def clean_copy(destination: Path, *paths: str) -> Path:
    """The files of ``paths`` (all of the checkout by default) that a fresh clone holds:
    tracked, or new and not ignored; no build output, no node_modules, no venv."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", *paths],
        cwd=ROOT,
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout.split(b"\0")
    for name in filter(None, listed):
        source = ROOT / os.fsdecode(name)
        if "node_modules" in source.parts or not source.is_file():
            continue  # a nested .gitignore (tests/asyncapi) keeps them out of a clone
        target = destination / os.fsdecode(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    return destination
