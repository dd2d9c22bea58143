"""The instrumentation seam: one interface the runtime calls at every step.

The runtime holds an ``Instrumentation`` or ``None``; with ``None`` each call site is one
``is not None`` test, so an app without instruments pays nothing. Implementations
(``gatewayasgi.metrics.PrometheusMetrics``, ``gatewayasgi.tracing.OpenTelemetryTracing``)
override what they need; every method here is a no-op. Several instruments are one
``Instruments`` (``combine``): the runtime still holds one object, and each hook reaches
only the instruments that override it.

Most hooks report after the fact. The ``wrap_*`` hooks open something before a piece of
work runs (a span, current while it runs) and return a ``Watch`` that the runtime ends
once, with the outcome, when the work is done; ``None`` when the instrument has nothing
to open. ``on_open`` and ``on_end`` bracket one connection and see it (its id and ASGI
scope: the handshake's headers).

Label values passed to these methods come only from the gateway's own tables and the
closed sets below, never from what a client sent: an event a gateway does not handle is
reported as ``UNKNOWN_EVENT``, so a client cannot grow a metric's label set.

Every method is called on the event loop, in the middle of the hot path: it must be
quick, must not block, and must not raise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal, Protocol

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


Outcome = Literal["ok", "error", "closed"]
"""How a wrapped piece of work ended: ``ok`` (a handler returned, whether or not a reply
went out), ``error`` (it raised and the connection stays open: an error frame, or a
filter's answer, went out), ``closed`` (the connection ends: a guard said no, the handler
failed with 1011, or the session was cancelled while it ran)."""


class Client(Protocol):
    """What instruments see of a connection (``gatewayasgi.Connection`` is one)."""

    @property
    def id(self) -> str: ...

    @property
    def scope(self) -> Mapping[str, Any]:
        """The handshake's ASGI scope: ``headers``, ``path``, ``client``..."""


class Watch(Protocol):
    """What a ``wrap_*`` hook opened; the runtime ends it exactly once."""

    def end(self, outcome: Outcome, error: BaseException | None = None) -> None:
        """The work is done; ``error`` is what it raised (``None`` when nothing did)."""


class Instrumentation:
    """Hooks the runtime calls; subclass and override the ones you need.

    ``namespace`` is always the gateway's declared namespace (``"/chat"``,
    ``"/rooms/{room_id}"``), never the connection's concrete path.
    """

    wraps_handlers: bool = False
    """True when ``wrap_handler`` is overridden (set for each subclass): the frame path
    asks a wrapping instrument only."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.wraps_handlers = cls.wrap_handler is not Instrumentation.wrap_handler

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

    # -- hooks that see the connection, and hooks that wrap ----------------------------

    def on_open(self, namespace: str, client: Client) -> None:
        """An accepted connection's session starts (after ``on_connect``)."""

    def on_end(self, namespace: str, client: Client, code: int) -> None:
        """An accepted connection's session ended with close ``code`` (beside
        ``on_close``): after its ``on_open``, unless the session failed to start."""

    def wrap_handler(
        self, namespace: str, event: str, client: Client, carrier: Mapping[str, str] | None
    ) -> Watch | None:
        """A handler for ``event`` is about to run (guards, interceptors and filters
        included) for ``client``; ``carrier`` holds the propagation fields the frame
        carried in its ``trace`` member (``protocol.carrier``), if any. What it returns
        stays open while the handler runs."""
        return None

    def wrap_publish(self, namespace: str, carrier: dict[str, str]) -> Watch | None:
        """A delivery order is about to be published on the backplane: write the
        propagation fields of what is opened here into ``carrier``; they travel with the
        order (bounded: ``protocol.carrier``) and reach ``wrap_receive`` on other nodes."""
        return None

    def wrap_receive(self, namespace: str, carrier: Mapping[str, str] | None) -> Watch | None:
        """A delivery order from another node is about to be delivered to local clients;
        ``carrier`` is what ``wrap_publish`` wrote there (``None`` when nothing)."""
        return None


