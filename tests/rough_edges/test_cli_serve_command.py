"""``gatewayasgi generate gateway`` prints the command that serves what it wrote."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gatewayasgi.cli import main, serve_command


def test_in_the_current_directory_the_plain_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["generate", "gateway", "-n", "chat"]) == 0
    assert capsys.readouterr().out.endswith("serve it with:\n  hypercorn chat_gateway:app\n")


def test_with_path_the_command_starts_the_server_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["generate", "gateway", "-n", "chat", "--path", "src/my chat"]) == 0
    out = capsys.readouterr().out
    assert out.endswith("serve it with:\n  cd 'src/my chat' && hypercorn chat_gateway:app\n")


def test_the_printed_command_imports_the_app(tmp_path: Path) -> None:
    """What the command runs: importing ``chat_gateway:app`` from where it ``cd``s."""
    directory = tmp_path / "src" / "chat"
    assert main(["generate", "gateway", "-n", "chat", "--path", str(directory)]) == 0
    command = serve_command(directory, "chat_gateway")
    assert command.startswith("cd ") and command.endswith(" && hypercorn chat_gateway:app")
    check = "import chat_gateway, gatewayasgi; assert chat_gateway.app.servers['/chat']"
    result = subprocess.run(
        [sys.executable, "-c", check],
        cwd=directory,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_the_generated_file_says_where_to_serve_it_from(tmp_path: Path) -> None:
    assert main(["generate", "gateway", "-n", "chat", "--path", str(tmp_path)]) == 0
    source = (tmp_path / "chat_gateway.py").read_text()
    assert "Serve it from this file's directory" in source
    assert "hypercorn chat_gateway:app" in source
