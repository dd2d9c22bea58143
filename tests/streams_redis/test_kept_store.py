"""The Redis side of keyed streams (``stores._redis_kept``) on a real redis-server: what
it keeps is bounded (items, bytes, one process's budget, an item's size), it expires
after the grace, a batch sent again is not doubled, orders reach their node, and Redis
being away costs nothing but the other workers' view."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from gatewayasgi.stores._redis_kept import MARKER, RedisKeptStreams, Run, stream_hash
from tests.redis_server import RedisServer

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

WAIT = 10.0


@asynccontextmanager
async def kept(url: str, **options: Any) -> AsyncIterator[RedisKeptStreams]:
    settings: dict[str, Any] = {"max_items": 10_000, "max_bytes": 4 << 20, "grace": 30.0}
    store = RedisKeptStreams(url, **{**settings, **options}, command_timeout=1.0)
    async with anyio.create_task_group() as tg:
        assert await store.start(tg)
        assert not await store.start(tg)  # once
        try:
            yield store
        finally:
            tg.cancel_scope.cancel()
            await store.close()


async def wait_until(condition: Callable[[], bool]) -> None:
    with anyio.fail_after(WAIT):
        while not condition():
            await anyio.sleep(0.01)


def stream_key(run: Run) -> str:
    return f"gatewayasgi:ks:{{{run.h}}}:{run.id}"


def pointer_key(run: Run) -> str:
    return f"gatewayasgi:ks:{{{run.h}}}"


async def written(store: RedisKeptStreams, run: Run) -> None:
    await wait_until(lambda: run.opened and not run.pending and run not in store._dirty)


def test_a_key_of_any_length_is_a_fixed_id() -> None:
    assert len(stream_hash("/chat", "k" * 1_000_000)) == 40
    assert stream_hash("/a", "x") != stream_hash("/b", "x")
    assert stream_hash("/a", "b\0c") != stream_hash("/a\0b", "c")


async def test_items_are_bounded_by_count_and_expire_after_the_grace(
    redis_server: RedisServer,
) -> None:
    async with kept(redis_server.url, max_items=10, grace=0.5) as store:
        run = store.open(stream_hash("/t", "chat-1"), "run")
        for seq in range(1, 101):
            store.add(run, seq, b'"item-%d"' % seq)
        await written(store, run)
        assert redis_server.command("XLEN", stream_key(run)) == 10
        first = redis_server.command("XRANGE", stream_key(run), "-", "+", "COUNT", "1")
        assert isinstance(first, list) and first[0][0] == b"91-0"  # type: ignore[index]
        pointer = redis_server.command("GET", pointer_key(run))
        assert pointer == f"{run.id}:{store.node}:0:run".encode()
        ttl = redis_server.command("PTTL", pointer_key(run))
        assert isinstance(ttl, int) and 0 < ttl <= store.live * 1000
        store.finish_end(run, b'{"done":true}')
        await wait_until(lambda: run.end_written)
        assert (
            redis_server.command("GET", pointer_key(run)) == f"{run.id}:{store.node}:1:run".encode()
        )
        for key in (stream_key(run), pointer_key(run)):
            ttl = redis_server.command("PTTL", key)
            assert isinstance(ttl, int) and 0 < ttl <= 500
        entries = await store.entries(run.h, run.id, 100, 10)
        assert entries is not None and [e.seq for e in entries] == [100, 101]
        assert entries[1].end == b"end" and entries[1].value == b'{"done":true}'
        await anyio.sleep(0.7)
        assert redis_server.command("EXISTS", stream_key(run), pointer_key(run)) == 0
        store.open(stream_hash("/t", "other"), "run")  # the grace passed: released
        assert store.total == 0


async def test_bytes_are_bounded_per_stream_and_per_process(redis_server: RedisServer) -> None:
    item = b'"' + b"x" * 98 + b'"'  # 100 bytes
    async with kept(redis_server.url, max_bytes=1_000, budget=3_000) as store:
        runs = [store.open(stream_hash("/t", f"chat-{n}"), "run") for n in range(5)]
        for seq in range(1, 51):
            for run in runs:
                store.add(run, seq, item)
        for run in runs:
            await written(store, run)
            assert run.kept <= 1_000
        assert store.total <= 3_000
        lengths = [redis_server.command("XLEN", stream_key(run)) for run in runs]
        assert all(isinstance(n, int) and 1 <= n <= 8 for n in lengths), lengths
        held = sum(n for n in lengths if isinstance(n, int)) * len(item)
        assert held <= 3_000
        # streams that each keep one item: past the budget, their items are markers
        crowd = [store.open(stream_hash("/t", f"crowd-{n}"), "run") for n in range(20)]
        for run in crowd:
            store.add(run, 1, item * 5)
        assert store.total <= 3_000 + 20 * MARKER  # a marker's bytes are all it holds
        for run in crowd:
            await written(store, run)
        kept_items = [e for run in crowd for e in await store.entries(run.h, run.id, 1, 5) or []]
        assert len(kept_items) == 20 and sum(len(e.data or b"") for e in kept_items) <= 3_000
        # an item too large for Redis is a marker there: another worker reads it as trimmed
        big = store.open(stream_hash("/t", "chat-big"), "run")
        store.add(big, 1, b'"' + b"y" * 2_000 + b'"')
        await written(store, big)
        entries = await store.entries(big.h, big.id, 1, 10)
        assert entries is not None and entries[0].seq == 1 and entries[0].data is None


async def test_a_batch_sent_again_is_not_doubled(redis_server: RedisServer) -> None:
    async with kept(redis_server.url) as store:
        run = store.open(stream_hash("/t", "chat-1"), "run")
        for seq in range(1, 6):
            store.add(run, seq, b"%d" % seq)
        await written(store, run)
        run.pending.extend((seq, b"%d" % seq) for seq in range(3, 6))  # a retry's batch
        store._mark(run)
        await written(store, run)
        entries = await store.entries(run.h, run.id, 1, 100)
        assert entries is not None and [e.data for e in entries] == [b"1", b"2", b"3", b"4", b"5"]


async def test_an_order_reaches_the_node_that_runs_the_stream(redis_server: RedisServer) -> None:
    got: list[tuple[str, str, bool]] = []
    async with kept(redis_server.url) as a, kept(redis_server.url) as b:
        a.on_cancel(lambda h, run, superseded: got.append((h, run, superseded)))
        run = a.open(stream_hash("/t", "chat-1"), "run")
        a.add(run, 1, b"1")
        await written(a, run)
        pointer = await b.lookup(run.h)
        assert pointer is not None and (pointer.run, pointer.node) == (run.id, a.node)
        b.cancel(pointer.node, run.h, pointer.run)
        await wait_until(lambda: got == [(run.h, run.id, False)])
        # a new run of the key on b supersedes a's: a is told so
        newer = b.open(run.h, "run")
        await written(b, newer)
        await wait_until(lambda: got[-1] == (run.h, run.id, True))
        pointer = await a.lookup(run.h)
        assert pointer is not None and pointer.node == b.node and not pointer.done


async def test_without_redis_nothing_fails_or_waits(redis_server: RedisServer) -> None:
    redis_server.stop()
    async with kept(redis_server.url) as store:
        run = store.open(stream_hash("/t", "chat-1"), "run")
        for seq in range(1, 20_001):
            store.add(run, seq, b"1")
        store.finish_cancelled(run)
        assert len(run.pending) <= store.max_items  # what waits for Redis is bounded
        with anyio.fail_after(3.0):
            assert await store.lookup(run.h) is None
        with anyio.fail_after(0.1):  # Redis failed a moment ago: no second wait
            assert await store.lookup(run.h) is None
            assert await store.entries(run.h, run.id, 1, 10) is None
        redis_server.start()
        await wait_until(lambda: run.end_written)  # the writer caught up
        entries = await store.entries(run.h, run.id, 1, 100_000)
        assert entries is not None and len(entries) == store.max_items + 1
        assert entries[-1].end == b"cancelled"


async def test_a_running_stream_is_found_again_after_redis_lost_its_data(
    redis_server: RedisServer,
) -> None:
    async with kept(redis_server.url, live=0.6) as store:  # renewed every 0.2 s
        run = store.open(stream_hash("/t", "chat-1"), "run")
        store.add(run, 1, b"1")
        await written(store, run)
        redis_server.restart()  # no persistence: everything is gone
        with anyio.fail_after(WAIT):
            while (pointer := await store.lookup(run.h)) is None:
                await anyio.sleep(0.05)
        assert pointer.run == run.id and not pointer.done
        store.add(run, 2, b"2")
        await written(store, run)
        entries = await store.entries(run.h, run.id, 1, 10)
        assert entries is not None and [e.seq for e in entries] == [2]  # 1 is lost: trimmed


async def test_scripts_redis_forgot_are_loaded_again_and_nothing_is_lost(
    redis_server: RedisServer,
) -> None:
    async with kept(redis_server.url) as store:
        run = store.open(stream_hash("/t", "chat-1"), "run")
        store.add(run, 1, b"1")
        await written(store, run)
        assert redis_server.command("SCRIPT", "FLUSH") == b"+OK"
        for seq in range(2, 6):
            store.add(run, seq, b"%d" % seq)
        store.finish_end(run, b"null")  # in the same batch as the items
        await wait_until(lambda: run.end_written)
        entries = await store.entries(run.h, run.id, 1, 10)
        assert entries is not None
        assert [(e.seq, e.data, e.end) for e in entries] == [
            *((n, b"%d" % n, None) for n in range(1, 6)),
            (6, None, b"end"),
        ]
