"""``OpenTelemetryTracing`` beside ``PrometheusMetrics`` under real hypercorn and uvicorn,
and hypercorn's trio worker (contextvars-based span activation on trio too).

Each test has its own SDK ``TracerProvider`` with the in-memory exporter (a simple span
processor: a span is exported as it ends) and its own Prometheus registry, both read
directly (the exporter locks; under ``hypercorn-trio`` the server runs in another
thread). Every wait is bounded. The backplane
(two worker processes on one redis-server) is ``tests/e2e/test_tracing_workers.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import CollectorRegistry

from gatewayasgi import (
    BaseGuard,
    ConnectedSocket,
    GatewayMiddleware,
    MessageBody,
    SubscribeMessage,
    UseGuards,
    WebSocketGateway,
    WsException,
)
from gatewayasgi.metrics import PrometheusMetrics
from gatewayasgi.tracing import OpenTelemetryTracing
from tests.servers import TIMEOUT, connect, run_server

pytestmark = pytest.mark.anyio

NS = "/traced"
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
FRAME_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
FRAME_PARENT_ID = "00f067aa0ba902b7"
FRAME_TRACEPARENT = f"00-{FRAME_TRACE_ID}-{FRAME_PARENT_ID}-01"

provider_of_the_test: list[TracerProvider] = []
"""The running test's provider: the handler makes its own span with it."""


class Refuse(BaseGuard):
    def can_activate(self, context: Any) -> bool:
        return False


@WebSocketGateway(namespace=NS)
class TracedGateway:
    @SubscribeMessage("say")
    async def say(self, text: str = MessageBody("text")) -> dict[str, Any]:
        # The app's own span: a child of the frame's, which is current while this runs.
        with provider_of_the_test[-1].get_tracer("app").start_as_current_span("app work"):
            await anyio.lowlevel.checkpoint()
        return {"event": "said", "data": text}

    @SubscribeMessage("bad")
    async def bad(self) -> None:
        raise WsException("not like that")

    @SubscribeMessage("fail")
    async def fail(self) -> None:
        raise RuntimeError("boom")

    @SubscribeMessage("guarded")
    @UseGuards(Refuse)
    async def guarded(self) -> None:
        return None

    @SubscribeMessage("leave")
    async def leave(self, client: Any = ConnectedSocket()) -> None:
        await client.close(4002)


class Traced:
    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.registry = CollectorRegistry()

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        found = self.exporter.get_finished_spans()
        return [span for span in found if name is None or span.name == name]

    async def wait_for(self, name: str, count: int = 1) -> list[ReadableSpan]:
        """Until ``count`` spans called ``name`` ended (fails with what there is)."""
        try:
            with anyio.fail_after(TIMEOUT):
                while len(self.spans(name)) < count:
                    await anyio.sleep(0.01)
        except TimeoutError:
            seen = [span.name for span in self.spans()]
            raise AssertionError(f"{count} x {name!r} expected; ended: {seen}") from None
        return self.spans(name)

    def received(self, event: str) -> float:
        labels = {"namespace": NS, "event": event}
        return self.registry.get_sample_value("gatewayasgi_messages_received_total", labels) or 0


@pytest.fixture
def traced() -> Traced:
    traced = Traced()
    provider_of_the_test.append(traced.provider)
    return traced


@asynccontextmanager
async def serve(traced: Traced, server: str) -> AsyncIterator[str]:
    app = GatewayMiddleware(
        None,
        gateways=[TracedGateway],
        metrics=PrometheusMetrics(registry=traced.registry),
        instrumentation=[OpenTelemetryTracing(traced.provider)],
    )
    async with run_server(app, server) as address:
        yield address


def span_id(span: ReadableSpan | None) -> str:
    assert span is not None and span.context is not None
    return f"{span.context.span_id:016x}"


def parent_id(span: ReadableSpan) -> str | None:
    return None if span.parent is None else f"{span.parent.span_id:016x}"


def trace_id(span: ReadableSpan) -> str:
    assert span.context is not None
    return f"{span.context.trace_id:032x}"


def one(spans: Sequence[ReadableSpan], where: Callable[[ReadableSpan], bool]) -> ReadableSpan:
    chosen = [span for span in spans if where(span)]
    assert len(chosen) == 1, [span.name for span in spans]
    return chosen[0]


SERVERS = pytest.mark.parametrize("server", ["hypercorn", "uvicorn", "hypercorn-trio"])


