"""The history (``RedisLog``) and the session store on a real Redis Cluster: hash-tagged
keys in one slot, every worker reading the same entries in the same order, replay, and
the session scripts' owner checks."""

from __future__ import annotations

import anyio
import pytest

from gatewayasgi.brokers.redis import RedisBroker
from gatewayasgi.stores.base import SessionRecord
from gatewayasgi.stores.redis import RedisSessionStore, connect_cluster
from tests.recovery.redis_workers import wait_until, workers
from tests.redis_cluster import RedisCluster

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

CLIENT = "c_" + "b" * 32
TOKEN = "e" * 64


async def test_every_worker_reads_every_append_in_one_order(redis_cluster: RedisCluster) -> None:
    async with workers(redis_cluster.url, 2, cluster=True) as (a, b):
        assert a.log.key == "gatewayasgi:{history:/chat}"
        slots = {redis_cluster.master_of(key).port for key in (a.log.key, a.log.epoch_key)}
        assert len(slots) == 1  # the stream and its companions: one node
        for n in range(200):
            await (a if n % 2 else b).emit(f"f{n}")
        await wait_until(lambda: len(a.entries) == len(b.entries) == 200)
        assert a.frames == b.frames and sorted(a.frames) == sorted(f"f{n}" for n in range(200))
        assert [e.offset for e in a.entries] == [e.offset for e in b.entries]
        replayed = await a.log.replay(a.entries[49].offset, 500)
        assert [e.frame for e in replayed] == a.frames[50:]
        assert a.resets == b.resets == []


async def test_the_session_scripts_run_on_the_cluster(redis_cluster: RedisCluster) -> None:
    broker = RedisBroker(redis_cluster.url, cluster=True)
    store = broker.session_store("/chat")
    try:
        kept = SessionRecord(CLIENT, TOKEN, "e1", ("lobby",), {"n": 1}, True)
        assert await store.save(kept, "owner-1", 30.0)
        assert not await store.save(kept, "owner-2", 30.0)
        assert await store.claim(CLIENT, TOKEN, "owner-2", 30.0) == kept
        assert await store.drop(CLIENT, "owner-2")
        assert await store.claim(CLIENT, TOKEN, "owner-3", 30.0) is None
    finally:
        await broker.close()
    own = RedisSessionStore(connect_cluster(redis_cluster.url, timeout=1.0, max_connections=4))
    try:
        assert await own.save(kept, "owner-1", 30.0)
        with anyio.fail_after(5):
            assert await own.drop(CLIENT, "owner-1")
    finally:
        await own.close()
