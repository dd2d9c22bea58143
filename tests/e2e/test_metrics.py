"""``PrometheusMetrics`` wired into ``GatewayMiddleware`` under a real hypercorn server.

The server runs in the test's event loop, so each test reads its own registry directly;
every read that depends on the server having caught up polls under a timeout. Hypercorn
(0.18) reports every close the client starts as 1006, so the client-chosen close code is
checked under uvicorn, which passes it on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
import websockets.exceptions
from prometheus_client import CollectorRegistry

from gatewayasgi import (
    ConnectedSocket,
    GatewayMiddleware,
    MessageBody,
    SubscribeMessage,
    WebSocketGateway,
)
from gatewayasgi.instrumentation import UNKNOWN_EVENT
from gatewayasgi.metrics import PrometheusMetrics
from tests.servers import TIMEOUT, connect, run_server

pytestmark = pytest.mark.anyio

NS = "/metrics-e2e"


@WebSocketGateway(namespace=NS)
class MeteredGateway:
    """Echoes ``echo``; ``leave`` makes the server close with 4002."""

    @SubscribeMessage("echo")
    async def echo(self, data: Any = MessageBody()) -> dict[str, Any]:
        return {"event": "echo", "data": data}

    @SubscribeMessage("leave")
    async def leave(self, client: Any = ConnectedSocket()) -> None:
        await client.close(4002)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@asynccontextmanager
async def serve(
    registry: CollectorRegistry, server: str = "hypercorn", **settings: Any
) -> AsyncIterator[str]:
    app = GatewayMiddleware(
        None,
        gateways=[MeteredGateway],
        metrics=PrometheusMetrics(registry=registry),
        **settings,
    )
    async with run_server(app, server) as address:
        yield address


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    """A sample's value, 0 where the series does not exist (yet)."""
    return registry.get_sample_value(name, {"namespace": NS, **labels}) or 0.0


def total(registry: CollectorRegistry, name: str) -> float:
    """The sum of ``name`` over all its label values."""
    return sum(s.value for family in registry.collect() for s in family.samples if s.name == name)


def label_values(registry: CollectorRegistry, name: str, label: str) -> set[str]:
    """Every value ``label`` takes among the samples called ``name``."""
    return {
        s.labels[label]
        for family in registry.collect()
        for s in family.samples
        if s.name == name and label in s.labels
    }


async def wait_until(predicate: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.01)


async def wait_for_value(
    registry: CollectorRegistry, expected: float, name: str, **labels: str
) -> None:
    """Until ``name{labels}`` reads ``expected`` (fails with the last value seen)."""
    try:
        await wait_until(lambda: sample(registry, name, **labels) == expected)
    except TimeoutError:
        seen = sample(registry, name, **labels)
        raise AssertionError(f"{name}{labels}: expected {expected}, still {seen}") from None


async def test_connections_gauge_goes_up_then_down(registry: CollectorRegistry) -> None:
    async with serve(registry) as address:
        async with connect(address, NS) as client:
            assert await client.request("echo", 1) == {"event": "echo", "data": 1}
            assert sample(registry, "gatewayasgi_connections_active") == 1
            assert sample(registry, "gatewayasgi_connections_total") == 1
        await wait_for_value(registry, 0, "gatewayasgi_connections_active")
        await wait_until(lambda: total(registry, "gatewayasgi_closes_total") == 1)
        assert sample(registry, "gatewayasgi_connections_total") == 1


