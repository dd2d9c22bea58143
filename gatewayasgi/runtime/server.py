"""``WebSocketServer``: one gateway's clients, rooms and emits, local and over a broker.

An emit goes through the gateway's ``Delivery`` (stamp, encode once, fan out, publish).
Fan-out only enqueues on each recipient's outbox, so a slow client never delays the
others. Room names and client ids are separate spaces (``protocol.targets``): ``to(x)``
addresses the client ``x`` only when ``x`` has the reserved shape of a client id, and
``join`` refuses such names, so no room can ever receive another client's messages.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from gatewayasgi._types import JSONValue, Message
from gatewayasgi.exceptions import WsException
from gatewayasgi.instrumentation import Instrumentation
from gatewayasgi.protocol.base import Payload, WireProtocol
from gatewayasgi.protocol.codec import GAP_BACKPLANE, GAP_EVENT
from gatewayasgi.protocol.targets import NOBODY, Targets, is_client_id, merge
from gatewayasgi.runtime.connection import Connection
from gatewayasgi.runtime.delivery import Delivery, Emission
from gatewayasgi.runtime.keyed_streams import StreamHub
from gatewayasgi.runtime.operations import (
    DEFAULT_REQUEST_TIMEOUT,
    CallResults,
    ClusterOperations,
    Presence,
    check_call,
    check_close,
)
from gatewayasgi.runtime.outbox import frame_cost
from gatewayasgi.runtime.room_streams import (
    RoomStream,
    check_stream_id,
    new_stream_id,
    publish_stream,
)
from gatewayasgi.runtime.rooms import Rooms
from gatewayasgi.runtime.session_streams import SessionStreams

if TYPE_CHECKING:
    from gatewayasgi.backplane.node import Backplane

Target = Connection | str
"""A connection, a client id, or a room name."""


def _names(targets: tuple[Target, ...]) -> tuple[str, ...]:
    return tuple(target.id if isinstance(target, Connection) else target for target in targets)


class BroadcastOperator:
    """``server.to(room).except_(client).emit(event, data)``: a target set, then an emit."""

    __slots__ = ("_exclude", "_server", "_targets")

    def __init__(self, server: WebSocketServer, targets: Targets, exclude: Targets) -> None:
        self._server = server
        self._targets = targets
        self._exclude = exclude

    def to(self, *targets: Target) -> BroadcastOperator:
        """Add rooms or clients (connections or ids); recipients are the union."""
        return BroadcastOperator(self._server, merge(self._targets, _names(targets)), self._exclude)

    in_ = to

    def except_(self, *targets: Target) -> BroadcastOperator:
        """Skip these clients (connections or ids), or every member of these rooms."""
        return BroadcastOperator(self._server, self._targets, merge(self._exclude, _names(targets)))

    async def emit(self, event: str, data: JSONValue = None) -> int:
        """Send ``{"event", "data"}`` to the targets; returns how many clients of this
        process it was handed to now.

        Clients on other workers are not counted (the broker carries it to them), and on a
        gateway whose history is in Redis the count is 0: there every worker's reader of
        the history delivers it, this one too, right after. Either way a reply or stream
        item the calling handler sends later reaches its client after this frame.
        """
        return await self._server.delivery.emit(Emission(event, data, self._targets, self._exclude))

    async def stream(self, event: str, source: Any, *, stream_id: str | None = None) -> RoomStream:
        """Publish ``source``'s items to the targets as one stream; returns once it ended.

        ``source`` is an async iterable (an async generator) or an iterable (a ``def``
        generator's items are each taken in the worker thread pool); a ``StreamEnd(value)``
        it yields ends the stream with ``value``. Each item goes out as an emit does
        (history, offsets, the broker), as ``{"event", "data", "stream", "seq"}``, then one
        end ``{"event", "data", "stream", "end": true}``. ``stream_id`` is generated when
        omitted. A source that raises ends the stream with an end frame carrying an
        ``error`` member, and this returns normally (``RoomStream.error``); a cancelled
        caller publishes the end marked ``cancelled``. See ``runtime.room_streams``.
        """
        chosen = new_stream_id() if stream_id is None else check_stream_id(stream_id)
        return await publish_stream(
            self._server.delivery, event, source, self._targets, self._exclude, chosen
        )

    # -- cluster-wide operations (runtime.operations) ---------------------------------

    async def fetch_ids(self, *, timeout: float = DEFAULT_REQUEST_TIMEOUT) -> list[str]:
        """Ids of the targeted clients on every node, sorted (socket.io's ``fetchSockets``).

        Waits up to ``timeout`` seconds for the other live nodes; the clients of a node
        that does not answer in time are left out (``server.presence`` says how many).
        """
        ids, _missing = await self._server.cluster.fetch_ids(self._targets, self._exclude, timeout)
        return ids

    async def join(self, room: str) -> None:
        """Make every targeted client, on every node, join ``room`` (``socketsJoin``)."""
        room = self._server._check_room(room)
        await self._server.cluster.join(self._targets, self._exclude, room)

    async def leave(self, room: str) -> None:
        """Make every targeted client, on every node, leave ``room`` (``socketsLeave``)."""
        room = self._server._check_room(room)
        await self._server.cluster.leave(self._targets, self._exclude, room)

    async def disconnect(self, code: int = 1000, reason: str | None = None) -> None:
        """Close every targeted client, on every node, with ``code`` (``disconnectSockets``).

        ``code`` is 1000 or an application code (3000-4999); ``reason`` at most 123
        characters. Each client gets what was queued for it, then the close frame.
        """
        check_close(code, reason)
        await self._server.cluster.disconnect(self._targets, self._exclude, code, reason)

    async def call(
        self, event: str, data: JSONValue = None, *, timeout: float = DEFAULT_REQUEST_TIMEOUT
    ) -> CallResults:
        """Call every targeted client on every node; each one's outcome, never raises for them.

        Every client gets ``timeout`` seconds to answer (``client.call``); other nodes get
        ``REPLY_GRACE`` seconds more to report. Returns ``CallResults``: ``answers`` and
        ``errors`` by client id, ``timed_out`` (no answer, or closed first) and
        ``missing_nodes`` (live nodes that did not report).
        """
        check_call(event, timeout)
        return await self._server.cluster.call(self._targets, self._exclude, event, data, timeout)


class WebSocketServer:
    """Connected clients and rooms of one gateway, with emit/broadcast helpers."""

    def __init__(
        self,
        namespace: str,
        protocol: WireProtocol,
        *,
        backplane: Backplane | None = None,
        metrics: Instrumentation | None = None,
        max_rooms_per_connection: int = 1000,
        max_room_name_length: int = 256,
    ) -> None:
        self.namespace = namespace
        self.clients: dict[str, Connection] = {}
        self.rooms = Rooms()
        self.delivery = Delivery(
            namespace, protocol, self.deliver_local, backplane=backplane, metrics=metrics
        )
        """Where every emit goes (history, local fan-out, backplane)."""
        self.on_rooms_changed: Callable[[Connection, str, bool], Awaitable[None]] | None = None
        """Told after a local client joined or left a room (session recovery saves them)."""
        self._max_rooms = max_rooms_per_connection
        self._max_room_name = max_room_name_length
        self.session_streams = SessionStreams(self.delivery, self.clients)
        """Streams of sessions that outlive their socket (``runtime.session_streams``)."""
        self.streams = StreamHub()
        """Keyed streams of this gateway in this process (``runtime.streams``)."""
        self._foreign: set[Connection] = set()
        """Clients that speak another protocol than the canonical one (Socket.IO)."""
        self.partition_mask = 0
        """The bits of a history offset that name its partition (``Recovery.partitions``;
        0 while the history is one stream)."""
        self.cluster = ClusterOperations(self, None if backplane is None else backplane.cluster)
        """Presence, fetch, join/leave, disconnect and calls on every node (``operations``)."""

    def __repr__(self) -> str:
        return f"<WebSocketServer {self.namespace} clients={len(self.clients)}>"

    # -- registry -------------------------------------------------------------

    def register(self, client: Connection) -> None:
        """Track an accepted client (done by the runtime before ``on_connection``).

        A client that resumed its session may still have its old connection registered
        (its end not noticed yet): the newer one takes its place.
        """
        watcher = self.rooms.watcher
        if watcher is not None and client.id not in self.clients:
            watcher.attached(client.id)
        self.clients[client.id] = client
        if client.protocol is not self.delivery.protocol:
            self._foreign.add(client)

    def unregister(self, client: Connection) -> None:
        """Forget a client and release its rooms (done by the runtime on every exit)."""
        client.end_calls()  # server -> client calls in flight fail at once
        self._foreign.discard(client)
        if self.clients.get(client.id) is not client:
            return  # gone already, or its session lives on in a newer connection
        self.rooms.leave_all(client.id)
        del self.clients[client.id]
        if self.rooms.watcher is not None:
            self.rooms.watcher.detached(client.id)

    def cancel_session_stream(self, client_id: str, frame_id: str | int) -> bool:
        """End the session stream answering ``frame_id`` of ``client_id`` if it runs here
        (another node's order: the session resumed there)."""
        return self.session_streams.cancel(client_id, frame_id)

    def get_client_id(self, client: Connection) -> str:
        """The id assigned to a connected client (unique across processes)."""
        return client.id

    def get_client(self, client_id: str) -> Connection | None:
        """The local connection with this id, or ``None``."""
        return self.clients.get(client_id)

    # -- rooms ----------------------------------------------------------------

    def _check_room(self, room: object) -> str:
        if type(room) is not str or not room or len(room) > self._max_room_name:
            raise WsException(
                f"Room name must be a non-empty string of at most {self._max_room_name} characters"
            )
        if is_client_id(room):
            raise WsException("Room name is reserved: it has the shape of a client id")
        return room

    async def join(self, client: Target, room: str) -> None:
        """Add a client (connection or id) to ``room``.

        Raises ``WsException`` (an error frame for the client) when the name is not a
        string of at most ``max_room_name_length`` characters, has the reserved shape of
        a client id, or the client is already in ``max_rooms_per_connection`` rooms.
        """
        room = self._check_room(room)
        client_id = client.id if isinstance(client, Connection) else client
        if client_id not in self.clients:
            return
        current = self.rooms.rooms_of(client_id)
        if len(current) >= self._max_rooms and room not in current:
            raise WsException(f"Too many rooms: at most {self._max_rooms} per connection")
        if room not in current:
            self.rooms.join(client_id, room)
            if self.on_rooms_changed is not None:
                await self.on_rooms_changed(self.clients[client_id], room, True)
        if self.rooms.watcher is not None:
            # Interest routing: return once the room's channel subscription is
            # acknowledged, so a frame emitted after this, on any node, reaches the client.
            await self.rooms.watcher.ready(room)

    async def leave(self, client: Target, room: str) -> None:
        """Remove a client (connection or id) from ``room``; same name rules as ``join``."""
        room = self._check_room(room)
        client_id = client.id if isinstance(client, Connection) else client
        if room in self.rooms.rooms_of(client_id):
            self.rooms.leave(client_id, room)
            connection = self.clients.get(client_id)
            if self.on_rooms_changed is not None and connection is not None:
                await self.on_rooms_changed(connection, room, False)

    def rooms_of(self, client: Target) -> set[str]:
        """The rooms a local client is in."""
        return set(self.rooms.rooms_of(client.id if isinstance(client, Connection) else client))

    # -- emitting -------------------------------------------------------------

    async def emit(self, event: str, data: JSONValue = None) -> int:
        """Send ``{"event", "data"}`` to every client of this gateway; returns what
        ``BroadcastOperator.emit`` returns (clients of this process handed it now)."""
        return await self.delivery.emit(Emission(event, data))

    broadcast = emit

    def to(self, *targets: Target) -> BroadcastOperator:
        """Target rooms or clients: ``await server.to(room).emit(event, data)``."""
        return BroadcastOperator(self, merge(NOBODY, _names(targets)), NOBODY)

    in_ = to

    def to_room(self, *rooms: str) -> BroadcastOperator:
        """Target rooms only: the way to address a room whose name a client chose.

        ``to(name)`` addresses a client when ``name`` has the client-id shape; this
        refuses such names instead (``WsException``), so a client that picks the "room"
        can never direct a message at another client.
        """
        checked = tuple(self._check_room(room) for room in rooms)
        return BroadcastOperator(self, Targets(tuple(dict.fromkeys(checked))), NOBODY)

    def except_(self, *targets: Target) -> BroadcastOperator:
        """Every client but these: ``await server.except_(client).emit(...)``."""
        return BroadcastOperator(self, NOBODY, merge(NOBODY, _names(targets)))

    def _recipients(self, targets: Targets, exclude: Targets) -> Iterable[str]:
        members = self.rooms.members
        clients = self.clients
        ids: Iterable[str]
        if not targets:
            ids = clients
        elif len(targets.rooms) == 1 and not targets.clients:
            ids = members(targets.rooms[0])
        else:
            chosen: set[str] = set()
            for room in targets.rooms:
                chosen.update(members(room))
            chosen.update(client_id for client_id in targets.clients if client_id in clients)
            ids = chosen
        if not exclude:
            return list(ids)
        skipped = set(exclude.clients)
        for room in exclude.rooms:
            skipped.update(members(room))
        return [client_id for client_id in ids if client_id not in skipped]

    def tell_gap(self, targets: Targets) -> int:
        """Tell the local clients in ``targets`` (empty: every one) that frames for them
        may have been lost between workers (``$gap``); never waits. Returns how many."""
        frame = self.delivery.protocol.encode_emit(GAP_EVENT, GAP_BACKPLANE)
        return self.deliver_local(frame, targets)

    def deliver_local(
        self,
        frame: Payload,
        targets: Targets = NOBODY,
        exclude: Targets = NOBODY,
        offset: int | None = None,
        emission: Emission | None = None,
    ) -> int:
        """Enqueue ``frame`` on every local recipient's outbox; never waits.

        ``frame`` is in the canonical (JSON) protocol; clients that speak another one
        (Socket.IO) get it encoded once per protocol whatever their number: from the
        ``emission`` when it is at hand (local emits), else transcoded from ``frame``.
        A frame from the history (``offset``) reaches each session once: a client that
        already has it (replayed) skips it, one still replaying holds it for later.
        """
        message = WireProtocol.message(frame)
        size = frame_cost(frame)
        clients = self.clients
        count = 0
        if offset is None and not self._foreign:
            # The common fan-out (one protocol, no history): nothing per recipient but
            # the enqueue.
            for client_id in self._recipients(targets, exclude):
                client = clients.get(client_id)
                if client is not None and client.outbox.put_nowait(message, size):
                    count += 1
            return count
        formats = None
        if self._foreign:
            formats = {self.delivery.protocol: (message, size)}
        part = 0 if offset is None else offset & self.partition_mask
        for client_id in self._recipients(targets, exclude):
            client = clients.get(client_id)
            if client is None:
                continue
            if formats is not None:
                message, size = _format(formats, client.protocol, frame, emission)
            if offset is None:
                if client.outbox.put_nowait(message, size):
                    count += 1
                continue
            positions = client.positions
            if offset <= positions.get(part, 0):
                continue
            held = client.resume_buffer
            if held is not None:
                if len(held) >= client.outbox.max_messages:
                    client.gave_up("slow_consumer")  # the replay cannot keep up
                    continue
                held.append((offset, message, size))
            elif client.outbox.put_nowait(message, size):
                positions[part] = offset
                count += 1
        return count

    def stats(self) -> dict[str, Any]:
        """Counts for monitoring: clients and rooms."""
        return {"clients": len(self.clients), "rooms": self.rooms.room_count()}

    # -- cluster-wide operations (runtime.operations) ---------------------------------

    async def presence(self, room: str, *, timeout: float = DEFAULT_REQUEST_TIMEOUT) -> Presence:
        """The clients in ``room`` on every node: ``ids`` (sorted) and ``count``.

        Asks every live node and waits up to ``timeout`` seconds. A node that died is no
        longer waited for once ``LIVENESS_TIMEOUT`` (3 s) passed without its heartbeat;
        its members are never in an answer, since only live nodes answer.
        ``missing_nodes`` counts live nodes that did not answer in time.
        """
        room = self._check_room(room)
        return await self.cluster.presence(room, timeout)


def _format(
    formats: dict[WireProtocol, tuple[Message, int]],
    protocol: WireProtocol,
    frame: Payload,
    emission: Emission | None,
) -> tuple[Message, int]:
    """``frame`` (canonical) as ``protocol`` sends it, encoded once per fan-out."""
    found = formats.get(protocol)
    if found is None:
        if emission is None:
            payload = protocol.transcode(frame)
        else:
            members = emission.members
            if members is None:
                payload = protocol.encode_emit(emission.event, emission.data)
            else:
                payload = protocol.encode_emit_members(emission.event, emission.data, members)
            if emission.stamp is not None:
                payload = protocol.with_offset(payload, emission.stamp)
        found = formats[protocol] = (protocol.message(payload), frame_cost(payload))
    return found
