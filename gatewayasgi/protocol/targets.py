"""Client ids and room names: two separate spaces, told apart by shape alone.

``server.to("x")`` takes a room name or a client id, as in the seed guide. If the two
could collide, a client that joins a room named after another client's id would receive
that client's private messages. So a client id has a reserved shape (``c_`` + 32
lowercase hex digits) that no room name may have: ``join`` refuses it. The shape alone
decides what a string addresses, the same way on every node and in the ``Emitter``,
with no lookup of who is connected where.
"""

from __future__ import annotations

import re
import uuid
from typing import NamedTuple

CLIENT_ID_PREFIX = "c_"
_CLIENT_ID = re.compile(r"c_[0-9a-f]{32}\Z")
_CLIENT_ID_LENGTH = 34


def new_client_id() -> str:
    """A fresh client id: ``c_`` + 32 random hex digits (unique across processes)."""
    return CLIENT_ID_PREFIX + uuid.uuid4().hex


def is_client_id(name: str) -> bool:
    """True when ``name`` has the reserved shape of a client id."""
    return len(name) == _CLIENT_ID_LENGTH and _CLIENT_ID.match(name) is not None


class Targets(NamedTuple):
    """Recipients of an emit, by kind: rooms (their members) and single clients."""

    rooms: tuple[str, ...] = ()
    clients: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.rooms or self.clients)


NOBODY = Targets()


def split(names: tuple[str, ...]) -> Targets:
    """Sort room names and client ids apart by their shape (duplicates dropped)."""
    rooms: dict[str, None] = {}
    clients: dict[str, None] = {}
    for name in names:
        (clients if is_client_id(name) else rooms)[name] = None
    return Targets(tuple(rooms), tuple(clients))


def merge(current: Targets, names: tuple[str, ...]) -> Targets:
    """``current`` plus ``names`` (sorted by shape), keeping the first order seen."""
    extra = split(names)
    return Targets(
        tuple(dict.fromkeys(current.rooms + extra.rooms)),
        tuple(dict.fromkeys(current.clients + extra.clients)),
    )
