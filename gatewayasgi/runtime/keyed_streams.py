"""Keyed streams: a stream that outlives the connection that started it.

A stream request that names a ``key`` runs here, in the hub's task group, instead of
in the requester's connection. Clients re-attach by key (``$attach``) and get the kept
items after their position, the live ones, then the end. See ``runtime.streams`` for
the unkeyed streams and the wire.
"""

from __future__ import annotations

import logging
from collections import deque
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

import anyio

from gatewayasgi.gateway.streams import StreamEnd
from gatewayasgi.protocol import codec
from gatewayasgi.protocol.codec import ATTACH_EVENT
from gatewayasgi.runtime.outbox import frame_cost
from gatewayasgi.runtime.streams import (
    Spawn,
    StreamState,
    TooLarge,
    close_source,
    failure,
    send,
    threaded_items,
)

if TYPE_CHECKING:
    from gatewayasgi.runtime.connection import Connection
    from gatewayasgi.settings import Settings

logger = logging.getLogger("gatewayasgi")

KEPT_ITEMS = 10_000
"""Items a keyed stream keeps for re-attaching clients (the oldest go first)."""
KEPT_BYTES = 4 * 1024 * 1024
"""Bytes (as encoded for the requester) a keyed stream keeps for re-attaching clients."""
GRACE = 30.0
"""Seconds a finished keyed stream stays re-attachable (a reload racing its last item)."""
MAX_KEYED = 10_000
"""Keyed streams one gateway keeps at once in a process (running or in their grace)."""


class _Subscriber:
    __slots__ = ("client", "ended", "frame_id", "next_seq", "protocol")

    def __init__(self, client: Connection, frame_id: str | int, next_seq: int) -> None:
        self.client = client
        self.protocol = client.protocol
        self.frame_id = frame_id
        self.next_seq = next_seq
        """The next item this subscriber is owed: sent once, in order."""
        self.ended = False


class _Keyed:
    __slots__ = (
        "done",
        "end",
        "error",
        "event",
        "first_seq",
        "items",
        "kept",
        "key",
        "last_seq",
        "stream",
        "subscribers",
    )

    def __init__(self, key: str, event: str) -> None:
        self.key = key
        self.event = event
        self.items: deque[tuple[Any, int]] = deque()
        """(item, size) of the kept items: sequences ``first_seq`` .. ``last_seq``."""
        self.kept = 0
        self.first_seq = 1
        self.last_seq = 0
        self.subscribers: list[_Subscriber] = []
        self.stream = StreamState()
        self.done = False
        self.end: Any = None
        self.error: tuple[str, dict[str, Any] | None] | None = None

    def item(self, seq: int) -> Any:
        return self.items[seq - self.first_seq][0]


