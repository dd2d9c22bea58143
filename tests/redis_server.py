"""A real ``redis-server`` for tests: free loopback port, no persistence, restartable.

Without a ``redis-server`` binary the tests that need one skip (with the install
command), except under ``CI``, where a missing server is a failure.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

STARTUP_TIMEOUT = 10.0
INSTALL_HINT = "redis-server not found: install it (apt-get install redis-server) to run this test"


def redis_server_binary() -> str:
    """Path of ``redis-server``; skips the test (fails it under ``CI``) when missing."""
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail(INSTALL_HINT + " (CI is set, so this is a failure)", pytrace=False)
        pytest.skip(INSTALL_HINT)
    return binary


def free_port() -> int:
    """A loopback TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


RESPValue = bytes | int | list["RESPValue"] | None


def _read_reply(reader: socket.SocketIO) -> RESPValue:
    line = b""
    while not line.endswith(b"\r\n"):
        byte = reader.read(1)
        if not byte:
            raise ConnectionError("redis-server closed the connection")
        line += byte
    kind, body = line[:1], line[1:-2]
    if kind in (b"+", b"-"):
        return line[:-2]
    if kind == b":":
        return int(body)
    if kind == b"$":
        size = int(body)
        if size < 0:
            return None
        data = b""
        while len(data) < size + 2:
            chunk = reader.read(size + 2 - len(data))
            if not chunk:
                raise ConnectionError("redis-server closed the connection")
            data += chunk
        return data[:-2]
    if kind == b"*":
        return [_read_reply(reader) for _ in range(int(body))]
    raise ValueError(f"unexpected RESP reply {line!r}")


def _command(port: int, *args: bytes, timeout: float = 2.0) -> RESPValue:
    """Send one command on a fresh connection and return its parsed reply.

    Simple strings and errors come back as ``b"+OK"`` / ``b"-ERR ..."``.
    """
    payload = b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(payload)
        with sock.makefile("rb", buffering=0) as reader:
            return _read_reply(reader)


class RedisServer:
    """One ``redis-server`` process on ``127.0.0.1:port``; ``url`` points at db 0."""

    def __init__(self, binary: str, workdir: Path, port: int | None = None) -> None:
        self.binary = binary
        self.workdir = workdir
        self.port = port if port is not None else free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.logfile = workdir / f"redis-{self.port}.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = STARTUP_TIMEOUT) -> None:
        """Start the server and wait (at most ``timeout`` s) until it answers PING."""
        if self.running:
            return
        options = {
            "port": str(self.port),
            "bind": "127.0.0.1",
            "save": "",
            "appendonly": "no",
            "dir": str(self.workdir),
            "daemonize": "no",
            "loglevel": "warning",
            "logfile": str(self.logfile),
        }
        argv = [self.binary]
        for name, value in options.items():
            argv += [f"--{name}", value]
        self._process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                log = self.logfile.read_text() if self.logfile.exists() else ""
                raise RuntimeError(f"redis-server exited at startup on port {self.port}: {log}")
            try:
                if _command(self.port, b"PING", timeout=0.5) == b"+PONG":
                    return
            except OSError:
                pass
            time.sleep(0.02)
        self.stop()
        raise TimeoutError(f"redis-server did not answer on port {self.port} in {timeout} s")

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL after ``timeout`` s)."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGCONT)  # a frozen server cannot act on SIGTERM
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout)

    def freeze(self) -> None:
        """SIGSTOP the server: connections stay open but nothing is answered."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT after ``freeze``."""
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)

    def restart(self) -> None:
        """Stop and start again on the same port (all clients are disconnected)."""
        self.stop()
        self.start()

    def command(self, *args: str) -> RESPValue:
        """Run one command and return its parsed reply (for CLIENT KILL and the like)."""
        return _command(self.port, *(a.encode() for a in args))

    def kill_pubsub_clients(self) -> int:
        """``CLIENT KILL TYPE pubsub``; returns how many connections were killed."""
        reply = self.command("CLIENT", "KILL", "TYPE", "pubsub")
        if not isinstance(reply, int):
            raise RuntimeError(f"CLIENT KILL failed: {reply!r}")
        return reply

    def pubsub_subscribers(self, channel: str) -> int:
        """How many connections are subscribed to ``channel`` right now."""
        reply = self.command("PUBSUB", "NUMSUB", channel)
        assert isinstance(reply, list) and isinstance(reply[1], int), reply
        return reply[1]


@contextmanager
def running_redis_server(workdir: Path) -> Iterator[RedisServer]:
    """Start a fresh ``RedisServer`` for one test and stop it afterwards."""
    server = RedisServer(redis_server_binary(), workdir)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh ``redis-server`` per test (import this fixture into a test module)."""
    with running_redis_server(tmp_path) as server:
        yield server
