"""What the keyed-stream tests across workers read off ``tests.streams_redis.app``'s
``/agent`` gateway, on one Redis server or on a cluster: a request's frames, how a
generator ended on a worker, and the items a run makes."""

from __future__ import annotations

from typing import Any

import anyio

from gatewayasgi.protocol import codec
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


async def cancel_from_the_other_worker(a: Node, b: Node) -> None:
    """A run on ``a``, attached from ``b`` and cancelled there: each item once, in order,
    then the cancelled end on both sides, and the generator's ``finally`` ran on ``a``."""
    async with connect(a.address, "/agent") as starter, connect(b.address, "/agent") as other:
        await starter.send("run", {"n": 500, "tag": "c", "delay": 0.02}, id=1, key="chat-c")
        await answer_frames(starter, 1, count=3)
        await other.send("$attach", None, id=7, key="chat-c")
        frames = await answer_frames(other, 7, count=5)
        assert [f["seq"] for f in frames] == [1, 2, 3, 4, 5]
        await other.send("$cancel", None, id=7)
        rest = await answer_frames(other, 7)
        assert rest[-1] == {"event": "run", "data": None, "id": 7, "end": True, "cancelled": True}
        seqs = [f["seq"] for f in frames + rest[:-1]]
        assert seqs == list(range(1, len(seqs) + 1))  # each once, in order
        ended = await answer_frames(starter, 1)
        assert ended[-1]["cancelled"] is True
        assert await how_it_closed(a, "c") == "closed"  # its finally ran, on A


async def supersede_from_the_other_worker(a: Node, b: Node) -> None:
    """A request on ``b`` with the key of a run on ``a`` supersedes it (``can_attach``
    decides on ``b``); re-attaching from ``a`` then replays ``b``'s run."""
    async with connect(a.address, "/agent") as starter, connect(b.address, "/agent") as other:
        await starter.send("run", {"n": 500, "tag": "old", "delay": 0.02}, id=1, key="chat-s")
        await answer_frames(starter, 1, count=3)
        # can_attach decides on B: a key it refuses cannot be superseded from B either
        await starter.send("run", {"n": 500, "tag": "guarded", "delay": 0.02}, id=2, key="own-1")
        await answer_frames(starter, 2, count=2)
        await other.send("run", {"n": 2, "tag": "nope"}, id=3, key="own-1")
        assert await answer_frames(other, 3) == [
            {"event": "error", "data": {"message": codec.STREAM_KEY_IN_USE}, "id": 3}
        ]
        await other.send("run", {"n": 3, "tag": "new", "delay": 0}, id=4, key="chat-s")
        frames = await answer_frames(other, 4)
        assert [f["data"] for f in frames[:-1]] == run_items("new", "B", range(3))
        assert frames[-1]["data"] == {"done": "new", "node": "B"}
        ended = await answer_frames(starter, 1)
        assert ended[-1]["cancelled"] is True
        assert await how_it_closed(a, "old") == "closed"
        # the key is B's now: re-attaching from A replays B's stream
        await starter.send("$attach", None, id=5, key="chat-s")
        frames = await answer_frames(starter, 5)
        assert [f["data"] for f in frames[:-1]] == run_items("new", "B", range(3))
        await starter.send("$cancel", None, id=2)
        await answer_frames(starter, 2)
