"""A TCP proxy on loopback that can cut every connection through it, as a network would.

``cut()`` aborts both sides of each relayed connection at once: no WebSocket close frame,
no FIN from the peers' point of view beyond the socket dying. ``target`` can change
between connections, so a client that reconnects through the same address lands on
another worker.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from tests.servers import free_port


class CutProxy:
    def __init__(self, target: str) -> None:
        self.target = target
        """``host:port`` new connections are relayed to."""
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self._pairs: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.connections = 0

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        with suppress(Exception):
            writer.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host, port = self.target.split(":")
        try:
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
        except OSError:
            writer.transport.abort()
            return
        self.connections += 1
        self._pairs.append((writer, up_writer))
        for task in (
            asyncio.create_task(self._relay(reader, up_writer)),
            asyncio.create_task(self._relay(up_reader, writer)),
        ):
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def cut(self) -> int:
        """Abort every relayed connection (both sides); returns how many were cut."""
        pairs, self._pairs = self._pairs, []
        for down, up in pairs:
            down.transport.abort()
            up.transport.abort()
        return len(pairs)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[CutProxy]:
        server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        try:
            yield self
        finally:
            self.cut()
            server.close()
            for task in list(self._tasks):
                task.cancel()
            with suppress(Exception):
                await server.wait_closed()
