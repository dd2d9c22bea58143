"""OpenTelemetry tracing for gateways: ``OpenTelemetryTracing``.

Needs the ``otel`` extra (``pip install "gatewayasgi[otel]"``: ``opentelemetry-api`` only;
the app brings the SDK and its exporters). This module imports without it; constructing
``OpenTelemetryTracing`` without it raises ``ImportError`` with the install command.

Spans, each named after the gateway's declared namespace (bounded names: never a
client's path or event):

``"{namespace} connection"`` (server)
    from accept to the end of the session; its parent is the trace context the handshake
    carried (``traceparent`` / ``tracestate`` / ``baggage`` headers, read with the global
    propagator), else whatever span is current when the session starts. It ends with
    ``gatewayasgi.close_code``, and an error status for 1011.
``"{namespace} {event}"`` (server)
    one per handled frame (guards, interceptors and filters included), current while the
    handler runs, so the app's own spans and emits are its children. Its parent is the
    connection span, or the context the frame carried in its ``trace`` member (then it
    links to the connection span). ``gatewayasgi.outcome`` is ``ok``, ``error`` (an error
    frame went out: ``error.type`` names the exception) or ``closed``; a handler or guard
    that failed (1011) records its exception and an error status.
``"{namespace} publish"`` (producer) and ``"{namespace} receive"`` (consumer)
    an emit that the backplane carries to the other workers, and its delivery on each of
    them: the envelope carries the publish span's context, so the receive span on worker
    B is its child.

Every hook is quick and never raises into the gateway: an exporter's trouble is the SDK's.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import Token
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, Any

from gatewayasgi.exceptions import WsException
from gatewayasgi.instrumentation import Client, Instrumentation, Outcome, Watch
from gatewayasgi.protocol.carrier import MAX_CARRIER_BYTES
from gatewayasgi.protocol.close import CloseCode

try:
    from opentelemetry import context as otel_context
    from opentelemetry import propagate, trace
    from opentelemetry.trace import Link, SpanKind, Status, StatusCode
except ImportError:  # exercised by a test with opentelemetry hidden
    trace = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.propagators.textmap import TextMapPropagator
    from opentelemetry.trace import Span, TracerProvider

__all__ = ["INSTALL_HINT", "OpenTelemetryTracing"]


INSTALL_HINT = (
    'OpenTelemetryTracing needs the "opentelemetry-api" package: pip install "gatewayasgi[otel]"'
)
"""The message of the ``ImportError`` raised when the extra is missing."""

NAMESPACE = "gatewayasgi.namespace"
EVENT = "gatewayasgi.event"
CLIENT_ID = "gatewayasgi.client_id"
OUTCOME = "gatewayasgi.outcome"
CLOSE_CODE = "gatewayasgi.close_code"
ERROR_TYPE = "error.type"


def _version() -> str | None:
    try:
        return metadata.version("gatewayasgi")
    except metadata.PackageNotFoundError:  # pragma: no cover - a source tree on sys.path
        return None


@dataclass(slots=True)
class _Connection:
    span: Span
    context: Context
    """The connection span's context: the parent of its frames' spans."""


class _HandlerWatch:
    """A frame's span, current while its handler runs."""

    __slots__ = ("span", "token")

    def __init__(self, span: Span, token: Token[Context]) -> None:
        self.span = span
        self.token = token

    def end(self, outcome: Outcome, error: BaseException | None = None) -> None:
        otel_context.detach(self.token)
        _finish(self.span, outcome, error)


class _SpanWatch:
    """A publish or receive span (never made current: no app code runs inside)."""

    __slots__ = ("span",)

    def __init__(self, span: Span) -> None:
        self.span = span

    def end(self, outcome: Outcome, error: BaseException | None = None) -> None:
        _finish(self.span, outcome, error)


def _finish(span: Span, outcome: Outcome, error: BaseException | None) -> None:
    span.set_attribute(OUTCOME, outcome)
    if error is not None:
        span.set_attribute(ERROR_TYPE, type(error).__qualname__)
        if outcome == "closed" or not _is_client_error(error):
            # The gateway failed (1011, a broker error): the span's error, with its trace.
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, type(error).__qualname__))
    span.end()


def _is_client_error(error: BaseException) -> bool:
    """A ``WsException`` (invalid payload, a refusal the app raised): the client's doing,
    as an HTTP 4xx is, so the server span keeps an unset status."""
    return isinstance(error, WsException)


