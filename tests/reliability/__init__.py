"""Reliability suite (issue 5, and issue 3's slow-consumer property).

Shared helpers: polling with a deadline, ERROR-log checks for the library and the
ASGI servers, a websocket client that stops reading so backpressure builds, opening
many room members at once, and the "this connection still works" check.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import anyio
import pytest
import websockets

from tests.servers import server_read

if TYPE_CHECKING:
    from gatewayasgi.testing import TestWebSocket

LOGGER = "gatewayasgi"
T = TypeVar("T")


async def eventually(check: Callable[[], bool], timeout: float = 5.0, *, address: str = "") -> None:
    """Poll ``check`` until it is true; fail after ``timeout`` seconds.

    Given the ``address`` of a ``run_server`` block, ``check`` runs where the app runs
    (the ``hypercorn-trio`` server's thread), so it may read the app's state.
    """
    with anyio.fail_after(timeout):
        while not await server_read(address, check):
            await anyio.sleep(0.01)


def gateway_errors(
    caplog: pytest.LogCaptureFixture,
    phase: Literal["setup", "call", "teardown"] | None = None,
) -> list[str]:
    """Records at ERROR or above from the library's logger (crashes, leaked exceptions).

    ``caplog.records`` only holds the current phase; pass ``phase="call"`` from a
    fixture's teardown to see what the test itself logged.
    """
    records = caplog.records if phase is None else caplog.get_records(phase)
    return [
        f"{record.name}: {record.getMessage()}"
        for record in records
        if record.name.startswith(LOGGER) and record.levelno >= logging.ERROR
    ]


@asynccontextmanager
async def server_logs(caplog: pytest.LogCaptureFixture) -> AsyncIterator[None]:
    """Also capture uvicorn's loggers (they do not propagate to the root logger).

    Enter it after the server started: uvicorn reconfigures its loggers on startup.
    """
    uvicorn_logger = logging.getLogger("uvicorn")
    uvicorn_logger.addHandler(caplog.handler)
    try:
        yield
    finally:
        uvicorn_logger.removeHandler(caplog.handler)


def server_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    """ERROR records from the gateway or the ASGI servers (app exceptions land there)."""
    names = ("gatewayasgi", "uvicorn", "hypercorn")
    return [
        f"{record.name}: {record.getMessage()}"
        for record in caplog.records
        if record.levelno >= logging.ERROR and record.name.startswith(names)
    ]


async def stalled_client(address: str, path: str, **kwargs: Any) -> Any:
    """A ``websockets`` client that buffers almost nothing and is simply never read.

    A tiny kernel receive buffer and ``max_queue=1`` make the server's writes to it
    block after a few frames, so its outbox fills and the overflow policy applies.
    """
    host, port = address.split(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    with anyio.fail_after(10):
        await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
        return await websockets.connect(
            f"ws://{address}{path}",
            sock=sock,
            max_queue=1,
            compression=None,
            max_size=None,
            ping_interval=None,
            **kwargs,
        )


async def open_members(
    address: str,
    path: str,
    count: int,
    join: Callable[[Any], Awaitable[T]],
    *,
    batch: int = 100,
    timeout: float = 60,
    **connect_options: Any,
) -> list[T]:
    """Open ``count`` ``websockets`` clients on ``path``, ``batch`` at a time.

    ``join(ws)`` makes each fresh client a member (sends its join, waits for the answer)
    and returns what the caller keeps for it; results come back in opening order.
    ``connect_options`` go to ``websockets.connect``.
    """
    members: list[Any] = [None] * count

    async def open_one(index: int) -> None:
        ws = await websockets.connect(f"ws://{address}{path}", **connect_options)
        members[index] = await join(ws)

    with anyio.fail_after(timeout):
        for start in range(0, count, batch):
            async with anyio.create_task_group() as tasks:
                for index in range(start, min(start + batch, count)):
                    tasks.start_soon(open_one, index)
    return members


async def still_works(
    ws: TestWebSocket, data: Any = "ok", reply: Any = None, frame_id: str = "check"
) -> None:
    """A valid ``echo`` right after abuse is answered normally on the same connection.

    ``reply`` is the echo handler's answer to ``data`` (``data`` itself when not given).
    """
    await ws.emit("echo", data, id=frame_id)
    expected = data if reply is None else reply
    assert await ws.receive_json() == {"event": "echo", "data": expected, "id": frame_id}
