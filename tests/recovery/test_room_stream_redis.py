"""A room stream across two worker processes on one real redis-server: published on
worker A, it reaches a member of the room on worker B, every item once and in order,
then the end, over the broker's pub/sub and through the Redis Stream of a gateway with
recovery."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.redis_server import running_redis_server
from tests.servers import Client, connect
from tests.workers import Node, start_node, stop_node

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

APP = "tests.apps.room_stream_app:app"
TIMEOUT = 20.0
COUNT = 50


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[tuple[Node, Node]]:
    with ExitStack() as stack:
        redis = stack.enter_context(running_redis_server(tmp_path))
        started = []
        for name in ("A", "B"):
            node = start_node(name, redis.url, tmp_path, APP)
            stack.callback(stop_node, node)
            started.append(node)
        yield started[0], started[1]


async def _reply(client: Client, frame_id: int) -> Any:
    while True:
        frame = await client.recv(TIMEOUT)
        if frame.get("id") == frame_id:
            return frame


@pytest.mark.parametrize("path", ["/plain", "/recover"])
async def test_a_stream_published_on_one_worker_reaches_a_member_on_another(
    nodes: tuple[Node, Node], path: str
) -> None:
    a, b = nodes
    with anyio.fail_after(TIMEOUT * 2):
        async with (
            connect(a.address, path) as publisher,
            connect(b.address, path) as member,
            connect(b.address, path) as outsider,
        ):
            await member.send("join", "run", id=1)
            assert (await _reply(member, 1))["data"] == {"joined": "run", "node": "B"}
            await outsider.send("join", "elsewhere", id=1)
            await _reply(outsider, 1)
            await publisher.send("publish", {"room": "run", "count": COUNT}, id=2)
            reply = (await _reply(publisher, 2))["data"]
            assert reply["items"] == COUNT and reply["node"] == "A"
            frames: list[Any] = []
            while not frames or not frames[-1].get("end"):
                frame = await member.recv(TIMEOUT)
                if frame["event"] == "progress":
                    frames.append(frame)
            assert {f["stream"] for f in frames} == {reply["stream"]}
            assert [f.get("seq") for f in frames] == [*range(1, COUNT + 1), None]
            assert [f["data"] for f in frames[:-1]] == [
                {"step": n, "node": "A"} for n in range(1, COUNT + 1)
            ]
            assert frames[-1]["data"] == {"steps": COUNT}
            if path == "/recover":  # kept in the history: every frame carries its offset
                assert all("offset" in f for f in frames)
            assert await member.nothing_within(0.3)
            assert await outsider.nothing_within(0.1)
