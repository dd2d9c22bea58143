"""The code generator: names, paths, flags, and the `python -m` entry point."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gatewayasgi.cli import gateway_source, main


@pytest.mark.parametrize(
    ("name", "filename", "cls", "namespace"),
    [
        ("chat", "chat_gateway.py", "ChatGateway", '"/chat"'),
        ("user-events", "user_events_gateway.py", "UserEventsGateway", '"/user-events"'),
        ("OrdersGateway", "orders_gateway.py", "OrdersGateway", '"/orders"'),
        ("UserEvents", "user_events_gateway.py", "UserEventsGateway", '"/user-events"'),
        ("HTTPStatus", "http_status_gateway.py", "HTTPStatusGateway", '"/http-status"'),
    ],
)
def test_names_become_file_class_and_namespace(
    name: str, filename: str, cls: str, namespace: str
) -> None:
    got_file, source = gateway_source(name)
    assert got_file == filename
    assert f"class {cls}:" in source and f"namespace={namespace}" in source
    compile(source, got_file, "exec")


def test_long_and_short_flags_write_into_the_path(tmp_path: Path) -> None:
    assert main(["generate", "gateway", "--name", "chat", "--path", str(tmp_path / "a")]) == 0
    assert main(["generate", "gateway", "-n", "chat", "-p", str(tmp_path / "b")]) == 0
    assert (tmp_path / "a" / "chat_gateway.py").read_text() == (
        tmp_path / "b" / "chat_gateway.py"
    ).read_text()


def test_existing_file_is_kept_unless_forced(tmp_path: Path) -> None:
    target = tmp_path / "chat_gateway.py"
    target.write_text("mine")
    assert main(["generate", "gateway", "-n", "chat", "--path", str(tmp_path)]) == 1
    assert target.read_text() == "mine"
    assert main(["generate", "gateway", "-n", "chat", "--path", str(tmp_path), "--force"]) == 0
    assert "WebSocketGateway" in target.read_text()


def test_invalid_name_is_refused() -> None:
    assert main(["generate", "gateway", "-n", "123"]) == 2


def test_python_dash_m_runs_the_cli(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "gatewayasgi",
            "generate",
            "gateway",
            "-n",
            "news",
            "--path",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "news_gateway.py").exists()
