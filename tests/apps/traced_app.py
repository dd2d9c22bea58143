"""A traced gateway for the backplane tracing test: run it in two processes on one Redis.

Each worker registers ``PrometheusMetrics`` and ``OpenTelemetryTracing`` (an SDK
``TracerProvider`` of its own) and writes every span, as it ends, as one JSON line to
``$GATEWAYASGI_TEST_SPANS/<node>.jsonl``: the test reads both files.
``GATEWAYASGI_TEST_REDIS_URL`` is the Redis URL, ``GATEWAYASGI_TEST_NODE`` the worker's
name.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from prometheus_client import CollectorRegistry

from gatewayasgi import (
    ConnectedSocket,
    GatewayMiddleware,
    MessageBody,
    SubscribeMessage,
    WebSocketGateway,
)
from gatewayasgi.brokers import RedisBroker
from gatewayasgi.metrics import PrometheusMetrics
from gatewayasgi.tracing import OpenTelemetryTracing

NODE = os.environ.get("GATEWAYASGI_TEST_NODE", str(os.getpid()))
NAMESPACE = "/traced-cluster"


class JsonLinesExporter(SpanExporter):
    """Appends each ended span to a file, one JSON object a line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = []
        for span in spans:
            assert span.context is not None
            lines.append(
                json.dumps(
                    {
                        "name": span.name,
                        "kind": span.kind.name,
                        "trace_id": f"{span.context.trace_id:032x}",
                        "span_id": f"{span.context.span_id:016x}",
                        "parent_id": None if span.parent is None else f"{span.parent.span_id:016x}",
                        "attributes": dict(span.attributes or {}),
                    }
                )
            )
        with self.lock, self.path.open("a") as out:
            out.write("".join(line + "\n" for line in lines))
        return SpanExportResult.SUCCESS


provider = TracerProvider()
provider.add_span_processor(
    SimpleSpanProcessor(
        JsonLinesExporter(Path(os.environ.get("GATEWAYASGI_TEST_SPANS", ".")) / f"{NODE}.jsonl")
    )
)


@WebSocketGateway(namespace=NAMESPACE)
class ClusterGateway:
    @SubscribeMessage("join")
    async def join(self, room: str = MessageBody("room"), client: Any = ConnectedSocket()) -> Any:
        await self.server.join(client, room)
        return {"event": "joined", "data": NODE}

    @SubscribeMessage("say")
    async def say(self, room: str = MessageBody("room"), text: str = MessageBody("text")) -> Any:
        await self.server.to(room).emit("said", {"text": text, "node": NODE})
        return {"event": "sent", "data": NODE}


app = GatewayMiddleware(
    gateways=[ClusterGateway],
    broker=RedisBroker(
        os.environ.get("GATEWAYASGI_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
        reconnect_delay=0.05,
        max_reconnect_delay=1.0,
    ),
    instrumentation=[
        PrometheusMetrics(registry=CollectorRegistry()),
        OpenTelemetryTracing(provider),
    ],
)
