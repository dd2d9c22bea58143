"""The broker contract every backplane implements.

A broker knows nothing of frames, rooms or clients: it moves opaque ``bytes`` over
named channels. The runtime encodes above it (see ``protocol.envelope``).

Lifecycle: ``start(on_message, task_group)`` once, then ``subscribe``/``unsubscribe``
/``publish`` any number of times, then ``close()``. Background work (a reader loop,
reconnects) must be started in the given task group, which the runtime owns and
cancels after ``close()``. ``on_message(channel, data)`` is called from the broker's
task for every message on a subscribed channel; it never blocks and never raises.
Whether a publisher receives its own messages is up to the broker (Redis does, the
memory broker does not); the runtime drops its own echoes by node id either way.

Failures: ``publish`` must not raise into callers because a peer is unreachable; it
logs, counts and drops, and returns ``False`` so the runtime can count the failure too
(delivery across the backplane is at-most-once).

Gaps: a broker whose subscriptions can be interrupted (a lost connection, a slot that
moved) reports each channel once it is subscribed again, through the handler given to
``on_gap``: messages published on it meanwhile may never have arrived. The runtime tells
the clients those channels served (``$gap``). A broker that never loses a subscribed
message (the memory broker) reports nothing.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING

from anyio.abc import TaskGroup

from gatewayasgi.stores.base import DEFAULT_MAX_BYTES, DEFAULT_MAX_FRAME_BYTES

if TYPE_CHECKING:
    from gatewayasgi.stores._redis_kept import RedisKeptStreams
    from gatewayasgi.stores.base import EmissionLog, SessionStore

MessageHandler = Callable[[str, bytes], None]
GapHandler = Callable[[list[str]], None]
"""Called with channels subscribed again after an interruption; never blocks or raises."""


class Broker(ABC):
    """Bytes over named channels between processes; see the module docstring."""

    @abstractmethod
    async def start(self, on_message: MessageHandler, task_group: TaskGroup) -> None:
        """Connect (or begin retrying in the background) and remember ``on_message``."""

    @abstractmethod
    async def close(self) -> None:
        """Stop delivering, drop subscriptions and release connections. Idempotent."""

    @abstractmethod
    async def publish(self, channel: str, data: bytes) -> bool | None:
        """Send ``data`` to every subscriber of ``channel`` in other processes too.

        Returns ``False`` when the message was dropped (peer unreachable, too large).
        """

    @abstractmethod
    async def subscribe(self, channel: str) -> None:
        """Start receiving messages published on ``channel``."""

    @abstractmethod
    async def unsubscribe(self, channel: str) -> None:
        """Stop receiving messages published on ``channel``."""

    def on_gap(self, handler: GapHandler) -> None:
        """Report channels that may have missed messages to ``handler`` (before
        ``start``). The default reports nothing: this broker never loses a subscribed
        message."""
        del handler  # nothing to report

    # -- session recovery (optional) ----------------------------------------------------

    def history(
        self,
        namespace: str,
        *,
        max_frames: int,
        max_age: float,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        partitions: int = 1,
    ) -> EmissionLog | None:
        """A history of ``namespace``'s frames shared by every process on this broker,
        bounded as ``Recovery`` says (entries, age, bytes, the largest frame kept).

        ``None``: this broker keeps no history; recovery then uses process memory.
        """
        return None

    def session_store(self, namespace: str) -> SessionStore | None:
        """A store of ``namespace``'s waiting sessions shared by every process on this
        broker.

        ``None``: this broker keeps no sessions; recovery then uses process memory.
        """
        return None

    def kept_streams(
        self, *, max_items: int, max_bytes: int, grace: float
    ) -> RedisKeptStreams | None:
        """Where keyed streams are kept for the other processes (re-attaching there,
        cancelling from there), each run bounded to ``max_items`` and ``max_bytes`` and
        kept ``grace`` seconds after its end.

        ``None``: this broker keeps none; each process keeps its own keyed streams.
        """
        return None
