"""What instruments cost per frame: the micro benchmark's echo path, in process.

``python -m benchmarks.instrumentation`` feeds the same frames (``benchmarks.micro``) to
the same gateway registered with:

- ``none``: no instrument (the uninstrumented frame path, ``Session.handle``);
- ``prometheus``: ``PrometheusMetrics`` (a registry of its own);
- ``prometheus+otel (api)``: that and ``OpenTelemetryTracing`` with the API alone (no
  SDK installed or configured: every span is a no-op);
- ``prometheus+otel (sdk)``: that with an SDK ``TracerProvider`` whose batch processor
  exports to nowhere (the spans are made, recorded and handed over as in production).

Configurations run interleaved, each rep in a fresh event loop; medians are printed with
the cost over ``none`` in microseconds per frame (a frame here is one span with tracing).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
from collections.abc import Callable, Sequence
from typing import Any

from prometheus_client import CollectorRegistry

from gatewayasgi import GatewayMiddleware
from gatewayasgi.instrumentation import Instrumentation
from gatewayasgi.metrics import PrometheusMetrics
from gatewayasgi.tracing import OpenTelemetryTracing

from .apps.gateway import BenchGateway
from .micro import app_round


def _sdk_tracing() -> OpenTelemetryTracing:
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    class Nowhere(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Nowhere()))
    return OpenTelemetryTracing(provider)


def _api_tracing() -> OpenTelemetryTracing:
    from opentelemetry.trace import NoOpTracerProvider

    return OpenTelemetryTracing(NoOpTracerProvider())


CONFIGURATIONS: dict[str, Callable[[], list[Instrumentation]]] = {
    "none": lambda: [],
    "prometheus": lambda: [PrometheusMetrics(registry=CollectorRegistry())],
    "prometheus+otel (api)": lambda: [
        PrometheusMetrics(registry=CollectorRegistry()),
        _api_tracing(),
    ],
    "prometheus+otel (sdk)": lambda: [
        PrometheusMetrics(registry=CollectorRegistry()),
        _sdk_tracing(),
    ],
}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.instrumentation")
    parser.add_argument("--frames", type=int, default=50_000)
    parser.add_argument("--reps", type=int, default=7)
    opts = parser.parse_args()
    apps: dict[str, Any] = {
        name: GatewayMiddleware(
            gateways=[BenchGateway], rate_limit=None, instrumentation=make() or None
        )
        for name, make in CONFIGURATIONS.items()
    }
    results: dict[str, list[float]] = {name: [] for name in apps}
    for _ in range(opts.reps):
        for name, app in apps.items():
            results[name].append(asyncio.run(app_round(app, opts.frames)))
    base = statistics.median(results["none"])
    for name, samples in results.items():
        median = statistics.median(samples)
        print(
            f"{name:22} {median * 1e6:6.2f} us/frame  "
            f"(+{(median - base) * 1e6:.2f} over none; median of {opts.reps})"
        )


if __name__ == "__main__":
    main()
