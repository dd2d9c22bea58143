"""Prometheus metrics for gateways: ``PrometheusMetrics``.

Needs the ``prometheus`` extra (``pip install "gatewayasgi[prometheus]"``). This module
imports without it (as httpx does for its extras); constructing ``PrometheusMetrics``
without it raises ``ImportError`` with the install command.

Label values are bounded whatever the runtime passes in: close codes outside 1000-1015
are grouped (``"3xxx"``, ``"4xxx"``, ``"other"``), unexpected refuse and drop reasons
become ``"other"``, and past ``MAX_EVENT_LABELS`` (namespace, event) pairs per metric new
events are counted as ``UNKNOWN_EVENT``.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, TypeVar, get_args

from gatewayasgi.instrumentation import (
    UNKNOWN_EVENT,
    DropReason,
    Instrumentation,
    RefuseReason,
)

try:
    import prometheus_client
except ImportError:  # exercised by a test with prometheus_client hidden
    prometheus_client = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
    from prometheus_client.metrics import MetricWrapperBase

__all__ = [
    "DEFAULT_BUCKETS",
    "INSTALL_HINT",
    "MAX_EVENT_LABELS",
    "PrometheusMetrics",
    "close_code_label",
]

logger = logging.getLogger("gatewayasgi.metrics")

INSTALL_HINT = (
    'PrometheusMetrics needs the "prometheus_client" package: pip install "gatewayasgi[prometheus]"'
)
"""The message of the ``ImportError`` raised when the extra is missing."""

DEFAULT_BUCKETS: tuple[float, ...] = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
"""Handler-duration buckets in seconds: 100 µs to 10 s (an in-memory handler takes tens
of microseconds; one that awaits a database, milliseconds to seconds)."""

MAX_EVENT_LABELS = 1000
"""Most (namespace, event) label pairs one metric takes; later events count as
``UNKNOWN_EVENT``. The runtime passes only handled events, so this only stops a bug from
growing a metric without bound."""

_REFUSE_REASONS: frozenset[str] = frozenset(get_args(RefuseReason))
_DROP_REASONS: frozenset[str] = frozenset(get_args(DropReason))
_OTHER = "other"

_M = TypeVar("_M", bound="MetricWrapperBase")
_K = TypeVar("_K")


def close_code_label(code: int) -> str:
    """The ``code`` label of a close code: ``"1000"``-``"1015"`` as themselves, the
    registered range 3000-3999 as ``"3xxx"``, the private range 4000-4999 as ``"4xxx"``,
    anything else as ``"other"``."""
    if 1000 <= code <= 1015:
        return str(code)
    if 3000 <= code <= 3999:
        return "3xxx"
    if 4000 <= code <= 4999:
        return "4xxx"
    return _OTHER


def _labelled(family: _M, cache: dict[_K, _M], key: _K, *values: str) -> _M:
    """The child of ``family`` for ``values``, remembered in ``cache`` under ``key``."""
    child = family.labels(*values)
    cache[key] = child
    return child


class _Families:
    """The metric families of one registry and their labelled children.

    A family can be registered on a registry only once, so every ``PrometheusMetrics`` on
    the same registry shares one ``_Families`` (children caches included).
    """

    def __init__(
        self, registry: CollectorRegistry, namespace_label: str, buckets: tuple[float, ...]
    ) -> None:
        self.namespace_label = namespace_label
        self.buckets = buckets
        made: list[MetricWrapperBase] = []

        def counter(name: str, doc: str, *labels: str) -> Counter:
            family = prometheus_client.Counter(
                name, doc, (namespace_label, *labels), registry=registry
            )
            made.append(family)
            return family

        try:
            # livesum: under prometheus_client's multiprocess mode, the sum over live workers.
            self.active: Gauge = prometheus_client.Gauge(
                "gatewayasgi_connections_active",
                "Open (accepted, not yet closed) connections.",
                (namespace_label,),
                registry=registry,
                multiprocess_mode="livesum",
            )
            made.append(self.active)
            self.connections = counter("gatewayasgi_connections", "Accepted connections.")
            self.refused = counter(
                "gatewayasgi_refused", "Handshakes refused before accept.", "reason"
            )
            self.closes = counter("gatewayasgi_closes", "Closed connections by close code.", "code")
            self.received = counter(
                "gatewayasgi_messages_received", "Frames received, by event.", "event"
            )
            self.sent = counter("gatewayasgi_messages_sent", "Frames handed to client outboxes.")
            self.dropped = counter("gatewayasgi_dropped", "Frames not delivered.", "reason")
            self.overflows = counter("gatewayasgi_overflows", "Client outbox overflows.")
            self.handler: Histogram = prometheus_client.Histogram(
                "gatewayasgi_handler_seconds",
                "Handler run time in seconds, by event.",
                (namespace_label, "event"),
                registry=registry,
                buckets=buckets,
            )
            made.append(self.handler)
            self.published = counter(
                "gatewayasgi_broker_published", "Delivery orders published on the broker."
            )
            self.broker_received = counter(
                "gatewayasgi_broker_received", "Delivery orders received from other nodes."
            )
            self.broker_failures = counter(
                "gatewayasgi_broker_failures", "Broker publishes that failed."
            )
        except ValueError:
            # Another collector already owns one of the names: leave the registry as found.
            for family in made:
                registry.unregister(family)
            raise
        # Children by label values; a hook call is one lookup here plus inc/observe.
        self.active_by: dict[str, Gauge] = {}
        self.connections_by: dict[str, Counter] = {}
        self.refused_by: dict[tuple[str, str], Counter] = {}
        self.closes_by: dict[tuple[str, str], Counter] = {}
        self.received_by: dict[tuple[str, str], Counter] = {}
        self.sent_by: dict[str, Counter] = {}
        self.dropped_by: dict[tuple[str, str], Counter] = {}
        self.overflows_by: dict[str, Counter] = {}
        self.handler_by: dict[tuple[str, str], Histogram] = {}
        self.published_by: dict[str, Counter] = {}
        self.broker_received_by: dict[str, Counter] = {}
        self.broker_failures_by: dict[str, Counter] = {}


_families: weakref.WeakKeyDictionary[CollectorRegistry, _Families] = weakref.WeakKeyDictionary()
_families_lock = threading.Lock()


def _families_for(
    registry: CollectorRegistry, namespace_label: str, buckets: tuple[float, ...]
) -> _Families:
    with _families_lock:
        families = _families.get(registry)
        if families is None:
            families = _families[registry] = _Families(registry, namespace_label, buckets)
        elif (families.namespace_label, families.buckets) != (namespace_label, buckets):
            raise ValueError(
                "this registry already has gatewayasgi metrics with "
                f"namespace_label={families.namespace_label!r} and "
                f"buckets={families.buckets!r}; pass the same values, or another registry"
            )
        return families


class PrometheusMetrics(Instrumentation):
    """Prometheus metrics for every gateway of a middleware:
    ``GatewayMiddleware(app, metrics=PrometheusMetrics())``.

    ``registry`` defaults to prometheus_client's global ``REGISTRY`` (what
    ``make_asgi_app()`` serves). Instances on the same registry share its metrics, so two
    middlewares in one process, or two tests, add to the same series; two instances on one
    registry must agree on ``namespace_label`` and ``buckets`` (else ``ValueError``).

    ``namespace_label`` names the label that carries the gateway namespace; rename it
    where ``namespace`` is taken (a Kubernetes scrape attaches its own ``namespace``).
    ``buckets`` are the ``gatewayasgi_handler_seconds`` histogram buckets, in seconds.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        namespace_label: str = "namespace",
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> None:
        if prometheus_client is None:
            raise ImportError(INSTALL_HINT)
        self.registry: CollectorRegistry = (
            prometheus_client.REGISTRY if registry is None else registry
        )
        """The registry the metrics live in (pass it to ``make_asgi_app(registry=...)``)."""
        families = _families_for(self.registry, namespace_label, tuple(buckets))
        self._families = families
        self._active = families.active_by
        self._connections = families.connections_by
        self._received = families.received_by
        self._sent = families.sent_by
        self._handler = families.handler_by

    def __repr__(self) -> str:
        return f"PrometheusMetrics(registry={self.registry!r})"

    # -- per message: one dict lookup, then inc/observe --------------------------

    def on_frame_in(self, namespace: str, event: str) -> None:
        """Count a received frame in ``gatewayasgi_messages_received_total``."""
        child = self._received.get((namespace, event))
        if child is None:
            child = self._event_child(self._families.received, self._received, namespace, event)
        child.inc()

    def on_frame_out(self, namespace: str, count: int) -> None:
        """Add ``count`` to ``gatewayasgi_messages_sent_total``."""
        if count > 0:  # a fan-out to an empty room sends nothing; a counter cannot go down
            child = self._sent.get(namespace)
            if child is None:
                child = _labelled(self._families.sent, self._sent, namespace, namespace)
            child.inc(count)

    def on_handler(self, namespace: str, event: str, seconds: float) -> None:
        """Observe ``seconds`` in ``gatewayasgi_handler_seconds``."""
        child = self._handler.get((namespace, event))
        if child is None:
            child = self._event_child(self._families.handler, self._handler, namespace, event)
        child.observe(seconds)

    # -- per connection -----------------------------------------------------------

    def on_connect(self, namespace: str) -> None:
        """Raise ``gatewayasgi_connections_active``; count ``gatewayasgi_connections_total``."""
        active = self._active.get(namespace)
        if active is None:
            active = _labelled(self._families.active, self._active, namespace, namespace)
        active.inc()
        total = self._connections.get(namespace)
        if total is None:
            families = self._families
            total = _labelled(families.connections, self._connections, namespace, namespace)
        total.inc()

    def on_close(self, namespace: str, code: int) -> None:
        """Lower ``gatewayasgi_connections_active``; count the code in
        ``gatewayasgi_closes_total`` (bounded by ``close_code_label``)."""
        active = self._active.get(namespace)
        if active is None:
            active = _labelled(self._families.active, self._active, namespace, namespace)
        active.dec()
        self._count(
            self._families.closes, self._families.closes_by, namespace, close_code_label(code)
        )

    def on_refuse(self, namespace: str, reason: RefuseReason) -> None:
        """Count ``gatewayasgi_refused_total{reason}`` (an unknown reason as ``"other"``)."""
        label = reason if reason in _REFUSE_REASONS else _OTHER
        self._count(self._families.refused, self._families.refused_by, namespace, label)

    def on_drop(self, namespace: str, reason: DropReason, count: int) -> None:
        """Add ``count`` to ``gatewayasgi_dropped_total{reason}``."""
        if count > 0:
            label = reason if reason in _DROP_REASONS else _OTHER
            families = self._families
            self._count(families.dropped, families.dropped_by, namespace, label, count)

    def on_overflow(self, namespace: str) -> None:
        """Count ``gatewayasgi_overflows_total``."""
        self._count_namespace(self._families.overflows, self._families.overflows_by, namespace)

    # -- broker -------------------------------------------------------------------

    def on_broker_publish(self, namespace: str) -> None:
        """Count ``gatewayasgi_broker_published_total``."""
        self._count_namespace(self._families.published, self._families.published_by, namespace)

    def on_broker_receive(self, namespace: str) -> None:
        """Count ``gatewayasgi_broker_received_total``."""
        families = self._families
        self._count_namespace(families.broker_received, families.broker_received_by, namespace)

    def on_broker_failure(self, namespace: str) -> None:
        """Count ``gatewayasgi_broker_failures_total``."""
        families = self._families
        self._count_namespace(families.broker_failures, families.broker_failures_by, namespace)

    # -- helpers ------------------------------------------------------------------

    @staticmethod
    def _count_namespace(family: Counter, cache: dict[str, Counter], namespace: str) -> None:
        child = cache.get(namespace)
        if child is None:
            child = _labelled(family, cache, namespace, namespace)
        child.inc()

    @staticmethod
    def _count(
        family: Counter,
        cache: dict[tuple[str, str], Counter],
        namespace: str,
        label: str,
        amount: int = 1,
    ) -> None:
        child = cache.get((namespace, label))
        if child is None:
            child = _labelled(family, cache, (namespace, label), namespace, label)
        child.inc(amount)

    @staticmethod
    def _event_child(
        family: _M, cache: dict[tuple[str, str], _M], namespace: str, event: str
    ) -> _M:
        # The miss path only: the first frame of each (namespace, event).
        if len(cache) >= MAX_EVENT_LABELS:
            if (namespace, UNKNOWN_EVENT) not in cache:
                logger.warning(
                    "metrics: more than %d (namespace, event) labels on %s; further events "
                    "are counted as %r",
                    MAX_EVENT_LABELS,
                    family,
                    UNKNOWN_EVENT,
                )
            event = UNKNOWN_EVENT
            child = cache.get((namespace, event))
            if child is not None:
                return child
        return _labelled(family, cache, (namespace, event), namespace, event)
