"""In-process broker: the default, and the reference for the broker contract."""

from __future__ import annotations

from anyio.abc import TaskGroup

from gatewayasgi.brokers.base import Broker, MessageHandler


class MemoryHub:
    """A process-local bus shared by ``MemoryBroker`` instances (one per "node")."""

    def __init__(self) -> None:
        self.subscribers: dict[str, list[MemoryBroker]] = {}


class MemoryBroker(Broker):
    """Delivers to every ``MemoryBroker`` on the same hub subscribed to the channel.

    A lone broker (the default for a single process) has no one to deliver to, so
    publishing costs a dict lookup. Pass one ``MemoryHub`` to several brokers to wire
    several gateway servers in one process together (useful in tests).
    """

    def __init__(self, hub: MemoryHub | None = None) -> None:
        self._hub = hub if hub is not None else MemoryHub()
        self._on_message: MessageHandler | None = None
        self._channels: set[str] = set()

    async def start(self, on_message: MessageHandler, task_group: TaskGroup) -> None:
        self._on_message = on_message

    async def close(self) -> None:
        for channel in list(self._channels):
            await self.unsubscribe(channel)
        self._on_message = None

    async def publish(self, channel: str, data: bytes) -> bool:
        for broker in self._hub.subscribers.get(channel, ()):
            # The publisher is skipped: it has already served its own clients, and
            # skipping here keeps a lone broker's publish to a dict lookup.
            if broker is not self and broker._on_message is not None:
                broker._on_message(channel, data)
        return True

    async def subscribe(self, channel: str) -> None:
        if channel not in self._channels:
            self._channels.add(channel)
            self._hub.subscribers.setdefault(channel, []).append(self)

    async def unsubscribe(self, channel: str) -> None:
        if channel in self._channels:
            self._channels.discard(channel)
            members = self._hub.subscribers.get(channel, [])
            if self in members:
                members.remove(self)
            if not members:
                self._hub.subscribers.pop(channel, None)
