"""Session recovery: sessions that outlive their socket, and the frames they missed.

Opt-in per gateway (``@WebSocketGateway("/chat", recovery=Recovery(window=120))``) or for
every gateway of a middleware (``GatewayMiddleware(..., recovery=Recovery())``). The wire
protocol and the guarantees are in ``docs/recovery.md``; the contracts a history or a
session store implements are in ``recovery.base``; ``recovery.memory`` keeps both in the
process, ``recovery.redis`` in Redis (a ``RedisBroker`` provides them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gatewayasgi.exceptions import ConfigurationError


@dataclass(frozen=True, slots=True)
class Recovery:
    """How long a session waits for its client, and how much history is kept for it."""

    window: float = 120.0
    """Seconds a session (id, rooms, state) waits after its socket went away."""
    max_frames: int = 10_000
    """Frames of history kept per gateway (the oldest go first); a client that missed
    more than this gets ``recovered: false`` (``"trimmed"``)."""
    max_sessions: int = 10_000
    """Sessions one process keeps waiting per gateway; past it, the oldest ends early
    (its ``on_disconnect`` runs): memory has a ceiling whatever the number of clients."""

    def __post_init__(self) -> None:
        if not (isinstance(self.window, (int, float)) and math.isfinite(self.window)):
            raise ConfigurationError(f"Recovery window must be a number, got {self.window!r}")
        if self.window <= 0:
            raise ConfigurationError(f"Recovery window must be positive, got {self.window!r}")
        for name in ("max_frames", "max_sessions"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ConfigurationError(f"Recovery {name} must be an int >= 1, got {value!r}")


__all__ = ["Recovery"]
