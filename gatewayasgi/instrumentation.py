"""The instrumentation seam: one interface the runtime calls at every step.

The runtime holds an ``Instrumentation`` or ``None``; with ``None`` each call site is one
``is not None`` test, so an app without metrics pays nothing. Implementations
(``gatewayasgi.metrics.PrometheusMetrics``, an OpenTelemetry one later) override what
they need; every method here is a no-op.

Label values passed to these methods come only from the gateway's own tables and the
closed sets below, never from what a client sent: an event a gateway does not handle is
reported as ``UNKNOWN_EVENT``, so a client cannot grow a metric's label set.

Every method is called on the event loop, in the middle of the hot path: it must be
quick, must not block, and must not raise.
"""

from __future__ import annotations

from typing import Literal

UNKNOWN_EVENT = "<unknown>"
"""The ``event`` label of frames whose event no handler subscribes to."""

RefuseReason = Literal["origin", "capacity", "guard", "error"]
"""Why a handshake was refused: ``origin`` (not in ``allowed_origins``), ``capacity``
(``max_connections`` reached), ``guard`` (a handshake guard said no), ``error`` (a
handshake guard raised)."""

DropReason = Literal["overflow", "slow_consumer", "budget", "rate_limit"]
"""Why frames were not delivered: ``overflow`` (a drop policy discarded them),
``slow_consumer`` (the client was closed 1013, its queue discarded), ``budget`` (the
process-wide outbox budget closed the client), ``rate_limit`` (inbound frames refused by
the client's rate limit)."""


class Instrumentation:
    """Hooks the runtime calls; subclass and override the ones you need.

    ``namespace`` is always the gateway's declared namespace (``"/chat"``,
    ``"/rooms/{room_id}"``), never the connection's concrete path.
    """

    def on_connect(self, namespace: str) -> None:
        """A client was accepted."""

    def on_refuse(self, namespace: str, reason: RefuseReason) -> None:
        """A handshake was refused before accept."""

    def on_close(self, namespace: str, code: int) -> None:
        """An accepted connection ended with close ``code`` (sent or received).

        A close the client starts arrives with whatever code the ASGI server reports:
        uvicorn passes the client's code on, hypercorn (0.18) reports 1006 for each."""

    def on_frame_in(self, namespace: str, event: str) -> None:
        """A frame was received and decoded (``event`` is a handled event, a protocol
        event the session answers itself, ``$ack`` or ``$end``, or ``UNKNOWN_EVENT``)."""

    def on_frame_out(self, namespace: str, count: int) -> None:
        """``count`` frames were handed to client outboxes (a reply, an emit, a fan-out);
        ``count`` may be 0 (a fan-out to an empty room)."""

    def on_drop(self, namespace: str, reason: DropReason, count: int) -> None:
        """``count`` frames were not delivered, for ``reason``."""

    def on_overflow(self, namespace: str) -> None:
        """A client's outbox overflowed (whatever the policy did about it)."""

    def on_handler(self, namespace: str, event: str, seconds: float) -> None:
        """A handler for ``event`` ran for ``seconds`` (successfully or not)."""

    def on_broker_publish(self, namespace: str) -> None:
        """A delivery order was published on the backplane."""

    def on_broker_receive(self, namespace: str) -> None:
        """A delivery order from another node was received."""

    def on_broker_failure(self, namespace: str) -> None:
        """Publishing on the backplane failed (the order was dropped)."""
