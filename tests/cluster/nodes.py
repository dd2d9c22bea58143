"""Worker processes (hypercorn, ``tests.cluster.app``) on one redis-server, and clients.

A ``Peer`` reads in the background, answers every server call (``ack``) with
``{"echo": data, "by": its id}`` unless it is ``silent``, and sorts frames into pushes,
replies (by ``id``) and calls; it records how the server closed it.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import websockets
import websockets.exceptions

from tests import workers
from tests.cluster.app import NAMESPACE
from tests.workers import Node

WAIT = 10.0

Frame = dict[str, Any]


def start_node(name: str, redis_url: str, workdir: Path) -> Node:
    return workers.start_node(name, redis_url, workdir, "tests.cluster.app:app", NAMESPACE)


_ids = itertools.count(1)


@dataclass(eq=False)
class Peer:
    ws: Any
    silent: bool = False
    id: str = ""
    node: str = ""
    pushes: list[Frame] = field(default_factory=list)
    replies: dict[int, Frame] = field(default_factory=dict)
    calls: list[Frame] = field(default_factory=list)
    close_code: int | None = None
    closed: bool = False
    changed: anyio.Event = field(default_factory=anyio.Event)

    async def read(self) -> None:
        try:
            async for raw in self.ws:
                frame = json.loads(raw)
                if "ack" in frame:
                    self.calls.append(frame)
                    if not self.silent:
                        answer = {"echo": frame["data"], "by": self.id}
                        await self.ws.send(
                            json.dumps({"event": "$ack", "id": frame["ack"], "data": answer})
                        )
                elif "id" in frame:
                    self.replies[frame["id"]] = frame
                else:
                    self.pushes.append(frame)
                self._changed()
        except websockets.exceptions.ConnectionClosed as exc:
            self.close_code = exc.rcvd.code if exc.rcvd is not None else None
        self.closed = True
        self._changed()

    def _changed(self) -> None:
        self.changed.set()
        self.changed = anyio.Event()

    async def until(self, predicate: Callable[[], bool], within: float = WAIT) -> None:
        with anyio.fail_after(within):
            while not predicate():
                await self.changed.wait()

    async def welcome(self) -> None:
        await self.until(lambda: bool(self.pushes))
        welcome = self.pushes.pop(0)
        assert welcome["event"] == "welcome", welcome
        self.id, self.node = welcome["data"]["id"], welcome["data"]["node"]

    async def request(self, event: str, data: Any = None, within: float = WAIT) -> Any:
        """Send a frame with an id; the data of the reply that echoes it."""
        frame_id = next(_ids)
        await self.ws.send(json.dumps({"event": event, "data": data, "id": frame_id}))
        await self.until(lambda: frame_id in self.replies, within)
        reply = self.replies.pop(frame_id)
        assert reply["event"] != "error", reply
        return reply.get("data")

    def heard(self, event: str) -> list[Any]:
        return [frame["data"] for frame in self.pushes if frame["event"] == event]


@asynccontextmanager
async def peers(
    *urls: str, silent: tuple[int, ...] = (), kind: type[Peer] = Peer
) -> AsyncIterator[list[Any]]:
    """One client (a ``kind``) per URL (those at the ``silent`` positions never answer
    calls), each reading in the background until the block ends."""
    async with anyio.create_task_group() as tg:
        connected: list[Peer] = []
        try:
            for index, url in enumerate(urls):
                ws = await websockets.connect(url, open_timeout=WAIT, max_size=None)
                peer = kind(ws, silent=index in silent)
                connected.append(peer)
                tg.start_soon(peer.read)
                await peer.welcome()
            yield connected
        finally:
            with anyio.move_on_after(WAIT, shield=True):
                for peer in connected:
                    await peer.ws.close()
            tg.cancel_scope.cancel()


async def eventually(check: Callable[[], Any], within: float = WAIT) -> Any:
    """Await ``check()`` until it returns something truthy; fails after ``within``."""
    with anyio.fail_after(within):
        while True:
            result = await check()
            if result:
                return result
            await anyio.sleep(0.05)
