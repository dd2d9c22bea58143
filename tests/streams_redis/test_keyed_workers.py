"""Keyed streams across two hypercorn worker processes on one real redis-server: a client
of worker B re-attaches to a stream whose generator runs on worker A (every kept item
once, in order, the live ones, the end), cancels it, supersedes it, or replays one that
ended moments ago; Redis going away leaves the streams of each process working."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import anyio
import pytest

from gatewayasgi.protocol import codec
from gatewayasgi.runtime.keyed_streams import STREAM_LOST
from tests.redis_server import RedisServer, running_redis_server
from tests.servers import connect
from tests.streams_redis.agent import (
    answer_frames,
    cancel_from_the_other_worker,
    how_it_closed,
    reattach_with_the_python_client,
    replay_runs_that_ended,
    run_items,
    supersede_from_the_other_worker,
)
from tests.workers import Node, start_node, stop_node

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

APP = "tests.streams_redis.app:app"
TIMEOUT = 20.0


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[RedisServer, Node, Node]]:
    with ExitStack() as stack:
        redis = stack.enter_context(running_redis_server(tmp_path))
        started = []
        for name in ("A", "B"):
            node = start_node(name, redis.url, tmp_path, APP, path="/agent")
            stack.callback(stop_node, node)
            started.append(node)
        yield redis, started[0], started[1]


async def test_a_client_of_another_worker_reattaches_with_the_python_client(
    cluster: tuple[RedisServer, Node, Node],
) -> None:
    _, a, b = cluster
    await reattach_with_the_python_client(a, b)


async def test_a_stream_that_ended_moments_ago_is_replayed_whole_from_another_worker(
    cluster: tuple[RedisServer, Node, Node],
) -> None:
    _, a, b = cluster
    await replay_runs_that_ended(a, b)


async def test_a_cancel_from_another_worker_closes_the_generator(
    cluster: tuple[RedisServer, Node, Node],
) -> None:
    _, a, b = cluster
    await cancel_from_the_other_worker(a, b)


async def test_a_request_on_another_worker_supersedes_the_key(
    cluster: tuple[RedisServer, Node, Node],
) -> None:
    _, a, b = cluster
    await supersede_from_the_other_worker(a, b)


async def test_a_stream_starts_once_every_worker_can_find_it(
    cluster: tuple[RedisServer, Node, Node],
) -> None:
    """Redis holds every write for 0.4 s (``CLIENT PAUSE ... WRITE``), so the run's pointer
    is late: the stream's first item waits for it. A client that got that item and asks
    another worker at once re-attaches there (without the wait: ``missing``)."""
    redis, a, b = cluster
    async with connect(a.address, "/agent") as starter, connect(b.address, "/agent") as other:
        await starter.send("run", {"n": 3, "tag": "warm", "delay": 0}, id=1, key="chat-warm")
        await answer_frames(starter, 1)  # the writer's scripts are loaded
        await anyio.to_thread.run_sync(redis.command, "CLIENT", "PAUSE", "400", "WRITE")
        began = anyio.current_time()
        await starter.send("run", {"n": 500, "tag": "f", "delay": 0.02}, id=2, key="chat-f")
        first = await answer_frames(starter, 2, count=1)
        waited = anyio.current_time() - began
        await other.send("$attach", None, id=3, key="chat-f")
        attached = await answer_frames(other, 3, count=1)
        assert "seq" in attached[0], (attached, first, f"first item after {waited:.3f} s")
        await other.send("$cancel", None, id=3)
        assert (await answer_frames(other, 3))[-1]["cancelled"] is True
        assert await how_it_closed(a, "f") == "closed"


async def test_attaching_is_refused_without_can_attach_and_keys_are_bounded(
    cluster: tuple[RedisServer, Node, Node],
) -> None:
    _, a, b = cluster
    async with connect(a.address, "/agent") as starter, connect(b.address, "/agent") as other:
        await starter.send("run", {"n": 500, "tag": "p", "delay": 0.02}, id=1, key="private-1")
        await answer_frames(starter, 1, count=2)
        await other.send("$attach", None, id=2, key="private-1")
        assert await answer_frames(other, 2) == [
            {"event": "error", "data": {"message": codec.STREAM_ATTACH_REFUSED}, "id": 2}
        ]
        await other.send("$attach", None, id=3, key="chat-" + "x" * 300)
        assert (await answer_frames(other, 3))[0]["data"]["message"] == codec.BAD_STREAM_KEY
        await starter.send("$cancel", None, id=1)
        await answer_frames(starter, 1)
    async with connect(b.address, "/agent", max_size=None) as huge:
        await huge.send("$attach", None, id=4, key="chat-" + "k" * 1024 * 1024)
        assert await huge.expect_close() == 1009  # larger than max_message_size


@pytest.mark.parametrize("outage", ["stopped", "frozen"])
async def test_without_redis_keyed_streams_work_in_each_process(
    cluster: tuple[RedisServer, Node, Node], outage: str
) -> None:
    redis, a, _ = cluster
    if outage == "stopped":
        redis.stop()
    else:
        redis.freeze()  # connections stay open, nothing is answered
    try:
        async with connect(a.address, "/agent") as starter:
            for n in range(3):
                started = anyio.current_time()
                key = f"chat-o{n}"
                await starter.send("run", {"n": 5, "tag": key, "delay": 0}, id=1, key=key)
                frames = await answer_frames(starter, 1)
                assert [f["data"] for f in frames[:-1]] == run_items(key, "A", range(5))
                await starter.send("$attach", None, id=2, key=key)
                frames = await answer_frames(starter, 2)
                assert [f["data"] for f in frames[:-1]] == run_items(key, "A", range(5))
                assert frames[-1]["end"] is True
                if n:  # only the first one waited for Redis to fail
                    assert anyio.current_time() - started < 1.0
    finally:
        if outage == "frozen":
            redis.thaw()


async def test_a_client_attached_to_a_worker_that_dies_is_told_within_bounds(
    cluster: tuple[RedisServer, Node, Node],
) -> None:
    _, a, b = cluster
    async with connect(a.address, "/agent") as starter, connect(b.address, "/agent") as other:
        await starter.send("run", {"n": 10_000, "tag": "k", "delay": 0.02}, id=1, key="chat-k")
        await answer_frames(starter, 1, count=2)
        await other.send("$attach", None, id=2, key="chat-k")
        await answer_frames(other, 2, count=3)
        a.kill()  # no goodbye: its entries in Redis expire once nobody renews them
        with anyio.fail_after(TIMEOUT):
            while True:
                frame = await other.recv(TIMEOUT)
                if frame.get("id") == 2 and "seq" not in frame:
                    break
        assert frame == {"event": "error", "data": {"message": STREAM_LOST}, "id": 2}


async def test_a_worker_that_shuts_down_sends_the_cancelled_end_to_other_workers(
    cluster: tuple[RedisServer, Node, Node],
) -> None:
    _, a, b = cluster
    async with connect(a.address, "/agent") as starter, connect(b.address, "/agent") as other:
        await starter.send("run", {"n": 10_000, "tag": "d", "delay": 0.02}, id=1, key="chat-d")
        await answer_frames(starter, 1, count=2)
        await other.send("$attach", None, id=2, key="chat-d")
        await answer_frames(other, 2, count=3)
        started = anyio.current_time()
        await anyio.to_thread.run_sync(stop_node, a)  # SIGTERM: a graceful shutdown
        frames = await answer_frames(other, 2)
        assert frames[-1] == {"event": "run", "data": None, "id": 2, "end": True, "cancelled": True}
        assert anyio.current_time() - started < 8.0  # not the 10 s of an expiry