async def test_received_counts_handled_events_and_unknowns_share_one_label(
    registry: CollectorRegistry,
) -> None:
    async with serve(registry) as address, connect(address, NS) as client:
        for i in range(3):
            assert await client.request("echo", i) == {"event": "echo", "data": i}
        for i in range(50):
            reply = await client.request(f"no-such-event-{i}", None)
            assert reply["event"] == "error"
        await wait_for_value(
            registry, 50, "gatewayasgi_messages_received_total", event=UNKNOWN_EVENT
        )
        assert sample(registry, "gatewayasgi_messages_received_total", event="echo") == 3
        events = label_values(registry, "gatewayasgi_messages_received_total", "event")
        assert events == {"echo", UNKNOWN_EVENT}
        assert sample(registry, "gatewayasgi_handler_seconds_count", event="echo") == 3
        assert label_values(registry, "gatewayasgi_handler_seconds_count", "event") == {"echo"}


async def test_protocol_events_are_counted_under_their_names(
    registry: CollectorRegistry,
) -> None:
    """``$ack`` (an answer to a server call) and ``$end`` (the client ends its session)
    are the session's own events: each has its label, neither is ``<unknown>``."""
    async with serve(registry) as address:
        async with connect(address, NS) as client:
            await client.send("$ack", None, id=7)  # an answer nobody waits for
            await client.send("$cancel", None, id=8)  # a stream that does not run
            await client.send("$end")
            assert await client.request("echo", 1) == {"event": "echo", "data": 1}
        await wait_for_value(registry, 1, "gatewayasgi_messages_received_total", event="$end")
        assert sample(registry, "gatewayasgi_messages_received_total", event="$ack") == 1
        assert sample(registry, "gatewayasgi_messages_received_total", event="$cancel") == 1
        events = label_values(registry, "gatewayasgi_messages_received_total", "event")
        assert events == {"$ack", "$cancel", "$end", "echo"}


async def test_messages_sent_counts_replies(registry: CollectorRegistry) -> None:
    async with serve(registry) as address, connect(address, NS) as client:
        before = sample(registry, "gatewayasgi_messages_sent_total")
        for i in range(5):
            assert await client.request("echo", i) == {"event": "echo", "data": i}
        await wait_for_value(registry, before + 5, "gatewayasgi_messages_sent_total")
        assert before == 0


async def test_refused_origin_is_counted(registry: CollectorRegistry) -> None:
    async with serve(registry, allowed_origins=("https://good.example",)) as address:
        with pytest.raises(websockets.exceptions.InvalidHandshake):
            async with connect(address, NS, origin="https://evil.example"):
                pass
        await wait_for_value(registry, 1, "gatewayasgi_refused_total", reason="origin")
        assert sample(registry, "gatewayasgi_connections_total") == 0
        async with connect(address, NS, origin="https://good.example") as client:
            assert await client.request("echo", "ok") == {"event": "echo", "data": "ok"}
        assert sample(registry, "gatewayasgi_refused_total", reason="origin") == 1
        assert label_values(registry, "gatewayasgi_refused_total", "reason") == {"origin"}


async def test_server_close_code_lands_in_closes_total(registry: CollectorRegistry) -> None:
    async with serve(registry) as address:
        async with connect(address, NS) as client:
            await client.send("leave")
            assert await client.expect_close() == 4002
        await wait_for_value(registry, 1, "gatewayasgi_closes_total", code="4xxx")
        await wait_for_value(registry, 0, "gatewayasgi_connections_active")
        assert label_values(registry, "gatewayasgi_closes_total", "code") == {"4xxx"}


async def test_client_close_code_lands_in_closes_total(registry: CollectorRegistry) -> None:
    async with serve(registry, "uvicorn") as address:
        async with connect(address, NS) as client:
            assert await client.request("echo", 1) == {"event": "echo", "data": 1}
            await client.ws.close(code=3001)
        async with connect(address, NS) as client:
            assert await client.request("echo", 2) == {"event": "echo", "data": 2}
        await wait_for_value(registry, 1, "gatewayasgi_closes_total", code="3xxx")
        await wait_for_value(registry, 1, "gatewayasgi_closes_total", code="1000")
        await wait_for_value(registry, 0, "gatewayasgi_connections_active")
        assert label_values(registry, "gatewayasgi_closes_total", "code") == {"1000", "3xxx"}
