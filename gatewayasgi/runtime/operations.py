"""Cluster-wide operations on a gateway's clients, wherever they are connected.

``server.presence(room)``, ``server.in_(room).fetch_ids()``, ``.join(room2)``,
``.leave(room2)``, ``.disconnect()`` and ``.call(event, data, timeout=...)`` (the names
of socket.io's ``fetchSockets``, ``socketsJoin``, ``socketsLeave``,
``disconnectSockets`` and ``timeout().emitWithAck``) run here: this node carries the
operation out on its own clients, and the backplane's ``ClusterNode`` asks every other
live node to do the same (``backplane.rpc``). Without a broker, or with a lone memory
broker, this node is the whole cluster.

Join, leave and disconnect are orders: applied here at once, published to the others,
never answered (at-most-once, like emits). Fetches and calls gather the answers of
every live node; a node that does not answer in time is counted in ``missing_nodes``.

A call waits for its clients at most its timeout, the sending of the call frames
included (a client that does not read cannot hold it longer). Whichever node asks, a
client has at most ``MAX_PENDING_CALLS`` (256) calls in flight: past it the client is
reported as not answering at once, without being called, so a client that never
answers holds a bounded share of the calls a node serves (``MAX_SERVING_CALLS``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import anyio

from gatewayasgi._types import JSONValue
from gatewayasgi.backplane import rpc
from gatewayasgi.backplane.rpc import check_close as check_close
from gatewayasgi.exceptions import WsException
from gatewayasgi.protocol.targets import Targets
from gatewayasgi.runtime.calls import CallError, CallRejectedError, CallTimeoutError
from gatewayasgi.runtime.connection import Connection

if TYPE_CHECKING:
    from gatewayasgi.backplane.cluster import ClusterNode


class LocalServer(Protocol):
    """What cluster operations need of this process's server of the gateway
    (``runtime.server.WebSocketServer``)."""

    namespace: str
    clients: dict[str, Connection]

    def _recipients(self, targets: Targets, exclude: Targets) -> Iterable[str]: ...

    def _check_room(self, room: object) -> str: ...

    async def join(self, client: str, room: str) -> None: ...

    async def leave(self, client: str, room: str) -> None: ...

    def cancel_session_stream(self, client_id: str, frame_id: str | int) -> bool: ...


logger = logging.getLogger("gatewayasgi")

DEFAULT_REQUEST_TIMEOUT = 5.0
"""Seconds ``presence`` and ``fetch_ids`` wait for the other nodes (socket.io's too)."""
REPLY_GRACE = rpc.REPLY_GRACE
"""Seconds a room call waits for the other nodes beyond its own timeout (their replies
travel after their clients' timeouts)."""
TOO_LARGE = "answer too large to cross the backplane"


@dataclass(frozen=True, slots=True)
class Presence:
    """The clients of a room on every node that answered (``server.presence(room)``)."""

    room: str
    ids: tuple[str, ...]
    """Client ids, sorted."""
    missing_nodes: int = 0
    """Live nodes that did not answer in time: their members are not in ``ids``."""

    @property
    def count(self) -> int:
        """How many clients are in the room."""
        return len(self.ids)

    @property
    def complete(self) -> bool:
        """True when every live node answered."""
        return self.missing_nodes == 0


@dataclass(frozen=True, slots=True)
class CallResults:
    """The outcome of ``server.to(room).call(...)``, client by client, on every node."""

    answers: dict[str, JSONValue]
    """Client id -> the data it answered."""
    errors: dict[str, str]
    """Client id -> the error message it answered with."""
    timed_out: tuple[str, ...]
    """Clients that did not answer within the timeout, closed first, or had too many
    calls in flight to be called (sorted)."""
    missing_nodes: int = 0
    """Live nodes that did not report in time: their clients are in none of the above."""

    @property
    def complete(self) -> bool:
        """True when every targeted client answered (with data or an error)."""
        return not self.timed_out and self.missing_nodes == 0


def check_call(event: str, timeout: float) -> None:
    """Raise ``ValueError`` unless a room call's event and timeout are within bounds."""
    if type(event) is not str or not 0 < len(event) <= rpc.MAX_EVENT_LENGTH:
        raise ValueError(f"event must be a string of 1-{rpc.MAX_EVENT_LENGTH} characters")
    if not 0 < timeout <= rpc.MAX_CALL_TIMEOUT:
        raise ValueError(f"timeout must be in (0, {rpc.MAX_CALL_TIMEOUT:g}] seconds")


def _outcome(client_id: str, result: JSONValue | BaseException) -> JSONValue:
    if isinstance(result, CallRejectedError):
        return [client_id, "error", result.message]
    if isinstance(result, BaseException):
        return [client_id, "timeout", None]
    item: JSONValue = [client_id, "ok", result]
    return item if rpc.item_size(item) <= rpc.MAX_ITEM_BYTES else [client_id, "error", TOO_LARGE]


def _results(items: Iterable[JSONValue], missing: int) -> CallResults:
    answers: dict[str, JSONValue] = {}
    errors: dict[str, str] = {}
    timed_out: list[str] = []
    for item in items:
        if type(item) is not list or len(item) != 3 or type(item[0]) is not str:
            continue
        client_id, kind, value = item
        if kind == "ok":
            answers[client_id] = value
        elif kind == "error":
            errors[client_id] = str(value)
        else:
            timed_out.append(client_id)
    return CallResults(answers, errors, tuple(sorted(timed_out)), missing)


class ClusterOperations:
    """One gateway server's cluster-wide operations (see the module docstring)."""

    def __init__(self, server: LocalServer, node: ClusterNode | None) -> None:
        self._server = server
        self._node = node
        if node is not None:
            node.serve(server.namespace, self.respond)

    # -- this node's part -----------------------------------------------------------

    def local_ids(self, targets: Targets, exclude: Targets) -> list[str]:
        """Ids of the local clients the targets name."""
        clients = self._server.clients
        return [cid for cid in self._server._recipients(targets, exclude) if cid in clients]

    async def local_join(self, targets: Targets, exclude: Targets, room: str) -> None:
        """Local clients join ``room`` (one already in too many rooms is skipped)."""
        for client_id in self.local_ids(targets, exclude):
            try:
                await self._server.join(client_id, room)
            except WsException:
                logger.info("client %s is in too many rooms to join %r", client_id, room[:200])

    async def local_leave(self, targets: Targets, exclude: Targets, room: str) -> None:
        """Local clients leave ``room``."""
        for client_id in self.local_ids(targets, exclude):
            await self._server.leave(client_id, room)

    async def local_disconnect(
        self, targets: Targets, exclude: Targets, code: int, reason: str | None
    ) -> None:
        """Close local clients with ``code`` (queued frames go out first)."""
        for client_id in self.local_ids(targets, exclude):
            client = self._server.clients.get(client_id)
            if client is not None:
                await client.close(code, reason)

    async def local_call(
        self, targets: Targets, exclude: Targets, event: str, data: JSONValue, within: float
    ) -> list[JSONValue]:
        """Call local clients at once; their outcomes as ``[id, kind, value]`` items.

        Returns within ``within`` seconds: a client not settled by then (its call frame
        not even sent, say) is timed out.
        """
        ids = self.local_ids(targets, exclude)
        outcomes: dict[str, JSONValue] = {}

        async def one(client_id: str) -> None:
            client = self._server.clients.get(client_id)
            result: JSONValue | BaseException
            if client is None:
                result = CallTimeoutError(client_id)
            else:
                try:
                    result = await client.call(event, data, timeout=within)
                except CallError as exc:  # CallLimitError: 256 in flight, not called
                    result = exc
            outcomes[client_id] = _outcome(client_id, result)

        with anyio.move_on_after(within):
            async with anyio.create_task_group() as tasks:
                for client_id in ids:
                    tasks.start_soon(one, client_id)
        return [outcomes.get(client_id) or [client_id, "timeout", None] for client_id in ids]

    async def respond(self, request: rpc.Request, *, busy: bool = False) -> list[JSONValue]:
        """Carry out another node's request here; the reply items (``ClusterNode``).

        ``busy``: a call this node has no room for; its clients are reported as not
        answering, without being called.
        """
        targets, exclude = request.targets, request.exclude
        if request.op == rpc.FETCH:
            return list(self.local_ids(targets, exclude))
        if request.op == rpc.CALL:
            assert request.event is not None
            if busy:
                return [[cid, "timeout", None] for cid in self.local_ids(targets, exclude)]
            return await self.local_call(
                targets, exclude, request.event, request.data, request.timeout
            )
        if request.op == rpc.CANCEL:
            # The session may have no connection here (it resumed on the asking node).
            frame_id = request.data
            if type(frame_id) is str or type(frame_id) is int:
                self._server.cancel_session_stream(targets.clients[0], frame_id)
            return []
        if request.op == rpc.DISCONNECT:
            await self.local_disconnect(targets, exclude, request.code, request.reason)
        elif request.op in (rpc.JOIN, rpc.LEAVE) and request.room is not None:
            try:
                room = self._server._check_room(request.room)
            except WsException as exc:
                logger.warning(
                    "gateway %s: refused a cluster %s: %s",
                    self._server.namespace,
                    request.op,
                    exc.message,
                )
                return []
            if request.op == rpc.JOIN:
                await self.local_join(targets, exclude, room)
            else:
                await self.local_leave(targets, exclude, room)
        return []

    # -- the whole cluster ------------------------------------------------------------

    async def fetch_ids(
        self, targets: Targets, exclude: Targets, within: float
    ) -> tuple[list[str], int]:
        """Ids of the targeted clients on every node (sorted), and the nodes missing."""
        request = rpc.Request(rpc.FETCH, "", targets=targets, exclude=exclude, timeout=within)
        gathered = await self._ask(request, within)
        ids = set(self.local_ids(targets, exclude))
        ids.update(item for item in gathered.items if type(item) is str)
        return sorted(ids), gathered.missing

    async def presence(self, room: str, within: float) -> Presence:
        """The members of ``room`` on every node."""
        ids, missing = await self.fetch_ids(Targets((room,), ()), Targets(), within)
        return Presence(room, tuple(ids), missing)

    async def join(self, targets: Targets, exclude: Targets, room: str) -> None:
        """Targeted clients join ``room``, here and on every node."""
        await self.local_join(targets, exclude, room)
        await self._order(rpc.Request(rpc.JOIN, "", targets=targets, exclude=exclude, room=room))

    async def leave(self, targets: Targets, exclude: Targets, room: str) -> None:
        """Targeted clients leave ``room``, here and on every node."""
        await self.local_leave(targets, exclude, room)
        await self._order(rpc.Request(rpc.LEAVE, "", targets=targets, exclude=exclude, room=room))

    async def cancel_stream(self, client_id: str, frame_id: str | int) -> None:
        """End the session stream answering ``frame_id`` of ``client_id`` on the other
        nodes (one runs it: where the session began it, before it moved here)."""
        targets = Targets((), (client_id,))
        await self._order(rpc.Request(rpc.CANCEL, "", targets=targets, data=frame_id))

    async def disconnect(
        self, targets: Targets, exclude: Targets, code: int, reason: str | None
    ) -> None:
        """Close targeted clients, here and on every node."""
        # Published first: closing local clients must not delay the other nodes.
        request = rpc.Request(
            rpc.DISCONNECT, "", targets=targets, exclude=exclude, code=code, reason=reason
        )
        await self._order(request)
        await self.local_disconnect(targets, exclude, code, reason)

    async def call(
        self, targets: Targets, exclude: Targets, event: str, data: JSONValue, within: float
    ) -> CallResults:
        """Call targeted clients on every node; every outcome, and the nodes missing."""
        request = rpc.Request(
            rpc.CALL, "", targets=targets, exclude=exclude, event=event, data=data, timeout=within
        )
        local: list[JSONValue] = []

        async def here() -> None:
            local.extend(await self.local_call(targets, exclude, event, data, within))

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(here)
            gathered = await self._ask(request, within + REPLY_GRACE)
        return _results([*local, *gathered.items], gathered.missing)

    async def _ask(self, request: rpc.Request, within: float) -> _Answers:
        if self._node is None:
            return _Answers([], 0)
        gathered = await self._node.ask(self._server.namespace, request, within)
        return _Answers(gathered.items, gathered.missing)

    async def _order(self, request: rpc.Request) -> None:
        if self._node is not None:
            await self._node.order(self._server.namespace, request)


@dataclass(frozen=True, slots=True)
class _Answers:
    items: list[JSONValue]
    missing: int
