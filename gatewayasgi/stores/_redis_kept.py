"""Keyed streams in Redis: what a worker keeps of its keyed streams for clients of the
other workers (``runtime.keyed_streams`` runs the streams; this is their Redis side).

Keys (one hash slot per stream key: ``{h}`` is a hash tag, ``h`` the SHA-256 of the
gateway's namespace and the stream's key):

``gatewayasgi:ks:{h}``
    the pointer: ``<run>:<node>:<done>:<event>``, the run that has the key now, the
    worker (node) that runs it, whether it ended. While the run goes on its time to live
    is ``live`` seconds, renewed every third of it by its node: a node that dies stops
    renewing it. Once the run ended: ``grace`` seconds.
``gatewayasgi:ks:{h}:<run>``
    the run's items, a Redis Stream: item ``seq`` is entry ``<seq>-0`` (field ``d``, its
    JSON; an item over ``max_item_bytes`` is a marker, field ``x``, that a reader reads
    as trimmed), the end is entry ``<last seq + 1>-0`` (field ``e``: ``end`` with ``v``
    the end value's JSON, ``cancelled``, or ``error`` with ``m`` and ``j``). Bounded as
    the memory copy is: ``max_items`` entries and ``max_bytes`` bytes (``XTRIM MINID``,
    oldest first, the newest always stays); every node together with the others has at
    most ``budget`` bytes here at once. Same time to live as the pointer.
``gatewayasgi:ks:ctl:{<node>}``
    a node's orders (cancel run ``r`` of ``h``), read by that node only; at most
    ``MAX_ORDERS`` entries, gone a minute after the last one.

Writes never make a generator wait: ``add`` and ``finish`` queue what goes to Redis (at
most what would be kept), and one writer task sends every queued stream's entries in one
pipeline. Entry ids are explicit, so a batch sent again after a failure is not doubled.
A Redis outage costs the other workers their view of the streams (logged at most once a
minute); the streams themselves run on, in memory.

One reader task (its own connection) follows this node's orders and the streams other
workers' clients attached to here follow: ``watch``. On one server it is one ``XREAD
BLOCK`` over all of them.

On a Redis Cluster (``cluster=True``: ``url`` names one or more startup nodes) the same
keys spread over the masters by their hash tags, and every command names keys of one
slot: a script, a ``SET``, an ``XADD`` or a ``PEXPIRE`` goes to the node of its key, and
the writer's pipeline sends each node its part (one round trip per node, side by side);
a node that failed fails the whole batch, which goes again. ``SCRIPT LOAD`` goes to
every master; a node that does not know a script (a replica that took over: scripts are
not replicated; a node that joined) answers ``NOSCRIPT``, and the writer loads the
scripts on every master again and sends its batch again. The reader never sends a
command over several slots: while nothing is watched it blocks in ``XREAD`` on the
orders key alone, sent to that key's node; while streams are watched it reads each of
them and the orders, each key in an ``XRANGE`` of its own (from the last entry it saw),
in one pipeline, every ``POLL`` seconds. A watched stream thus costs one ``XRANGE``
(``COUNT 64``) every ``POLL`` seconds, 20 a second, whatever its traffic, and a round
costs one round trip to each master that holds a watched stream or the orders, side by
side. A stream is watched once per process (the clients of this process attached to one
run share it), and a process's clients attach to at most ``MAX_KEYED`` streams of other
processes per gateway. An item reaches a client of another worker up to ``POLL``
seconds later than on one server, and so do orders while streams are watched.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import anyio
from anyio.abc import TaskGroup

try:
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster
    from redis.exceptions import (
        AskError,
        ClusterDownError,
        NoScriptError,
        ReadOnlyError,
        RedisClusterException,
        RedisError,
        ResponseError,
        TryAgainError,
    )
except ImportError as exc:  # pragma: no cover - the broker imports redis first
    raise ImportError(
        'keyed streams on Redis need the "redis" package: pip install "gatewayasgi[redis]"'
    ) from exc

from gatewayasgi.stores.redis import connect, connect_cluster

logger = logging.getLogger("gatewayasgi.stores.redis")

PREFIX = "gatewayasgi:ks:"
MARKER = 16
"""Bytes an entry is counted for besides its item (and all a marker is counted for)."""
MAX_ORDERS = 1000
"""Entries a node's order stream keeps (orders are read within moments)."""
ORDERS_TTL_MS = 60_000
MAX_ITEM_BYTES = 1024 * 1024
"""An item larger than this (as JSON) is a marker in Redis: other workers' clients
read it as trimmed."""
BUDGET = 256 * 1024 * 1024
"""Bytes of kept items one process has in Redis at once, every keyed stream together
(past it, the stream that adds trims its own oldest items)."""
LIVE = 10.0
"""Seconds a running stream's keys live in Redis unless its node renews them."""
SCRIPT_ITEMS = 512
"""Items one script call adds at most (Redis runs a script alone: keep each one short)."""
BLOCK = 0.25
"""Seconds the reader's ``XREAD`` blocks: a newly watched stream waits at most this."""
POLL = 0.05
"""On a cluster, seconds between the reader's rounds while streams are watched."""
LOG_INTERVAL = 60.0
DOWN = 30.0
"""Seconds reads skip Redis after one failed, unless the writer or the reader (which go
on trying, with backoff) find it answering again before."""
MAX_ERROR_BYTES = 4096
"""An error end's message (characters) and details (bytes) kept at most."""
# IndexError, KeyError: redis-py's cluster client reading the layout of a cluster still
# forming (as ``stores.redis`` and the broker see it).
_IO_ERRORS = (RedisError, RedisClusterException, OSError, TimeoutError, IndexError, KeyError)
_NOT_RUN = (ClusterDownError, TryAgainError, AskError, ReadOnlyError)
"""Replies that say a command did not run (on a cluster: not on that node, not yet)."""

