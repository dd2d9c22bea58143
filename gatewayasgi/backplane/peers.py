"""Which other nodes serve a namespace: heard from within ``LIVENESS_TIMEOUT`` (pure).

Every node publishes a heartbeat per namespace every ``HEARTBEAT_INTERVAL`` seconds and
a goodbye when it shuts down. A node that stops (``SIGKILL``, a lost link to Redis) is
forgotten once ``LIVENESS_TIMEOUT`` seconds pass without a heartbeat, so a cluster
request waits for its answer at most that long after it died.
"""

from __future__ import annotations

HEARTBEAT_INTERVAL = 1.0
"""Seconds between a node's heartbeats."""
LIVENESS_TIMEOUT = 3.0
"""Seconds without a heartbeat after which a node is no longer waited for."""
MAX_PEERS = 1024
"""Nodes remembered per namespace; heartbeats from more are ignored."""


class Peers:
    """Last heartbeat time of every other node, per namespace (times are monotonic)."""

    __slots__ = ("_seen", "timeout")

    def __init__(self, timeout: float = LIVENESS_TIMEOUT) -> None:
        self.timeout = timeout
        self._seen: dict[str, dict[str, float]] = {}

    def heard(self, namespace: str, node: str, now: float) -> bool:
        """Record a heartbeat; True when ``node`` was not known (or had expired)."""
        seen = self._seen.setdefault(namespace, {})
        last = seen.get(node)
        if last is None and len(seen) >= MAX_PEERS:
            self.prune(now)
            if len(seen) >= MAX_PEERS:
                return False
        seen[node] = now
        return last is None or now - last > self.timeout

    def gone(self, namespace: str, node: str) -> None:
        """Forget ``node`` at once (it said goodbye)."""
        self._seen.get(namespace, {}).pop(node, None)

    def live(self, namespace: str, now: float) -> set[str]:
        """The nodes heard from within ``timeout`` seconds."""
        limit = now - self.timeout
        return {node for node, last in self._seen.get(namespace, {}).items() if last >= limit}

    def prune(self, now: float) -> None:
        """Forget nodes silent for longer than ``timeout``."""
        limit = now - self.timeout
        for seen in self._seen.values():
            for node in [node for node, last in seen.items() if last < limit]:
                del seen[node]
