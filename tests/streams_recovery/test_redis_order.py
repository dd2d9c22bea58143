"""Recovery on Redis, in two worker processes: the order a client sees, and streams that
go on across a cut and a move to the other worker.

With the history in a Redis Stream, emits reach clients through each worker's reader of
that stream, while a reply goes straight to its client: the reply used to overtake what
its handler had emitted before it (20 calls out of 20). Now it waits for them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.recovery.cut_proxy import CutProxy
from tests.recovery.wire import Session
from tests.redis_server import running_redis_server
from tests.workers import Node, start_node, stop_node

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

APP = "tests.apps.recovery_app:app"
PATH = "/recover"
TIMEOUT = 20.0


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[tuple[Node, Node]]:
    with ExitStack() as stack:
        redis = stack.enter_context(running_redis_server(tmp_path))
        started = []
        for name in ("A", "B"):
            node = start_node(name, redis.url, tmp_path, APP, PATH)
            stack.callback(stop_node, node)
            started.append(node)
        yield started[0], started[1]


async def _open(session: Session, resume: bool = False) -> dict[str, Any]:
    with anyio.fail_after(TIMEOUT):
        return await session.open(resume=resume)


async def test_a_reply_never_overtakes_what_its_handler_emitted(
    nodes: tuple[Node, Node],
) -> None:
    a, _ = nodes
    session = Session(a.address, PATH)
    await _open(session)
    with anyio.fail_after(TIMEOUT):
        assert await session.request("join", "r") == {"joined": "r", "node": "A"}
        for call in range(20):
            before = await session.talk("r", 3, 100 + call)
            # Every frame the handler emitted arrived, in its order, before the reply.
            assert before == [(e, n) for n in range(3) for e in ("said", "aside")], call


@pytest.mark.parametrize("key", [None, "story"])
async def test_stream_items_come_after_what_the_generator_emitted_before_them(
    nodes: tuple[Node, Node], key: str | None
) -> None:
    a, _ = nodes
    session = Session(a.address, PATH)
    await _open(session)
    request: dict[str, Any] = {"event": "narrate", "data": {"count": 20}, "id": 3}
    if key is not None:
        request["key"] = key  # a keyed stream: sent straight, not through the history
    await session.ws.send(json.dumps(request))
    seen: list[tuple[str, Any]] = []
    with anyio.fail_after(TIMEOUT):
        while True:
            frame = await session.recv()
            if frame.get("id") == 3 and frame.get("end"):
                break
            seen.append(
                ("item", frame["data"]) if frame.get("id") == 3 else ("aside", frame["data"])
            )
    assert seen == [(kind, n) for n in range(20) for kind in ("aside", "item")]


async def test_a_stream_goes_on_when_its_client_moves_to_another_worker(
    nodes: tuple[Node, Node],
) -> None:
    a, b = nodes
    proxy = CutProxy(a.address)
    async with proxy.running():
        session = Session(proxy.address, PATH)
        await _open(session)
        await session.ws.send('{"event":"tell","data":{"count":60,"delay":0.02},"id":5}')
        items: list[dict[str, Any]] = []
        with anyio.fail_after(TIMEOUT):
            while len(items) < 5:
                frame = await session.recv()
                if frame.get("id") == 5:
                    items.append(frame)
        proxy.cut()
        proxy.target = b.address  # the client comes back through the other worker
        resumed = await _open(session, resume=True)
        assert resumed["recovered"] is True, resumed
        with anyio.fail_after(TIMEOUT):
            while True:
                frame = await session.recv()
                if frame.get("id") != 5:
                    continue
                if frame.get("end"):
                    break
                items.append(frame)
    # Every item once and in order, made on worker A, delivered by A then by B.
    assert [item["seq"] for item in items] == list(range(1, 61))
    assert [item["data"]["n"] for item in items] == list(range(60))
    assert {item["data"]["node"] for item in items} == {"A"}
    assert frame.get("cancelled") is None and frame["end"] is True


async def test_a_cancel_from_the_other_worker_ends_the_stream_where_it_runs(
    nodes: tuple[Node, Node],
) -> None:
    a, b = nodes
    proxy = CutProxy(a.address)
    async with proxy.running():
        session = Session(proxy.address, PATH)
        await _open(session)
        await session.ws.send('{"event":"tell","data":{"count":100000,"delay":0.01},"id":8}')
        with anyio.fail_after(TIMEOUT):
            while (await session.recv()).get("id") != 8:
                pass
        proxy.cut()
        proxy.target = b.address
        assert (await _open(session, resume=True))["recovered"] is True
        await session.ws.send('{"event":"$cancel","id":8}')  # the stream runs on A
        with anyio.fail_after(TIMEOUT):
            while True:
                frame = await session.recv()
                if frame.get("id") == 8 and frame.get("end"):
                    break
        assert frame["cancelled"] is True and "offset" in frame
        # Nothing of the stream comes after its end.
        with anyio.move_on_after(0.5):
            while True:
                late = await session.recv()
                assert late.get("id") != 8, late
