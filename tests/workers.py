"""Gateway apps served by hypercorn in worker processes of their own, for tests that need
several processes (on one redis-server) or a worker that dies.

``start_node`` returns once the worker listens; every wait is bounded. A node runs in its
own process group, so ``kill()`` (SIGKILL) reaches hypercorn's worker process too.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.servers import free_port

ROOT = Path(__file__).resolve().parent.parent
STARTUP = 20.0
WAIT = 10.0


@dataclass
class Node:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    path: str = ""
    """The gateway namespace ``url`` points at."""

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"ws://{self.address}{self.path}"

    def kill(self) -> None:
        """SIGKILL to hypercorn and its worker process: no goodbye, no closing handshake."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(WAIT)


def start_node(name: str, redis_url: str, workdir: Path, app: str, path: str = "") -> Node:
    """Serve ``app`` (``module:attribute``) in a new process; returns once it listens.

    The app reads ``GATEWAYASGI_TEST_REDIS_URL`` and names itself ``GATEWAYASGI_TEST_NODE``.
    """
    port = free_port()
    log = workdir / f"node-{name}.log"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "GATEWAYASGI_TEST_REDIS_URL": redis_url,
        "GATEWAYASGI_TEST_NODE": name,
    }
    argv = [sys.executable, "-m", "hypercorn", app]
    argv += ["--bind", f"127.0.0.1:{port}", "--log-level", "warning", "--graceful-timeout", "1"]
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    node = Node(name, port, process, log, path)
    deadline = time.monotonic() + STARTUP
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"node {name} exited:\n{log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return node
        except OSError:
            if time.monotonic() > deadline:
                stop_node(node)
                raise TimeoutError(f"node {name} did not listen:\n{log.read_text()}") from None
            time.sleep(0.05)


def stop_node(node: Node) -> None:
    """SIGTERM, then SIGKILL after ``WAIT`` seconds."""
    if node.process.poll() is None:
        node.process.terminate()
        try:
            node.process.wait(WAIT)
        except subprocess.TimeoutExpired:
            node.kill()
