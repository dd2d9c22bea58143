"""Emit to a gateway's clients from outside the websocket server.

A worker, a cron job or an HTTP handler in another process publishes delivery orders
on the same backplane the gateway servers listen to; every node delivers to its own
clients. Nothing here holds a websocket::

    async with RedisEmitter("redis://127.0.0.1:6379/0", namespace="/chat") as emitter:
        await emitter.to("room-1").emit("message", {"text": "hi"})
        await emitter.except_(client_id).emit("notice", "maintenance at noon")
        await emitter.to("room-1").join("room-2")        # every member, on every node
        await emitter.to(client_id).disconnect(4000, "banned")

A gateway with session recovery on Redis keeps its frames in a Redis Stream, which is
also how they travel: give the emitter the gateway's ``Recovery`` (``RedisEmitter(url,
namespace="/chat", recovery=Recovery(window=120))``) so its emits go into that history,
carry offsets and are replayed to sessions that missed them. (Without it the workers
still deliver them, without offsets, and log a warning once.)

Orders (``join``, ``leave``, ``disconnect``) are fire-and-forget: an emitter is no node,
so it hears no answers; ``fetch_ids`` and calls belong to the servers.

Delivery is at-most-once, like every backplane message: a failed publish is logged and
counted (``emitter.broker.stats`` for Redis), never raised.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from gatewayasgi._types import JSONValue
from gatewayasgi.backplane import rpc
from gatewayasgi.backplane.envelope import Envelope, channel_for, pack
from gatewayasgi.backplane.routing import Routing, channels_for, routing_of
from gatewayasgi.brokers.base import Broker
from gatewayasgi.gateway.decorators import DEFAULT_NAMESPACE, normalize_namespace
from gatewayasgi.protocol.json import JSON
from gatewayasgi.protocol.targets import NOBODY, Targets, is_client_id, merge
from gatewayasgi.recovery import Recovery
from gatewayasgi.stores.base import EmissionLog

if TYPE_CHECKING:
    from gatewayasgi.brokers.redis import RedisBroker


def _room(room: str) -> str:
    if type(room) is not str or not 0 < len(room) <= rpc.MAX_NAME_LENGTH or is_client_id(room):
        raise ValueError(
            f"room must be a non-empty string of at most {rpc.MAX_NAME_LENGTH} characters "
            "that is not shaped like a client id"
        )
    return room


class EmitOperator:
    """An emit in the making: ``to()`` adds rooms or client ids, ``except_()`` skips ids.

    Immutable: each call returns a new operator, so one can be kept and reused.
    """

    __slots__ = ("_emitter", "_exclude", "_targets")

    def __init__(
        self, emitter: Emitter, targets: Targets = NOBODY, exclude: Targets = NOBODY
    ) -> None:
        self._emitter = emitter
        self._targets = targets
        self._exclude = exclude

    def to(self, *rooms_or_client_ids: str) -> EmitOperator:
        """Narrow the emit to these rooms and/or client ids (a union)."""
        return EmitOperator(self._emitter, merge(self._targets, rooms_or_client_ids), self._exclude)

    in_ = to

    def except_(self, *rooms_or_client_ids: str) -> EmitOperator:
        """Skip these clients (or every member of these rooms)."""
        return EmitOperator(self._emitter, self._targets, merge(self._exclude, rooms_or_client_ids))

    async def emit(self, event: str, data: JSONValue = None) -> None:
        """Encode ``{"event", "data"}`` once and publish it for every node to deliver."""
        emitter = self._emitter
        frame = JSON.encode_emit(event, data)
        if emitter.history is not None:
            # A gateway with recovery on this broker: its history is the transport.
            await emitter.history.append(frame, self._targets, self._exclude)
            return
        channels = channels_for(emitter.namespace, self._targets, emitter.routing)
        order = None
        if len(channels) > 1:  # copies on several channels: nodes deliver the first
            emitter.orders += 1
            order = emitter.orders
        data = pack(Envelope(emitter.node_id, frame, self._targets, self._exclude, order=order))
        for channel in channels:
            await emitter.broker.publish(channel, data)

    # -- cluster-wide orders (backplane.rpc): carried out by every node, unanswered ------

    async def join(self, room: str) -> None:
        """Make every targeted client, on every node, join ``room`` (``socketsJoin``).

        Raises ``ValueError`` for a name no room may have (empty, over 1024 characters,
        or shaped like a client id); each node also applies its own ``join`` rules.
        """
        await self._order(rpc.JOIN, room=_room(room))

    async def leave(self, room: str) -> None:
        """Make every targeted client, on every node, leave ``room`` (``socketsLeave``)."""
        await self._order(rpc.LEAVE, room=_room(room))

    async def disconnect(self, code: int = 1000, reason: str | None = None) -> None:
        """Close every targeted client, on every node, with ``code`` (1000 or 3000-4999)."""
        rpc.check_close(code, reason)
        await self._order(rpc.DISCONNECT, code=code, reason=reason)

    async def _order(self, op: str, **fields: Any) -> None:
        emitter = self._emitter
        request = rpc.Request(
            op, emitter.node_id, targets=self._targets, exclude=self._exclude, **fields
        )
        await emitter.broker.publish(emitter.requests, rpc.pack_request(request))


class Emitter:
    """Publishes to one gateway namespace's clients over any ``Broker``.

    ``namespace`` is spelled as in ``@WebSocketGateway`` (``"chat"`` is ``"/chat"``).
    The broker is used for publishing only (``start`` is not needed). ``node_id`` is
    this emitter's own id, never a server's, so every server delivers its messages.
    ``routing`` must match the servers' (``GatewayMiddleware(routing=...)``): in
    ``"interest"`` mode (the default) an emit to rooms or clients is published on their
    channels (``backplane.routing``), which servers in ``"namespace"`` mode do not read.
    """

    def __init__(
        self,
        broker: Broker,
        namespace: str = DEFAULT_NAMESPACE,
        *,
        recovery: Recovery | None = None,
        routing: Routing | str = "interest",
    ) -> None:
        self.broker = broker
        self.routing = routing_of(routing)
        self.orders = 0
        """Orders published on several channels so far (their copies share a number)."""
        # The same spelling rules as @WebSocketGateway: "chat" and "/chat/" are "/chat".
        self.namespace = normalize_namespace(namespace)
        self.channel = channel_for(self.namespace)
        self.requests = rpc.request_channel(self.namespace)
        """Where cluster orders (join, leave, disconnect) go."""
        self.node_id = uuid.uuid4().hex
        self.history: EmissionLog | None = None
        """The gateway's shared history, when ``recovery`` is given: emits are appended
        to it (they carry offsets and are replayed to sessions that missed them)."""
        if recovery is not None:
            self.history = broker.history(
                self.namespace,
                max_frames=recovery.max_frames,
                max_age=recovery.window,
                max_bytes=recovery.max_bytes,
                max_frame_bytes=recovery.max_frame_bytes,
                partitions=recovery.partitions,
            )
            if self.history is None:
                raise ValueError(
                    f"{type(broker).__name__} keeps no shared history: recovery= needs a "
                    "broker that does (RedisBroker)"
                )

    def to(self, *rooms_or_client_ids: str) -> EmitOperator:
        """Address these rooms and/or client ids on every node."""
        return EmitOperator(self).to(*rooms_or_client_ids)

    in_ = to

    def except_(self, *rooms_or_client_ids: str) -> EmitOperator:
        """Address every client of the namespace except these (clients or room members)."""
        return EmitOperator(self).except_(*rooms_or_client_ids)

    async def emit(self, event: str, data: JSONValue = None) -> None:
        """Send ``event`` to every client of the namespace on every node."""
        await EmitOperator(self).emit(event, data)

    broadcast = emit

    async def aclose(self) -> None:
        """Close the broker (and its connections), writing what the history still holds."""
        if self.history is not None:
            await self.history.close()
        await self.broker.close()

    async def __aenter__(self) -> Emitter:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class RedisEmitter(Emitter):
    """An ``Emitter`` over its own ``RedisBroker`` (``pip install "gatewayasgi[redis]"``).

    Extra keyword arguments go to ``RedisBroker`` (``max_message_size``, timeouts,
    ``secret``; ``cluster=True`` with the startup nodes of a Redis Cluster as ``url``).
    Use it as an async context manager, or call ``aclose()``, to release connections.
    ``broker.stats`` counts what was published and what failed.
    """

    broker: RedisBroker

    def __init__(
        self,
        url: str | Sequence[str],
        namespace: str = DEFAULT_NAMESPACE,
        *,
        recovery: Recovery | None = None,
        routing: Routing | str = "interest",
        **broker_options: Any,
    ) -> None:
        from gatewayasgi.brokers.redis import RedisBroker

        super().__init__(
            RedisBroker(url, **broker_options), namespace, recovery=recovery, routing=routing
        )

    async def __aenter__(self) -> RedisEmitter:
        return self


__all__ = ["EmitOperator", "Emitter", "RedisEmitter"]
