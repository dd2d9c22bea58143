"""Real ASGI servers on loopback for end-to-end tests, run in the test's event loop."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import websockets

TIMEOUT = 10.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _wait_for_port(port: int) -> None:
    with anyio.fail_after(TIMEOUT):
        while True:
            try:
                stream = await anyio.connect_tcp("127.0.0.1", port)
            except OSError:
                await anyio.sleep(0.02)
            else:
                await stream.aclose()
                return


@asynccontextmanager
async def run_server(
    app: Any, server: str = "hypercorn", *, lifespan: bool = True, root_path: str = ""
) -> AsyncIterator[str]:
    """Serve ``app`` with a real server on a free port; yields ``"127.0.0.1:PORT"``."""
    port = free_port()
    async with anyio.create_task_group() as tasks:
        if server == "hypercorn":
            from hypercorn.asyncio import serve
            from hypercorn.config import Config

            config = Config()
            config.bind = [f"127.0.0.1:{port}"]
            config.loglevel = "WARNING"
            config.root_path = root_path
            config.graceful_timeout = 1
            stop = anyio.Event()
            if not lifespan:
                config.lifespan = "off"  # type: ignore[attr-defined]
            tasks.start_soon(lambda: serve(app, config, shutdown_trigger=stop.wait))
            try:
                await _wait_for_port(port)
                yield f"127.0.0.1:{port}"
            finally:
                stop.set()
        elif server == "uvicorn":
            import uvicorn

            config_u = uvicorn.Config(
                app,
                host="127.0.0.1",
                port=port,
                log_level="warning",
                lifespan="on" if lifespan else "off",
                root_path=root_path,
                ws="websockets-sansio",
            )
            userver = uvicorn.Server(config_u)
            tasks.start_soon(userver.serve)
            try:
                await _wait_for_port(port)
                yield f"127.0.0.1:{port}"
            finally:
                userver.should_exit = True
        else:
            raise ValueError(server)


@asynccontextmanager
async def connect(address: str, path: str, **kwargs: Any) -> AsyncIterator[Client]:
    """A ``websockets`` client with JSON helpers; every receive has a timeout."""
    async with websockets.connect(f"ws://{address}{path}", open_timeout=TIMEOUT, **kwargs) as ws:
        yield Client(ws)


class Client:
    """Thin JSON wrapper around a ``websockets`` connection."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws

    async def send(self, event: str, data: Any = None, **extra: Any) -> None:
        await self.ws.send(json.dumps({"event": event, "data": data, **extra}))

    async def send_raw(self, raw: str | bytes) -> None:
        await self.ws.send(raw)

    async def recv(self, timeout: float = TIMEOUT) -> Any:
        with anyio.fail_after(timeout):
            return json.loads(await self.ws.recv())

    async def request(self, event: str, data: Any = None, **extra: Any) -> Any:
        await self.send(event, data, **extra)
        return await self.recv()

    async def expect_close(self, timeout: float = TIMEOUT) -> int | None:
        """Read until the server closes; returns the close code it sent."""
        import websockets.exceptions as wse

        with anyio.fail_after(timeout):
            try:
                while True:
                    await self.ws.recv()
            except wse.ConnectionClosed as exc:
                return exc.rcvd.code if exc.rcvd is not None else None

    async def nothing_within(self, seconds: float) -> bool:
        """True when no frame arrives within ``seconds``."""
        with anyio.move_on_after(seconds):
            await self.ws.recv()
            return False
        return True
