"""Issue 17 (8b, 8c): what a client's answers, or its silence, may cost the server.

* A 1 MiB ``$ack`` answer is parsed once, as any frame is (it was parsed twice: once to
  decode it, once more to read its ``error`` member). Counted on a real server: the
  frame's bytes reach ``orjson.loads`` exactly once, and the call still resolves.
* Hundreds of room calls, triggered by the app on worker A, to a member of worker B
  that never answers must not starve B's other cluster work: meanwhile ``presence``
  (asked from A) still counts B's members, every call reports every node, and B logs
  a few lines, not one per refused request. Two hypercorn workers on a real
  redis-server (``tests.workers``); this module is also their app (``app``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest

from gatewayasgi import (
    ConnectedSocket,
    GatewayMiddleware,
    MessageBody,
    OnGatewayConnection,
    SubscribeMessage,
    WebSocketGateway,
)
from gatewayasgi.runtime.calls import MAX_PENDING_CALLS
from tests import workers
from tests.cluster.app import NAMESPACE, make_app
from tests.cluster.nodes import eventually, peers
from tests.redis_server import running_redis_server
from tests.servers import Client, connect, run_server
from tests.workers import Node, stop_node

pytestmark = pytest.mark.anyio

SERVERS = ["hypercorn", "uvicorn"]
BIG = 1024 * 1024 - 1024
"""Bytes of the big answer's data: the frame stays under the 1 MiB frame limit."""


# -- 8b: a call's answer is parsed once --------------------------------------------------


async def _welcome(client: Client) -> str:
    frame = await client.recv()
    assert frame["event"] == "welcome", frame
    return str(frame["data"]["id"])


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("rejected", [False, True], ids=["data", "error"])
async def test_a_1_mib_answer_is_parsed_once_and_settles_the_call(
    server: str, rejected: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed: list[int] = []  # sizes of the big inputs orjson.loads was given
    loads = orjson.loads

    def counting(raw: Any) -> Any:
        if len(raw) > BIG // 2:
            parsed.append(len(raw))
        return loads(raw)

    monkeypatch.setattr(orjson, "loads", counting)  # codec calls orjson.loads(...)
    async with (
        run_server(make_app(), server) as address,
        connect(address, NAMESPACE) as callee,
        connect(address, NAMESPACE) as controller,
    ):
        callee_id = await _welcome(callee)
        await _welcome(controller)
        data = {"target": callee_id, "event": "ask", "timeout": 10}
        await controller.send("call", data, id=1)
        frame = await callee.recv()
        assert frame["event"] == "ask" and type(frame["ack"]) is int
        answer: dict[str, Any] = {"event": "$ack", "id": frame["ack"], "data": "x" * BIG}
        if rejected:
            answer["error"] = {"message": "not now"}
        raw = json.dumps(answer)
        assert BIG < len(raw) <= 1024 * 1024
        await callee.send_raw(raw)
        reply = await controller.recv()
        assert reply["id"] == 1
        if rejected:
            assert reply["data"] == {"error": "rejected", "message": "not now"}
        else:
            assert reply["data"] == {"data": "x" * BIG}
    assert parsed == [len(raw)]  # one parse of the answer, not two


# -- 8c: room calls to a silent member do not starve the cluster ----------------------

STORM = "/storm"
CALLS = int(os.environ.get("GATEWAYASGI_TEST_STORM_CALLS", "300"))
"""Room calls the app makes at once (the issue's 300; scale it with the variable)."""
CALL_TIMEOUT = 3.0


@WebSocketGateway(namespace=STORM)
class StormGateway(OnGatewayConnection):
    """Worker app: ``storm`` makes ``n`` room calls at once and sums up their results."""

    server: Any

    async def on_connection(self, client: Any) -> None:
        node = os.environ.get("GATEWAYASGI_TEST_NODE", "local")
        await client.send_json({"event": "welcome", "data": {"id": client.id, "node": node}})

    @SubscribeMessage("join")
    async def join(self, room: Any = MessageBody("room"), client: Any = ConnectedSocket()) -> Any:
        await self.server.join(client, room)
        return {"room": room}

    @SubscribeMessage("presence")
    async def presence(self, room: Any = MessageBody("room")) -> Any:
        found = await self.server.presence(room)
        return {"ids": list(found.ids), "missing": found.missing_nodes}

    @SubscribeMessage("storm")
    async def storm(self, data: Any = MessageBody()) -> Any:
        results: list[Any] = []

        async def one(number: int) -> None:
            results.append(
                await self.server.to(data["room"]).call("ping", number, timeout=data["timeout"])
            )

        async with anyio.create_task_group() as tasks:
            for number in range(data["n"]):
                tasks.start_soon(one, number)
        answered: dict[str, int] = {}
        timed_out: dict[str, int] = {}
        for result in results:
            for client_id in result.answers:
                answered[client_id] = answered.get(client_id, 0) + 1
            for client_id in result.timed_out:
                timed_out[client_id] = timed_out.get(client_id, 0) + 1
        return {
            "calls": len(results),
            "missing": sum(1 for result in results if result.missing_nodes),
            "answered": answered,
            "timed_out": timed_out,
        }


def _worker_app() -> GatewayMiddleware | None:
    url = os.environ.get("GATEWAYASGI_TEST_REDIS_URL")
    if url is None:
        return None
    from gatewayasgi.brokers.redis import RedisBroker

    broker = RedisBroker(url, reconnect_delay=0.05, max_reconnect_delay=1.0)
    return GatewayMiddleware(gateways=[StormGateway], broker=broker)


app = _worker_app()
"""The workers' app (``tests.hardening.test_calls_attack:app``) on a shared redis-server."""


@dataclass
class Workers:
    a: Node
    b: Node


@pytest.fixture(scope="module")
def storm_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workers]:
    workdir = tmp_path_factory.mktemp("storm")
    with running_redis_server(workdir) as redis:
        nodes: list[Node] = []
        try:
            for name in ("A", "B"):
                app_path = "tests.hardening.test_calls_attack:app"
                nodes.append(workers.start_node(name, redis.url, workdir, app_path, STORM))
            yield Workers(nodes[0], nodes[1])
        finally:
            for node in nodes:
                stop_node(node)


