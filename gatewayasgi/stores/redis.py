"""History and sessions in Redis, shared by every worker: ``RedisLog``, ``RedisSessionStore``.

``RedisLog`` is one gateway namespace's Redis Stream, ``<prefix>history:<namespace>``
(``gatewayasgi:history:/chat``), and it carries: every worker reads the whole stream in
order and delivers to its own clients from there, its own appends included.

* Appends go into a bounded queue (``_redis_outbox``) and return at once; one writer task
  adds them to the stream in batches, each batch one Lua script (``_redis_scripts``) that
  is idempotent per producer, so a batch sent again after a lost reply is not doubled.
  While Redis is away the queue holds up to ``max_pending`` frames and
  ``max_pending_bytes`` bytes, then drops the oldest and writes a gap marker in their
  place when Redis is back: every reader then calls ``reset`` (clients are told).
* One reader task per log, on its own connection: ``XREAD BLOCK`` from the last id it
  handed to ``deliver``. A lost connection is reopened (capped exponential backoff, full
  jitter) and reading goes on from that id: nothing lost, nothing doubled, in order.
* Every entry names the one before it; a reader that finds a different one (entries
  trimmed before it read them, the stream lost) calls ``reset(epoch)`` and goes on.
* The stream is bounded by count (``max_frames``), bytes (``max_bytes``: a running total
  next to it) and age; a frame over ``max_frame_bytes`` is a marker in the stream, its
  frame kept a few seconds in ``<stream key>:live`` for the readers to deliver live (a
  reader that comes too late for it calls ``reset``). See ``_redis_scripts``.
* The epoch (``<stream key>:epoch``) is made with ``SET NX`` and read again on every
  reconnect: when it changed (Redis restarted without persistence) the reader calls
  ``reset(new_epoch)`` and reads the new stream from its start. Keep the keys from being
  evicted (``maxmemory-policy noeviction`` or a ``volatile-*`` policy).

Offsets are stream ids (see ``_redis_entries``).
"""

from __future__ import annotations

import contextlib
import logging
import random
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import cast
from urllib.parse import urlsplit

import anyio
from anyio.abc import TaskGroup

from gatewayasgi.protocol.targets import Targets
from gatewayasgi.stores import _redis_scripts as scripts
from gatewayasgi.stores._redis_entries import (
    ZERO_ID,
    Decoded,
    decode,
    encode_targets,
    id_of,
    offset_of,
)
from gatewayasgi.stores._redis_outbox import FRAME, GAP, OVERSIZED, Outbox, Pending
from gatewayasgi.stores._redis_sessions import RedisSessionStore
from gatewayasgi.stores.base import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_FRAME_BYTES,
    Deliver,
    EmissionLog,
    Entry,
    HistoryGap,
    Reset,
)

try:
    from redis.asyncio import BlockingConnectionPool, Redis
    from redis.asyncio.cluster import ClusterNode, RedisCluster
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import RedisClusterException, RedisError, ResponseError
except ImportError as exc:  # pragma: no cover - exercised with the broker's import
    raise ImportError(
        'RedisLog needs the "redis" package: pip install "gatewayasgi[redis]"'
    ) from exc

__all__ = [
    "RedisLog",
    "RedisLogStats",
    "RedisSessionStore",
    "cluster_urls",
    "connect",
    "connect_cluster",
]

logger = logging.getLogger("gatewayasgi.stores.redis")

KEY_PREFIX = "gatewayasgi:"
DEFAULT_MAX_PENDING = 10_000
DEFAULT_MAX_PENDING_BYTES = 16 * 1024 * 1024
BATCH_FRAMES = 256
BATCH_BYTES = 1024 * 1024
# Past this many queued frames (or half the queue's bytes) while Redis answers, ``append``
# waits (at most the command timeout) for the writer: a burst of emits without a
# checkpoint, or of large frames, cannot fill the queue.
PRESSURE = 4 * BATCH_FRAMES
DROP_LOG_INTERVAL = 60.0
MAX_PRODUCERS = 4096
"""Producers (appending processes) a reader remembers the last delivered number of."""
# An oversized frame's live copy is kept at least this long (and longer when readers
# may be reconnecting: twice their longest reconnect), unless ``max_bytes`` of them wait.
MIN_LIVE = 10.0
# IndexError: redis-py's cluster client reading the layout of a cluster still forming
# (a node that knows no master yet).
_IO_ERRORS = (RedisError, RedisClusterException, OSError, TimeoutError, IndexError)
# Stream entries as redis-py returns them with RESP2 and bytes responses.
Raw = list[tuple[bytes, dict[bytes, bytes]]]
Client = Redis | RedisCluster
"""One Redis, or a cluster (every key of one log shares a hash tag: one slot, one node)."""


