"""A real ``redis-server`` for tests: free loopback port, no persistence, restartable.

The one home of the ``redis_server`` fixture (``tests/conftest.py`` registers it for
every test module). Optional: a password (``requirepass``) and TLS with a throwaway
self-signed certificate (needs the ``openssl`` command).

Without a ``redis-server`` binary the tests that need one skip (with the install
command), except under ``CI``, where a missing server is a failure.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.servers import free_port

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


def encode_command(*args: bytes) -> bytes:
    """One command as a RESP array of bulk strings, as a client sends it."""
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key (skips without ``openssl``)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl not found: needed to make a TLS certificate for redis-server")
    cert, key = directory / "redis-cert.pem", directory / "redis-key.pem"
    subject = ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"]
    curve = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
    files = ["-keyout", str(key), "-out", str(cert)]
    subprocess.run(
        [openssl, "req", "-x509", *curve, "-nodes", "-days", "1", *subject, *files],
        check=True,
        capture_output=True,
    )
    return cert, key


class RedisServer:
    """One ``redis-server`` process on ``127.0.0.1:port``; ``url`` points at db 0.

    ``password`` sets ``requirepass`` (``url`` carries it); ``tls`` serves TLS only,
    with a fresh self-signed certificate (``url`` is ``rediss://`` and names it as CA).
    """

    def __init__(
        self,
        binary: str,
        workdir: Path,
        port: int | None = None,
        *,
        password: str | None = None,
        tls: bool = False,
        persistent: bool = False,
    ) -> None:
        self.binary = binary
        self.persistent = persistent
        """Append-only file on (fsync always): a restart keeps every acknowledged write."""
        self.workdir = workdir
        self.port = port if port is not None else free_port()
        self.password = password
        self.certificate: tuple[Path, Path] | None = make_certificate(workdir) if tls else None
        auth = f":{quote(password, safe='')}@" if password is not None else ""
        if self.certificate is not None:
            ca = quote(str(self.certificate[0]))
            self.url = f"rediss://{auth}127.0.0.1:{self.port}/0?ssl_ca_certs={ca}"
        else:
            self.url = f"redis://{auth}127.0.0.1:{self.port}/0"
        self.logfile = workdir / f"redis-{self.port}.log"
        self._process: subprocess.Popen[bytes] | None = None

    def _connect(self, timeout: float) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        if self.certificate is None:
            return sock
        context = ssl.create_default_context(cafile=str(self.certificate[0]))
        return context.wrap_socket(sock, server_hostname="127.0.0.1")

    def _commands(self, commands: list[tuple[bytes, ...]], timeout: float = 2.0) -> list[RESPValue]:
        """Send ``commands`` pipelined on one fresh connection; return their replies.

        Simple strings and errors come back as ``b"+OK"`` / ``b"-ERR ..."``.
        """
        if self.password is not None:
            commands = [(b"AUTH", self.password.encode()), *commands]
        with self._connect(timeout) as sock:
            sock.sendall(b"".join(encode_command(*args) for args in commands))
            with sock.makefile("rb", buffering=0) as reader:
                replies = [_read_reply(reader) for _ in commands]
        return replies[1:] if self.password is not None else replies

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = STARTUP_TIMEOUT) -> None:
        """Start the server and wait (at most ``timeout`` s) until it answers PING."""
        if self.running:
            return
        options = {
            "port": "0" if self.certificate else str(self.port),
            "bind": "127.0.0.1",
            "save": "",
            "appendonly": "yes" if self.persistent else "no",
            "appendfsync": "always",
            "dir": str(self.workdir),
            "daemonize": "no",
            "loglevel": "warning",
            "logfile": str(self.logfile),
        }
        if self.password is not None:
            options["requirepass"] = self.password
        if self.certificate is not None:
            cert, key = (str(path) for path in self.certificate)
            options |= {"tls-port": str(self.port), "tls-cert-file": cert, "tls-key-file": key}
            options |= {"tls-ca-cert-file": cert, "tls-auth-clients": "no"}
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
                if self._commands([(b"PING",)], timeout=0.5) == [b"+PONG"]:
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

    def restart(self, *, persistent: bool | None = None) -> None:
        """Stop and start again on the same port (all clients are disconnected).

        ``persistent`` switches the append-only file on or off for the new process: a
        server that was not persistent comes back empty.
        """
        self.stop()
        if persistent is not None:
            self.persistent = persistent
        self.start()

    def command(self, *args: str | bytes) -> RESPValue:
        """Run one command and return its parsed reply (for CLIENT KILL and the like)."""
        return self._commands([tuple(a.encode() if isinstance(a, str) else a for a in args)])[0]

    def publish_many(self, messages: Iterable[tuple[str, bytes]]) -> list[int]:
        """PUBLISH every message, pipelined on one connection, as a raw client would.

        Returns how many subscribers each reached. Blocking: run it in a thread.
        """
        commands: list[tuple[bytes, ...]] = [
            (b"PUBLISH", channel.encode(), data) for channel, data in messages
        ]
        replies = self._commands(commands, timeout=30.0)
        assert all(isinstance(reply, int) for reply in replies), replies
        return [reply for reply in replies if isinstance(reply, int)]

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
def running_redis_server(
    workdir: Path, *, password: str | None = None, tls: bool = False, persistent: bool = False
) -> Iterator[RedisServer]:
    """Start a fresh ``RedisServer`` for one test (or module) and stop it afterwards."""
    server = RedisServer(
        redis_server_binary(), workdir, password=password, tls=tls, persistent=persistent
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh ``redis-server`` per test (registered for every module by conftest)."""
    with running_redis_server(tmp_path) as server:
        yield server