END = b"end"
CANCELLED = b"cancelled"
ERROR = b"error"

# KEYS: a run's stream. ARGV: the first item to keep (0: trim nothing), the seq of the
# first item here, the seq of the end (0: no end here), how many items, the items
# (consecutive: a run's pending items always are), each its JSON or "" for a marker, then
# the end's fields. An entry that is there already (a batch sent again) is skipped.
_ADD = """
local stream = KEYS[1]
local seq, count = tonumber(ARGV[2]), tonumber(ARGV[4])
for i = 5, 4 + count do
  if ARGV[i] == '' then
    redis.pcall('XADD', stream, seq .. '-0', 'x', '1')
  else
    redis.pcall('XADD', stream, seq .. '-0', 'd', ARGV[i])
  end
  seq = seq + 1
end
if ARGV[1] ~= '0' then
  redis.call('XTRIM', stream, 'MINID', ARGV[1] .. '-0')
end
if ARGV[3] ~= '0' then
  local fields = {}
  for i = 5 + count, #ARGV do fields[#fields + 1] = ARGV[i] end
  redis.pcall('XADD', stream, ARGV[3] .. '-0', unpack(fields))
end
return 0
"""
# KEYS: pointer. ARGV: run, new value, ttl ms. The pointer still names this run: set it.
_DONE = """
local current = redis.call('GET', KEYS[1])
if current and string.sub(current, 1, #ARGV[1] + 1) == ARGV[1] .. ':' then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"""
# KEYS: pointer. ARGV: run, ttl ms, value. The pointer still names this run: renew it;
# it is gone (Redis restarted without its data): set it again.
_RENEW = """
local current = redis.call('GET', KEYS[1])
if not current then
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[2])
  return 1
end
if string.sub(current, 1, #ARGV[1] + 1) == ARGV[1] .. ':' then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""


def stream_hash(namespace: str, key: str) -> str:
    """The id of ``key`` of gateway ``namespace`` in Redis (any length of key: fixed)."""
    space = namespace.encode("utf-8", "surrogatepass")
    digest = hashlib.sha256(b"%d:%s" % (len(space), space))  # no two pairs alike
    digest.update(key.encode("utf-8", "surrogatepass"))
    return digest.hexdigest()[:40]


def _pointer_key(h: str) -> str:
    return f"{PREFIX}{{{h}}}"


def _stream_key(h: str, run: str) -> str:
    return f"{PREFIX}{{{h}}}:{run}"


def _orders_key(node: str) -> str:
    return f"{PREFIX}ctl:{{{node}}}"


@dataclass(frozen=True, slots=True)
class Pointer:
    """Who runs a stream key now, as the pointer says."""

    run: str
    node: str
    done: bool
    event: str


def _parse_pointer(raw: bytes | None) -> Pointer | None:
    if raw is None:
        return None
    parts = raw.decode("utf-8", "replace").split(":", 3)
    if len(parts) != 4:
        return None
    return Pointer(parts[0], parts[1], parts[2] == "1", parts[3])


@dataclass(frozen=True, slots=True)
class Kept:
    """One entry of a run's stream: an item (``data``, its JSON; ``None``: not kept), or
    the end (``end``: ``END``, ``CANCELLED`` or ``ERROR``, with ``value`` the end value's
    JSON, or the error's ``message`` and ``details`` JSON)."""

    seq: int
    data: bytes | None = None
    end: bytes | None = None
    value: bytes | None = None
    message: str | None = None
    details: bytes | None = None


class Run:
    """One run of a keyed stream, as this node writes it to Redis."""

    __slots__ = (
        "end",
        "end_written",
        "event",
        "first",
        "h",
        "id",
        "kept",
        "last",
        "opened",
        "pending",
        "ready",
        "released",
        "sizes",
        "trim",
    )

    def __init__(self, h: str, event: str) -> None:
        self.h = h
        self.id = uuid.uuid4().hex[:16]
        self.event = event
        self.pending: deque[tuple[int, bytes | None]] = deque()
        """(seq, JSON or None for a marker) of the items not yet in Redis."""
        self.sizes: deque[tuple[int, int]] = deque()
        """(seq, bytes) of every item kept, in Redis or pending."""
        self.kept = 0
        self.first = 1
        self.last = 0
        self.trim = False
        self.opened = False
        self.ready: anyio.Event | None = None
        """Set once ``opened``, for whoever waits for it (``RedisKeptStreams.published``)."""
        self.end: Kept | None = None
        self.end_written = False
        self.released = False


class Watch:
    """A stream that clients of this node follow: ``changed`` is set (and replaced) each
    time the reader sees new entries in it."""

    __slots__ = ("active", "changed", "key", "last", "refs")

    def __init__(self, key: str, last: str) -> None:
        self.key = key
        self.last = last
        self.refs = 0
        self.active = False
        """The reader's reads include it (until then, a reader polls)."""
        self.changed = anyio.Event()


class _RateLog:
    def __init__(self) -> None:
        self._last: dict[str, float] = {}

    def warn(self, kind: str, message: str, *args: object) -> None:
        now = anyio.current_time()
        if now - self._last.get(kind, -LOG_INTERVAL) >= LOG_INTERVAL:
            self._last[kind] = now
            logger.warning(message, *args)


class RedisKeptStreams:
    """The Redis side of one process's keyed streams, every gateway's (module docstring).

    ``max_items`` and ``max_bytes`` bound each run as the memory copy is bounded,
    ``grace`` is how long an ended run stays, ``budget`` bounds every run of this
    process together. ``cluster=True``: ``url`` names startup nodes of a Redis Cluster
    (one URL, several comma-separated, or a list).
    """

    def __init__(
        self,
        url: str | Sequence[str],
        *,
        max_items: int,
        max_bytes: int,
        grace: float,
        budget: int = BUDGET,
        max_item_bytes: int = MAX_ITEM_BYTES,
        live: float = LIVE,
        command_timeout: float = 2.0,
        max_connections: int = 8,
        cluster: bool = False,
    ) -> None:
        self.url = url
        self.cluster = cluster
        self.node = uuid.uuid4().hex[:16]
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.max_item_bytes = min(max_item_bytes, max_bytes)
        self.budget = budget
        self.grace = grace
        self.live = live
        self._grace_ms = max(1, int(grace * 1000))
        self._live_ms = max(1, int(live * 1000))
        self._timeout = command_timeout
        self._max_connections = max_connections
        self._limit: contextlib.AbstractAsyncContextManager[Any] = (
            anyio.CapacityLimiter(max_connections) if cluster else contextlib.nullcontext()
        )
        """Commands on ``_client`` at once: a cluster client's node refuses one more
        connection than it may have (``MaxConnectionsError``) where one server's pool
        waits for one."""
        self._connect()
        self._dirty: dict[Run, None] = {}
        self._running: dict[Run, None] = {}
        self._finished: deque[tuple[float, Run]] = deque()
        self._orders: deque[tuple[str, str, str, bool]] = deque(maxlen=MAX_ORDERS)
        self._watches: dict[str, Watch] = {}
        self._on_cancel: list[Callable[[str, str, bool], None]] = []
        self._wake: anyio.Event | None = None
        self._started = False
        self.total = 0
        """Bytes of kept items of this process's runs in Redis (or on their way)."""
        self.failures = 0
        """Redis commands (batches, reads) that failed."""
        self._log = _RateLog()
        self._down_until = 0.0
        """Until then, a read answers at once as failed: Redis failed a moment ago (a
        frozen Redis must not make every keyed request wait for a timeout)."""

    # -- life ------------------------------------------------------------------------

    def on_cancel(self, callback: Callable[[str, str, bool], None]) -> None:
        """``callback(h, run, superseded)`` for each order to cancel a run of this node
        (``superseded``: another node runs ``h`` now)."""
        self._on_cancel.append(callback)

    def _connect(self) -> None:
        """New clients (at first, and for a lifespan after one that closed them)."""
        timeout = self._timeout
        self._client: Redis | RedisCluster
        self._reader: Redis | RedisCluster
        if self.cluster:
            # Per node: the commands ``_limit`` lets through, and the topology refresh.
            self._client = connect_cluster(
                self.url, timeout=timeout, max_connections=self._max_connections + 2
            )
            self._reader = connect_cluster(
                self.url, timeout=timeout, max_connections=2, socket_timeout=timeout + BLOCK
            )
        else:
            assert isinstance(self.url, str)
            self._client = connect(self.url, timeout=timeout, max_connections=self._max_connections)
            self._reader = connect(self.url, timeout=timeout + BLOCK, max_connections=1)
        self._add_script = self._client.register_script(_ADD)
        self._done_script = self._client.register_script(_DONE)
        self._renew_script = self._client.register_script(_RENEW)
        self._closed = False

    @property
    def started(self) -> bool:
        """The writer and the reader run (``start``)."""
        return self._started

    def hash(self, namespace: str, key: str) -> str:
        """The id of ``key`` of gateway ``namespace`` here (``stream_hash``)."""
        return stream_hash(namespace, key)

    async def start(self, task_group: TaskGroup) -> bool:
        """Start the writer and the reader in ``task_group`` (once: later calls return
        False); the caller that started them closes the store after them."""
        if self._started:
            return False
        self._started = True
        if self._closed:  # a later lifespan of the same app
            self._connect()
        self._wake = anyio.Event()
        task_group.start_soon(self._write_loop, name="keyed streams writer")
        task_group.start_soon(self._read_loop, name="keyed streams reader")
        return True

    async def close(self) -> None:
        """Send what is still queued (the ends of the streams the shutdown cancelled: the
        other workers' clients get them at once), within one command timeout; close."""
        with anyio.CancelScope(shield=True):
            runs = [run for run in self._dirty if not run.released]
            orders = list(self._orders)
            self._dirty.clear()
            self._orders.clear()
            with anyio.move_on_after(self._timeout), contextlib.suppress(*_IO_ERRORS):
                await self._write(runs, orders, False)
            for client in (self._client, self._reader):
                with contextlib.suppress(*_IO_ERRORS):
                    if isinstance(client, RedisCluster):
                        await client.aclose()
                    else:
                        await client.aclose(close_connection_pool=True)
        self._closed = True
        self._started = False

    # -- writing (the node that runs a stream) ---------------------------------------

    def open(self, h: str, event: str) -> Run:
        """A new run of ``h``: the pointer names it once the writer has sent it (and the
        run it replaces, if another node's, is told to end)."""
        self._release_finished()
        run = Run(h, event)
        self._mark(run)
        return run

    async def published(self, run: Run) -> None:
        """Return once ``run``'s pointer is in Redis, so that any worker finds it (a
        client that saw the stream start can re-attach to it anywhere); at most twice
        the command timeout, and at once while Redis is away."""
        if run.opened or self._down():
            return
        if run.ready is None:
            run.ready = anyio.Event()
        with anyio.move_on_after(self._timeout * 2):
            await run.ready.wait()

    def add(self, run: Run, seq: int, data: bytes | None) -> None:
        """Item ``seq`` of ``run`` (its JSON; ``None``: it has none). Never waits."""
        if run.end is not None or run.released:
            return
        if data is not None and len(data) > self.max_item_bytes:
            data = None
        size = MARKER if data is None else len(data) + MARKER
        if (
            run.kept + size > self.max_bytes
            or self.total + size > self.budget
            or len(run.sizes) >= self.max_items
        ):
            self._trim(run, size)
            if data is not None and self.total + size > self.budget:
                # The other streams of this process hold the budget: this item is kept
                # as a marker (read as trimmed elsewhere), so the budget holds.
                data, size = None, MARKER
        run.pending.append((seq, data))
        run.sizes.append((seq, size))
        run.kept += size
        run.last = seq
        self.total += size
        if run not in self._dirty:
            self._mark(run)

    def _trim(self, run: Run, room: int) -> None:
        """Drop ``run``'s oldest items until one more of ``room`` bytes fits its bounds
        and the budget (or none of its own is left)."""
        sizes, pending = run.sizes, run.pending
        while sizes and (
            len(sizes) >= self.max_items
            or run.kept + room > self.max_bytes
            or self.total + room > self.budget
        ):
            gone_seq, gone = sizes.popleft()
            run.kept -= gone
            self.total -= gone
            run.first = gone_seq + 1
            run.trim = True
            while pending and pending[0][0] < run.first:
                pending.popleft()

    def finish_end(self, run: Run, value: bytes) -> None:
        """``run`` ended with ``value`` (JSON); kept ``grace`` seconds from now."""
        self._finish(run, END, value=value if len(value) <= self.max_item_bytes else b"null")

    def finish_cancelled(self, run: Run) -> None:
        """``run`` was cancelled; kept ``grace`` seconds from now."""
        self._finish(run, CANCELLED)

    def finish_error(self, run: Run, message: str, details: bytes | None) -> None:
        """``run`` failed (the error frame's ``message`` and ``details``, bounded)."""
        if details is not None and len(details) > MAX_ERROR_BYTES:
            details = None
        self._finish(run, ERROR, message=message[:MAX_ERROR_BYTES], details=details)

    def _finish(
        self,
        run: Run,
        end: bytes,
        *,
        value: bytes | None = None,
        message: str | None = None,
        details: bytes | None = None,
    ) -> None:
        if run.end is not None:
            return
        run.end = Kept(run.last + 1, None, end, value, message, details)
        self._finished.append((anyio.current_time() + self.grace, run))
        self._mark(run)

    def cancel(self, node: str, h: str, run: str, *, superseded: bool = False) -> None:
        """Order ``node`` to end its run ``run`` of ``h`` (sent by the writer)."""
        self._orders.append((node, h, run, superseded))
        if self._wake is not None:
            self._wake.set()

    def _mark(self, run: Run) -> None:
        self._dirty[run] = None
        if self._wake is not None:
            self._wake.set()

    def _release_finished(self) -> None:
        finished = self._finished
        now = anyio.current_time()
        while finished and finished[0][0] < now:
            _, run = finished.popleft()
            run.released = True
            self.total -= run.kept
            run.kept = 0
            run.pending.clear()
            run.sizes.clear()
            self._running.pop(run, None)
            self._dirty.pop(run, None)

    async def _load_scripts(self) -> None:
        """Load the scripts (on a cluster: on every master, as redis-py sends
        ``SCRIPT LOAD``)."""
        async with self._limit:
            for script in (self._add_script, self._done_script, self._renew_script):
                await self._client.script_load(script.script)

    async def _write_loop(self) -> None:
        with contextlib.suppress(*_IO_ERRORS), anyio.move_on_after(self._timeout):
            await self._load_scripts()  # else the first batch finds out, and goes again
        renew_every = self.live / 3
        renewed = anyio.current_time()
        delay = 0.05
        while True:
            assert self._wake is not None
            if not self._dirty and not self._orders:
                with anyio.move_on_after(max(0.0, renewed + renew_every - anyio.current_time())):
                    await self._wake.wait()
            self._wake = anyio.Event()
            self._release_finished()
            renew = anyio.current_time() >= renewed + renew_every
            runs = list(self._dirty)
            self._dirty.clear()
            orders = list(self._orders)
            self._orders.clear()
            try:
                answered = await self._write(runs, orders, renew)
            except _IO_ERRORS as exc:
                self._failed("write", exc)
                for run in runs:
                    if not run.released:
                        self._dirty[run] = None
                self._orders.extend(orders)
                await anyio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.05
            if answered:
                self._down_until = 0.0
            if renew:
                renewed = anyio.current_time()

    async def _write(
        self, runs: list[Run], orders: list[tuple[str, str, str, bool]], renew: bool
    ) -> bool:
        """Send what ``runs`` and ``orders`` hold; whether Redis was asked at all."""
        pipe = self._client.pipeline(transaction=False)
        opening: list[tuple[int, Run]] = []
        sent: list[tuple[Run, int, bool, bool]] = []
        count = 0
        for run in runs:
            pointer, stream = _pointer_key(run.h), _stream_key(run.h, run.id)
            end = run.end
            ending = end is not None and not run.end_written
            if not run.opened:
                value = f"{run.id}:{self.node}:{int(end is not None)}:{run.event}"
                ttl = self._grace_ms if end is not None else self._live_ms
                pipe.set(pointer, value, px=ttl, get=True)
                opening.append((count, run))
                count += 1
            upto = run.pending[-1][0] if run.pending else 0
            trimmed = run.trim
            # The items in one script call per ``SCRIPT_ITEMS`` (one command to encode,
            # one reply to read; Redis does the ``XADD``s); the trim and the end go with
            # the last one (the end never before an item: an item after it is refused).
            add = self._add_script.sha
            batch: list[bytes] = []
            first = 0
            for seq, data in run.pending:
                if not batch:
                    first = seq
                batch.append(b"" if data is None else data)
                if len(batch) >= SCRIPT_ITEMS:
                    pipe.evalsha(add, 1, stream, 0, first, 0, len(batch), *batch)
                    count += 1
                    batch = []
            if batch or trimmed or ending:
                minid = run.first if trimmed else 0
                closing: list[Any] = []
                if ending:
                    assert end is not None
                    closing += ("e", end.end)
                    if end.value is not None:
                        closing += ("v", end.value)
                    if end.message is not None:
                        closing += ("m", end.message)
                    if end.details is not None:
                        closing += ("j", end.details)
                end_seq = end.seq if ending and end is not None else 0
                pipe.evalsha(add, 1, stream, minid, first, end_seq, len(batch), *batch, *closing)
                count += 1
            if ending:
                pipe.pexpire(stream, self._grace_ms)
                count += 1
                if run.opened:
                    value = f"{run.id}:{self.node}:1:{run.event}"
                    pipe.evalsha(self._done_script.sha, 1, pointer, run.id, value, self._grace_ms)
                    count += 1
            elif end is None:
                pipe.pexpire(stream, self._live_ms)
                count += 1
            sent.append((run, upto, trimmed, ending))
        if renew:
            for run in self._running:
                if run.end is None:
                    value = f"{run.id}:{self.node}:0:{run.event}"
                    pointer = _pointer_key(run.h)
                    sha = self._renew_script.sha
                    pipe.evalsha(sha, 1, pointer, run.id, self._live_ms, value)
                    pipe.pexpire(_stream_key(run.h, run.id), self._live_ms)
                    count += 2
        for node, h, run_id, superseded in orders:
            key = _orders_key(node)
            order = {"h": h, "r": run_id, "s": int(superseded)}
            pipe.xadd(key, cast(Any, order), maxlen=MAX_ORDERS, approximate=True)
            pipe.pexpire(key, ORDERS_TTL_MS)
            count += 2
        if count == 0:
            return False
        async with self._limit:
            with anyio.fail_after(self._timeout * 2):
                results = await pipe.execute(raise_on_error=False)
        failed: Exception | None = None
        for index, run in opening:
            reply = results[index]
            if isinstance(reply, Exception):
                failed = reply  # the batch goes again
                continue
            run.opened = True
            if run.ready is not None:
                run.ready.set()
            old = _parse_pointer(cast("bytes | None", reply))
            if old is not None and old.node != self.node and not old.done and old.run != run.id:
                self.cancel(old.node, run.h, old.run, superseded=True)  # it ends there
        for reply in results:
            if isinstance(reply, Exception) and (
                not isinstance(reply, ResponseError) or isinstance(reply, _NOT_RUN)
            ):
                # On a cluster a node that failed leaves errors as its commands' replies
                # while the other nodes' went through: the batch goes again (idempotent).
                failed = failed or reply
        if failed is not None:
            raise failed
        if any(isinstance(reply, NoScriptError) for reply in results):
            # Redis does not know the scripts yet (or lost them): load them and send the
            # whole batch again (it is idempotent), without the pipeline asking Redis
            # whether it knows them before each batch.
            await self._load_scripts()
            for run in runs:
                if not run.released:
                    self._dirty[run] = None
            self._orders.extend(orders)
            return True
        for run, upto, trimmed, ending in sent:
            pending = run.pending
            while pending and pending[0][0] <= upto:
                pending.popleft()
            if trimmed:
                run.trim = False
            if ending:
                run.end_written = True
                self._running.pop(run, None)
            elif run.end is None and not run.released:
                self._running[run] = None
            if run.pending or (run.end is not None and not run.end_written):
                self._dirty[run] = None
        for reply in results:
            if isinstance(reply, Exception) and "equal or smaller" not in str(reply):
                self._log.warn("reply", "keyed streams: Redis refused a command: %s", reply)
        return True

    # -- reading (a client of this node attached to another node's stream) -----------

    async def lookup(self, h: str) -> Pointer | None:
        """Who runs ``h`` now (``None``: nobody, or Redis cannot be reached)."""
        if self._down():
            return None
        try:
            async with self._limit:
                with anyio.fail_after(self._timeout * 2):
                    raw = await self._client.get(_pointer_key(h))
        except _IO_ERRORS as exc:
            self._failed("lookup", exc)
            return None
        return _parse_pointer(cast("bytes | None", raw))

    async def entries(self, h: str, run: str, start: int, count: int) -> list[Kept] | None:
        """Entries of ``run`` from item ``start`` on, oldest first (``None``: Redis failed)."""
        if self._down():
            return None
        try:
            async with self._limit:
                with anyio.fail_after(self._timeout * 2):
                    raw = await self._client.xrange(
                        _stream_key(h, run), f"{start}-0", "+", count=count
                    )
        except _IO_ERRORS as exc:
            self._failed("read", exc)
            return None
        return _parse_entries(cast("list[tuple[bytes, dict[bytes, bytes]]]", raw))

    async def tail(self, h: str, run: str) -> list[Kept]:
        """The last entry of ``run`` (its end, once it ended), or none."""
        try:
            async with self._limit:
                with anyio.fail_after(self._timeout * 2):
                    raw = await self._client.xrevrange(_stream_key(h, run), "+", "-", count=1)
        except _IO_ERRORS as exc:
            self._failed("read", exc)
            return []
        return _parse_entries(cast("list[tuple[bytes, dict[bytes, bytes]]]", raw))

    async def alive(self, h: str, run: str) -> bool | None:
        """Whether ``run`` of ``h`` may still add entries or its end (its keys live);
        ``None``: Redis failed."""
        if self._down():
            return None
        try:
            async with self._limit:
                with anyio.fail_after(self._timeout * 2):
                    pipe = self._client.pipeline(transaction=False)
                    pipe.exists(_stream_key(h, run))
                    pipe.get(_pointer_key(h))
                    exists, raw = await pipe.execute()
        except _IO_ERRORS as exc:
            self._failed("read", exc)
            return None
        pointer = _parse_pointer(cast("bytes | None", raw))
        return bool(exists) or (pointer is not None and pointer.run == run)

    def watch(self, h: str, run: str, after: int) -> Watch:
        """Follow ``run`` of ``h`` from item ``after`` on (``unwatch`` when done)."""
        key = _stream_key(h, run)
        watch = self._watches.get(key)
        if watch is None:
            watch = self._watches[key] = Watch(key, f"{after}-0")
        watch.refs += 1
        return watch

    def unwatch(self, watch: Watch) -> None:
        watch.refs -= 1
        if watch.refs <= 0 and self._watches.get(watch.key) is watch:
            del self._watches[watch.key]

    def _down(self) -> bool:
        return anyio.current_time() < self._down_until

    def _failed(self, kind: str, exc: BaseException) -> None:
        self.failures += 1
        self._down_until = anyio.current_time() + DOWN
        self._log.warn(kind, "keyed streams: Redis %s failed: %s", kind, exc)

    async def _read_loop(self) -> None:
        orders_key = _orders_key(self.node)
        orders_last = "0-0"  # the node id is new: every order in it is for this process
        delay = 0.05
        while True:
            watches = list(self._watches.values())
            polling = self.cluster and bool(watches)
            reply: Any
            try:
                if polling:
                    reply = await self._poll(orders_key, orders_last, watches)
                elif self.cluster:
                    reply = await self._wait_orders(orders_key, orders_last)
                else:
                    streams = {orders_key: orders_last, **{w.key: w.last for w in watches}}
                    with anyio.fail_after(self._timeout + BLOCK * 4):
                        reply = await self._reader.xread(
                            cast(Any, streams), count=64, block=max(1, int(BLOCK * 1000))
                        )
            except _IO_ERRORS as exc:
                self._failed("read", exc)
                for watch in watches:
                    watch.changed.set()  # its readers look for themselves
                    watch.changed = anyio.Event()
                await anyio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.05
            self._down_until = 0.0
            for watch in watches:
                watch.active = True
            for name, entries in cast("list[tuple[bytes, list[Any]]]", reply or []):
                if not entries:
                    continue
                last = entries[-1][0].decode()
                key = name.decode()
                if key == orders_key:
                    orders_last = last
                    for _, fields in entries:
                        self._order(fields)
                    continue
                followed = self._watches.get(key)
                if followed is not None:
                    followed.last = last
                    followed.changed.set()
                    followed.changed = anyio.Event()
            if polling:
                await anyio.sleep(POLL)

    async def _wait_orders(self, orders_key: str, orders_last: str) -> Any:
        """The reader on a cluster while nothing is watched: ``XREAD BLOCK`` on the orders
        key alone, sent to the node of its slot as the client knows it now (redis-py asks
        a node of the cluster for the keys of an ``XREAD``, each time, otherwise: a
        round trip more, and a dead node until the topology is read again)."""
        reader = cast(RedisCluster, self._reader)
        with anyio.fail_after(self._timeout + BLOCK * 4):
            await reader.initialize()  # the first topology, or a refresh an error asked for
            node = reader.get_node_from_key(orders_key)
            return await reader.execute_command(
                "XREAD",
                "COUNT",
                64,
                "BLOCK",
                max(1, int(BLOCK * 1000)),
                "STREAMS",
                orders_key,
                orders_last,
                target_nodes=node,
            )

    async def _poll(self, orders_key: str, orders_last: str, watches: list[Watch]) -> list[Any]:
        """One round of the reader on a cluster while streams are watched: what is new in
        the orders and in each of ``watches``, each key in an ``XRANGE`` of its own (no
        command over several slots; a key redis-py finds without asking a node, as it
        must for an ``XREAD``'s), in one pipeline (one round trip per node, side by
        side); in ``XREAD``'s form."""
        keys = [(orders_key, orders_last), *((watch.key, watch.last) for watch in watches)]
        pipe = self._reader.pipeline(transaction=False)
        for key, last in keys:
            pipe.xrange(key, f"({last}", "+", count=64)
        with anyio.fail_after(self._timeout * 2):
            results = await pipe.execute()
        return [
            (key.encode(), entries)
            for (key, _), entries in zip(keys, results, strict=True)
            if entries
        ]

    def _order(self, fields: dict[bytes, bytes]) -> None:
        h, run = fields.get(b"h"), fields.get(b"r")
        if h is None or run is None:
            return
        superseded = fields.get(b"s") == b"1"
        for callback in self._on_cancel:
            try:
                callback(h.decode(), run.decode(), superseded)
            except Exception:
                logger.exception("keyed streams: a cancel order failed")


def _parse_entries(raw: list[tuple[bytes, dict[bytes, bytes]]]) -> list[Kept]:
    kept = []
    for entry_id, fields in raw:
        seq = int(entry_id.split(b"-", 1)[0])
        end = fields.get(b"e")
        if end is not None:
            message = fields.get(b"m")
            text = None if message is None else message.decode("utf-8", "replace")
            kept.append(Kept(seq, None, end, fields.get(b"v"), text, fields.get(b"j")))
        else:
            kept.append(Kept(seq, fields.get(b"d")))
    return kept
