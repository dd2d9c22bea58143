"""``RedisSessionStore`` on a real redis-server: owner compare-and-set, tokens, TTL."""

from __future__ import annotations

import logging

import anyio
import pytest

from gatewayasgi.brokers.redis import RedisBroker
from gatewayasgi.stores.base import SessionRecord
from gatewayasgi.stores.redis import RedisSessionStore, connect
from tests.redis_server import RedisServer

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

CLIENT = "c_" + "a" * 32
TOKEN = "f" * 64
WINDOW = 30.0


def store_for(server: RedisServer) -> RedisSessionStore:
    return RedisSessionStore(connect(server.url, timeout=1.0, max_connections=8))


def record(**changes: object) -> SessionRecord:
    fields: dict[str, object] = {"id": CLIENT, "token_hash": TOKEN, "epoch": "e1"} | changes
    return SessionRecord(**fields)  # type: ignore[arg-type]


async def test_save_claim_drop_with_owner_checks(redis_server: RedisServer) -> None:
    """Only the owner rewrites or drops; a claim with the token moves the ownership."""
    store = store_for(redis_server)
    try:
        kept = record(rooms=("lobby", "x"), state={"n": 1, "name": "ada"}, detached=True)
        assert await store.save(kept, "owner-1", WINDOW)
        assert await store.save(kept, "owner-1", WINDOW)  # the owner may rewrite it
        assert not await store.save(record(), "owner-2", WINDOW)  # another may not
        claimed = await store.claim(CLIENT, TOKEN, "owner-2", WINDOW)
        assert claimed == kept
        assert not await store.save(kept, "owner-1", WINDOW)  # the old owner lost it
        assert not await store.drop(CLIENT, "owner-1")
        assert await store.drop(CLIENT, "owner-2")
        assert await store.claim(CLIENT, TOKEN, "owner-3", WINDOW) is None
        assert not await store.drop(CLIENT, "owner-2")  # gone already
    finally:
        await store.close()


async def test_a_wrong_token_claims_nothing(redis_server: RedisServer) -> None:
    """A claim with another token hash (or an unknown id) gets None and changes nothing."""
    store = store_for(redis_server)
    try:
        assert await store.save(record(), "owner-1", WINDOW)
        assert await store.claim(CLIENT, "0" * 64, "thief", WINDOW) is None
        assert await store.claim("c_" + "b" * 32, TOKEN, "thief", WINDOW) is None
        assert await store.claim("x" * 500, TOKEN, "thief", WINDOW) is None
        assert await store.save(record(), "owner-1", WINDOW)  # still owner-1's
    finally:
        await store.close()


async def test_concurrent_claims_leave_exactly_one_owner(redis_server: RedisServer) -> None:
    """Twenty workers claim at once: the claims are serialised, and afterwards exactly
    one of them owns the session (the others' writes are refused)."""
    stores = [store_for(redis_server) for _ in range(4)]
    try:
        assert await stores[0].save(record(detached=True), "first", WINDOW)
        owners = [f"worker-{i}" for i in range(20)]
        results: dict[str, SessionRecord | None] = {}

        async def claim(owner: str, store: RedisSessionStore) -> None:
            results[owner] = await store.claim(CLIENT, TOKEN, owner, WINDOW)

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                for index, owner in enumerate(owners):
                    tg.start_soon(claim, owner, stores[index % 4])
        assert all(result is not None for result in results.values())
        saved = [await stores[0].save(record(), owner, WINDOW) for owner in owners]
        assert saved.count(True) == 1
        assert not await stores[0].save(record(), "first", WINDOW)
    finally:
        for store in stores:
            await store.close()


async def test_records_expire_with_their_ttl(redis_server: RedisServer) -> None:
    """After ``ttl`` seconds the session is gone: no claim, and anyone may save anew."""
    store = store_for(redis_server)
    try:
        assert await store.save(record(), "owner-1", 0.2)
        ttl = redis_server.command("PTTL", store.key(CLIENT))
        assert isinstance(ttl, int) and 0 < ttl <= 200
        with anyio.fail_after(5):
            while redis_server.command("EXISTS", store.key(CLIENT)) != 0:
                await anyio.sleep(0.05)
        assert await store.claim(CLIENT, TOKEN, "owner-2", WINDOW) is None
        assert await store.save(record(), "owner-3", WINDOW)
    finally:
        await store.close()


async def test_state_keeps_only_json_values(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Values orjson cannot serialise are left out, their keys logged once."""
    store = store_for(redis_server)
    try:
        state = {"ok": [1, "two", None], "sock": object(), "fn": print}
        with caplog.at_level(logging.WARNING, logger="gatewayasgi.stores.redis"):
            assert await store.save(record(state=state), "o", WINDOW)
            assert await store.save(record(state=state), "o", WINDOW)
        claimed = await store.claim(CLIENT, TOKEN, "o2", WINDOW)
        assert claimed is not None and claimed.state == {"ok": [1, "two", None]}
        warned = [r.getMessage() for r in caplog.records if "not JSON" in r.getMessage()]
        assert len(warned) == 2 and "'sock'" in warned[0] and "'fn'" in warned[1]
    finally:
        await store.close()


async def test_redis_away_save_false_claim_none(redis_server: RedisServer) -> None:
    """With Redis down, save returns False and claim None, quickly and without raising."""
    store = store_for(redis_server)
    try:
        redis_server.stop()
        with anyio.fail_after(5):
            assert not await store.save(record(), "o", WINDOW)
            assert await store.claim(CLIENT, TOKEN, "o", WINDOW) is None
    finally:
        await store.close()


async def test_the_broker_makes_both(redis_server: RedisServer) -> None:
    """``RedisBroker.history`` and ``session_store`` build objects on the broker's Redis."""
    broker = RedisBroker(redis_server.url)
    log = broker.history("/chat", max_frames=100, max_age=60)
    store = broker.session_store("/chat")
    other = broker.session_store("/other")
    try:
        assert log.carries and store.shared
        assert log.key == "gatewayasgi:history:/chat" and log.max_frames == 100
        assert await store.save(record(), "o", WINDOW)
        assert redis_server.command("EXISTS", "gatewayasgi:/chat:session:" + CLIENT) == 1
        # One key space per namespace: another gateway's store cannot claim it.
        assert await other.claim(CLIENT, record().token_hash, "p", WINDOW) is None
    finally:
        await log.close()
        await store.close()
        await broker.close()
