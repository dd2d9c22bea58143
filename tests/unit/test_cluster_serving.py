"""How a node serves other nodes' cluster requests: budgets, deadlines, rate-limited logs.

A ``ClusterNode`` on a broker that only records what it publishes; requests arrive as
bytes through ``on_message``, as from Redis. Every wait is bounded.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
import orjson
import pytest

from gatewayasgi._types import JSONValue
from gatewayasgi.backplane import cluster, rpc
from gatewayasgi.backplane.cluster import ClusterNode
from gatewayasgi.protocol.targets import Targets
from gatewayasgi.runtime.operations import ClusterOperations

pytestmark = pytest.mark.anyio

NS = "/ns"
OTHER = "b" * 32


class RecordingBroker:
    def __init__(self) -> None:
        self.published: list[tuple[str, bytes]] = []

    async def subscribe(self, channel: str) -> None:
        pass

    async def publish(self, channel: str, data: bytes) -> bool:
        self.published.append((channel, data))
        return True

    def replies(self) -> dict[int, list[Any]]:
        """Request id -> reply items, of every reply published to ``OTHER``."""
        found: dict[int, list[Any]] = {}
        for channel, data in self.published:
            if channel == rpc.reply_channel(OTHER):
                body = orjson.loads(data)
                found.setdefault(body["q"], []).extend(body["i"])
        return found


class Responder:
    """Fetches answer at once; calls and orders wait until ``release`` is set."""

    def __init__(self) -> None:
        self.release = anyio.Event()
        self.busy: list[int] = []

    async def __call__(self, request: rpc.Request, *, busy: bool = False) -> list[JSONValue]:
        if request.op == rpc.FETCH:
            return ["c_fetched"]
        if busy:
            self.busy.append(request.id)
            return [["c_callee", "timeout", None]]
        await self.release.wait()
        return [["c_callee", "ok", request.id]]


def request(op: str, number: int, **fields: Any) -> bytes:
    return rpc.pack_request(rpc.Request(op, OTHER, number, Targets(("room",), ()), **fields))


def call(number: int, timeout: float = 60.0) -> bytes:
    return request(rpc.CALL, number, event="ping", data=None, timeout=timeout)


async def settled(broker: RecordingBroker, ids: set[int]) -> dict[int, list[Any]]:
    with anyio.fail_after(5):
        while not ids <= broker.replies().keys():
            await anyio.sleep(0.01)
    return broker.replies()


async def test_calls_past_their_budget_are_answered_at_once_and_fetches_still_served(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(cluster, "MAX_SERVING_CALLS", 3)
    broker, responder = RecordingBroker(), Responder()
    node = ClusterNode(broker, "a" * 32, max_message_size=1 << 20)  # type: ignore[arg-type]
    node.serve(NS, responder)
    channel = rpc.request_channel(NS)
    caplog.set_level(logging.WARNING, "gatewayasgi")
    async with anyio.create_task_group() as tasks:
        await node.start(tasks)
        for number in range(1, 11):  # 3 wait on their clients, 7 are past the budget
            node.on_message(channel, call(number))
        node.on_message(channel, request(rpc.FETCH, 100, timeout=5.0))
        replies = await settled(broker, {*range(4, 11), 100})
        assert replies[100] == ["c_fetched"]  # presence is not starved by the calls
        for number in range(4, 11):
            assert replies[number] == [["c_callee", "timeout", None]]
        assert sorted(responder.busy) == list(range(4, 11)) and node.busy_calls == 7
        assert not {1, 2, 3} & replies.keys()  # still waiting on their clients
        responder.release.set()
        replies = await settled(broker, {1, 2, 3})
        assert replies[2] == [["c_callee", "ok", 2]]
        await node.close()
        tasks.cancel_scope.cancel()
    assert node.dropped_requests == 0
    lines = [r.getMessage() for r in caplog.records if "calls answered" in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith("cluster: 1 calls answered"), lines


async def test_requests_past_every_budget_are_dropped_and_logged_once_with_a_count(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(cluster, "MAX_SERVING", 2)
    monkeypatch.setattr(cluster, "MAX_SERVING_CALLS", 0)
    monkeypatch.setattr(cluster, "DROP_LOG_INTERVAL", 0.2)
    broker, responder = RecordingBroker(), Responder()
    node = ClusterNode(broker, "a" * 32, max_message_size=1 << 20)  # type: ignore[arg-type]
    node.serve(NS, responder)
    channel = rpc.request_channel(NS)
    caplog.set_level(logging.WARNING, "gatewayasgi")
    async with anyio.create_task_group() as tasks:
        await node.start(tasks)
        orders = [request(rpc.LEAVE, 0, room="r") for _ in range(2)]
        for message in orders:  # two orders that hang hold the whole budget
            node.on_message(channel, message)
        for number in range(1, 51):
            node.on_message(channel, request(rpc.FETCH, number))
        for _ in range(20):
            node.on_message(channel, b"not json")
        assert node.dropped_requests == 70
        dropped = [r.getMessage() for r in caplog.records]
        assert len(dropped) == 2, dropped  # the first of each kind at once
        with anyio.fail_after(5):  # the rest with the heartbeats, once the interval passed
            while len(caplog.records) < 4:
                await anyio.sleep(0.05)
        responder.release.set()
        await node.close()
        tasks.cancel_scope.cancel()
    messages = sorted(r.getMessage() for r in caplog.records)
    assert len(messages) == 4, messages
    assert messages[0].startswith("cluster: 1 cluster requests dropped")
    assert messages[1].startswith("cluster: 1 malformed")
    assert messages[2].startswith("cluster: 19 malformed")
    assert messages[3].startswith("cluster: 49 cluster requests dropped")


async def test_a_request_is_given_up_at_its_askers_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cluster, "ORDER_TIMEOUT", 0.2)
    monkeypatch.setattr(cluster, "REPLY_GRACE", 0.1)
    broker, responder = RecordingBroker(), Responder()  # never released
    node = ClusterNode(broker, "a" * 32, max_message_size=1 << 20)  # type: ignore[arg-type]
    node.serve(NS, responder)
    channel = rpc.request_channel(NS)
    async with anyio.create_task_group() as tasks:
        await node.start(tasks)
        node.on_message(channel, request(rpc.JOIN, 0, room="r"))
        node.on_message(channel, call(1, timeout=0.1))
        with anyio.fail_after(5):
            while node.late_answers < 2:
                await anyio.sleep(0.02)
        assert 1 not in broker.replies()  # its asker stopped listening: nothing sent
        # Both budgets are free again.
        assert (node._serving, node._serving_calls, node._serving_call_bytes) == (0, 0, 0)
        await node.close()
        tasks.cancel_scope.cancel()


def test_a_fetch_carries_how_long_its_asker_waits() -> None:
    fetch = rpc.Request(rpc.FETCH, OTHER, 3, Targets(("r",), ()), timeout=2.5)
    assert rpc.unpack_request(rpc.pack_request(fetch), 1 << 20).timeout == 2.5
    untimed = rpc.Request(rpc.FETCH, OTHER, 3, Targets(("r",), ()))
    assert rpc.unpack_request(rpc.pack_request(untimed), 1 << 20).timeout == 0.0
    for bad in (0, -1, 301, "5", None):
        body = orjson.dumps({"o": "ids", "n": OTHER, "q": 1, "t": bad})
        with pytest.raises(rpc.RpcError):
            rpc.unpack_request(body, 1 << 20)


def test_a_requests_reply_store_takes_no_more_nodes_than_a_namespace_remembers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cluster, "MAX_PEERS", 3)
    gather = cluster._Gather({"n0"})
    for index in range(10):
        gather.add(rpc.Reply(f"n{index}", 1, 0, 2, [index]))  # half an answer each
    assert sorted(gather.parts) == ["n0", "n1", "n2"]
    gather.add(rpc.Reply("n0", 1, 1, 2, ["end"]))
    assert gather.finished == {"n0": [0, "end"]} and gather.done.is_set()


class SlowClient:
    """A client whose call frame is never sent (its socket does not drain)."""

    async def call(self, event: str, data: JSONValue, *, timeout: float) -> JSONValue:
        await anyio.sleep_forever()
        raise AssertionError


class FakeServer:
    namespace = NS

    def __init__(self) -> None:
        self.clients = {"c_slow": SlowClient()}

    def _recipients(self, targets: Targets, exclude: Targets) -> list[str]:
        return ["c_slow", "c_gone"]


async def test_local_calls_end_at_their_timeout_even_before_the_frame_is_sent() -> None:
    operations = ClusterOperations(FakeServer(), None)  # type: ignore[arg-type]
    with anyio.fail_after(5):
        outcomes = await operations.local_call(Targets(("r",), ()), Targets(), "e", None, 0.2)
    assert outcomes == [["c_slow", "timeout", None]]
