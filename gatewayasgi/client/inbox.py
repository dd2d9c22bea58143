"""The bounded buffer behind ``receive()``."""

from __future__ import annotations

import asyncio
from collections import deque

from gatewayasgi.client.frames import Message


class Inbox:
    """Server events no ``on()`` handler took, oldest first, at most ``capacity`` of them.

    When full, a new event pushes out the oldest one and ``dropped`` counts it: the reader
    never waits on a test or app that does not call ``receive()``, so call replies,
    server calls and heartbeats keep flowing whatever the inbox holds.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"receive_buffer must be >= 1, got {capacity}")
        self._events: deque[Message] = deque(maxlen=capacity)
        self._arrived = asyncio.Event()
        self.dropped = 0
        """Events pushed out unread since the client was made."""

    def __len__(self) -> int:
        return len(self._events)

    def put(self, message: Message) -> None:
        if len(self._events) == self._events.maxlen:
            self.dropped += 1
        self._events.append(message)
        self._arrived.set()

    def take(self) -> Message | None:
        """The oldest event, ``None`` when empty."""
        if not self._events:
            self._arrived.clear()  # after a wake(): the next wait() waits again
            return None
        message = self._events.popleft()
        if not self._events:
            self._arrived.clear()
        return message

    async def wait(self) -> None:
        """Until an event is put (returns at once when one is waiting)."""
        await self._arrived.wait()

    def wake(self) -> None:
        """Wake every waiter (the client closed): each rechecks why."""
        self._arrived.set()
