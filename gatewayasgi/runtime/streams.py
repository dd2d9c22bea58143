"""Streams: a generator handler's items, sent to the requester as they come.

A request to a stream handler starts a stream, keyed by the request's ``id``. It runs in
its own task of the connection's task group, so the connection goes on handling other
frames (a ``$cancel``, a second request) while it runs, and it ends with exactly one
frame: the end (``"end": true``, with the value of a yielded ``StreamEnd``), the end
marked ``cancelled``, or an error frame carrying the request's ``id``. The wire is in
``docs/guide/streaming.md``.

What a client can make it cost is bounded:

- at most ``Settings.max_streams`` streams per connection at once (one more is answered
  with an error frame);
- an item waits while the client's outbox is half full: a stream never outruns its
  reader, and nothing grows without bound (``Settings.stream_timeout`` ends a stream
  whose reader stopped for good);
- an item larger than the outbox allows ends its stream with an error frame;
- a ``$cancel`` closes the generator at its current ``await`` (its ``finally`` blocks and
  ``async with`` exits run) within ``Settings.close_timeout``; an unknown one is counted.

When the connection ends, its task group is cancelled and every stream is closed the
same way.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from gatewayasgi.exceptions import WsException
from gatewayasgi.gateway.streams import StreamEnd
from gatewayasgi.protocol import codec
from gatewayasgi.protocol.base import Payload
from gatewayasgi.protocol.codec import ATTACH_EVENT
from gatewayasgi.runtime.outbox import frame_cost

if TYPE_CHECKING:
    from gatewayasgi.protocol.base import WireProtocol
    from gatewayasgi.runtime.connection import Connection
    from gatewayasgi.settings import Settings

logger = logging.getLogger("gatewayasgi")

Spawn = Callable[..., Any]
Reply = Callable[[Payload], Any]

_DONE = object()
"""What a ``def`` generator's ``next`` gives back when it is exhausted."""


class _Stream:
    __slots__ = ("cancelled", "scope")

    def __init__(self) -> None:
        self.scope = anyio.CancelScope()
        self.cancelled = False


