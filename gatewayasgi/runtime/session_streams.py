"""Streams of sessions that outlive their socket (gateways with recovery).

On a gateway with ``recovery=``, a stream answering a request belongs to the session, not
to the socket: it runs in a task group of its own (held by the lifespan), and each of its
frames goes through the gateway's delivery as an emit to the session's client id, with
the stream's members (``{"event", "data", "id", "seq"}``, then ``{"event", "data", "id",
"end": true}``). So every frame carries an offset, is kept in the history, and reaches
the client on whatever worker holds the session: a client that comes back (on this
worker, or on another one through Redis) gets the items it missed once and in order from
the replay, then the live rest, then the end. Frames a handler emits to the client, and
the stream's items, keep one order: the history's.

What a stream may cost while its client is away is bounded: a stream that has produced
``Settings.outbox_max_bytes`` bytes since the session lost its socket here waits for the
client to come back (or the stream timeout, or the session's end). A ``$cancel`` ends it
as it ends any stream; the session's end (its window passed, a clean close, the app
closing it) closes it without an end frame: nobody is left to read one.
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

import anyio

from gatewayasgi._types import JSONValue
from gatewayasgi.gateway.streams import StreamEnd
from gatewayasgi.protocol import codec
from gatewayasgi.protocol.targets import NOBODY, Targets
from gatewayasgi.runtime.delivery import Emission
from gatewayasgi.runtime.streams import (
    Spawn,
    StreamState,
    TooLarge,
    close_source,
    failure,
    threaded_items,
)

if TYPE_CHECKING:
    from gatewayasgi.runtime.connection import Connection
    from gatewayasgi.runtime.delivery import Delivery
    from gatewayasgi.settings import Settings

logger = logging.getLogger("gatewayasgi")

AWAY_POLL = 0.1
"""Seconds between two looks for the client of a stream that waits for it to come back."""


class SessionStreams:
    """One gateway's session streams in this process, by client id (made by the server)."""

    def __init__(self, delivery: Delivery, clients: dict[str, Connection]) -> None:
        self._delivery = delivery
        self._clients = clients
        self._running: dict[str, dict[str | int, StreamState]] = {}
        self._task_group: Any = None

    async def serve(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        """Hold the task group the streams run in, until cancelled (the lifespan's end)."""
        try:
            async with anyio.create_task_group() as task_group:
                self._task_group = task_group
                task_status.started()
                await anyio.sleep_forever()
        finally:
            self._task_group = None

    def refusal(self, client: Connection, frame_id: str | int | None, limit: int) -> str | None:
        """Why a stream request of ``client`` with this id cannot start (``None``: it can)."""
        if frame_id is None:
            return codec.STREAM_NEEDS_ID
        running = self._running.get(client.id, {})
        if frame_id in running:
            return codec.STREAM_ID_TAKEN
        if len(running) >= limit:
            return codec.STREAM_LIMIT.format(limit=limit)
        return None

    def start(
        self,
        client: Connection,
        event: str,
        frame_id: str | int,
        source: Any,
        qualname: str,
        settings: Settings,
        spawn: Spawn,
    ) -> None:
        """Run ``source`` as the stream answering ``client``'s request ``frame_id``."""
        state = self._running.setdefault(client.id, {})[frame_id] = StreamState()
        task_group = self._task_group
        launch = task_group.start_soon if task_group is not None else spawn
        launch(self._run, client.id, state, event, frame_id, source, qualname, settings)

    def cancel(self, client_id: str, frame_id: object) -> bool:
        """A ``$cancel`` from the session's client; False when no such stream runs here."""
        if type(frame_id) is not str and type(frame_id) is not int:
            return False
        state = self._running.get(client_id, {}).get(frame_id)
        if state is None:
            return False
        state.cancelled = True
        state.scope.cancel()
        return True

    def end(self, client_id: str) -> None:
        """The session ended: close its streams (no end frame is sent)."""
        for state in self._running.pop(client_id, {}).values():
            state.scope.cancel()

    async def _run(
        self,
        client_id: str,
        state: StreamState,
        event: str,
        frame_id: str | int,
        source: Any,
        qualname: str,
        settings: Settings,
    ) -> None:
        target = Targets((), (client_id,))
        items: Any = source if hasattr(source, "__anext__") else threaded_items(source)
        last: Emission | None = None
        try:
            with state.scope:
                timeout = settings.stream_timeout
                with anyio.fail_after(timeout) if timeout is not None else nullcontext():
                    value = await self._pump(client_id, target, items, event, frame_id, settings)
                last = _end(event, value, target, frame_id)
        except Exception as exc:
            message, details = failure(exc, qualname)
            last = _error(message, details, target, frame_id)
        finally:
            running = self._running.get(client_id)
            ours = running is not None and running.get(frame_id) is state
            if ours:
                assert running is not None
                del running[frame_id]
                if not running:
                    del self._running[client_id]
            with anyio.CancelScope(shield=True), anyio.move_on_after(settings.close_timeout):
                await close_source(items, source, qualname)
        if not ours:
            return  # the session ended: nobody is left to tell
        if state.cancelled:
            last = _end(event, None, target, frame_id, cancelled=True)
        if last is not None:
            with anyio.CancelScope(shield=True), anyio.move_on_after(settings.close_timeout):
                try:
                    await self._delivery.emit(last)
                except Exception as exc:  # a quota refusal, an end with no wire form
                    logger.error("ending stream %s failed", qualname, exc_info=exc)

    async def _pump(
        self,
        client_id: str,
        target: Targets,
        items: Any,
        event: str,
        frame_id: str | int,
        settings: Settings,
    ) -> Any:
        emit, clients = self._delivery.emit, self._clients
        max_bytes = settings.outbox_max_bytes
        away = 0  # bytes produced since this process last saw the client connected
        sequence = 0
        async for item in items:
            if type(item) is StreamEnd:
                return item.value
            size = len(codec.dumps(item))
            if size > max_bytes:
                raise TooLarge
            client = clients.get(client_id)
            if client is not None and not client.closed:
                away = 0
                outbox = client.outbox
                if outbox.filling(size):  # never ahead of the reader
                    await outbox.wait_below(max(1, outbox.max_messages // 4))
            else:
                away += size
                while away > max_bytes:  # wait for the client to come back
                    await anyio.sleep(AWAY_POLL)
                    client = clients.get(client_id)
                    if client is not None and not client.closed:
                        away = 0
            sequence += 1
            members: dict[str, JSONValue] = {"id": frame_id, "seq": sequence}
            await emit(Emission(event, item, target, NOBODY, members=members))
        return None


def _end(
    event: str, value: Any, target: Targets, frame_id: str | int, *, cancelled: bool = False
) -> Emission:
    members: dict[str, JSONValue] = {"id": frame_id, "end": True}
    if cancelled:
        members["cancelled"] = True
    return Emission(event, value, target, NOBODY, members=members)


def _error(
    message: str, details: dict[str, Any] | None, target: Targets, frame_id: str | int
) -> Emission:
    """The error frame ending a stream, bounded as ``codec.encode_error`` bounds it."""
    data: dict[str, JSONValue] = {"message": message, **(details or {})}
    if len(codec.dumps(data)) > codec.MAX_ERROR_FRAME - 256:
        data = {"message": message[: codec.MAX_ERROR_MESSAGE], "truncated": True}
    return Emission(codec.ERROR_EVENT, data, target, NOBODY, members={"id": frame_id})
