"""Keyed streams on a real Redis Cluster (three masters, three replicas).

The store (``stores._redis_kept``, ``cluster=True``): a reader follows streams on every
master and its node's orders, with no command over several slots, in both of its modes
(blocking on the orders alone, polling while streams are watched); the scripts are on
every master, and after a failover the replica that took over (which never had them) gets
them: the batch is sent again, nothing lost or doubled.

Then two hypercorn workers (``tests.cluster_redis.keyed_app``: ``tests.streams_redis.app``'s
``Agent`` on ``RedisBroker(..., cluster=True)``): a client of worker B attaches to a stream
that runs on worker A (its kept items, the live ones and the end, each once, in order),
cancels it (A's generator is closed), or supersedes its key.

The cluster is the session's (``tests.redis_cluster``; the failover test starts one of its
own), the workers the module's. Every wait has a timeout.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from redis.cluster import key_slot

from gatewayasgi.stores._redis_kept import RedisKeptStreams, Run, stream_hash
from tests.cluster_redis.keyed_app import URL_VARIABLE
from tests.redis_cluster import ClusterServer, RedisCluster, running_redis_cluster
from tests.streams_redis.agent import (
    cancel_from_the_other_worker,
    reattach_with_the_python_client,
    replay_runs_that_ended,
    supersede_from_the_other_worker,
)
from tests.workers import Node, start_node, stop_node

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

APP = "tests.cluster_redis.keyed_app:app"
WAIT = 15.0


# -- the store ---------------------------------------------------------------------------


@asynccontextmanager
async def kept(url: str, **options: Any) -> AsyncIterator[RedisKeptStreams]:
    settings: dict[str, Any] = {"max_items": 10_000, "max_bytes": 4 << 20, "grace": 30.0}
    store = RedisKeptStreams(url, **{**settings, **options}, command_timeout=1.0, cluster=True)
    async with anyio.create_task_group() as tg:
        assert await store.start(tg)
        try:
            yield store
        finally:
            tg.cancel_scope.cancel()
            await store.close()


async def wait_until(condition: Callable[[], bool], timeout: float = WAIT) -> None:
    with anyio.fail_after(timeout):
        while not condition():
            await anyio.sleep(0.01)


async def written(store: RedisKeptStreams, run: Run) -> None:
    await wait_until(lambda: run.opened and not run.pending and run not in store._dirty)


def pointer_key(h: str) -> str:
    return f"gatewayasgi:ks:{{{h}}}"


def keys_on_every_master(redis: RedisCluster, prefix: str) -> list[str]:
    """Stream keys whose slots are on different masters, one per master that owns slots
    (one may own a single slot after another module's reshard), three at least."""
    owner = {
        slot: node.port
        for node in redis.masters()
        for first, last in node.slots
        for slot in range(first, last + 1)
    }
    found: dict[int, str] = {}
    for n in range(1_000_000):
        key = f"{prefix}-{n}"
        port = owner.get(key_slot(pointer_key(stream_hash("/t", key)).encode()))
        if port is not None:
            found.setdefault(port, key)
        if len(found) == len(set(owner.values())):
            keys = list(found.values())
            return keys + [f"{prefix}-more-{n}" for n in range(3 - len(keys))]  # three
    raise AssertionError(f"no keys on every master: {redis.masters()}")


def scripts_everywhere(redis: RedisCluster, store: RedisKeptStreams) -> bool:
    shas = [s.sha for s in (store._add_script, store._done_script, store._renew_script)]
    return all(
        redis.server(node.port).command("SCRIPT", "EXISTS", *shas) == [1, 1, 1]
        for node in redis.masters()
    )


async def test_the_reader_follows_streams_on_every_master_and_orders_reach_their_node(
    redis_cluster: RedisCluster,
) -> None:
    got: list[tuple[str, str, bool]] = []
    async with kept(redis_cluster.url) as a, kept(redis_cluster.url) as b:
        a.on_cancel(lambda h, run, superseded: got.append((h, run, superseded)))
        runs = [
            a.open(stream_hash("/t", key), "run")
            for key in keys_on_every_master(redis_cluster, "chat-spread")
        ]
        for run in runs:
            a.add(run, 1, b"1")
        for run in runs:
            await written(a, run)
        assert scripts_everywhere(redis_cluster, a)
        # b follows streams on every master: its reader polls them
        watches = [b.watch(run.h, run.id, 1) for run in runs]
        await wait_until(lambda: all(w.active for w in watches))
        changed = [w.changed for w in watches]
        for seq in range(2, 42):
            for run in runs:
                a.add(run, seq, b"%d" % seq)
            await anyio.sleep(0.005)
        await wait_until(lambda: all(w.last == "41-0" for w in watches))
        assert all(event.is_set() for event in changed)
        for run in runs:
            entries = await b.entries(run.h, run.id, 1, 100)
            assert entries is not None and [e.seq for e in entries] == list(range(1, 42))
        # an order while a blocks on its orders alone, one while it polls (it watches too)
        pointer = await b.lookup(runs[0].h)
        assert pointer is not None and (pointer.run, pointer.node) == (runs[0].id, a.node)
        b.cancel(a.node, runs[0].h, runs[0].id)
        await wait_until(lambda: got == [(runs[0].h, runs[0].id, False)])
        theirs = b.open(stream_hash("/t", "chat-theirs"), "run")
        b.add(theirs, 1, b"1")
        await written(b, theirs)
        followed = a.watch(theirs.h, theirs.id, 1)
        await wait_until(lambda: followed.active)
        newer = b.open(runs[1].h, "run")  # a new run of the key on b supersedes a's
        await written(b, newer)
        await wait_until(lambda: got[-1] == (runs[1].h, runs[1].id, True))
        a.unwatch(followed)
        for watch in watches:
            b.unwatch(watch)
        # nothing watched: b blocks on its orders alone again, and still gets them
        a.cancel(b.node, newer.h, newer.id)
        b_got: list[str] = []
        b.on_cancel(lambda h, run, superseded: b_got.append(run))
        await wait_until(lambda: b_got == [newer.id])
        assert a.failures == b.failures == 0  # no CROSSSLOT, nothing refused
        # every master forgot the scripts: the next batch loads them again, then goes
        for node in redis_cluster.masters():
            assert redis_cluster.server(node.port).command("SCRIPT", "FLUSH") == b"+OK"
        last = runs[-1]
        a.add(last, 42, b"42")
        a.finish_end(last, b"null")
        await wait_until(lambda: last.end_written)
        assert scripts_everywhere(redis_cluster, a)
        entries = await a.entries(last.h, last.id, 40, 10)
        assert entries is not None
        assert [(e.seq, e.data, e.end) for e in entries] == [
            (40, b"40", None),
            (41, b"41", None),
            (42, b"42", None),
            (43, None, b"end"),
        ]


@pytest.mark.timeout(180)  # a revive may wait a minute for a whole cluster
async def test_after_a_failover_the_new_master_gets_the_scripts_and_nothing_is_lost(
    tmp_path: Path,
) -> None:
    # A cluster of its own: a failover needs a majority of the masters that own slots,
    # and another module's reshard may have left the session's cluster with two.
    with ExitStack() as stack:
        redis = await anyio.to_thread.run_sync(stack.enter_context, running_redis_cluster(tmp_path))
        async with kept(redis.url) as a, kept(redis.url) as b:
            run = a.open(stream_hash("/t", "chat-failover"), "run")
            for seq in range(1, 11):
                a.add(run, seq, b"%d" % seq)
            await written(a, run)
            watch = b.watch(run.h, run.id, 10)
            await wait_until(lambda: watch.active)
            master = redis.master_of(pointer_key(run.h))
            await anyio.to_thread.run_sync(replicated, redis.server(master.port))
            redis.kill_master(master)
            for seq in range(11, 21):  # queued while the master is away, sent after
                a.add(run, seq, b"%d" % seq)
            a.finish_end(run, b'{"done":true}')
            port = await anyio.to_thread.run_sync(redis.wait_failover, master)
            await wait_until(lambda: run.end_written)
            assert redis.server(port).command("SCRIPT", "EXISTS", a._add_script.sha) == [1]
            await wait_until(lambda: watch.last == "21-0")  # b's reader found the end
            with anyio.fail_after(WAIT):  # b's first command to the old master fails
                while (entries := await b.entries(run.h, run.id, 1, 100)) is None:
                    await anyio.sleep(0.1)
            assert [(e.seq, e.data) for e in entries[:-1]] == [
                (seq, b"%d" % seq) for seq in range(1, 21)
            ]
            assert (entries[-1].seq, entries[-1].end) == (21, b"end")
            b.unwatch(watch)
        await anyio.to_thread.run_sync(stack.close)


def replicated(master: ClusterServer) -> None:
    """Wait until ``master``'s replicas have every write it took."""
    end = time.monotonic() + WAIT
    while time.monotonic() < end:
        info = master.info()
        offset = info.get("master_repl_offset")
        replicas = [v for k, v in info.items() if k.startswith("slave") and k[5:].isdigit()]
        if replicas and all(f"offset={offset}," in v for v in replicas):
            return
        time.sleep(0.02)
    raise TimeoutError("the replicas did not catch up")


# -- two workers -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workers(
    redis_cluster: RedisCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Node, Node]]:
    workdir: Path = tmp_path_factory.mktemp("keyed-workers")
    os.environ[URL_VARIABLE] = redis_cluster.url
    nodes: list[Node] = []
    try:
        for name in ("A", "B"):
            nodes.append(start_node(name, redis_cluster.url.split(",")[0], workdir, APP, "/agent"))
    finally:
        os.environ.pop(URL_VARIABLE, None)
        if len(nodes) < 2:
            for node in nodes:
                stop_node(node)
    try:
        yield nodes[0], nodes[1]
    finally:
        for node in nodes:
            stop_node(node)


async def test_a_client_of_another_worker_gets_replay_live_and_end_once_in_order(
    workers: tuple[Node, Node],
) -> None:
    a, b = workers
    await reattach_with_the_python_client(a, b)
    await replay_runs_that_ended(a, b)


async def test_a_cancel_from_another_worker_closes_the_generator(
    workers: tuple[Node, Node],
) -> None:
    a, b = workers
    await cancel_from_the_other_worker(a, b)


async def test_a_request_on_another_worker_supersedes_the_key(
    workers: tuple[Node, Node],
) -> None:
    a, b = workers
    await supersede_from_the_other_worker(a, b)