class Instruments(Instrumentation):
    """Several instruments as one: each hook calls, in registration order, the members
    that override it (``wrap_*`` hooks end what they opened in reverse order).

    Built by ``combine``; the runtime holds it like any single instrument.
    """

    def __init__(self, members: Iterable[Instrumentation]) -> None:
        self.members = tuple(members)
        chosen = self._chosen
        self._on_connect = chosen("on_connect")
        self._on_refuse = chosen("on_refuse")
        self._on_close = chosen("on_close")
        self._on_frame_in = chosen("on_frame_in")
        self._on_frame_out = chosen("on_frame_out")
        self._on_drop = chosen("on_drop")
        self._on_overflow = chosen("on_overflow")
        self._on_handler = chosen("on_handler")
        self._on_broker_publish = chosen("on_broker_publish")
        self._on_broker_receive = chosen("on_broker_receive")
        self._on_broker_failure = chosen("on_broker_failure")
        self._on_open = chosen("on_open")
        self._on_end = chosen("on_end")
        self._wrap_handler = chosen("wrap_handler")
        self._wrap_publish = chosen("wrap_publish")
        self._wrap_receive = chosen("wrap_receive")
        self.wraps_handlers = bool(self._wrap_handler)

    def _chosen(self, hook: str) -> tuple[Callable[..., Any], ...]:
        """The bound ``hook`` of every member that overrides it."""
        base = getattr(Instrumentation, hook)
        return tuple(getattr(m, hook) for m in self.members if getattr(type(m), hook) is not base)

    def __repr__(self) -> str:
        return f"Instruments({', '.join(map(repr, self.members))})"

    def on_connect(self, namespace: str) -> None:
        for hook in self._on_connect:
            hook(namespace)

    def on_refuse(self, namespace: str, reason: RefuseReason) -> None:
        for hook in self._on_refuse:
            hook(namespace, reason)

    def on_close(self, namespace: str, code: int) -> None:
        for hook in self._on_close:
            hook(namespace, code)

    def on_frame_in(self, namespace: str, event: str) -> None:
        for hook in self._on_frame_in:
            hook(namespace, event)

    def on_frame_out(self, namespace: str, count: int) -> None:
        for hook in self._on_frame_out:
            hook(namespace, count)

    def on_drop(self, namespace: str, reason: DropReason, count: int) -> None:
        for hook in self._on_drop:
            hook(namespace, reason, count)

    def on_overflow(self, namespace: str) -> None:
        for hook in self._on_overflow:
            hook(namespace)

    def on_handler(self, namespace: str, event: str, seconds: float) -> None:
        for hook in self._on_handler:
            hook(namespace, event, seconds)

    def on_broker_publish(self, namespace: str) -> None:
        for hook in self._on_broker_publish:
            hook(namespace)

    def on_broker_receive(self, namespace: str) -> None:
        for hook in self._on_broker_receive:
            hook(namespace)

    def on_broker_failure(self, namespace: str) -> None:
        for hook in self._on_broker_failure:
            hook(namespace)

    def on_open(self, namespace: str, client: Client) -> None:
        for hook in self._on_open:
            hook(namespace, client)

    def on_end(self, namespace: str, client: Client, code: int) -> None:
        for hook in self._on_end:
            hook(namespace, client, code)

    def wrap_handler(
        self, namespace: str, event: str, client: Client, carrier: Mapping[str, str] | None
    ) -> Watch | None:
        return _together([hook(namespace, event, client, carrier) for hook in self._wrap_handler])

    def wrap_publish(self, namespace: str, carrier: dict[str, str]) -> Watch | None:
        return _together([hook(namespace, carrier) for hook in self._wrap_publish])

    def wrap_receive(self, namespace: str, carrier: Mapping[str, str] | None) -> Watch | None:
        return _together([hook(namespace, carrier) for hook in self._wrap_receive])


class _Watches:
    """Several members' watches, ended innermost (last opened) first."""

    __slots__ = ("_watches",)

    def __init__(self, watches: list[Watch]) -> None:
        self._watches = watches

    def end(self, outcome: Outcome, error: BaseException | None = None) -> None:
        for watch in reversed(self._watches):
            watch.end(outcome, error)


def _together(watches: list[Watch | None]) -> Watch | None:
    opened = [watch for watch in watches if watch is not None]
    if not opened:
        return None
    return opened[0] if len(opened) == 1 else _Watches(opened)


def combine(
    instruments: Instrumentation | Iterable[Instrumentation | None] | None,
) -> Instrumentation | None:
    """One object for the runtime to hold: ``None`` for none (the runtime pays nothing),
    the instrument itself for one, ``Instruments`` for several. Raises ``TypeError`` for
    anything that is not an ``Instrumentation``."""
    if instruments is None:
        return None
    if isinstance(instruments, Instrumentation):
        return instruments
    members: list[Instrumentation] = []
    for instrument in instruments:
        if instrument is None:
            continue
        if not isinstance(instrument, Instrumentation):
            raise TypeError(
                "instruments must be Instrumentation objects (e.g. PrometheusMetrics(), "
                f"OpenTelemetryTracing()), got {instrument!r}"
            )
        if isinstance(instrument, Instruments):
            members.extend(instrument.members)
        elif instrument not in members:
            members.append(instrument)
    if not members:
        return None
    return members[0] if len(members) == 1 else Instruments(members)
