"""Room membership: client ids <-> rooms, O(1) both ways, plain data (no I/O)."""

from __future__ import annotations

from collections.abc import Set
from typing import Protocol

_EMPTY: frozenset[str] = frozenset()


class RoomWatcher(Protocol):
    """Told when a room gets its first local member or loses its last one, and when a
    client connects or leaves (the backplane subscribes their channels:
    ``backplane.routing.Interest``)."""

    def opened(self, room: str) -> None: ...

    def closed(self, room: str) -> None: ...

    async def ready(self, room: str) -> None: ...

    def attached(self, client_id: str) -> None: ...

    async def attached_ready(self, client_id: str) -> None: ...

    def detached(self, client_id: str) -> None: ...


class Rooms:
    """Which clients are in which rooms. Empty rooms are dropped at once."""

    __slots__ = ("_members", "_memberships", "watcher")

    def __init__(self) -> None:
        self._members: dict[str, set[str]] = {}
        self._memberships: dict[str, set[str]] = {}
        self.watcher: RoomWatcher | None = None
        """Told when rooms open and close here (interest routing)."""

    def join(self, client_id: str, room: str) -> None:
        """Add ``client_id`` to ``room`` (no-op when already a member)."""
        members = self._members.get(room)
        if members is None:
            members = self._members[room] = set()
            if self.watcher is not None:
                self.watcher.opened(room)
        members.add(client_id)
        self._memberships.setdefault(client_id, set()).add(room)

    def leave(self, client_id: str, room: str) -> None:
        """Remove ``client_id`` from ``room`` (no-op when not a member)."""
        members = self._members.get(room)
        if members is not None:
            members.discard(client_id)
            if not members:
                del self._members[room]
                if self.watcher is not None:
                    self.watcher.closed(room)
        rooms = self._memberships.get(client_id)
        if rooms is not None:
            rooms.discard(room)
            if not rooms:
                del self._memberships[client_id]

    def leave_all(self, client_id: str) -> set[str]:
        """Remove ``client_id`` from every room; returns the rooms it was in."""
        rooms = self._memberships.pop(client_id, set())
        for room in rooms:
            members = self._members.get(room)
            if members is not None:
                members.discard(client_id)
                if not members:
                    del self._members[room]
                    if self.watcher is not None:
                        self.watcher.closed(room)
        return rooms

    def members(self, room: str) -> Set[str]:
        """The client ids in ``room`` (a live view: copy before awaiting)."""
        return self._members.get(room, _EMPTY)

    def rooms_of(self, client_id: str) -> Set[str]:
        """The rooms ``client_id`` is in (a live view)."""
        return self._memberships.get(client_id, _EMPTY)

    def room_count(self) -> int:
        """How many non-empty rooms exist."""
        return len(self._members)

    def __contains__(self, room: object) -> bool:
        return room in self._members
