"""The README's testing example runs as copied: a pytest file, verbatim, on its own."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.rough_edges.readme import python_block

ROOT = Path(__file__).resolve().parents[2]


def test_the_readme_test_file_passes_verbatim_under_pytest(tmp_path: Path) -> None:
    """Written to an empty directory (no conftest) and run by pytest: all pass (the anyio
    tests once per installed backend: asyncio, and trio when installed)."""
    source = python_block("Testing your gateways", "def test_chat")
    (tmp_path / "test_chat.py").write_text(source, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_chat.py"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    passed = re.search(r"(\d+) passed", result.stdout)
    assert passed is not None and int(passed.group(1)) >= 3, result.stdout
    assert "failed" not in result.stdout and "skipped" not in result.stdout, result.stdout


def test_the_readme_says_fastapis_testclient_works() -> None:
    source = python_block("Testing your gateways", "def test_chat")
    assert "from fastapi.testclient import TestClient" in source
    assert "with TestClient(app) as client" in source
