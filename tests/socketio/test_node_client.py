"""The official socket.io-client v4 (Node) against the Socket.IO layer, on real servers.

Each test serves ``tests/socketio/nodeapp.py`` with hypercorn or uvicorn in the test's
loop and runs ``node --test tests/socketio/node/<file>.test.mjs`` against it, with
WebSocket only (``transports: ["websocket"]``) or socket.io-client's default (HTTP
long-polling, then the upgrade to WebSocket). The server keeps running while node does
(``anyio.open_process``); a small control server lets the node test stop and start the
app on the same port (``restart.test.mjs``).

Needs ``node`` >= 20 and ``cd tests/socketio/node && npm ci --no-audit --no-fund``
(``make test`` does it); skipped otherwise.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import TaskGroup

from tests import servers
from tests.servers import free_port, run_server
from tests.socketio.nodeapp import GATEWAYS, make_app

pytestmark = pytest.mark.anyio

NODE_DIR = Path(__file__).with_name("node")
NODE_TIMEOUT = 120.0
"""Seconds one ``node --test`` run may take (each of its tests has its own timeout)."""
START_TIMEOUT = 15.0


def node_binary() -> str:
    """``node`` (>= 20) with this directory's ``node_modules``, or skip saying what is missing."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: make node, or install Node.js >= 20")
    version = subprocess.run(
        [node, "--version"], capture_output=True, text=True, timeout=30, check=False
    ).stdout
    match = re.match(r"v(\d+)\.", version)
    if match is None or int(match.group(1)) < 20:
        pytest.skip(f"node >= 20 is needed, found {version.strip() or 'an unknown version'}")
    if not (NODE_DIR / "node_modules" / "socket.io-client" / "package.json").is_file():
        pytest.skip(
            "tests/socketio/node/node_modules is missing: "
            "cd tests/socketio/node && npm ci --no-audit --no-fund"
        )
    return node


class Host:
    """A fresh ``nodeapp`` app on a fixed port, stopped and started again on request."""

    def __init__(self, server: str, tasks: TaskGroup, factory: Callable[[], Any]) -> None:
        self.server = server
        self.tasks = tasks
        self.factory = factory
        self.port = free_port()
        self.app: Any = None
        """The app served now (a restart serves a new one)."""
        self._stop: anyio.Event | None = None
        self._stopped: anyio.Event | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        if self._stop is not None:
            raise RuntimeError("the app is already running")
        stop, stopped, listening = anyio.Event(), anyio.Event(), anyio.Event()
        failures: list[BaseException] = []

        async def serve() -> None:
            app = self.app = self.factory()
            try:
                async with servers.run_server(app, self.server, port=self.port):
                    listening.set()
                    await stop.wait()
            except Exception as exc:  # reported by start() or stop()
                failures.append(exc)
            finally:
                listening.set()
                stopped.set()

        self.tasks.start_soon(serve)
        with anyio.fail_after(START_TIMEOUT):
            await listening.wait()
        if failures:
            raise RuntimeError(f"{self.server} did not start on {self.port}") from failures[0]
        self._stop, self._stopped = stop, stopped
        self._failures = failures

    async def stop(self) -> None:
        if self._stop is None or self._stopped is None:
            raise RuntimeError("the app is not running")
        self._stop.set()
        with anyio.move_on_after(START_TIMEOUT):
            await self._stopped.wait()
        if not self._stopped.is_set():
            raise RuntimeError(
                f"{self.server} did not stop within {START_TIMEOUT} s: an ASGI call of the "
                "app did not return (a connection whose session never ended?)"
            )
        self._stop = self._stopped = None
        if self._failures:
            raise RuntimeError(f"{self.server} failed") from self._failures[0]


def control_app(host: Host) -> Any:
    """``POST /stop`` and ``POST /start``: the node test restarts the app with these."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        action = scope["path"].strip("/")
        status, body = 200, b"ok"
        try:
            if action == "stop":
                await host.stop()
            elif action == "start":
                await host.start()
            else:
                status, body = 404, f"no action {action!r}".encode()
        except Exception as exc:
            status, body = 500, repr(exc).encode()
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": body})

    return app


@asynccontextmanager
async def hosted(server: str) -> AsyncIterator[tuple[Host, str]]:
    """The app (on ``server``) and the control server's URL; both stopped on exit."""
    async with anyio.create_task_group() as tasks:
        host = Host(server, tasks, make_app)
        await host.start()
        try:
            async with run_server(control_app(host), "hypercorn", lifespan=False) as control:
                yield host, f"http://{control}"
        finally:
            if host._stop is not None:
                await host.stop()


async def run_node(node: str, test_file: Path, env: dict[str, str]) -> tuple[int | None, str]:
    """``node --test test_file``: its exit status (None: killed at the deadline), its output."""
    output = bytearray()
    process = await anyio.open_process(
        [node, "--test", "--test-reporter=spec", test_file.name],
        cwd=NODE_DIR,
        env=env,
        stdin=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # node --test runs the file in a child: kill them all
    )
    async with process, anyio.create_task_group() as tasks:

        async def drain() -> None:
            assert process.stdout is not None
            async for chunk in process.stdout:
                output.extend(chunk)

        tasks.start_soon(drain)
        with anyio.move_on_after(NODE_TIMEOUT):
            await process.wait()
        if process.returncode is None:
            os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
            return None, output.decode(errors="replace")
    return process.returncode, output.decode(errors="replace")


async def connections_left(app: Any) -> dict[str, list[str]]:
    """The gateways' connections still open a while after node exited (none expected)."""

    def left() -> dict[str, list[str]]:
        found = {}
        for gateway in GATEWAYS:
            clients = app.server_for(gateway).clients
            if clients:
                found[gateway.__name__] = sorted(str(client) for client in clients)
        return found

    with anyio.move_on_after(5):
        while left():
            await anyio.sleep(0.05)
    return left()


FILES = ["features", "close", "mixed", "recovery", "restart"]


@pytest.mark.parametrize("mode", ["websocket", "default"])
@pytest.mark.parametrize("server", ["hypercorn", "uvicorn"])
@pytest.mark.parametrize("name", FILES)
async def test_socketio_client(name: str, server: str, mode: str) -> None:
    node = node_binary()
    test_file = NODE_DIR / f"{name}.test.mjs"
    rc: int | None = None
    output = ""
    try:
        async with hosted(server) as (host, control):
            env = {
                **os.environ,
                "GATEWAY_SIO_URL": host.url,
                "GATEWAY_SIO_CONTROL": control,
                "GATEWAY_SIO_MODE": mode,
                "NO_COLOR": "1",
            }
            env.pop("NODE_OPTIONS", None)
            rc, output = await run_node(node, test_file, env)
            left = await connections_left(host.app) if rc == 0 else {}
    except Exception as exc:  # the server did not stop cleanly: show what node saw too
        raise AssertionError(
            f"{exc!r} after node --test {test_file.name} (rc {rc}):\n{output}"
        ) from exc
    assert rc is not None, f"node --test {test_file.name} ran past {NODE_TIMEOUT} s:\n{output}"
    assert rc == 0, f"node --test {test_file.name} exited {rc}:\n{output}"
    assert not left, f"connections left on the server after every client closed: {left}"
