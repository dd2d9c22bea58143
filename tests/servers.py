"""Real ASGI servers on loopback for end-to-end tests.

``hypercorn`` and ``uvicorn`` run in the test's own (asyncio) event loop;
``hypercorn-trio`` runs hypercorn's trio worker in a thread of its own, so the same
tests also cover the library on trio while the ``websockets`` client stays on asyncio.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from functools import partial
from typing import Any, TypeVar

import anyio
import websockets

TIMEOUT = 10.0
SERVERS = ("hypercorn", "uvicorn", "hypercorn-trio")
"""Every kind ``run_server`` knows; ``"hypercorn-trio"`` serves from another thread."""

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Address(str):
    """``"127.0.0.1:PORT"`` of a running server, and a way into the loop that serves it.

    It is a ``str``, so ``f"ws://{address}"`` and ``address.split(":")`` keep working.
    For the in-loop servers ``call`` simply awaits ``fn(*args)``; for ``hypercorn-trio``
    it runs ``fn(*args)`` inside the server's trio loop and waits (bounded) for the result.
    """

    kind: str
    _trio_token: Any = None

    def __new__(cls, port: int, kind: str, trio_token: Any = None) -> Address:
        address = super().__new__(cls, f"127.0.0.1:{port}")
        address.kind = kind
        address._trio_token = trio_token
        return address

    @property
    def in_thread(self) -> bool:
        """True while the app runs in another thread (and another event loop) than the test."""
        return self._trio_token is not None

    def _stopped(self) -> None:
        """The server thread has ended: its state may now be used directly."""
        self._trio_token = None

    async def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """``await fn(*args)`` in the server's event loop; its result or its exception."""
        if self._trio_token is None:
            with anyio.fail_after(TIMEOUT):
                return await fn(*args)
        import trio

        async def bounded() -> T:
            with trio.fail_after(TIMEOUT):
                return await fn(*args)

        return await self._in_trio(trio.from_thread.run, bounded)

    async def call_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in the server's loop thread, e.g. to read state the app mutates."""
        if self._trio_token is None:
            return fn(*args)
        import trio

        return await self._in_trio(trio.from_thread.run_sync, fn, *args)

    async def _in_trio(self, run: Callable[..., T], fn: Callable[..., Any], *args: Any) -> T:
        token = self._trio_token

        def blocking() -> T:
            return run(fn, *args, trio_token=token)

        # abandon_on_cancel: a hung server cannot hold the test past its own timeout.
        with anyio.fail_after(TIMEOUT + 1):
            return await anyio.to_thread.run_sync(blocking, abandon_on_cancel=True)


