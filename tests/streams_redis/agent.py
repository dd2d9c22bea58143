"""What the keyed-stream tests across workers read off ``tests.streams_redis.app``'s
``/agent`` gateway, on one Redis server or on a cluster: a request's frames, how a
generator ended on a worker, and the items a run makes."""

from __future__ import annotations

from typing import Any

import anyio

from tests.servers import Client, connect
from tests.workers import Node

TIMEOUT = 20.0


async def answer_frames(
    ws: Client, frame_id: int, count: int | None = None, timeout: float = TIMEOUT
) -> list[Any]:
    """Frames answering ``frame_id`` until its end (or ``count`` of them)."""
    frames: list[Any] = []
    with anyio.fail_after(timeout):
        while count is None or len(frames) < count:
            frame = await ws.recv(timeout)
            if frame.get("id") != frame_id:
                continue
            frames.append(frame)
            if "seq" not in frame:
                break
    return frames


async def how_it_closed(node: Node, tag: str, timeout: float = TIMEOUT) -> str:
    """How ``tag``'s generator ended on ``node`` (waits until it did)."""
    async with connect(node.address, "/agent") as ws:
        with anyio.fail_after(timeout):
            while True:
                await ws.send("closed", None, id=1)
                reply = await ws.recv(timeout)
                how = reply["data"]["closed"].get(tag)
                if how is not None:
                    return str(how)
                await anyio.sleep(0.05)


def run_items(tag: str, node: str, numbers: range) -> list[Any]:
    """The items ``tag``'s run on ``node`` makes, numbered ``numbers``."""
    return [{"i": i, "tag": tag, "node": node} for i in numbers]