@SERVERS
async def test_a_frame_span_is_a_child_of_the_connection_the_handshake_traced(
    traced: Traced, server: str
) -> None:
    async with serve(traced, server) as address:
        headers = {"traceparent": TRACEPARENT, "tracestate": "vendor=1"}
        async with connect(address, NS, additional_headers=headers) as client:
            assert await client.request("say", {"text": "hi"}) == {"event": "said", "data": "hi"}
        (connection,) = await traced.wait_for(f"{NS} connection")
    (frame,) = traced.spans(f"{NS} say")
    (app_work,) = traced.spans("app work")
    # The handshake's context is the connection's parent; frames and the app's own spans
    # hang below, all in the client's trace.
    assert trace_id(connection) == trace_id(frame) == trace_id(app_work) == TRACE_ID
    assert parent_id(connection) == PARENT_ID
    assert connection.kind is SpanKind.SERVER and frame.kind is SpanKind.SERVER
    assert parent_id(frame) == span_id(connection)
    assert parent_id(app_work) == span_id(frame)
    assert connection.context is not None and connection.context.trace_state == {"vendor": "1"}
    assert frame.attributes == {
        "gatewayasgi.namespace": NS,
        "gatewayasgi.event": "say",
        "gatewayasgi.client_id": connection.attributes["gatewayasgi.client_id"],  # type: ignore[index]
        "gatewayasgi.outcome": "ok",
    }
    # The client closed: hypercorn (0.18) reports 1006 for every close a client starts.
    code = 1000 if server == "uvicorn" else 1006
    assert connection.attributes["gatewayasgi.close_code"] == code  # type: ignore[index]
    assert connection.attributes["url.path"] == NS  # type: ignore[index]
    assert connection.status.status_code is StatusCode.UNSET
    # The span is open while the handler runs: it starts before the app's and ends after.
    assert frame.start_time <= app_work.start_time  # type: ignore[operator]
    assert frame.end_time >= app_work.end_time  # type: ignore[operator]
    # Prometheus, registered beside it, counted the same frame.
    assert traced.received("say") == 1


@SERVERS
async def test_a_frame_that_carries_its_trace_member_joins_that_trace(
    traced: Traced, server: str
) -> None:
    async with serve(traced, server) as address, connect(address, NS) as client:
        assert await client.request("say", {"text": "a"}, trace={"traceparent": FRAME_TRACEPARENT})
        assert await client.request("say", {"text": "b"})
        frames = await traced.wait_for(f"{NS} say", 2)
    (connection,) = await traced.wait_for(f"{NS} connection")
    carried = one(frames, lambda span: trace_id(span) == FRAME_TRACE_ID)
    plain = one(frames, lambda span: trace_id(span) != FRAME_TRACE_ID)
    # Without a handshake traceparent the connection starts a trace of its own.
    assert parent_id(connection) is None
    assert parent_id(carried) == FRAME_PARENT_ID
    assert [span_id_of(link.context) for link in carried.links] == [span_id(connection)]
    assert parent_id(plain) == span_id(connection) and not plain.links
    assert traced.received("say") == 2


def span_id_of(context: Any) -> str:
    return f"{context.span_id:016x}"


@SERVERS
async def test_each_outcome_and_the_close_code_end_their_spans(traced: Traced, server: str) -> None:
    async with serve(traced, server) as address:
        async with connect(address, NS) as client:
            reply = await client.request("bad")
            assert reply["event"] == "error" and reply["data"]["message"] == "not like that"
            await client.send("fail")
            assert (await client.recv())["event"] == "error"
            assert await client.expect_close() == 1011
        async with connect(address, NS) as client:
            await client.send("guarded")
            assert await client.expect_close() == 1008
        async with connect(address, NS) as client:
            await client.send("leave")
            assert await client.expect_close() == 4002
        connections = await traced.wait_for(f"{NS} connection", 3)
    bad, fail = traced.spans(f"{NS} bad"), traced.spans(f"{NS} fail")
    (guarded,) = traced.spans(f"{NS} guarded")
    (left,) = traced.spans(f"{NS} leave")
    # An error frame is the client's doing: no error status, the exception named only.
    assert bad[0].attributes["gatewayasgi.outcome"] == "error"  # type: ignore[index]
    assert bad[0].attributes["error.type"] == "WsException"  # type: ignore[index]
    assert bad[0].status.status_code is StatusCode.UNSET and not bad[0].events
    # A failing handler closes 1011: its span has the error and the exception.
    assert fail[0].attributes["gatewayasgi.outcome"] == "closed"  # type: ignore[index]
    assert fail[0].status.status_code is StatusCode.ERROR
    assert [event.name for event in fail[0].events] == ["exception"]
    assert fail[0].events[0].attributes["exception.message"] == "boom"  # type: ignore[index]
    assert guarded.attributes["gatewayasgi.outcome"] == "closed"  # type: ignore[index]
    assert "error.type" not in guarded.attributes  # type: ignore[operator]
    assert left.attributes["gatewayasgi.outcome"] == "ok"  # type: ignore[index]
    codes = {span.attributes["gatewayasgi.close_code"]: span for span in connections}  # type: ignore[index]
    assert set(codes) == {1011, 1008, 4002}
    assert codes[1011].status.status_code is StatusCode.ERROR
    assert codes[4002].status.status_code is StatusCode.UNSET
    for name in ("bad", "fail", "guarded", "leave"):
        assert traced.received(name) == 1