async def server_call(address: str, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """``await fn(*args)`` where the app runs: its loop for ``hypercorn-trio``, else here."""
    if isinstance(address, Address):
        return await address.call(fn, *args)
    with anyio.fail_after(TIMEOUT):
        return await fn(*args)


async def server_read(address: str, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` (synchronous) where the app runs; use it to read app state."""
    if isinstance(address, Address):
        return await address.call_sync(fn, *args)
    return fn(*args)


async def server_until(address: str, read: Callable[[], Any], timeout: float = TIMEOUT) -> None:
    """Wait (bounded) until ``read()``, run where the app runs, is truthy."""
    with anyio.fail_after(timeout):
        while not await server_read(address, read):
            await anyio.sleep(0.01)


class CrossEvent:
    """An event the app may set from any thread while the test awaits it.

    ``anyio.Event`` belongs to the loop that made it; a hook running under
    ``hypercorn-trio`` must not set it directly. Create this in the test's loop.
    """

    def __init__(self) -> None:
        import asyncio

        self._loop = asyncio.get_running_loop()
        self._event = asyncio.Event()
        self._thread = threading.get_ident()

    def set(self) -> None:
        if threading.get_ident() == self._thread:
            self._event.set()
        else:
            self._loop.call_soon_threadsafe(self._event.set)

    def is_set(self) -> bool:
        return self._event.is_set()

    async def wait(self) -> None:
        await self._event.wait()


async def _wait_for_port(port: int, alive: Callable[[], bool] = lambda: True) -> None:
    with anyio.fail_after(TIMEOUT):
        while True:
            if not alive():
                raise RuntimeError(f"the server on port {port} stopped before listening")
            try:
                stream = await anyio.connect_tcp("127.0.0.1", port)
            except OSError:
                await anyio.sleep(0.02)
            else:
                await stream.aclose()
                return


def _hypercorn_config(port: int, lifespan: bool, root_path: str) -> Any:
    from hypercorn.config import Config

    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.loglevel = "WARNING"
    config.root_path = root_path
    config.graceful_timeout = 1
    if not lifespan:
        config.lifespan = "off"  # type: ignore[attr-defined]
    return config


@asynccontextmanager
async def run_server(
    app: Any,
    server: str = "hypercorn",
    *,
    lifespan: bool = True,
    root_path: str = "",
    port: int | None = None,
) -> AsyncIterator[Address]:
    """Serve ``app`` with a real server on a free port (or ``port``: a restart reuses
    one); yields its ``Address``.

    ``server`` is one of ``SERVERS``. Under ``"hypercorn-trio"`` the app runs in a trio
    loop in another thread: the test must not touch the app's state (servers, rooms,
    clients, anyio events, awaiting gateway methods) from its own loop while it is
    served. Run such code where the app runs with ``await server_call(address, fn,
    *args)`` / ``await server_read(address, fn, *args)`` (or ``address.call`` /
    ``address.call_sync``), and let hooks signal the test through a ``CrossEvent``.
    Both are direct calls under the other servers. A crash of the server thread fails
    the test when the block exits.
    """
    port = free_port() if port is None else port
    if server == "hypercorn":
        runner = _hypercorn(app, port, lifespan, root_path)
    elif server == "uvicorn":
        runner = _uvicorn(app, port, lifespan, root_path)
    elif server == "hypercorn-trio":
        runner = _hypercorn_trio(app, port, lifespan, root_path)
    else:
        raise ValueError(f"unknown server {server!r}; expected one of {SERVERS}")
    async with runner as address:
        yield address


@asynccontextmanager
async def _hypercorn(app: Any, port: int, lifespan: bool, root_path: str) -> AsyncIterator[Address]:
    from hypercorn.asyncio import serve

    config = _hypercorn_config(port, lifespan, root_path)
    stop = anyio.Event()
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(lambda: serve(app, config, shutdown_trigger=stop.wait))
        try:
            await _wait_for_port(port)
            yield Address(port, "hypercorn")
        finally:
            stop.set()


@asynccontextmanager
async def _uvicorn(app: Any, port: int, lifespan: bool, root_path: str) -> AsyncIterator[Address]:
    import uvicorn

    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on" if lifespan else "off",
        root_path=root_path,
        ws="websockets-sansio",
    )
    userver = uvicorn.Server(config)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(userver.serve)
        try:
            await _wait_for_port(port)
            yield Address(port, "uvicorn")
        finally:
            userver.should_exit = True


class _TrioThread:
    """hypercorn's trio worker in a thread with its own ``trio.run``."""

    def __init__(self, app: Any, config: Any) -> None:
        self.app = app
        self.config = config
        self.listening = threading.Event()
        self.token: Any = None
        self.stop: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._main, name="hypercorn-trio", daemon=True)

    def _main(self) -> None:
        import trio

        try:
            trio.run(self._serve)
        except BaseException as exc:  # reported to the test when the block exits
            self.error = exc
        finally:
            self.listening.set()

    async def _serve(self) -> None:
        import trio
        from hypercorn.trio import serve

        self.token = trio.lowlevel.current_trio_token()
        self.stop = trio.Event()
        async with trio.open_nursery() as nursery:
            await nursery.start(
                partial(serve, self.app, self.config, shutdown_trigger=self.stop.wait)
            )
            self.listening.set()

    def request_stop(self) -> None:
        import trio

        if self.token is None:
            return
        # RunFinishedError: it already stopped (crashed); check() reports why.
        with suppress(trio.RunFinishedError):
            trio.from_thread.run_sync(self.stop.set, trio_token=self.token)

    def check(self) -> None:
        if self.thread.is_alive():
            raise RuntimeError(f"the hypercorn-trio thread did not stop within {TIMEOUT} s")
        if self.error is not None:
            raise RuntimeError(f"the hypercorn-trio server crashed: {self.error!r}") from self.error


@asynccontextmanager
async def _hypercorn_trio(
    app: Any, port: int, lifespan: bool, root_path: str
) -> AsyncIterator[Address]:
    worker = _TrioThread(app, _hypercorn_config(port, lifespan, root_path))
    address: Address | None = None
    worker.thread.start()
    try:
        await anyio.to_thread.run_sync(worker.listening.wait, TIMEOUT, abandon_on_cancel=True)
        if worker.error is not None or not worker.thread.is_alive():
            raise RuntimeError(f"hypercorn-trio did not start on port {port}")
        await _wait_for_port(port, worker.thread.is_alive)
        address = Address(port, "hypercorn-trio", worker.token)
        yield address
    finally:
        worker.request_stop()
        await anyio.to_thread.run_sync(worker.thread.join, TIMEOUT, abandon_on_cancel=True)
        if address is not None and not worker.thread.is_alive():
            address._stopped()
        worker.check()


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
