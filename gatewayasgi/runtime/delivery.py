"""The delivery seam: every emit passes here, once, on its way to clients.

``Delivery.emit`` is the one place an emission goes through, in this order:

1. the wire protocol encodes it once (once per protocol its recipients speak);
2. the gateway's history (``recovery.base.EmissionLog``, on gateways with recovery)
   keeps it and gives it an offset, which the frame then carries;
3. local recipients' outboxes get it (never waiting on any of them);
4. the backplane (if any) carries it to the other processes.

A history that is shared between processes (Redis Streams) is also the transport: it
returns no offset, and its reader delivers every entry to local clients in the log's
order (``gatewayasgi.recovery.keeper``), so steps 3 and 4 happen there.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from gatewayasgi._types import JSONValue
from gatewayasgi.instrumentation import Instrumentation
from gatewayasgi.protocol.base import Payload, WireProtocol
from gatewayasgi.protocol.targets import NOBODY, Targets

if TYPE_CHECKING:
    from gatewayasgi.backplane.node import Backplane
    from gatewayasgi.stores.base import EmissionLog


@dataclass(slots=True)
class Emission:
    """One emit on its way: what, to whom, and (once kept) where it sits in history."""

    event: str
    data: JSONValue
    targets: Targets = NOBODY
    """Rooms and clients to deliver to; empty means every client of the gateway."""
    exclude: Targets = NOBODY
    """Rooms whose members, and clients, that are skipped."""
    offset: int | None = None
    """Position in the gateway's history, once a history kept it."""
    stamp: str | None = None
    """That position as frames carry it."""
    members: dict[str, JSONValue] | None = None
    """More members of the frame, after ``data`` (a room stream's ``stream``, ``seq``,
    ``end``: ``runtime.room_streams``); kept in the history and carried by the backplane
    with the frame. ``None`` for an ordinary emit."""


class Fence:
    """What a handler emitted through a history that carries (Redis): its reply waits
    until this process's reader has delivered those frames, so it never overtakes them.

    One per connection on such gateways (``FENCE``, set where the connection's frames
    are handled); ``Delivery.emit`` notes each append in it.
    """

    __slots__ = ("history", "mark")

    def __init__(self) -> None:
        self.history: EmissionLog | None = None
        self.mark = 0

    async def wait(self) -> None:
        """Wait until what was noted is delivered here (bounded by the history)."""
        history, mark = self.history, self.mark
        if history is not None and mark:
            self.mark = 0
            await history.reached(mark)


FENCE: ContextVar[Fence | None] = ContextVar("gatewayasgi_fence", default=None)
"""The fence of the connection whose frame is being handled (``None``: no fence)."""


class LocalFanOut(Protocol):
    """Enqueues a frame on local recipients' outboxes; returns how many got it."""

    def __call__(
        self,
        frame: Payload,
        targets: Targets,
        exclude: Targets,
        offset: int | None = None,
        emission: Emission | None = None,
        /,
    ) -> int: ...


class Delivery:
    """Encode once, keep, fan out locally, publish: see the module docstring."""

    __slots__ = ("_backplane", "_fan_out", "_metrics", "history", "namespace", "protocol", "quota")

    def __init__(
        self,
        namespace: str,
        protocol: WireProtocol,
        fan_out: LocalFanOut,
        *,
        backplane: Backplane | None = None,
        history: EmissionLog | None = None,
        metrics: Instrumentation | None = None,
    ) -> None:
        self.namespace = namespace
        self.protocol = protocol
        self.history = history
        self.quota: Callable[[int], None] | None = None
        """Charged with each frame's size before the history keeps it (the emitting
        client's share: ``gatewayasgi.recovery``); raises to refuse the emit."""
        self._fan_out = fan_out
        self._backplane = backplane
        self._metrics = metrics

    async def emit(self, emission: Emission) -> int:
        """Deliver ``emission``; returns how many local clients got it now (0 when a
        shared history carries it: its reader delivers)."""
        members = emission.members
        if members is None:
            frame = self.protocol.encode_emit(emission.event, emission.data)
        else:
            frame = self.protocol.encode_emit_members(emission.event, emission.data, members)
        offset = None
        history = self.history
        if history is not None:
            text = frame if isinstance(frame, str) else frame.decode()
            if self.quota is not None:
                self.quota(len(text))
            offset = await history.append(text, emission.targets, emission.exclude)
            if offset is None:
                # The history's reader delivers it; a reply to the client whose handler
                # made this emit waits for that (``Fence``).
                fence = FENCE.get()
                if fence is not None:
                    fence.history = history
                    fence.mark = history.mark()
                return 0
            emission.offset = offset
            emission.stamp = history.format_offset(offset)
            stamped = self.protocol.with_offset(frame, emission.stamp)
            count = self._fan_out(stamped, emission.targets, emission.exclude, offset, emission)
        else:
            # ``emission`` lets other protocols encode the data itself (Socket.IO spreads
            # ``Arguments`` and sends ``bytes`` as attachments), not from the JSON frame.
            count = self._fan_out(frame, emission.targets, emission.exclude, None, emission)
        if self._metrics is not None:
            self._metrics.on_frame_out(self.namespace, count)
        if self._backplane is not None:
            # Other processes keep their own history: they get the frame without this
            # process's offset, and stamp it with theirs.
            await self._backplane.publish(self.namespace, frame, emission.targets, emission.exclude)
        return count