def _log_lines(path: Path, start: int) -> list[str]:
    text = path.read_bytes()[start:].decode(errors="replace")
    return [line for line in text.splitlines() if line.strip()]


async def test_room_calls_to_a_silent_member_leave_presence_and_calls_whole(
    storm_workers: Workers,
) -> None:
    a, b = storm_workers.a.url, storm_workers.b.url
    async with peers(b, b, a, a, a, silent=(0,)) as (quiet, b1, a1, controller, observer):
        assert [p.node for p in (quiet, b1, a1, controller, observer)] == list("BBAAA")
        for peer in (quiet, b1, a1):
            await peer.request("join", {"room": "r"})
        members = sorted(peer.id for peer in (quiet, b1, a1))

        async def whole() -> bool:
            found = await observer.request("presence", {"room": "r"})
            return bool(found == {"ids": members, "missing": 0})

        await eventually(whole)  # the workers know each other
        log_start = storm_workers.b.log.stat().st_size

        # The app on A calls the room CALLS times at once; B's member never answers.
        storm = {"room": "r", "n": CALLS, "timeout": CALL_TIMEOUT}
        await controller.ws.send(json.dumps({"event": "storm", "data": storm, "id": 1}))
        await quiet.until(lambda: len(quiet.calls) >= min(CALLS, MAX_PENDING_CALLS))
        # Meanwhile presence, asked on A, still hears B: every member, no node missing.
        for _ in range(3):
            assert await observer.request("presence", {"room": "r"}) == {
                "ids": members,
                "missing": 0,
            }
        await controller.until(lambda: 1 in controller.replies, CALL_TIMEOUT + 10)
        summary = controller.replies.pop(1)["data"]
        # Every call heard from B (no node missing); the silent member timed out in all.
        assert summary["calls"] == CALLS and summary["missing"] == 0, summary
        assert summary["timed_out"].get(quiet.id) == CALLS, summary
        for member in (a1, b1):
            # A client takes MAX_PENDING_CALLS calls at once, whichever node asks: past
            # it, it is reported timed out without being called. The rest answered.
            answered = summary["answered"].get(member.id, 0)
            assert answered + summary["timed_out"].get(member.id, 0) == CALLS, summary
            assert answered >= min(CALLS, MAX_PENDING_CALLS), summary
        assert len(b1.calls) == summary["answered"][b1.id]
        assert len(quiet.calls) == min(CALLS, MAX_PENDING_CALLS)  # a bounded share
        assert await observer.request("presence", {"room": "r"}) == {
            "ids": members,
            "missing": 0,
        }
    lines = _log_lines(storm_workers.b.log, log_start)
    assert len(lines) <= 2, lines  # not one warning per refused request
