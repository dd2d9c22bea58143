"""Session recovery across worker processes on one real redis-server.

Two hypercorn processes serve ``tests.apps.recovery_app`` (history in a Redis Stream,
sessions in Redis). A client reaches worker A through a TCP proxy that can cut its
connection; another client, on worker B, emits to its room. The client resumes through
the proxy on the same worker, then on the other one. Redis is restarted in the middle of
traffic with and without persistence.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import anyio
import pytest

from gatewayasgi import Recovery
from gatewayasgi.emitter import RedisEmitter
from tests.recovery.cut_proxy import CutProxy
from tests.recovery.wire import Session
from tests.redis_server import RedisServer, running_redis_server
from tests.workers import Node, start_node, stop_node

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

APP = "tests.apps.recovery_app:app"
PATH = "/recover"
TIMEOUT = 20.0


class Workers:
    def __init__(self, redis: RedisServer, a: Node, b: Node) -> None:
        self.redis, self.a, self.b = redis, a, b

    @staticmethod
    def address(node: Node) -> str:
        return node.address


def _workers(tmp_path: Path, *, persistent: bool, path: str = PATH) -> Iterator[Workers]:
    with ExitStack() as stack:
        redis = stack.enter_context(running_redis_server(tmp_path, persistent=persistent))
        nodes = []
        for name in ("A", "B"):
            node = start_node(name, redis.url, tmp_path, APP, path)
            stack.callback(stop_node, node)
            nodes.append(node)
        yield Workers(redis, *nodes)


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    yield from _workers(tmp_path, persistent=True)


@pytest.fixture
def volatile_workers(tmp_path: Path) -> Iterator[Workers]:
    yield from _workers(tmp_path, persistent=False)


async def _open(session: Session, resume: bool = False) -> dict[str, object]:
    """Open, bounded by the e2e timeout (a worker's first handshake can be slow)."""
    with anyio.fail_after(TIMEOUT):
        return await session.open(resume=resume)


async def test_a_cut_client_resumes_on_the_same_worker_and_on_another_one(
    workers: Workers,
) -> None:
    a, b = Workers.address(workers.a), Workers.address(workers.b)
    proxy = CutProxy(a)
    async with proxy.running():
        member, sender = Session(proxy.address, PATH), Session(b, PATH)
        first = await _open(member)
        assert await member.request("join", "r") == {"joined": "r", "node": "A"}
        await _open(sender)
        # Wait until both workers deliver this room: a live frame round trip.
        await sender.request("say", {"room": "r", "n": "hello"})
        assert (await member.recv())["data"] == "hello"

        received: list[object] = []
        for worker, target, start in (("A", a, 0), ("B", b, 500)):
            await sender.ws.send(
                json.dumps(
                    {
                        "event": "burst",
                        "data": {"room": "r", "start": start, "count": start + 500},
                        "id": start + 1,
                    }
                )
            )
            while len(received) < start + 20:
                received.append((await member.recv())["data"])
            proxy.target = target
            assert proxy.cut() == 1  # mid-burst
            assert await sender.reply(start + 1) == "done"
            resumed = await _open(member, resume=True)
            assert resumed["recovered"] is True, resumed
            assert resumed["id"] == first["id"]
            while len(received) < start + 500:
                received.append((await member.recv())["data"])
            assert received == list(range(start + 500))  # every frame, once, in order
            where = await member.request("node", None, 7)
            assert where == {"node": worker, "id": first["id"], "rooms": ["r"]}
        await sender.request("say", {"room": "r", "n": "live"})
        assert (await member.recv())["data"] == "live"
        with anyio.move_on_after(0.3):
            extra = await member.recv()
            pytest.fail(f"a frame arrived twice: {extra}")


async def _burst_across_a_restart(
    workers: Workers, count: int, persistent: bool
) -> tuple[list[object], list[dict[str, object]]]:
    """A member on worker A, a sender on B bursting ``count`` frames while Redis restarts.

    Returns the data the member received and the ``$session`` frames it got meanwhile.
    """
    member = Session(Workers.address(workers.a), PATH)
    sender = Session(Workers.address(workers.b), PATH)
    await _open(member)
    await member.request("join", "r")
    await _open(sender)
    await sender.request("say", {"room": "r", "n": "hello"})
    assert (await member.recv())["data"] == "hello"
    await sender.ws.send(
        json.dumps({"event": "burst", "data": {"room": "r", "count": count}, "id": 1})
    )
    received: list[object] = []
    sessions: list[dict[str, object]] = []
    while len(received) < 50:
        received.append((await member.recv())["data"])
    await anyio.to_thread.run_sync(lambda: workers.redis.restart(persistent=persistent))
    with anyio.move_on_after(TIMEOUT if persistent else 8.0):
        while len(received) < count:
            frame = await member.recv_raw()
            if frame["event"] == "$session":
                sessions.append(frame["data"])
            elif frame["event"] == "said":
                received.append(frame["data"])
    return received, sessions


async def test_connected_clients_lose_nothing_when_a_persistent_redis_restarts(
    workers: Workers,
) -> None:
    received, sessions = await _burst_across_a_restart(workers, 3000, persistent=True)
    assert sessions == []
    assert received == list(range(3000))


async def test_without_persistence_clients_are_told_recovery_failed(
    volatile_workers: Workers,
) -> None:
    received, sessions = await _burst_across_a_restart(volatile_workers, 3000, persistent=False)
    assert sessions, f"no $session after losing the history; got {len(received)} frames"
    assert sessions[0]["recovered"] is False and sessions[0]["reason"] == "epoch"
    # What did arrive came in order and once (strictly increasing), the loss said out loud.
    assert all(a < b for a, b in itertools.pairwise(received)), received


async def test_an_emitter_given_the_recovery_feeds_the_history_and_one_without_still_delivers(
    workers: Workers,
) -> None:
    proxy = CutProxy(Workers.address(workers.a))
    async with proxy.running():
        member = Session(proxy.address, PATH)
        first = await _open(member)
        await member.request("join", "r")
        async with RedisEmitter(workers.redis.url, PATH) as plain:
            await plain.to("r").emit("said", "plain")  # no offset: delivered, not kept
            frame = await member.recv()
            assert frame["data"] == "plain" and "offset" not in frame
        async with RedisEmitter(workers.redis.url, PATH, recovery=Recovery(window=60)) as emitter:
            await emitter.to("r").emit("said", "kept")
            assert (await member.recv())["data"] == "kept"
            proxy.cut()
            for n in range(100):
                await emitter.to("r").emit("said", n)
        resumed = await _open(member, resume=True)
        assert resumed["recovered"] is True and resumed["id"] == first["id"]
        assert [(await member.recv())["data"] for _ in range(100)] == list(range(100))


async def test_a_takeover_on_another_worker_closes_the_live_holder(workers: Workers) -> None:
    """Alice is connected to worker A; her credential resumes the session on worker B:
    A closes her old socket (4409) and only the new one gets the room's frames."""
    a, b = Workers.address(workers.a), Workers.address(workers.b)
    holder, sender = Session(a, PATH), Session(b, PATH)
    first = await _open(holder)
    assert await holder.request("join", "r") == {"joined": "r", "node": "A"}
    await _open(sender)
    await sender.request("say", {"room": "r", "n": "hello"})
    assert (await holder.recv())["data"] == "hello"

    taker = Session(b, PATH)
    taker.session, taker.offset = dict(first), holder.offset
    resumed = await _open(taker, resume=True)
    assert resumed["recovered"] is True and resumed["id"] == first["id"]
    assert resumed["token"] != first["token"]  # rotated
    with anyio.fail_after(TIMEOUT):
        try:
            while True:
                await holder.ws.recv()
        except Exception as closed:  # websockets.ConnectionClosed
            assert getattr(getattr(closed, "rcvd", None), "code", None) == 4409, closed
    await sender.request("say", {"room": "r", "n": "after"}, frame_id=2)
    assert (await taker.recv())["data"] == "after"
    assert (await taker.request("node", None, frame_id=3))["rooms"] == ["r"]