def _handshake_carrier(scope: Mapping[str, Any], fields: frozenset[str]) -> dict[str, str]:
    """The propagation headers of the handshake (``fields``: the propagator's names),
    bounded as every carrier is: one of more than ``MAX_CARRIER_BYTES`` is ignored."""
    carrier: dict[str, str] = {}
    size = 0
    for raw_name, raw_value in scope.get("headers") or ():
        name = raw_name.decode("latin-1").lower()
        if name not in fields:
            continue
        value = raw_value.decode("latin-1")
        size += len(name) + len(value)
        if size > MAX_CARRIER_BYTES:
            return {}
        # Repeated list headers (tracestate, baggage) join as HTTP does.
        carrier[name] = f"{carrier[name]},{value}" if name in carrier else value
    return carrier


class OpenTelemetryTracing(Instrumentation):
    """Spans for connections, handled frames and backplane deliveries (module docstring).

    ``tracer_provider`` defaults to the global one (``trace.set_tracer_provider``) and
    ``propagator`` to the global text-map propagator (W3C trace context and baggage
    unless ``OTEL_PROPAGATORS`` says otherwise), both looked up when used, so they may
    be set after the middleware is built. Register it beside other instruments::

        GatewayMiddleware(app, instrumentation=[PrometheusMetrics(), OpenTelemetryTracing()])
    """

    def __init__(
        self,
        tracer_provider: TracerProvider | None = None,
        *,
        propagator: TextMapPropagator | None = None,
    ) -> None:
        if trace is None:
            raise ImportError(INSTALL_HINT)
        self._tracer = trace.get_tracer("gatewayasgi", _version(), tracer_provider=tracer_provider)
        self._propagator = propagator
        self._connections: dict[Client, _Connection] = {}
        """Open sessions, by connection (identity): added in ``on_open``, removed in
        ``on_end``, so the map holds no more than the connections the process serves."""

    def __repr__(self) -> str:
        return "OpenTelemetryTracing()"

    @property
    def propagator(self) -> TextMapPropagator:
        return self._propagator or propagate.get_global_textmap()

    # -- connections -----------------------------------------------------------------

    def on_open(self, namespace: str, client: Client) -> None:
        propagator = self.propagator
        current = otel_context.get_current()
        carrier = _handshake_carrier(client.scope, frozenset(propagator.fields))
        parent = propagator.extract(carrier, context=current) if carrier else current
        attributes: dict[str, Any] = {NAMESPACE: namespace, CLIENT_ID: client.id}
        path = client.scope.get("path")
        if type(path) is str:
            attributes["url.path"] = path[:1024]
        span = self._tracer.start_span(
            f"{namespace} connection", parent, SpanKind.SERVER, attributes
        )
        self._connections[client] = _Connection(span, trace.set_span_in_context(span, parent))

    def on_end(self, namespace: str, client: Client, code: int) -> None:
        opened = self._connections.pop(client, None)
        if opened is None:
            return
        span = opened.span
        span.set_attribute(CLOSE_CODE, code)
        if code == CloseCode.INTERNAL_ERROR:
            span.set_status(Status(StatusCode.ERROR, "closed with 1011"))
        span.end()

    # -- frames ------------------------------------------------------------------------

    def wrap_handler(
        self, namespace: str, event: str, client: Client, carrier: Mapping[str, str] | None
    ) -> Watch | None:
        opened = self._connections.get(client)
        parent = opened.context if opened is not None else otel_context.get_current()
        links = None
        if carrier is not None:
            # The frame carries its own trace context: the span joins that trace, and
            # links to the connection it came over (a carrier without a valid
            # ``traceparent`` leaves the parent as it was).
            carried = self.propagator.extract(carrier, context=parent)
            if opened is not None and trace.get_current_span(carried) is not opened.span:
                links = [Link(opened.span.get_span_context())]
            parent = carried
        span = self._tracer.start_span(
            f"{namespace} {event}",
            parent,
            SpanKind.SERVER,
            {NAMESPACE: namespace, EVENT: event, CLIENT_ID: client.id},
            links,
        )
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        return _HandlerWatch(span, token)

    # -- the backplane -----------------------------------------------------------------

    def wrap_publish(self, namespace: str, carrier: dict[str, str]) -> Watch | None:
        span = self._tracer.start_span(
            f"{namespace} publish", kind=SpanKind.PRODUCER, attributes={NAMESPACE: namespace}
        )
        self.propagator.inject(carrier, context=trace.set_span_in_context(span))
        return _SpanWatch(span)

    def wrap_receive(self, namespace: str, carrier: Mapping[str, str] | None) -> Watch | None:
        # A fresh context: the broker's reader task carries nothing of this order.
        parent = self.propagator.extract(carrier) if carrier else otel_context.Context()
        span = self._tracer.start_span(
            f"{namespace} receive", parent, SpanKind.CONSUMER, {NAMESPACE: namespace}
        )
        return _SpanWatch(span)
