"""Start and stop ASGI servers (and redis-server) as pinned child processes."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SERVER_CPU = "0"
LOAD_CPU = "1"


def pinned(command: list[str], cpu: str) -> list[str]:
    """``command`` under ``taskset -c cpu`` when taskset exists and there are 2+ cores."""
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        return ["taskset", "-c", cpu, *command]
    return command


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_command(server: str, target: str, port: int) -> list[str]:
    if server == "hypercorn":
        return [sys.executable, "-m", "hypercorn", target, "--bind", f"127.0.0.1:{port}"]
    if server == "uvicorn":
        return [
            *(sys.executable, "-m", "uvicorn", target, "--host", "127.0.0.1"),
            *("--port", str(port), "--log-level", "warning", "--no-access-log"),
        ]
    if server == "granian":
        return [
            *(str(BIN / "granian"), "--interface", "asgi", "--host", "127.0.0.1"),
            *("--port", str(port), "--workers", "1", "--log-level", "warning", target),
        ]
    raise ValueError(f"unknown server {server!r}")


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on port {port} after {timeout}s")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)


@contextmanager
def running(
    command: list[str], port: int, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``command`` pinned to the server core until the block ends."""
    process = subprocess.Popen(
        pinned(command, SERVER_CPU),
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for_port(port, process)
        yield process
    finally:
        stop(process)


@contextmanager
def redis_server() -> Iterator[str]:
    """A throwaway redis-server on a free loopback port; yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server not found (make redis-server installs it)")
    port = free_port()
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    with running([*command, "--appendonly", "no"], port):
        yield f"redis://127.0.0.1:{port}/0"