class Streams:
    """The streams of one connection (made on its first stream request)."""

    __slots__ = ("_client", "_protocol", "_running", "_settings", "_spawn", "unknown_cancels")

    def __init__(
        self, client: Connection, protocol: WireProtocol, settings: Settings, spawn: Spawn
    ) -> None:
        self._client = client
        self._protocol = protocol
        self._settings = settings
        self._spawn = spawn
        self._running: dict[str | int, _Stream] = {}
        self.unknown_cancels = 0
        """``$cancel`` frames naming no running stream (late, repeated or forged)."""

    def __len__(self) -> int:
        return len(self._running)

    def refusal(self, frame_id: str | int | None) -> str | None:
        """Why a stream request with this id cannot start now (``None``: it can)."""
        if frame_id is None:
            return codec.STREAM_NEEDS_ID
        if not self._protocol.streams:
            return codec.STREAM_UNSUPPORTED
        if frame_id in self._running:
            return codec.STREAM_ID_TAKEN
        if len(self._running) >= self._settings.max_streams:
            return codec.STREAM_LIMIT.format(limit=self._settings.max_streams)
        return None

    def start(self, event: str, frame_id: str | int, source: Any, qualname: str) -> None:
        """Run ``source`` (the generator a stream handler returned) as the stream that
        answers request ``frame_id`` (``refusal`` said it may start)."""
        stream = self._running[frame_id] = _Stream()
        self._spawn(self._run, stream, event, frame_id, source, qualname)

    def cancel(self, frame_id: object, hub: StreamHub | None = None) -> bool:
        """The client's ``$cancel``: end that stream now (a keyed one this connection
        started or attached to, too); False (counted) if none runs."""
        stream = None
        if type(frame_id) is str or type(frame_id) is int:
            stream = self._running.get(frame_id)
            if stream is None and hub is not None and hub.cancel(self._client, frame_id):
                return True
        if stream is None:
            self.unknown_cancels += 1
            return False
        stream.cancelled = True
        stream.scope.cancel()
        return True

    async def _run(
        self, stream: _Stream, event: str, frame_id: str | int, source: Any, qualname: str
    ) -> None:
        client, protocol, settings = self._client, self._protocol, self._settings
        items: Any = source if hasattr(source, "__anext__") else threaded_items(source)
        end: Payload | None = None
        start = protocol.encode_stream_start(event, frame_id)
        if start is not None:
            await _send(client, start)
        try:
            with stream.scope:
                timeout = settings.stream_timeout
                with anyio.fail_after(timeout) if timeout is not None else nullcontext():
                    end = await self._pump(items, event, frame_id)
        except Exception as exc:
            message, details = _failure(exc, qualname)
            end = protocol.encode_error(message, frame_id, details)
        finally:
            del self._running[frame_id]
            # The generator is closed here, at its current ``await`` (``finally`` blocks
            # and ``async with`` exits run), whatever ended the stream: its end, an error,
            # a cancel, or the connection's end.
            with anyio.CancelScope(shield=True), anyio.move_on_after(settings.close_timeout):
                await close_source(items, source, qualname)
        if stream.cancelled:
            end = protocol.encode_stream_end(event, None, frame_id, cancelled=True)
        if end is not None and not client.closed:
            await client.outbox.send(protocol.message(end), frame_cost(end))

    async def _pump(self, items: AsyncIterator[Any], event: str, frame_id: str | int) -> Payload:
        client, protocol = self._client, self._protocol
        outbox = client.outbox
        send, encode, message = outbox.send, protocol.encode_stream_item, protocol.message
        max_bytes = outbox.max_bytes
        half = max(1, outbox.max_messages // 2)
        sequence = 0
        async for item in items:
            if type(item) is StreamEnd:
                return protocol.encode_stream_end(event, item.value, frame_id)
            sequence += 1
            payload = encode(event, item, frame_id, sequence)
            size = frame_cost(payload)
            if size > max_bytes:
                raise _TooLarge
            # Never ahead of the reader: past half the outbox, the generator waits.
            if outbox.filling(size):
                await outbox.wait_below(max(1, half // 2))
            if outbox.closed:
                break
            await send(message(payload), size)
        return protocol.encode_stream_end(event, None, frame_id)


class _TooLarge(Exception):
    """An item larger than the connection's outbox allows."""


def _failure(exc: Exception, qualname: str) -> tuple[str, dict[str, Any] | None]:
    """What the client is told when a stream failed (bounded by the protocol's error
    frame): the stream timeout, a ``WsException`` it raised, an item too large, or an
    internal error (logged)."""
    if isinstance(exc, TimeoutError):
        return codec.STREAM_TIMEOUT, None
    if isinstance(exc, WsException):
        return exc.message, exc.data
    if isinstance(exc, _TooLarge):
        return codec.STREAM_ITEM_TOO_LARGE, None
    logger.error("stream %s failed", qualname, exc_info=exc)
    return codec.INTERNAL_ERROR, None


async def threaded_items(iterator: Iterator[Any]) -> AsyncIterator[Any]:
    """The items of a ``def`` generator, each taken in the worker thread pool (as ``def``
    handlers run: one that blocks holds its stream, not the event loop)."""
    while True:
        item = await anyio.to_thread.run_sync(next, iterator, _DONE)
        if item is _DONE:
            return
        yield item


async def close_source(items: Any, source: Any, qualname: str) -> None:
    """Close the generator (and the wrapper taking a ``def`` generator's items): what
    its ``finally`` raises is logged, never raised into a task group others share."""
    try:
        if items is not source:
            await items.aclose()
        if hasattr(source, "aclose"):
            await source.aclose()
        elif hasattr(source, "close"):
            await anyio.to_thread.run_sync(source.close)
    except Exception as exc:
        logger.error("closing stream %s failed", qualname, exc_info=exc)


# -- keyed streams ------------------------------------------------------------------------

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
        self.stream = _Stream()
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
            await _send(client, client.protocol.encode_error(codec.INTERNAL_ERROR, frame_id))

    async def _attach(self, client: Connection, frame_id: str | int, key: str, after: int) -> None:
        protocol = client.protocol
        self._expire()
        keyed = self._keyed.get(key)
        if keyed is None:
            await _send(client, protocol.encode_stream_missing(ATTACH_EVENT, frame_id))
            return
        subscriber = _Subscriber(client, frame_id, after + 1)
        if subscriber.next_seq < keyed.first_seq and keyed.last_seq >= keyed.first_seq:
            error = protocol.encode_error(codec.STREAM_TRIMMED, frame_id)
            await _send(client, error)
            return
        keyed.subscribers.append(subscriber)
        start = protocol.encode_stream_start(keyed.event, frame_id)
        if start is not None:
            await _send(client, start)
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
                await _send(
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
            await _send(client, payload)
        if keyed.done:
            await self._end_one(keyed, subscriber)

    async def _run(self, keyed: _Keyed, source: Any, qualname: str) -> None:
        settings = self._settings
        assert settings is not None
        items: Any = source if hasattr(source, "__anext__") else threaded_items(source)
        for subscriber in keyed.subscribers:  # the requester
            start = subscriber.protocol.encode_stream_start(keyed.event, subscriber.frame_id)
            if start is not None:
                await _send(subscriber.client, start)
        try:
            with keyed.stream.scope:
                timeout = settings.stream_timeout
                with anyio.fail_after(timeout) if timeout is not None else nullcontext():
                    await self._pump(keyed, items)
        except Exception as exc:
            keyed.error = _failure(exc, qualname)
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
                    raise _TooLarge
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
            await _send(subscriber.client, end)


async def _send(client: Connection, payload: Payload) -> None:
    if not client.closed:
        await client.outbox.send(client.protocol.message(payload), frame_cost(payload))