class StreamHub:
    """One gateway's keyed streams: started by a request that names a ``key``, they
    outlive the connection that started them (a disconnect does not cancel them), and a
    client may re-attach (``$attach``) and get every kept item after its position, then
    the live ones, then the end. Who may re-attach (or supersede a running key) is the
    gateway's ``can_attach(client, key)`` decision: without it, nobody may.

    They run in the hub's own task group (``serve``, started in the lifespan); without a
    lifespan, in the requester's connection (they end with it).
    """

    def __init__(self) -> None:
        self._settings: Settings | None = None
        self._keyed: dict[str, _Keyed] = {}
        self._finished: deque[tuple[float, _Keyed]] = deque()
        """Finished streams in the order their grace ends (the same for all)."""
        self._task_group: Any = None

    async def serve(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        """Hold the task group keyed streams run in, until cancelled (the lifespan's end)."""
        try:
            async with anyio.create_task_group() as task_group:
                self._task_group = task_group
                task_status.started()
                await anyio.sleep_forever()
        finally:
            self._task_group = None

    def running(self, key: str) -> bool:
        self._expire()
        keyed = self._keyed.get(key)
        return keyed is not None and not keyed.done

    def full(self) -> bool:
        self._expire()
        return len(self._keyed) >= MAX_KEYED

    def _expire(self) -> None:
        """Forget the finished streams whose grace passed (oldest first: no scan)."""
        finished = self._finished
        if not finished:
            return
        now = anyio.current_time()
        while finished and finished[0][0] < now:
            _, keyed = finished.popleft()
            if self._keyed.get(keyed.key) is keyed:  # not superseded by a newer one
                del self._keyed[keyed.key]

    def start(
        self,
        key: str,
        event: str,
        source: Any,
        qualname: str,
        client: Connection,
        frame_id: str | int,
        spawn: Spawn,
        settings: Settings,
    ) -> None:
        """Run ``source`` as the keyed stream ``key`` (one running with it is superseded:
        closed), its requester the first subscriber."""
        self._settings = settings
        old = self._keyed.get(key)
        if old is not None and not old.done:
            old.stream.cancelled = True
            old.stream.scope.cancel()
        keyed = self._keyed[key] = _Keyed(key, event)
        keyed.subscribers.append(_Subscriber(client, frame_id, 1))
        task_group = self._task_group
        launch = task_group.start_soon if task_group is not None else spawn
        launch(self._run, keyed, source, qualname)

    def cancel(self, client: Connection, frame_id: str | int) -> bool:
        """A ``$cancel`` from a subscriber (by its request's id) ends the keyed stream."""
        for keyed in self._keyed.values():
            if keyed.done:
                continue
            for subscriber in keyed.subscribers:
                if subscriber.client is client and subscriber.frame_id == frame_id:
                    keyed.stream.cancelled = True
                    keyed.stream.scope.cancel()
                    return True
        return False

    async def attach(self, client: Connection, frame_id: str | int, key: str, after: int) -> None:
        """Send ``key``'s kept items after sequence ``after``, then its live ones and its
        end, to ``client`` (as the answer to its request ``frame_id``). A failure (an item
        this client's protocol cannot encode) ends the attachment with an error frame."""
        try:
            await self._attach(client, frame_id, key, after)
        except Exception as exc:
            logger.error("attaching to stream %r failed", key[:200], exc_info=exc)
            await send(client, client.protocol.encode_error(codec.INTERNAL_ERROR, frame_id))

    async def _attach(self, client: Connection, frame_id: str | int, key: str, after: int) -> None:
        protocol = client.protocol
        self._expire()
        keyed = self._keyed.get(key)
        if keyed is None:
            await send(client, protocol.encode_stream_missing(ATTACH_EVENT, frame_id))
            return
        subscriber = _Subscriber(client, frame_id, after + 1)
        if subscriber.next_seq < keyed.first_seq and keyed.last_seq >= keyed.first_seq:
            error = protocol.encode_error(codec.STREAM_TRIMMED, frame_id)
            await send(client, error)
            return
        keyed.subscribers.append(subscriber)
        start = protocol.encode_stream_start(keyed.event, frame_id)
        if start is not None:
            await send(client, start)
        await self._catch_up(keyed, subscriber)

    async def _catch_up(self, keyed: _Keyed, subscriber: _Subscriber) -> None:
        """Send the kept items ``subscriber`` is owed, at the pace of its socket; the
        generator sends it the live ones once it has caught up (each item once)."""
        client = subscriber.client
        outbox = client.outbox
        half = max(1, outbox.max_messages // 2)
        while subscriber.next_seq <= keyed.last_seq and not client.closed:
            if len(outbox) >= half:
                await outbox.wait_below(max(1, half // 2))
            seq = subscriber.next_seq
            if seq < keyed.first_seq:  # trimmed meanwhile
                keyed.subscribers.remove(subscriber)
                await send(
                    client,
                    subscriber.protocol.encode_error(codec.STREAM_TRIMMED, subscriber.frame_id),
                )
                return
            if seq > keyed.last_seq:
                break
            subscriber.next_seq = seq + 1
            payload = subscriber.protocol.encode_stream_item(
                keyed.event, keyed.item(seq), subscriber.frame_id, seq
            )
            await send(client, payload)
        if keyed.done:
            await self._end_one(keyed, subscriber)

    async def _run(self, keyed: _Keyed, source: Any, qualname: str) -> None:
        settings = self._settings
        assert settings is not None
        items: Any = source if hasattr(source, "__anext__") else threaded_items(source)
        for subscriber in keyed.subscribers:  # the requester
            start = subscriber.protocol.encode_stream_start(keyed.event, subscriber.frame_id)
            if start is not None:
                await send(subscriber.client, start)
        try:
            with keyed.stream.scope:
                timeout = settings.stream_timeout
                with anyio.fail_after(timeout) if timeout is not None else nullcontext():
                    await self._pump(keyed, items)
        except Exception as exc:
            keyed.error = failure(exc, qualname)
        finally:
            keyed.done = True
            self._finished.append((anyio.current_time() + GRACE, keyed))
            with anyio.CancelScope(shield=True), anyio.move_on_after(settings.close_timeout):
                await close_source(items, source, qualname)
                for subscriber in list(keyed.subscribers):
                    if subscriber.next_seq > keyed.last_seq:
                        try:
                            await self._end_one(keyed, subscriber)
                        except Exception as exc:  # never into the hub's task group
                            logger.error("ending stream %r failed", keyed.key[:200], exc_info=exc)

    async def _pump(self, keyed: _Keyed, items: Any) -> None:
        async for item in items:
            if isinstance(item, StreamEnd):
                keyed.end = item.value
                return
            seq = keyed.last_seq + 1
            subscribers = [s for s in keyed.subscribers if not s.client.closed]
            keyed.subscribers[:] = subscribers
            keyed.items.append((item, 0))
            keyed.last_seq = seq
            # The first subscriber sets the pace (never ahead of its reader); the others
            # get the overflow policy and never slow the stream.
            pacer = subscribers[0] if subscribers else None
            size = 0
            for subscriber in subscribers:
                if subscriber.next_seq != seq:
                    continue  # still catching up: it takes this one from what is kept
                subscriber.next_seq = seq + 1
                client = subscriber.client
                outbox = client.outbox
                payload = subscriber.protocol.encode_stream_item(
                    keyed.event, item, subscriber.frame_id, seq
                )
                cost = frame_cost(payload)
                if cost > outbox.max_bytes:
                    raise TooLarge
                size = size or cost
                message = client.protocol.message(payload)
                if subscriber is pacer:
                    if outbox.filling(cost):
                        await outbox.wait_below(max(1, outbox.max_messages // 4))
                    await outbox.send(message, cost)
                else:
                    outbox.put_nowait(message, cost)
            if not size:
                size = len(codec.dumps(item))
            keyed.items[seq - keyed.first_seq] = (item, size)
            keyed.kept += size
            # What is kept for re-attaching clients is bounded (the oldest go first).
            while len(keyed.items) > 1 and (
                len(keyed.items) > KEPT_ITEMS or keyed.kept > KEPT_BYTES
            ):
                keyed.kept -= keyed.items.popleft()[1]
                keyed.first_seq += 1

    async def _end_one(self, keyed: _Keyed, subscriber: _Subscriber) -> None:
        if subscriber.ended:
            return
        subscriber.ended = True
        if subscriber in keyed.subscribers:
            keyed.subscribers.remove(subscriber)
        protocol, frame_id = subscriber.protocol, subscriber.frame_id
        if keyed.error is not None:
            message, details = keyed.error
            end = protocol.encode_error(message, frame_id, details)
        elif keyed.stream.cancelled:
            end = protocol.encode_stream_end(keyed.event, None, frame_id, cancelled=True)
        else:
            try:
                end = protocol.encode_stream_end(keyed.event, keyed.end, frame_id)
            except Exception as exc:  # a final value with no wire form
                logger.error("stream %r: its end cannot be sent", keyed.key[:200], exc_info=exc)
                end = protocol.encode_error(codec.INTERNAL_ERROR, frame_id)
        if not subscriber.client.closed:
            await send(subscriber.client, end)
