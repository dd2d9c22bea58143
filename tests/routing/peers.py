"""Clients of the routing app (``tests/routing/app.py``) and fences, for tests and the
benchmark. Every wait is bounded."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import websockets

from gatewayasgi.emitter import Emitter

WAIT = 10.0
Frame = dict[str, Any]
_ids = itertools.count(1)


@dataclass(eq=False)
class Peer:
    """A websocket client: its id, its node, and frames sorted into pushes and replies."""

    ws: Any
    id: str = ""
    node: str = ""
    pushes: list[Frame] = field(default_factory=list)
    replies: dict[int, Frame] = field(default_factory=dict)
    changed: anyio.Event = field(default_factory=anyio.Event)

    async def read(self) -> None:
        async for raw in self.ws:
            frame = json.loads(raw)
            if "id" in frame:
                self.replies[frame["id"]] = frame
            else:
                self.pushes.append(frame)
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

    async def call(self, event: str, data: Any = None, within: float = WAIT) -> Any:
        """Send a frame with an id; the reply's data."""
        frame_id = next(_ids)
        await self.ws.send(json.dumps({"event": event, "data": data, "id": frame_id}))
        await self.until(lambda: frame_id in self.replies, within)
        reply = self.replies.pop(frame_id)
        assert reply["event"] != "error", reply
        return reply.get("data")

    async def take_until_fence(self, tag: str, within: float = WAIT) -> list[Frame]:
        """Pushes received before the fence ``tag`` (which is consumed too)."""

        def is_fence(frame: Frame) -> bool:
            return frame["event"] == "fence" and frame["data"] == tag

        await self.until(lambda: any(is_fence(frame) for frame in self.pushes), within)
        index = next(i for i, frame in enumerate(self.pushes) if is_fence(frame))
        taken, self.pushes[: index + 1] = self.pushes[:index], []
        return taken


@asynccontextmanager
async def peers(*urls: str) -> AsyncIterator[list[Peer]]:
    """Connect one client per URL; each reads in the background until the block ends."""
    async with anyio.create_task_group() as tg:
        connected: list[Peer] = []
        try:
            for url in urls:
                peer = Peer(await websockets.connect(url, open_timeout=WAIT, max_size=None))
                connected.append(peer)
                tg.start_soon(peer.read)
                await peer.welcome()
            yield connected
        finally:
            with anyio.move_on_after(WAIT, shield=True):
                for peer in connected:
                    await peer.ws.close()
            tg.cancel_scope.cancel()


class Fences:
    """Broadcasts numbered fences (namespace channel) and collects what came before.

    Redis orders a fence after every publish made before it, whatever the channel: each
    node reads every channel on one connection, so a node's clients get the frames of an
    action before the fence that follows it.
    """

    def __init__(self, emitter: Emitter, everyone: list[Peer]) -> None:
        self.emitter = emitter
        self.everyone = everyone
        self.count = 0

    async def collect(self) -> dict[str, list[Frame]]:
        self.count += 1
        tag = f"fence-{self.count}"
        await self.emitter.emit("fence", tag)
        return {peer.id: await peer.take_until_fence(tag) for peer in self.everyone}


def texts(frames: list[Frame]) -> list[Any]:
    return [frame["data"].get("text") for frame in frames]