@dataclass(frozen=True, slots=True)
class RedisLogStats:
    """A snapshot of a ``RedisLog``'s counters (see ``RedisLog.stats``)."""

    connected: bool = False
    """The reader's connection is up."""
    appended: int = 0
    """Frames Redis confirmed in the stream."""
    delivered: int = 0
    """Entries handed to ``deliver``."""
    reconnects: int = 0
    """Reader connections opened again after one was lost or failed."""
    pending: int = 0
    """Frames queued for Redis right now."""
    dropped: int = 0
    """Appends dropped: queue full while Redis was away, or the log closed."""
    resets: int = 0
    """Calls of ``reset`` (history lost or entries missed)."""
    write_failures: int = 0
    """Batches Redis refused or that failed on the wire (they are retried)."""
    malformed: int = 0
    """Stream entries skipped because ``RedisLog`` could not have written them."""
    duplicates: int = 0
    """Entries skipped because this reader had delivered them already (a batch written
    again after a failover lost its producer's last number)."""


def connect(url: str, *, timeout: float, max_connections: int) -> Redis:
    """A redis-py client like ``RedisBroker``'s publisher: RESP2, no hidden retries."""
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=timeout,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        protocol=2,
    )
    return Redis(connection_pool=pool)


def cluster_urls(url: str | Sequence[str]) -> list[str]:
    """The startup nodes of a cluster: a list of URLs, or one string of comma-separated
    ones (``"redis://10.0.0.1:7000,redis://10.0.0.2:7000"``). ``ValueError`` if empty or
    not ``redis://`` / ``rediss://`` (a cluster has no unix sockets)."""
    items = url.split(",") if isinstance(url, str) else list(url)
    urls = [item.strip() for item in items if item.strip()]
    if not urls:
        raise ValueError("a Redis Cluster needs at least one startup node URL")
    for item in urls:
        if urlsplit(item).scheme not in ("redis", "rediss"):
            raise ValueError(
                f"a Redis Cluster URL must start with redis:// or rediss:// (got {item[:40]!r})"
            )
    return urls


def connect_cluster(
    url: str | Sequence[str],
    *,
    timeout: float,
    max_connections: int,
    socket_timeout: float | None = None,
    health_check_interval: float = 0,
) -> RedisCluster:
    """A redis-py cluster client: RESP2, no hidden retries of commands that failed on the
    wire (``MOVED`` and ``ASK`` redirections are followed, and a failed node makes the
    next command refresh the topology). The first URL gives credentials and TLS options
    to every node; the others are more startup nodes."""
    urls = cluster_urls(url)
    others = []
    for item in urls[1:]:
        parts = urlsplit(item)
        others.append(ClusterNode(parts.hostname or "localhost", parts.port or 6379))
    return RedisCluster.from_url(
        urls[0],
        startup_nodes=others,
        max_connections=max_connections,
        socket_connect_timeout=timeout,
        socket_timeout=timeout if socket_timeout is None else socket_timeout,
        health_check_interval=health_check_interval,
        retry=Retry(NoBackoff(), 0),
        require_full_coverage=False,
        protocol=2,
    )


