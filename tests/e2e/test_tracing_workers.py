"""Trace context crosses the Redis backplane: two hypercorn worker processes on one real
redis-server (``tests/apps/traced_app.py``), each exporting its spans to a file.

A client of worker A, whose handshake carries a ``traceparent``, emits to a room whose
member is on worker B: B's ``receive`` span is a child of A's ``publish`` span, itself a
child of the frame's span on A, all in the client's trace. Every wait is bounded.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests import workers
from tests.redis_server import running_redis_server
from tests.servers import connect
from tests.workers import Node, stop_node

pytestmark = pytest.mark.anyio

NAMESPACE = "/traced-cluster"
APP = "tests.apps.traced_app:app"
WAIT = 10.0
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
TRACEPARENT = f"00-{TRACE_ID}-b7ad6b7169203331-01"


@dataclass
class Cluster:
    a: Node
    b: Node
    spans: Path

    def read(self, node: Node) -> list[dict[str, Any]]:
        path = self.spans / f"{node.name}.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line]

    async def span(self, node: Node, name: str) -> dict[str, Any]:
        """The one span called ``name`` that ``node`` exported (waits for it)."""
        with anyio.fail_after(WAIT):
            while not any(span["name"] == name for span in self.read(node)):
                await anyio.sleep(0.02)
        (span,) = [span for span in self.read(node) if span["name"] == name]
        return span


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    workdir = tmp_path_factory.mktemp("traced")
    spans = workdir / "spans"
    spans.mkdir()
    with running_redis_server(workdir) as redis, pytest.MonkeyPatch.context() as patch:
        patch.setenv("GATEWAYASGI_TEST_SPANS", str(spans))
        nodes: list[Node] = []
        try:
            for name in ("A", "B"):
                nodes.append(workers.start_node(name, redis.url, workdir, APP, NAMESPACE))
            yield Cluster(*nodes, spans)
        finally:
            for node in nodes:
                stop_node(node)


async def test_a_receive_on_worker_b_is_a_child_of_the_publish_on_worker_a(
    cluster: Cluster,
) -> None:
    a, b = cluster.a, cluster.b
    headers = {"traceparent": TRACEPARENT}
    async with connect(b.address, NAMESPACE) as member:
        assert await member.request("join", {"room": "r"}) == {"event": "joined", "data": "B"}
        async with connect(a.address, NAMESPACE, additional_headers=headers) as sender:
            reply = await sender.request("say", {"room": "r", "text": "hi"})
            assert reply == {"event": "sent", "data": "A"}
        said = await member.recv()
        assert said == {"event": "said", "data": {"text": "hi", "node": "A"}}

    frame = await cluster.span(a, f"{NAMESPACE} say")
    publish = await cluster.span(a, f"{NAMESPACE} publish")
    receive = await cluster.span(b, f"{NAMESPACE} receive")
    connection = await cluster.span(a, f"{NAMESPACE} connection")
    # One trace, the client's, from the handshake on A to the delivery on B.
    for span in (connection, frame, publish, receive):
        assert span["trace_id"] == TRACE_ID, span
    assert frame["parent_id"] == connection["span_id"]
    assert publish["parent_id"] == frame["span_id"] and publish["kind"] == "PRODUCER"
    assert receive["parent_id"] == publish["span_id"] and receive["kind"] == "CONSUMER"
    assert receive["attributes"] == {
        "gatewayasgi.namespace": NAMESPACE,
        "gatewayasgi.outcome": "ok",
    }
    # B's own member joined a room: its frame span is in a trace of its own.
    join = await cluster.span(b, f"{NAMESPACE} join")
    assert join["trace_id"] != TRACE_ID
