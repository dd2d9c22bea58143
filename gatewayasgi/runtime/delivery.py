"""The delivery seam: every emit passes here, once, on its way to clients.

``Delivery.emit`` is the one place an emission goes through, in this order:

1. the ``History`` (if any) stamps it (an offset, a timestamp) and keeps it for replay;
2. the wire protocol encodes it once;
3. local recipients' outboxes get it (never waiting on any of them);
4. the backplane (if any) carries it to the other processes.

Session recovery plugs a ``History`` in at step 1; nothing else changes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from gatewayasgi._types import JSONValue
from gatewayasgi.instrumentation import Instrumentation
from gatewayasgi.protocol.base import Payload, WireProtocol
from gatewayasgi.protocol.targets import NOBODY, Targets

if TYPE_CHECKING:
    from gatewayasgi.backplane.node import Backplane


@dataclass(slots=True)
class Emission:
    """One emit on its way: what, to whom, and (once stamped) where it sits in history."""

    event: str
    data: JSONValue
    targets: Targets = NOBODY
    """Rooms and clients to deliver to; empty means every client of the gateway."""
    exclude: Targets = NOBODY
    """Rooms whose members, and clients, that are skipped."""
    offset: int | None = None
    """Position in the history, set by ``History.record``."""
    timestamp: float | None = None
    """When the history recorded it (seconds since the epoch)."""


class History(Protocol):
    """Keeps emissions for replay; called before anything is delivered."""

    def record(self, namespace: str, emission: Emission) -> None:
        """Stamp ``emission`` (``offset``, ``timestamp``) and keep it."""


LocalFanOut = Callable[[Payload, Targets, Targets], int]
"""Enqueues a frame on local recipients' outboxes; returns how many got it."""


class Delivery:
    """Stamp, encode once, fan out locally, publish: see the module docstring."""

    __slots__ = ("_backplane", "_fan_out", "_metrics", "history", "namespace", "protocol")

    def __init__(
        self,
        namespace: str,
        protocol: WireProtocol,
        fan_out: LocalFanOut,
        *,
        backplane: Backplane | None = None,
        history: History | None = None,
        metrics: Instrumentation | None = None,
    ) -> None:
        self.namespace = namespace
        self.protocol = protocol
        self.history = history
        self._fan_out = fan_out
        self._backplane = backplane
        self._metrics = metrics

    async def emit(self, emission: Emission) -> int:
        """Deliver ``emission``; returns how many local clients got it."""
        if self.history is not None:
            self.history.record(self.namespace, emission)
        frame = self.protocol.encode_emit(emission.event, emission.data)
        count = self._fan_out(frame, emission.targets, emission.exclude)
        if self._metrics is not None:
            self._metrics.on_frame_out(self.namespace, count)
        if self._backplane is not None:
            await self._backplane.publish(self.namespace, frame, emission.targets, emission.exclude)
        return count
