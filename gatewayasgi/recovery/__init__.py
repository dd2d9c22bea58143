"""Session recovery: sessions that outlive their socket, and the frames they missed.

Opt-in per gateway (``@WebSocketGateway("/chat", recovery=Recovery(window=120))``) or for
every gateway of a middleware (``GatewayMiddleware(..., recovery=Recovery())``). The wire
protocol and the guarantees are in ``docs/recovery.md``; the contracts a history or a
session store implements are in ``recovery.base``; ``recovery.memory`` keeps both in the
process, ``recovery.redis`` in Redis (a ``RedisBroker`` provides them).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gatewayasgi.exceptions import ConfigurationError
from gatewayasgi.stores.base import DEFAULT_MAX_BYTES, DEFAULT_MAX_FRAME_BYTES


@dataclass(frozen=True, slots=True)
class Recovery:
    """How long a session waits for its client, and how much history is kept for it."""

    window: float = 120.0
    """Seconds a session (id, rooms, state) waits after its socket went away."""
    max_frames: int = 10_000
    """Frames of history kept per gateway (the oldest go first); a client that missed
    more than this gets ``recovered: false`` (``"trimmed"``)."""
    max_bytes: int = DEFAULT_MAX_BYTES
    """Total frame bytes (UTF-8) of history kept per gateway, in memory or in Redis; the
    oldest frames go first while the history holds more, so a client that missed them
    gets ``recovered: false`` (``"trimmed"``)."""
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    """A frame larger than this (UTF-8 bytes) is delivered live but kept out of the
    history: a marker of a few bytes keeps its place, and a client it was addressed to
    that missed it gets ``recovered: false`` (``"trimmed"``); other clients recover."""
    max_sessions: int = 10_000
    """Sessions one process keeps waiting per gateway; past it, the oldest ends early
    (its ``on_disconnect`` runs): memory has a ceiling whatever the number of clients."""
    max_session_bytes: int = 256 * 1024
    """What one waiting session may hold (its rooms' names and its ``state``, as JSON,
    plus a fixed cost for the session itself). A session over it is not kept: it ends
    when its socket goes (``on_disconnect`` runs then), and a resume gets ``"expired"``."""
    max_sessions_per_address: int = 1_000
    """Sessions waiting per client address (``scope["client"]``; behind a proxy, use the
    server's proxy-headers option so that it is the real client's). One address past it
    ends its own oldest waiting session, never another address's."""
    client_share: float = 0.25
    """Share of the history (``max_frames``, and bytes) that emits made while one
    client's handlers run may fill per ``window``: a token bucket holding that share,
    refilled over ``window``. Past it, the emit raises ``WsException`` (the client gets
    an error frame): one client cannot trim every other client's history."""
    partitions: int = 1
    """Redis Streams a shared history (``RedisBroker``) is split into, at most 32: on a
    Redis Cluster they spread over the masters. A frame to one room (one client) alone
    goes to that room's (client's) partition, everything else to partition 0; a
    session resumes each partition it follows (``docs/deployment/redis-cluster.md``
    says what order is kept). Every worker and ``Emitter`` of a gateway must use the
    same number. Socket.IO clients keep one offset: a middleware with ``socketio=``
    needs 1. A history in process memory is always one."""
    identity: Callable[[Any], object] | None = None
    """Who a session belongs to: called with the connection after the handshake guards
    ran; ``None`` (the default) reads ``client.state.identity`` (a guard sets it).
    A resume whose handshake yields another identity than the session's starts a new
    session (``reason: "invalid"``)."""

    def __post_init__(self) -> None:
        if not (isinstance(self.window, (int, float)) and math.isfinite(self.window)):
            raise ConfigurationError(f"Recovery window must be a number, got {self.window!r}")
        if self.window <= 0:
            raise ConfigurationError(f"Recovery window must be positive, got {self.window!r}")
        for name in (
            "max_frames",
            "max_bytes",
            "max_frame_bytes",
            "max_sessions",
            "max_session_bytes",
            "max_sessions_per_address",
        ):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ConfigurationError(f"Recovery {name} must be an int >= 1, got {value!r}")
        if type(self.partitions) is not int or not 1 <= self.partitions <= 32:
            raise ConfigurationError(
                f"Recovery partitions must be an int from 1 to 32, got {self.partitions!r}"
            )
        share = self.client_share
        if not (isinstance(share, (int, float)) and 0 < share <= 1):
            raise ConfigurationError(f"Recovery client_share must be in (0, 1], got {share!r}")
        if self.identity is not None and not callable(self.identity):
            raise ConfigurationError(
                f"Recovery identity must be a callable or None, got {self.identity!r}"
            )


__all__ = ["Recovery"]
