"""Clients of the routing app (``tests/routing/app.py``) and fences, for tests and the
benchmark. Every wait is bounded."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from gatewayasgi.emitter import Emitter
from tests.cluster.nodes import WAIT, Frame
from tests.cluster.nodes import Peer as ClientPeer
from tests.cluster.nodes import peers as cluster_peers

__all__ = ["WAIT", "Fences", "Frame", "Peer", "peers", "texts"]


class Peer(ClientPeer):
    """A client of the routing app (``tests.cluster.nodes.Peer``), with fences."""

    async def call(self, event: str, data: Any = None, within: float = WAIT) -> Any:
        """Send a frame with an id; the reply's data."""
        return await self.request(event, data, within)

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
    async with cluster_peers(*urls, kind=Peer) as connected:
        yield connected


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
