"""Keyed streams: a stream that outlives the connection that started it.

A stream request that names a ``key`` runs here, in the hub's task group, instead of
in the requester's connection. Clients re-attach by key (``$attach``) and get the kept
items after their position, the live ones, then the end. See ``runtime.streams`` for
the unkeyed streams and the wire.

With a Redis broker, the hub also writes each keyed stream to Redis
(``stores._redis_kept``): a client of another worker process re-attaches to it there,
and its ``$cancel`` (or a request that supersedes the key) reaches the worker that runs
it as an order. Redis failing never stops a keyed stream: it runs on, in memory.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

import anyio
import orjson

from gatewayasgi.gateway.streams import StreamEnd
from gatewayasgi.protocol import codec
from gatewayasgi.protocol.codec import ATTACH_EVENT
from gatewayasgi.runtime.delivery import FENCE, Fence
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
    from gatewayasgi.stores._redis_kept import Kept, RedisKeptStreams, Run

logger = logging.getLogger("gatewayasgi")

KEPT_ITEMS = 10_000
"""Items a keyed stream keeps for re-attaching clients (the oldest go first)."""
KEPT_BYTES = 4 * 1024 * 1024
"""Bytes (as encoded for the requester) a keyed stream keeps for re-attaching clients."""
GRACE = 30.0
"""Seconds a finished keyed stream stays re-attachable (a reload racing its last item)."""
MAX_KEYED = 10_000
"""Keyed streams one gateway keeps at once in a process (running or in their grace);
also the most attachments of this process's clients to other processes' streams."""
STREAM_LOST = "The stream's worker went away"
"""An attachment to another worker's stream whose worker stopped writing it."""
READ_BATCH = 256
"""Entries read from Redis at once by an attachment to another worker's stream."""
CHECK_EVERY = 2.0
"""Seconds an attachment waits for another worker's next item before it asks Redis
whether that stream still lives."""


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
        "h",
        "items",
        "kept",
        "key",
        "last_seq",
        "run",
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
        self.h = ""
        """Its id in Redis (with a Redis broker)."""
        self.run: Run | None = None
        """What Redis keeps of it for the other workers (with a Redis broker)."""

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

    ``share`` (the middleware calls it when the broker is Redis) makes them reach the
    other worker processes too (module docstring).
    """

    def __init__(self) -> None:
        self._settings: Settings | None = None
        self._keyed: dict[str, _Keyed] = {}
        self._finished: deque[tuple[float, _Keyed]] = deque()
        """Finished streams in the order their grace ends (the same for all)."""
        self._task_group: Any = None
        self._shared: RedisKeptStreams | None = None
        self._namespace = ""
        self._by_hash: dict[str, _Keyed] = {}
        self._remote: dict[tuple[int, str | int], _Remote] = {}
        """This process's clients attached to other processes' streams."""

    def share(self, kept: RedisKeptStreams, namespace: str) -> None:
        """Keep this gateway's keyed streams in ``kept`` too, for the other workers."""
        self._shared = kept
        self._namespace = namespace
        kept.on_cancel(self._cancel_order)

    async def serve(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        """Hold the task group keyed streams run in, until cancelled (the lifespan's end)."""
        shared = self._shared
        owner = False
        try:
            async with anyio.create_task_group() as task_group:
                if shared is not None:
                    owner = await shared.start(task_group)
                self._task_group = task_group
                task_status.started()
                await anyio.sleep_forever()
        finally:
            self._task_group = None
            if owner and shared is not None:
                await shared.close()

    def _sharing(self) -> RedisKeptStreams | None:
        """The Redis side, once its tasks run (in the lifespan; without one, keyed
        streams stay in this process, as the broker's emits do)."""
        shared = self._shared
        return shared if shared is not None and shared.started else None

    async def in_use(self, key: str) -> bool:
        """Whether a stream with ``key`` runs, here or (with Redis) in another worker."""
        if self.running(key):
            return True
        shared = self._sharing()
        if shared is None:
            return False
        pointer = await shared.lookup(shared.hash(self._namespace, key))
        return pointer is not None and not pointer.done and pointer.node != shared.node

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
            if keyed.h and self._by_hash.get(keyed.h) is keyed:
                del self._by_hash[keyed.h]

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
        shared = self._sharing()
        if shared is not None:
            keyed.h = shared.hash(self._namespace, key)
            keyed.run = shared.open(keyed.h, event)
            self._by_hash[keyed.h] = keyed
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
        remote = self._remote.get((id(client), frame_id))
        if remote is not None and remote.client is client and self._shared is not None:
            if not remote.cancelled:  # one order, however many times the client asks
                remote.cancelled = True
                self._shared.cancel(remote.node, remote.h, remote.run)  # its end comes back
            return True
        return False

    def _cancel_order(self, h: str, run: str, superseded: bool) -> None:
        """Another worker's order: end our run ``run`` of ``h`` (a ``$cancel`` of a client
        attached there, or a request there that ``superseded`` the key: then the key is
        that worker's, and this one forgets its run at once)."""
        keyed = self._by_hash.get(h)
        if keyed is None or keyed.run is None or keyed.run.id != run:
            return
        if not keyed.done:
            keyed.stream.cancelled = True
            keyed.stream.scope.cancel()
        if superseded:
            del self._by_hash[h]
            if self._keyed.get(keyed.key) is keyed:
                del self._keyed[keyed.key]

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
            shared = self._sharing()
            if shared is not None:
                await self._attach_remote(shared, client, frame_id, key, after)
                return
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
        try:
            with keyed.stream.scope:
                if keyed.run is not None and self._shared is not None:
                    # Started once other workers can find it: a client that saw the start
                    # and reconnects to another worker re-attaches there (one round trip).
                    await self._shared.published(keyed.run)
                for subscriber in keyed.subscribers:  # the requester
                    start = subscriber.protocol.encode_stream_start(
                        keyed.event, subscriber.frame_id
                    )
                    if start is not None:
                        await send(subscriber.client, start)
                timeout = settings.stream_timeout
                with anyio.fail_after(timeout) if timeout is not None else nullcontext():
                    await self._pump(keyed, items)
        except Exception as exc:
            keyed.error = failure(exc, qualname)
        except anyio.get_cancelled_exc_class():
            # Cancelled from outside (the lifespan's end, or the requester's connection
            # without a lifespan): its clients, here and on other workers, get the
            # cancelled end, not one that looks finished.
            keyed.stream.cancelled = True
            raise
        finally:
            keyed.done = True
            self._finished.append((anyio.current_time() + GRACE, keyed))
            if keyed.run is not None:
                self._finish_shared(keyed, keyed.run)
            with anyio.CancelScope(shield=True), anyio.move_on_after(settings.close_timeout):
                await close_source(items, source, qualname)
                for subscriber in list(keyed.subscribers):
                    if subscriber.next_seq > keyed.last_seq:
                        try:
                            await self._end_one(keyed, subscriber)
                        except Exception as exc:  # never into the hub's task group
                            logger.error("ending stream %r failed", keyed.key[:200], exc_info=exc)

    async def _pump(self, keyed: _Keyed, items: Any) -> None:
        shared, run = self._shared, keyed.run
        # What the generator emits through a history in Redis reaches clients through the
        # readers: an item waits until this worker's reader delivered it (``Fence``).
        fence = Fence()
        FENCE.set(fence)
        async for item in items:
            if fence.mark:
                await fence.wait()
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
            if run is not None:
                assert shared is not None
                data = _json(item)
                shared.add(run, seq, data)
                if not size:
                    size = len(data) if data is not None else 0
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
        if fence.mark:  # the end, too, comes after what the generator emitted
            await fence.wait()

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

    def _finish_shared(self, keyed: _Keyed, run: Run) -> None:
        """Tell the other workers how ``keyed`` ended."""
        shared = self._shared
        assert shared is not None
        if keyed.error is not None:
            message, details = keyed.error
            shared.finish_error(run, message, None if details is None else _json(details))
        elif keyed.stream.cancelled:
            shared.finish_cancelled(run)
        else:
            value = _json(keyed.end)
            if value is None:
                shared.finish_error(run, codec.INTERNAL_ERROR, None)
            else:
                shared.finish_end(run, value)

    async def _attach_remote(
        self,
        shared: RedisKeptStreams,
        client: Connection,
        frame_id: str | int,
        key: str,
        after: int,
    ) -> None:
        """``_attach`` for a stream another worker runs: its kept items and its end are
        read from Redis, at the pace of ``client``'s socket."""
        protocol = client.protocol
        h = shared.hash(self._namespace, key)
        pointer = await shared.lookup(h)
        if pointer is None or pointer.node == shared.node:  # ours ended here: forgotten
            await send(client, protocol.encode_stream_missing(ATTACH_EVENT, frame_id))
            return
        if len(self._remote) >= MAX_KEYED:
            await send(
                client, protocol.encode_error(codec.STREAM_LIMIT.format(limit=MAX_KEYED), frame_id)
            )
            return
        remote = _Remote(client, pointer.node, h, pointer.run)
        slot = (id(client), frame_id)
        self._remote[slot] = remote
        watch = shared.watch(h, pointer.run, after)
        try:
            start = protocol.encode_stream_start(pointer.event, frame_id)
            if start is not None:
                await send(client, start)
            await self._follow(shared, remote, watch, frame_id, pointer.event, after + 1)
        finally:
            shared.unwatch(watch)
            if self._remote.get(slot) is remote:
                del self._remote[slot]

    async def _follow(
        self,
        shared: RedisKeptStreams,
        remote: _Remote,
        watch: Any,
        frame_id: str | int,
        event: str,
        expected: int,
    ) -> None:
        client, h, run = remote.client, remote.h, remote.run
        protocol = client.protocol
        outbox = client.outbox
        half = max(1, outbox.max_messages // 2)
        heard = anyio.current_time()
        first = True
        while not client.closed:
            changed = watch.changed
            entries = await shared.entries(h, run, expected, READ_BATCH)
            now = anyio.current_time()
            if entries is None:  # Redis failed (logged): try again, for a while
                if now - heard > shared.live:
                    await send(client, protocol.encode_error(STREAM_LOST, frame_id))
                    return
                await anyio.sleep(0.2)
                continue
            heard = now
            if not entries and first and expected > 1:
                entries = await shared.tail(h, run)  # ``after`` may be past its end
            first = False
            for entry in _from(entries, expected):
                if entry.end is not None and entry.seq <= expected:
                    await send(client, _end_frame(protocol, event, frame_id, entry))
                    return
                if (
                    entry.seq != expected or entry.end is not None or entry.data is None
                ):  # trimmed, or not kept
                    await send(client, protocol.encode_error(codec.STREAM_TRIMMED, frame_id))
                    return
                if len(outbox) >= half:
                    await outbox.wait_below(max(1, half // 2))
                item = orjson.loads(entry.data)
                await send(client, protocol.encode_stream_item(event, item, frame_id, expected))
                expected += 1
            if entries:
                continue
            if not watch.active:  # until the reader follows it, look now and then
                await anyio.sleep(0.02)
                continue
            with anyio.move_on_after(CHECK_EVERY) as waited:
                await changed.wait()
            if waited.cancelled_caught and await shared.alive(h, run) is False:
                await send(client, protocol.encode_error(STREAM_LOST, frame_id))
                return


class _Remote:
    """A client of this process attached to another process's stream."""

    __slots__ = ("cancelled", "client", "h", "node", "run")

    def __init__(self, client: Connection, node: str, h: str, run: str) -> None:
        self.client = client
        self.node = node
        self.h = h
        self.run = run
        self.cancelled = False


def _from(entries: Iterable[Kept], expected: int) -> Iterable[Kept]:
    """``entries`` without those before ``expected`` (an end read by ``tail``)."""
    for entry in entries:
        if entry.seq >= expected or entry.end is not None:
            yield entry


def _json(value: Any) -> bytes | None:
    """``value`` as JSON for Redis; ``None`` when it has no JSON form."""
    try:
        return codec.dumps(value)
    except Exception:
        return None


def _end_frame(protocol: Any, event: str, frame_id: str | int, entry: Kept) -> Any:
    """The end frame of another worker's stream, as Redis has it."""
    if entry.end == b"cancelled":
        return protocol.encode_stream_end(event, None, frame_id, cancelled=True)
    if entry.end == b"end":
        value = None if entry.value is None else orjson.loads(entry.value)
        return protocol.encode_stream_end(event, value, frame_id)
    details = None if entry.details is None else orjson.loads(entry.details)
    message = entry.message or codec.INTERNAL_ERROR
    return protocol.encode_error(message, frame_id, details if type(details) is dict else None)
