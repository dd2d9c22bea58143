"""``make run`` installs what serving the example needs, not the dev or benchmark extras."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUN_NEEDS = {"gatewayasgi", "fastapi", "starlette", "pydantic", "anyio", "orjson", "hypercorn"}
"""What ``make run`` installs: the package (orjson, pydantic, anyio), FastAPI (Starlette)
and hypercorn."""


def dry_run(target: str, tmp_path: Path) -> str:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    result = subprocess.run(
        ["make", "-n", "-C", str(ROOT), target, f"VENV={tmp_path / 'venv'}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout


def test_make_run_installs_neither_dev_nor_benchmark_extras(tmp_path: Path) -> None:
    commands = dry_run("run", tmp_path)
    installs = [line for line in commands.splitlines() if "pip install" in line]
    assert installs, commands
    assert not any("benchmarks" in line or "dev" in line for line in installs), installs
    assert any("-e . 'hypercorn" in line and "'fastapi" in line for line in installs), installs
    assert "hypercorn examples.chat.app:app" in commands


def test_make_test_still_installs_the_dev_extras(tmp_path: Path) -> None:
    assert "-e '.[dev,benchmarks" in dry_run("test", tmp_path)


def test_the_chat_example_imports_only_what_make_run_installs() -> None:
    for source in sorted((ROOT / "examples" / "chat").glob("*.py")):
        tree = ast.parse(source.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                allowed = top in sys.stdlib_module_names or top in RUN_NEEDS
                assert allowed or top in ("examples", "__future__"), f"{source.name}: {name}"
