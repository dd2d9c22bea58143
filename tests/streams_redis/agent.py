"""What the keyed-stream tests across workers read off ``tests.streams_redis.app``'s
``/agent`` gateway, on one Redis server or on a cluster: a request's frames, how a
generator ended on a worker, and the items a run makes."""

from __future__ import annotations

from typing import Any

import anyio

from gatewayasgi.client import GatewayClient
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


async def reattach_with_the_python_client(a: Node, b: Node) -> None:
    """A run on ``a`` read by the Python client; a client of ``b`` attaches: every item once,
    in order, then the end; from an item on; a key nothing runs is missing."""
    async with GatewayClient(a.url) as first:
        reading = first.stream("run", {"n": 40, "tag": "r", "delay": 0.03}, key="chat-r")
        items = reading.__aiter__()
        assert [await items.__anext__() for _ in range(3)] == run_items("r", "A", range(3))
        async with GatewayClient(b.url) as second:
            attached = second.attach_stream("chat-r", timeout=TIMEOUT)
            with anyio.fail_after(TIMEOUT):
                got = [item async for item in attached]
            assert got == run_items("r", "A", range(40))  # every item once, in order
            assert attached.result == {"done": "r", "node": "A"}
            late = second.attach_stream("chat-r", after=35, timeout=TIMEOUT)
            with anyio.fail_after(TIMEOUT):
                assert [item async for item in late] == run_items("r", "A", range(35, 40))
            assert late.result == {"done": "r", "node": "A"}
            missing = second.attach_stream("chat-nothing", timeout=TIMEOUT)
            with anyio.fail_after(TIMEOUT):
                assert [item async for item in missing] == []
            assert missing.missing
        await items.aclose()
    assert await how_it_closed(a, "r") == "done"


async def replay_runs_that_ended(a: Node, b: Node) -> None:
    """Runs of ``a`` that ended moments ago, attached from ``b``: replayed whole with their
    end (from an item on: just the end), a failed one with its bounded error frame."""
    async with connect(a.address, "/agent") as starter:
        await starter.send("run", {"n": 5, "tag": "g", "delay": 0}, id=1, key="chat-g")
        frames = await answer_frames(starter, 1)
        assert frames[-1]["end"] is True
    async with connect(b.address, "/agent") as late:
        await late.send("$attach", None, id=2, key="chat-g")
        frames = await answer_frames(late, 2)
        assert [f["seq"] for f in frames[:-1]] == [1, 2, 3, 4, 5]
        assert [f["data"] for f in frames[:-1]] == run_items("g", "A", range(5))
        assert frames[-1] == {
            "event": "run",
            "data": {"done": "g", "node": "A"},
            "id": 2,
            "end": True,
        }
        # after = the last item: just the end
        await late.send("$attach", None, id=3, key="chat-g", after=5)
        assert await answer_frames(late, 3) == [
            {"event": "run", "data": {"done": "g", "node": "A"}, "id": 3, "end": True}
        ]
        # a failing stream: its bounded error frame, after its items
        await late.send("run", {"n": 0, "tag": "x"}, id=4, key="chat-x")
        await answer_frames(late, 4)
    async with connect(a.address, "/agent") as starter:
        await starter.send(
            "run", {"n": 2, "tag": "f", "delay": 0, "fail": True}, id=5, key="chat-f"
        )
        assert (await answer_frames(starter, 5))[-1]["event"] == "error"
    async with connect(b.address, "/agent") as late:
        await late.send("$attach", None, id=6, key="chat-f")
        frames = await answer_frames(late, 6)
        assert [f["data"] for f in frames[:-1]] == run_items("f", "A", range(2))
        assert frames[-1] == {
            "event": "error",
            "data": {"message": "no more tokens", "left": 0},
            "id": 6,
        }