class RedisLog(EmissionLog):
    """One namespace's history in a Redis Stream; see the module docstring.

    Usually made by ``RedisBroker.history(namespace, ...)``. ``max_frames`` bounds the
    stream's entries, ``max_bytes`` their frames' bytes (with their targets) and
    ``max_age`` (seconds) their age (on Redis's clock); a frame over ``max_frame_bytes``
    is kept as a marker (its live copy waits in ``<stream key>:live`` a few seconds, at
    most ``max_bytes`` of them). ``read_block`` is the ``XREAD BLOCK`` time,
    ``read_count`` its ``COUNT``. ``epoch`` is ``""`` until Redis was first reached.
    """

    carries = True

    def __init__(
        self,
        url: str,
        namespace: str,
        *,
        max_frames: int,
        max_age: float,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        key_prefix: str = KEY_PREFIX,
        reconnect_delay: float = 0.1,
        max_reconnect_delay: float = 5.0,
        connect_timeout: float = 2.0,
        command_timeout: float = 2.0,
        read_block: float = 2.0,
        read_count: int = 500,
        max_pending: int = DEFAULT_MAX_PENDING,
        max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES,
        max_connections: int = 4,
        cluster: bool = False,
        partition: int | None = None,
    ) -> None:
        if max_frames <= 0 or max_age <= 0 or max_bytes <= 0 or max_frame_bytes <= 0:
            raise ValueError("max_frames, max_age, max_bytes and max_frame_bytes must be positive")
        self.url = url
        self.cluster = cluster
        self.namespace = namespace
        self.max_frames = max_frames
        self.max_age = max_age
        self.max_bytes = max_bytes
        self.max_frame_bytes = min(max_frame_bytes, max_bytes)
        # On a cluster the name is a hash tag, so that the stream and every key named
        # after it (epoch, bytes, live, producers) live in one slot: the scripts touch
        # several of them at once.
        # A partition of a ``PartitionedLog`` adds ``#<p>`` (never part of a path).
        name = namespace if partition is None else f"{namespace}#{partition}"
        self.key = f"{key_prefix}{{history:{name}}}" if cluster else f"{key_prefix}history:{name}"
        self.epoch_key = self.key + ":epoch"
        self.bytes_key = self.key + ":bytes"
        """A hash: ``history``, the stream's bytes; ``live``, the live copies' bytes."""
        self.live_key = self.key + ":live"
        """Oversized frames, by their marker's id, until the readers delivered them."""
        self._live_ms = int(1000 * max(MIN_LIVE, 2 * (max_reconnect_delay + connect_timeout)))
        self.epoch = ""
        # Appends are numbered per producer so that Redis can skip a batch sent twice.
        self._tag = uuid.uuid4().hex[:16]
        self._producer_key = f"{self.key}:producer:{self._tag}"
        # Per producer (by tag), the last number this reader delivered: a batch written
        # again after a failover is skipped (oldest producers forgotten first).
        self._delivered: dict[bytes, int] = {}
        self._reconnect_delay = reconnect_delay
        self._max_reconnect_delay = max_reconnect_delay
        self._connect_timeout = connect_timeout
        self._read_block_ms = max(1, int(read_block * 1000))
        self._read_count = read_count
        self._command_timeout = command_timeout
        self._client: Client = (
            connect_cluster(url, timeout=command_timeout, max_connections=max(16, max_connections))
            if cluster
            else connect(url, timeout=command_timeout, max_connections=max_connections)
        )
        self._append_script = self._client.register_script(scripts.APPEND)
        self._outbox = Outbox(max_pending, max_pending_bytes)
        self._flushing = anyio.Lock()
        self._wake: anyio.Event | None = None
        self._writer_running = False
        self._failing = False  # the last write failed: appends do not wait then
        self._progress: anyio.Event | None = None  # set when the writer confirms a batch
        self._deliver: Deliver | None = None
        self._reset: Reset | None = None
        self._last_id = ZERO_ID  # the last entry handed to deliver (or the start point)
        self._head = 0
        self._synced = False  # the reader found its starting point at least once
        self._connected = False
        # One scope and one "finished" event per task (reader, writer); made on first
        # use, inside the event loop (the log is built with the middleware, outside it).
        self._cancel_scopes: tuple[anyio.CancelScope, anyio.CancelScope] | None = None
        self._done: tuple[anyio.Event, anyio.Event] | None = None
        self._closed = False
        # Fences (``mark``/``reached``): (offset, last seq) of each batch written and not
        # yet delivered by the reader, and the last seq the reader delivered.
        self._marks: deque[tuple[int, int]] = deque()
        self._reached = 0
        self._reach: anyio.Event | None = None
        self._stats = RedisLogStats()
        self._warned: dict[str, float] = {}

    @property
    def _scopes(self) -> tuple[anyio.CancelScope, anyio.CancelScope]:
        if self._cancel_scopes is None:
            self._cancel_scopes = (anyio.CancelScope(), anyio.CancelScope())
        return self._cancel_scopes

    # -- EmissionLog -----------------------------------------------------------------

    def format_offset(self, offset: int) -> str:
        return id_of(offset)

    def parse_offset(self, text: str) -> int | None:
        return offset_of(text) if len(text) <= 41 else None

    @property
    def head(self) -> int:
        return self._head

    @property
    def stats(self) -> RedisLogStats:
        """A snapshot of the counters."""
        return replace(self._stats, connected=self._connected, pending=len(self._outbox))

    async def append(self, frame: str, targets: Targets, exclude: Targets) -> None:
        """Queue ``frame`` for the stream; never raises, waits at most the command timeout.

        It returns at once, unless ``PRESSURE`` frames (or half of ``max_pending_bytes``)
        are queued while Redis answers (then it waits for the writer). Without ``follow``
        (a write-only use) the append is flushed here; what fails stays queued for the
        next call.
        """
        if self._closed:
            self._count(dropped=1)
            return
        payload = frame.encode()
        kind = OVERSIZED if len(payload) > self.max_frame_bytes else FRAME
        dropped = self._outbox.put(payload, encode_targets(targets, exclude), kind)
        if dropped:
            self._count(dropped=dropped)
            self._warn("drop", "history %s: Redis unreachable, dropped %d queued frame(s)", dropped)
        if self._writer_running:
            if self._wake is not None:
                self._wake.set()
            if self._pressed() and not self._failing:
                await self._drain()
        elif not self._flushing.locked():
            await self._flush()

    def mark(self) -> int:
        return self._outbox.last_seq

    def passed(self, mark: int) -> bool:
        return mark <= self._reached

    async def reached(self, mark: int) -> None:
        """Wait until the reader delivered this process's append ``mark``; at most the
        command timeout plus a read, and not at all while Redis is away (writes failing,
        reader disconnected) or without a reader (``follow``)."""
        if mark <= self._reached or self._deliver is None:
            return
        with anyio.move_on_after(self._command_timeout + self._read_block_ms / 1000):
            while mark > self._reached and self._connected and not self._closed:
                if self._failing:
                    return
                if self._reach is None:
                    self._reach = anyio.Event()
                await self._reach.wait()

    def _advance(self, seq: int) -> None:
        """The reader delivered (or passed) this process's appends up to ``seq``."""
        if seq > self._reached:
            self._reached = seq
        self._wake_fences()

    def _wake_fences(self) -> None:
        reach, self._reach = self._reach, None
        if reach is not None:
            reach.set()

    def _written(self, seq: int, last_id: str) -> None:
        """The writer put a batch ending with append ``seq`` into the stream, its last
        entry at ``last_id`` (``""``: Redis had the batch already)."""
        offset = offset_of(last_id) if last_id else None
        if offset is None or offset <= self._head:
            self._advance(seq)
        else:
            self._marks.append((offset, seq))

    def _passed(self, offset: int) -> None:
        """The reader went past ``offset``: release the fences it satisfies."""
        marks = self._marks
        seq = 0
        while marks and marks[0][0] <= offset:
            seq = marks.popleft()[1]
        if seq:
            self._advance(seq)

    async def replay(self, after: int, limit: int) -> list[Entry]:
        """Entries after ``after`` from the stream (``XRANGE``), oldest first.

        ``HistoryGap("trimmed")`` when an entry after ``after`` is gone, or when Redis
        cannot be reached (the missed frames are out of reach); ``"invalid"`` when
        ``after`` is beyond the stream's last id.
        """
        start = id_of(after)
        try:
            for _ in range(2):
                reply = await self._client.xrange(self.key, f"({start}", "+", count=max(1, limit))
                raw = cast(Raw, reply)
                if raw:
                    return self._chain(start, raw)[:limit]
                last = offset_of(await self._last_generated()) or 0
                if last == after:
                    return []
                if last < after:
                    raise HistoryGap("invalid")
            # Entries after ``after`` were made, yet none is left.
            raise HistoryGap("trimmed")
        except _IO_ERRORS as exc:
            self._warn("replay", "history %s: replay failed: %s", exc)
            raise HistoryGap("trimmed") from exc

    async def follow(self, deliver: Deliver, reset: Reset, task_group: TaskGroup) -> None:
        """Start the writer and the reader in ``task_group``; return after the reader's
        first connection attempt (or the connect timeout), with ``epoch`` and ``head``
        set when it succeeded."""
        if self._deliver is not None:
            raise RuntimeError("RedisLog.follow() was already called")
        self._deliver, self._reset = deliver, reset
        self._writer_running = True
        self._done = (anyio.Event(), anyio.Event())
        first = anyio.Event()
        task_group.start_soon(self._write_loop, name=f"history writer {self.namespace}")
        task_group.start_soon(self._read_loop, first, name=f"history reader {self.namespace}")
        with anyio.move_on_after(self._connect_timeout + 1.0):
            await first.wait()

    async def close(self) -> None:
        """Stop both tasks, try to flush what is queued (one command timeout), and close.

        Idempotent. Frames still queued after that are dropped and counted.
        """
        if self._closed:
            return
        self._closed = True
        for scope in self._cancel_scopes or ():
            scope.cancel()
        with anyio.CancelScope(shield=True):
            for done in self._done or ():
                with anyio.move_on_after(self._connect_timeout):
                    await done.wait()
            if self._outbox:
                await self._flush()
            lost = self._outbox.clear()
            if lost:
                self._count(dropped=lost)
                logger.warning(
                    "history %s: closed with %d frame(s) unwritten", self.namespace, lost
                )
            with contextlib.suppress(*_IO_ERRORS):
                if isinstance(self._client, RedisCluster):
                    await self._client.aclose()
                else:
                    await self._client.aclose(close_connection_pool=True)

    # -- writing ---------------------------------------------------------------------

    def _pressed(self) -> bool:
        outbox = self._outbox
        return len(outbox) >= PRESSURE or outbox.size >= outbox.max_bytes // 2

    async def _drain(self) -> None:
        """Wait until the writer brought the queue under ``PRESSURE`` (or fails, or the
        command timeout passes)."""
        with anyio.move_on_after(self._command_timeout):
            while self._pressed() and not self._failing and not self._closed:
                if self._progress is None:
                    self._progress = anyio.Event()
                await self._progress.wait()

    async def _flush(self) -> bool:
        """Write queued batches in order until none is left; False when one failed."""
        async with self._flushing:
            while self._outbox:
                batch = self._outbox.batch(BATCH_FRAMES, BATCH_BYTES)
                try:
                    last_id = await self._write(batch)
                except _IO_ERRORS as exc:
                    self._count(write_failures=1)
                    self._failing = True
                    self._wake_drainers()
                    self._wake_fences()
                    self._warn("write", "history %s: appending to Redis failed: %s", exc)
                    return False
                self._outbox.confirm(batch)
                self._written(batch[-1].seq, last_id)
                self._failing = False
                self._wake_drainers()
        return True

    def _wake_drainers(self) -> None:
        progress, self._progress = self._progress, None
        if progress is not None:
            progress.set()

    async def _write(self, batch: list[Pending]) -> str:
        args: list[bytes | int | float] = [
            self.max_frames,
            int(self.max_age * 1000),
            max(60_000, int(self.max_age * 2000)),
            self.max_bytes,
            self._live_ms,
            self._tag.encode(),
        ]
        for item in batch:
            args += [item.seq, item.kind, item.payload, item.targets]
        keys = [self.key, self._producer_key, self.bytes_key, self.live_key]
        last = await self._append_script(keys=keys, args=args)
        self._count(appended=sum(1 for item in batch if item.kind != GAP))
        return last.decode() if isinstance(last, bytes) else str(last or "")

    async def _write_loop(self) -> None:
        assert self._done is not None
        attempt = 0
        try:
            with self._scopes[1]:
                while not self._closed:
                    if not self._outbox:
                        self._wake = anyio.Event()
                        await self._wake.wait()
                        continue
                    if await self._flush():
                        attempt = 0
                    else:
                        await anyio.sleep(self._backoff(attempt))
                        attempt += 1
        finally:
            self._done[1].set()

    # -- reading ---------------------------------------------------------------------

    async def _read_loop(self, first: anyio.Event) -> None:
        assert self._done is not None
        attempt = 0
        try:
            with self._scopes[0]:
                while not self._closed:
                    reader = self._open_reader()
                    try:
                        await self._sync(reader)
                        self._connected = True
                        if attempt:
                            logger.info("history %s: reading again", self.namespace)
                        attempt = 0
                        first.set()
                        await self._read(reader)
                    except _IO_ERRORS as exc:
                        if self._connected or attempt == 0:
                            logger.warning("history %s: lost Redis: %s", self.namespace, exc)
                    finally:
                        self._connected = False
                        self._wake_fences()
                        first.set()
                        with anyio.CancelScope(shield=True), anyio.move_on_after(1.0):
                            await _close_quietly(reader)
                    await anyio.sleep(self._backoff(attempt))
                    attempt += 1
                    self._count(reconnects=1)
        finally:
            self._done[0].set()

    def _open_reader(self) -> Client:
        """The reader's own connection (on a cluster: to the node owning the log's slot,
        followed through redirections and failovers)."""
        if self.cluster:
            return connect_cluster(
                self.url,
                timeout=self._connect_timeout,
                max_connections=4,
                socket_timeout=self._read_block_ms / 1000 + self._connect_timeout,
            )
        return Redis.from_url(
            self.url,
            socket_connect_timeout=self._connect_timeout,
            socket_timeout=self._read_block_ms / 1000 + self._connect_timeout,
            retry=Retry(NoBackoff(), 0),
            protocol=2,
            single_connection_client=True,
        )

    async def _sync(self, reader: Client) -> None:
        """On every (re)connect: learn the epoch and where to read from."""
        epoch = await self._read_epoch(reader)
        if not self._synced:
            self._synced = True
            self.epoch = epoch
            self._last_id = await self._last_generated(reader)
            self._head = offset_of(self._last_id) or 0
            if self._stats.reconnects:
                # Redis was away at startup: clients attached meanwhile may miss frames.
                self._signal(epoch)
        elif epoch != self.epoch:
            logger.warning("history %s: history lost (new epoch %s)", self.namespace, epoch)
            self.epoch = epoch
            self._last_id, self._head = ZERO_ID, 0
            self._signal(epoch)

    async def _read_epoch(self, reader: Client) -> str:
        await reader.set(self.epoch_key, uuid.uuid4().hex, nx=True)
        value = await reader.get(self.epoch_key)
        if value is None:  # deleted between the two commands: try once more next time
            raise RedisError("the epoch key vanished")
        return cast(bytes, value).decode()

    async def _read(self, reader: Client) -> None:
        key = self.key
        while not self._closed:
            if isinstance(reader, RedisCluster):
                # Straight to the node of the key: redis-py's cluster client would first
                # ask a node which keys an XREAD names (its keys "move"), a round trip per
                # read, on a node that may be the one that failed. A moved slot answers
                # MOVED: the loop reconnects with a fresh layout.
                reply = await reader.execute_command(
                    "XREAD",
                    "COUNT",
                    self._read_count,
                    "BLOCK",
                    self._read_block_ms,
                    "STREAMS",
                    key,
                    self._last_id,
                    target_nodes=reader.get_node_from_key(key),
                )
            else:
                reply = await reader.xread(
                    {key: self._last_id}, count=self._read_count, block=self._read_block_ms
                )
            for _, raw in cast(list[tuple[bytes, Raw]], reply or []):
                if not await self._consume(reader, raw):
                    break

    async def _consume(self, reader: Client, raw: Raw) -> bool:
        """Deliver ``raw`` in order; False when the epoch changed (read again from 0-0)."""
        live: dict[str, bytes] = {}  # live copies of oversized frames, fetched together
        for index, (stream_id, fields) in enumerate(raw):
            try:
                item = decode(stream_id, fields)
            except ValueError as exc:
                self._count(malformed=1)
                self._warn("malformed", "history %s: skipped a stream entry: %s", exc)
                self._last_id = stream_id.decode(errors="replace")
                continue
            if item.previous != self._last_id or item.gap:
                epoch = await self._read_epoch(reader)
                if epoch != self.epoch:
                    await self._sync(reader)
                    return False
                # Entries between the last one delivered and this one are gone: clients
                # resume from here on (this entry's predecessor, or the marker itself).
                self._head = offset_of(item.stream_id if item.gap else item.previous) or 0
                logger.warning(
                    "history %s: entries were lost before %s", self.namespace, item.stream_id
                )
                self._signal(self.epoch)
            self._last_id = item.stream_id
            if item.producer and self._again(item.producer, item.number):
                self._count(duplicates=1)
                self._passed(offset_of(item.stream_id) or 0)  # a fence may wait for it
                continue
            entry = item.entry
            if entry is not None and item.oversized:
                entry = await self._live_copy(reader, entry, live, len(raw) - index)
            if entry is not None:
                self._hand_over(entry)
            else:
                self._head = offset_of(item.stream_id) or 0
                self._passed(self._head)
        return True

    async def _live_copy(
        self, reader: Client, marker: Entry, live: dict[str, bytes], ahead: int
    ) -> Entry | None:
        """The frame of an oversized entry's marker, from the live stream (with those of
        the next ``ahead`` entries, into ``live``); ``None`` (and ``reset``: the clients
        it was for missed it) when it is gone already."""
        sid = id_of(marker.offset)
        if sid not in live:
            reply = cast(Raw, await reader.xrange(self.live_key, sid, "+", count=ahead))
            for live_id, fields in reply:
                live[live_id.decode(errors="replace")] = fields.get(b"f", b"")
        frame = live.pop(sid, None)
        if not frame:
            self._head = marker.offset
            logger.warning("history %s: the oversized frame %s was gone", self.namespace, sid)
            self._signal(self.epoch)
            return None
        return replace(marker, frame=frame.decode())

    def _again(self, producer: bytes, number: int) -> bool:
        """Whether this reader delivered ``producer``'s entry ``number`` already (a batch
        written twice: the master that had it failed over before its replica did)."""
        delivered = self._delivered
        if number <= delivered.get(producer, 0):
            return True
        delivered[producer] = number
        if len(delivered) > MAX_PRODUCERS:  # the producer seen first goes first
            del delivered[next(iter(delivered))]
        return False

    def _hand_over(self, entry: Entry) -> None:
        self._head = entry.offset
        self._count(delivered=1)
        assert self._deliver is not None
        try:
            self._deliver(entry)
        except Exception:
            logger.exception("history %s: deliver raised", self.namespace)
        if self._marks:
            self._passed(entry.offset)

    def _signal(self, epoch: str) -> None:
        if self._marks:  # what the fences wait for may never come: release them
            self._advance(self._marks[-1][1])
            self._marks.clear()
        self._count(resets=1)
        if self._reset is None:
            return
        try:
            self._reset(epoch)
        except Exception:
            logger.exception("history %s: reset raised", self.namespace)

    # -- helpers ---------------------------------------------------------------------

    def _chain(self, start: str, raw: Raw) -> list[Entry]:
        """Decode a replayed range; ``HistoryGap`` when a link of the chain is missing."""
        entries: list[Entry] = []
        previous = start
        for stream_id, fields in raw:
            try:
                item: Decoded | None = decode(stream_id, fields)
            except ValueError:
                item = None
            sid = stream_id.decode(errors="replace")
            if item is not None:
                if item.gap or item.previous != previous:
                    raise HistoryGap("trimmed")
                if item.entry is not None:
                    entries.append(item.entry)
            previous = sid
        return entries

    async def _last_generated(self, client: Client | None = None) -> str:
        """The stream's last generated id (``"0-0"`` when it does not exist)."""
        try:
            info = await (client or self._client).xinfo_stream(self.key)
        except ResponseError:
            return ZERO_ID
        last = info.get("last-generated-id") or ZERO_ID
        return last.decode() if isinstance(last, bytes) else str(last)

    def _backoff(self, attempt: int) -> float:
        """Full jitter: uniform in ``[0, min(max, base * 2**attempt)]``."""
        ceiling = min(self._max_reconnect_delay, self._reconnect_delay * 2 ** min(attempt, 30))
        return random.uniform(0, ceiling)

    def _warn(self, kind: str, message: str, *args: object) -> None:
        """A warning at most once per ``DROP_LOG_INTERVAL`` for each kind."""
        now = anyio.current_time()
        if now - self._warned.get(kind, -DROP_LOG_INTERVAL) < DROP_LOG_INTERVAL:
            return
        self._warned[kind] = now
        logger.warning(message, self.namespace, *args)

    def _count(self, **increments: int) -> None:
        stats = self._stats
        self._stats = replace(
            stats, **{name: getattr(stats, name) + n for name, n in increments.items()}
        )


async def _close_quietly(client: Client) -> None:
    with contextlib.suppress(*_IO_ERRORS):
        await client.aclose()
