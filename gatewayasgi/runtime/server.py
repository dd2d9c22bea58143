"""``WebSocketServer``: one gateway's clients, rooms and emits, local and over a broker.

An emit encodes its frame once and only enqueues it on each recipient's outbox, so a
slow client never delays the others. With a broker, the same frame also goes to the
other nodes in an envelope; each node serves its own members and ignores its echoes.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from typing import Any

from gatewayasgi._types import JSONValue, Message
from gatewayasgi.brokers.base import Broker
from gatewayasgi.exceptions import WsException
from gatewayasgi.protocol import codec
from gatewayasgi.protocol.envelope import (
    KIND_ALL,
    KIND_TO,
    Envelope,
    EnvelopeError,
    channel_for,
    pack,
    unpack,
)
from gatewayasgi.rooms import Rooms
from gatewayasgi.runtime.connection import Connection

logger = logging.getLogger("gatewayasgi")

Target = Connection | str


def _key(target: Target) -> str:
    return target.id if isinstance(target, Connection) else target


class BroadcastOperator:
    """``server.to(room).except_(client).emit(event, data)``: a target set, then an emit."""

    __slots__ = ("_exclude", "_server", "_targets")

    def __init__(
        self, server: WebSocketServer, targets: tuple[str, ...], exclude: tuple[str, ...]
    ) -> None:
        self._server = server
        self._targets = targets
        self._exclude = exclude

    def to(self, *targets: Target) -> BroadcastOperator:
        """Add rooms or client ids (recipients are the union)."""
        keys = tuple(_key(target) for target in targets)
        return BroadcastOperator(self._server, self._targets + keys, self._exclude)

    in_ = to

    def except_(self, *targets: Target) -> BroadcastOperator:
        """Skip these clients (or every member of these rooms)."""
        keys = tuple(_key(target) for target in targets)
        return BroadcastOperator(self._server, self._targets, self._exclude + keys)

    async def emit(self, event: str, data: JSONValue = None) -> int:
        """Send ``{"event", "data"}`` to the targets; returns how many local clients got it."""
        frame = codec.encode(event, data)
        return await self._server.deliver(frame, self._targets, self._exclude)


class WebSocketServer:
    """Connected clients and rooms of one gateway, with emit/broadcast helpers."""

    def __init__(
        self,
        namespace: str,
        broker: Broker | None = None,
        *,
        max_rooms_per_connection: int = 1000,
        max_room_name_length: int = 256,
        max_envelope_size: int = 16 * 1024 * 1024,
    ) -> None:
        self.namespace = namespace
        self.node_id = uuid.uuid4().hex
        self.channel = channel_for(namespace)
        self.clients: dict[str, Connection] = {}
        self.rooms = Rooms()
        self._broker = broker
        self._backplane = False
        self._max_envelope = max_envelope_size
        self._max_rooms = max_rooms_per_connection
        self._max_room_name = max_room_name_length
        self.publish_failures = 0

    def __repr__(self) -> str:
        return f"<WebSocketServer {self.namespace} clients={len(self.clients)}>"

    # -- registry -------------------------------------------------------------

    def register(self, client: Connection) -> None:
        """Track an accepted client (done by the runtime before ``on_connection``)."""
        self.clients[client.id] = client

    def unregister(self, client: Connection) -> None:
        """Forget a client and release its rooms (done by the runtime on every exit)."""
        self.rooms.leave_all(client.id)
        self.clients.pop(client.id, None)

    def get_client_id(self, client: Connection) -> str:
        """The id assigned to a connected client (unique across processes)."""
        return client.id

    def get_client(self, client_id: str) -> Connection | None:
        """The local connection with this id, or ``None``."""
        return self.clients.get(client_id)

    # -- rooms ----------------------------------------------------------------

    async def join(self, client: Target, room: str) -> None:
        """Add a client (connection or id) to ``room``.

        Raises ``WsException`` (an error frame for the client) when the name is not a
        string of at most ``max_room_name_length`` characters, or the client is already
        in ``max_rooms_per_connection`` rooms.
        """
        if type(room) is not str or not room or len(room) > self._max_room_name:
            raise WsException(
                f"Room name must be a non-empty string of at most {self._max_room_name} characters"
            )
        client_id = _key(client)
        if client_id not in self.clients:
            return
        current = self.rooms.rooms_of(client_id)
        if len(current) >= self._max_rooms and room not in current:
            raise WsException(f"Too many rooms: at most {self._max_rooms} per connection")
        self.rooms.join(client_id, room)

    async def leave(self, client: Target, room: str) -> None:
        """Remove a client (connection or id) from ``room``."""
        self.rooms.leave(_key(client), room)

    def rooms_of(self, client: Target) -> set[str]:
        """The rooms a local client is in."""
        return set(self.rooms.rooms_of(_key(client)))

    # -- emitting -------------------------------------------------------------

    async def emit(self, event: str, data: JSONValue = None) -> int:
        """Send ``{"event", "data"}`` to every client of this gateway."""
        return await self.deliver(codec.encode(event, data), (), ())

    broadcast = emit

    def to(self, *targets: Target) -> BroadcastOperator:
        """Target rooms or client ids: ``await server.to(room).emit(event, data)``."""
        return BroadcastOperator(self, tuple(_key(target) for target in targets), ())

    in_ = to

    def except_(self, *targets: Target) -> BroadcastOperator:
        """Every client but these: ``await server.except_(client).emit(...)``."""
        return BroadcastOperator(self, (), tuple(_key(target) for target in targets))

    async def deliver(self, frame: str, targets: tuple[str, ...], exclude: tuple[str, ...]) -> int:
        """Serve local recipients of an encoded frame, then publish it to other nodes."""
        count = self.deliver_local(frame, targets, exclude)
        if self._backplane and self._broker is not None:
            kind = KIND_TO if targets else KIND_ALL
            envelope = Envelope(self.node_id, kind, frame, targets, exclude)
            try:
                await self._broker.publish(self.channel, pack(envelope))
            except Exception:
                self.publish_failures += 1
                logger.exception("gateway %s: publish to broker failed", self.namespace)
        return count

    def _recipients(self, targets: Iterable[str], exclude: tuple[str, ...]) -> Iterable[str]:
        members = self.rooms.members
        if not targets:
            ids: Iterable[str] = self.clients
        else:
            targets = tuple(targets)
            if len(targets) == 1 and targets[0] not in self.clients:
                ids = members(targets[0])
            else:
                chosen: set[str] = set()
                for target in targets:
                    chosen.update(members(target))
                    if target in self.clients:
                        chosen.add(target)
                ids = chosen
        if not exclude:
            return list(ids)
        skipped = set(exclude)
        for target in exclude:
            skipped.update(members(target))
        return [client_id for client_id in ids if client_id not in skipped]

    def deliver_local(
        self, frame: str, targets: tuple[str, ...] = (), exclude: tuple[str, ...] = ()
    ) -> int:
        """Enqueue ``frame`` on every local recipient's outbox; never waits."""
        message: Message = {"type": "websocket.send", "text": frame}
        size = len(frame)
        clients = self.clients
        count = 0
        for client_id in self._recipients(targets, exclude):
            client = clients.get(client_id)
            if client is not None and client.outbox.put(message, size):
                count += 1
        return count

    # -- backplane ------------------------------------------------------------

    async def attach_broker(self) -> None:
        """Subscribe to this namespace's channel (the broker is already started)."""
        if self._broker is not None:
            await self._broker.subscribe(self.channel)
            self._backplane = True

    def on_broker_message(self, data: bytes) -> None:
        """Deliver an envelope from another node to local recipients."""
        try:
            envelope = unpack(data, self._max_envelope)
        except EnvelopeError as exc:
            logger.warning("gateway %s: dropped a broker message: %s", self.namespace, exc)
            return
        if envelope.node == self.node_id:
            return
        self.deliver_local(envelope.frame, envelope.targets, envelope.exclude)

    def stats(self) -> dict[str, Any]:
        """Counts for monitoring: clients, rooms, publish failures."""
        return {
            "clients": len(self.clients),
            "rooms": self.rooms.room_count(),
            "publish_failures": self.publish_failures,
        }
