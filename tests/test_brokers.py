"""One contract suite for every broker (memory and Redis), then Redis's fault handling.

The contract tests run against two kinds of backplane: ``MemoryBroker``s sharing one
``MemoryHub``, and ``RedisBroker``s sharing a real ``redis-server`` started per test.
Every wait is bounded by ``anyio.fail_after``.
"""

from __future__ import annotations

import importlib
import logging
import socket
import sys
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from gatewayasgi.brokers import Broker, MemoryBroker
from gatewayasgi.brokers._pubsub import parse_url
from gatewayasgi.brokers.memory import MemoryHub
from gatewayasgi.brokers.redis import RedisBroker, _redact
from gatewayasgi.brokers.signing import Signer
from tests.redis_server import (
    RedisServer,
    encode_command,
    redis_server_binary,
    running_redis_server,
)

pytestmark = pytest.mark.anyio

WAIT = 5.0
RECOVERY = 10.0  # the bound for restoring every subscription


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# -- backplanes ----------------------------------------------------------------------


@dataclass
class Backplane:
    """Makes brokers that reach each other (one hub, or one redis-server)."""

    name: str
    make: Callable[[], Broker]
    server: RedisServer | None = None


@pytest.fixture(params=["memory", "redis"])
def backplane(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backplane]:
    if request.param == "memory":
        hub = MemoryHub()
        yield Backplane("memory", lambda: MemoryBroker(hub))
    else:
        with running_redis_server(tmp_path) as server:
            yield Backplane("redis", lambda: RedisBroker(server.url), server)


def fast_redis(url: str, **options: Any) -> RedisBroker:
    """A RedisBroker with short timeouts, so fault tests stay fast."""
    defaults: dict[str, Any] = {
        "reconnect_delay": 0.05,
        "max_reconnect_delay": 0.5,
        "connect_timeout": 1.0,
        "publish_timeout": 1.0,
        "health_check_interval": 1.0,
    }
    return RedisBroker(url, **{**defaults, **options})


# -- nodes: a started broker and what it received ------------------------------------


@dataclass
class Node:
    broker: Broker
    inbox_in: MemoryObjectSendStream[tuple[str, bytes]]
    inbox: MemoryObjectReceiveStream[tuple[str, bytes]]
    seen: list[tuple[str, bytes]] = field(default_factory=list)

    def on_message(self, channel: str, data: bytes) -> None:
        self.inbox_in.send_nowait((channel, data))

    async def receive(self, within: float = WAIT) -> tuple[str, bytes]:
        with anyio.fail_after(within):
            message = await self.inbox.receive()
        self.seen.append(message)
        return message

    async def receive_until(self, sentinel: bytes, within: float = WAIT) -> list[tuple[str, bytes]]:
        """Every message up to and including the one whose data is ``sentinel``."""
        messages: list[tuple[str, bytes]] = []
        with anyio.fail_after(within):
            while not messages or messages[-1][1] != sentinel:
                messages.append(await self.receive())
        return messages

    def pending(self) -> list[tuple[str, bytes]]:
        """Messages already delivered but not yet received."""
        out = []
        while True:
            try:
                out.append(self.inbox.receive_nowait())
            except anyio.WouldBlock:
                return out


@asynccontextmanager
async def started(*brokers: Broker) -> AsyncIterator[list[Node]]:
    """Start every broker in one task group; close them all on the way out."""
    async with anyio.create_task_group() as tg:
        nodes = []
        for broker in brokers:
            send, receive = anyio.create_memory_object_stream[tuple[str, bytes]](1000)
            node = Node(broker, send, receive)
            await broker.start(node.on_message, tg)
            nodes.append(node)
        try:
            yield nodes
        finally:
            with anyio.fail_after(WAIT):
                for node in nodes:
                    await node.broker.close()
                    node.inbox_in.close()
                    node.inbox.close()
            tg.cancel_scope.cancel()


async def deliver_eventually(
    publisher: Broker, channel: str, subscriber: Node, within: float = RECOVERY
) -> float:
    """Publish probes until one reaches ``subscriber``; return the seconds it took."""
    began = time.monotonic()
    with anyio.fail_after(within):
        n = 0
        while True:
            n += 1
            await publisher.publish(channel, b"probe-%d" % n)
            with anyio.move_on_after(0.1):
                while True:
                    got_channel, data = await subscriber.inbox.receive()
                    if got_channel == channel and data.startswith(b"probe-"):
                        return time.monotonic() - began


async def until(predicate: Callable[[], object], within: float = WAIT) -> None:
    """Poll ``predicate`` every 10 ms until it is true; fail after ``within`` seconds."""
    with anyio.fail_after(within):
        while True:
            if predicate():
                return
            await anyio.sleep(0.01)


# -- the contract ----------------------------------------------------------------------


async def test_message_published_by_one_node_reaches_another(backplane: Backplane) -> None:
    async with started(backplane.make(), backplane.make()) as (sub, pub):
        await sub.broker.subscribe("news")
        await pub.broker.publish("news", b"hello")
        assert await sub.receive() == ("news", b"hello")


@pytest.mark.parametrize(
    "payload",
    [b"", b"\x00\xff\r\n\n\x00", bytes(range(256)) * 4, b"\x80not utf-8\xfe", b"x" * 300_000],
    ids=["empty", "control-bytes", "all-bytes", "invalid-utf8", "300k"],
)
async def test_payloads_arrive_byte_for_byte(backplane: Backplane, payload: bytes) -> None:
    async with started(backplane.make(), backplane.make()) as (sub, pub):
        await sub.broker.subscribe("bin")
        await pub.broker.publish("bin", payload)
        assert await sub.receive() == ("bin", payload)


async def test_messages_from_one_publisher_arrive_in_order(backplane: Backplane) -> None:
    async with started(backplane.make(), backplane.make()) as (sub, pub):
        await sub.broker.subscribe("seq")
        for i in range(200):
            await pub.broker.publish("seq", str(i).encode())
        received = [await sub.receive() for _ in range(200)]
        assert received == [("seq", str(i).encode()) for i in range(200)]
        assert sub.pending() == []


async def test_each_node_receives_only_its_channels(backplane: Backplane) -> None:
    async with started(backplane.make(), backplane.make(), backplane.make()) as nodes:
        both, second, pub = nodes
        await both.broker.subscribe("one")
        await both.broker.subscribe("two")
        await second.broker.subscribe("two")
        await pub.broker.publish("one", b"1")
        await pub.broker.publish("three", b"nobody listens")
        await pub.broker.publish("two", b"2")
        assert await both.receive_until(b"2") == [("one", b"1"), ("two", b"2")]
        assert await second.receive_until(b"2") == [("two", b"2")]


async def test_subscribing_twice_delivers_once(backplane: Backplane) -> None:
    async with started(backplane.make(), backplane.make()) as (sub, pub):
        await sub.broker.subscribe("dup")
        await sub.broker.subscribe("dup")
        await pub.broker.publish("dup", b"once")
        await pub.broker.publish("dup", b"end")
        assert await sub.receive_until(b"end") == [("dup", b"once"), ("dup", b"end")]


async def test_unsubscribed_channel_stops_delivering(backplane: Backplane) -> None:
    async with started(backplane.make(), backplane.make()) as (sub, pub):
        await sub.broker.subscribe("a")
        await sub.broker.subscribe("b")
        await sub.broker.unsubscribe("a")
        await sub.broker.unsubscribe("never-subscribed")
        await pub.broker.publish("a", b"dropped")
        await pub.broker.publish("b", b"kept")
        # "b" is published after "a", so receiving it first proves "a" was not delivered.
        assert await sub.receive_until(b"kept") == [("b", b"kept")]
        await sub.broker.subscribe("a")
        await pub.broker.publish("a", b"again")
        assert await sub.receive() == ("a", b"again")


async def test_publish_without_subscribers_is_a_no_op(backplane: Backplane) -> None:
    async with started(backplane.make()) as (node,):
        await node.broker.publish("empty", b"into the void")


async def test_closed_broker_receives_nothing_and_publish_does_not_raise(
    backplane: Backplane,
) -> None:
    async with started(backplane.make(), backplane.make(), backplane.make()) as nodes:
        closed, other, pub = nodes
        await closed.broker.subscribe("c")
        await other.broker.subscribe("c")
        await closed.broker.close()
        await closed.broker.close()  # idempotent
        await closed.broker.publish("c", b"from a closed broker")  # must not raise
        await pub.broker.publish("c", b"after close")
        assert ("c", b"after close") in await other.receive_until(b"after close")
        assert closed.pending() == []


# -- Redis: configuration, size limits, stats ------------------------------------------


def test_missing_redis_package_raises_with_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "redis" or m.startswith("redis.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "redis", None)
    monkeypatch.delitem(sys.modules, "gatewayasgi.brokers.redis")
    with pytest.raises(ImportError, match=r'pip install "gatewayasgi\[redis\]"'):
        importlib.import_module("gatewayasgi.brokers.redis")


def test_redis_broker_is_exported_lazily() -> None:
    import gatewayasgi.brokers

    assert gatewayasgi.brokers.RedisBroker is RedisBroker


def test_password_is_redacted_from_logged_urls() -> None:
    assert _redact("redis://user:s3cret@host:6380/1") == "redis://user:***@host:6380/1"
    assert _redact("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


@pytest.mark.parametrize(
    "options",
    [
        {"max_message_size": 0},
        {"reconnect_delay": 0},
        {"reconnect_delay": 2, "max_reconnect_delay": 1},
        {"secret": "15-byte secret!"},
        {"secret": []},
    ],
)
def test_invalid_options_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        RedisBroker("redis://127.0.0.1:1/0", **options)


def test_a_broker_can_be_built_outside_an_event_loop() -> None:
    """Apps build their middleware, broker included, at import time."""
    broker = RedisBroker("redis://127.0.0.1:1/0", secret="x" * 16)
    assert not broker.connected and broker.stats.connects == 0


@pytest.mark.parametrize("url", ["http://127.0.0.1:6379", "127.0.0.1:6379", "unix://"])
def test_urls_the_subscriber_cannot_use_are_refused_at_construction(url: str) -> None:
    with pytest.raises(ValueError, match=r"redis://, rediss:// or unix://|socket path"):
        RedisBroker(url)


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6380/2",
        "redis://user:p%40ss%20word@example.com/0",
        "redis://:only-password@[::1]:7000",
        "redis://host?username=u&password=p",
        "redis://",
        "rediss://:pw@tls.example.com:6390/0?ssl_cert_reqs=none&ssl_ca_certs=/ca.pem",
        "unix://:pw@/tmp/redis.sock?db=1",
    ],
)
def test_the_subscriber_reads_urls_as_redis_py_does(url: str) -> None:
    """Publisher (redis-py) and subscriber (ours) must reach the same server as the same user."""
    from redis.asyncio.connection import parse_url as redis_py_parse_url

    ours, theirs = parse_url(url), redis_py_parse_url(url)
    assert ours.username == theirs.get("username")
    assert ours.password == theirs.get("password")
    if url.startswith("unix"):
        assert ours.path == theirs["path"]
    else:
        assert (ours.host, ours.port) == (theirs.get("host", "localhost"), theirs.get("port", 6379))
        assert ours.tls == url.startswith("rediss")
    if "ssl_ca_certs" in theirs:
        assert (ours.ssl_cert_reqs, ours.ssl_ca_certs) == ("none", "/ca.pem")


async def test_oversize_messages_are_dropped_and_counted_on_both_sides(
    redis_server: RedisServer,
) -> None:
    small, big = fast_redis(redis_server.url, max_message_size=100), fast_redis(redis_server.url)
    async with started(small, big) as (sub, pub):
        await sub.broker.subscribe("size")
        await small.publish("size", b"x" * 101)  # refused before it leaves
        await pub.broker.publish("size", b"y" * 101)  # refused when it arrives
        await pub.broker.publish("size", b"y" * 100)
        assert await sub.receive_until(b"y" * 100) == [("size", b"y" * 100)]
        assert small.stats.oversize_dropped == 2
        assert small.stats.received == 1
        assert big.stats.published == 2


async def test_stats_count_connections_and_messages(redis_server: RedisServer) -> None:
    async with started(fast_redis(redis_server.url), fast_redis(redis_server.url)) as nodes:
        sub, pub = nodes
        assert isinstance(sub.broker, RedisBroker) and isinstance(pub.broker, RedisBroker)
        assert sub.broker.connected and sub.broker.stats.connects == 1
        await sub.broker.subscribe("s")
        for _ in range(3):
            await pub.broker.publish("s", b"m")
        await sub.receive_until(b"m")
        await sub.receive()
        await sub.receive()
        assert pub.broker.stats.published == 3
        assert sub.broker.stats.received == 3
        assert pub.broker.stats.publish_failures == 0


async def test_subscribe_returns_once_redis_confirmed_it(redis_server: RedisServer) -> None:
    async with started(fast_redis(redis_server.url)) as (sub,):
        await sub.broker.subscribe("ack")
        assert redis_server.pubsub_subscribers("ack") == 1
        await sub.broker.unsubscribe("ack")
        await until(lambda: redis_server.pubsub_subscribers("ack") == 0)


async def test_publish_works_without_start(redis_server: RedisServer) -> None:
    """What an emitter in another process does: publish only, never start()."""
    publisher = fast_redis(redis_server.url)
    async with started(fast_redis(redis_server.url)) as (sub,):
        await sub.broker.subscribe("solo")
        await publisher.publish("solo", b"from outside")
        assert await sub.receive() == ("solo", b"from outside")
        await publisher.close()


# -- Redis: the size cap reads length headers, not payloads -------------------------------

SMALL_CAP = 64 * 1024
HUGE = b"h" * (1024 * 1024)


def publish_in_batches(port: int, batches: list[bytes], replies_per_batch: int) -> None:
    """Send pre-encoded PUBLISH batches on one raw connection, reading every reply.

    Blocking (run it in a thread); allocates nothing large, so a memory trace of the
    process sees only what the subscriber holds.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as raw:
        for batch in batches:
            raw.sendall(batch)
            replies = b""  # read them all: Redis drops what is unread when we close
            while replies.count(b"\r\n") < replies_per_batch:
                replies += raw.recv(1024)


async def test_oversize_messages_are_skipped_unread_and_the_connection_survives(
    redis_server: RedisServer,
) -> None:
    """A raw client publishes 1 MiB messages between small ones at a 64 KiB cap.

    Every small one arrives, in order, on the first connection; the big ones are
    counted; and Python never holds one: the traced peak stays under 1 MiB (reading
    each in full before refusing it peaked at about 3 MiB).
    """
    broker = fast_redis(redis_server.url, max_message_size=SMALL_CAP)
    pairs = 5  # per batch: 5 MiB in flight, well under Redis's 32 MiB pubsub buffer limit
    batches = [
        b"".join(
            encode_command(b"PUBLISH", b"mixed", data)
            for i in range(first, first + pairs)
            for data in (HUGE, b"small-%d" % i)
        )
        for first in range(0, 50, pairs)
    ]
    async with started(broker) as (sub,):
        await sub.broker.subscribe("mixed")
        tracemalloc.start()
        try:
            await anyio.to_thread.run_sync(
                publish_in_batches, redis_server.port, batches, 2 * pairs
            )
            received = await sub.receive_until(b"small-49", within=30)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert received == [("mixed", b"small-%d" % i) for i in range(50)]
        assert (broker.stats.connects, broker.stats.disconnects) == (1, 0)
        assert broker.stats.oversize_dropped == 50 and broker.stats.received == 50
        assert peak < len(HUGE), f"traced peak {peak} bytes"


# -- Redis: shared-secret signatures ----------------------------------------------------

SECRET = "correct horse battery staple, 32"
OTHER_SECRET = b"a different secret of 32 bytes!!"


async def test_brokers_sharing_a_secret_drop_forged_messages(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Unsigned, wrongly signed and replayed-from-another-channel messages are dropped."""
    caplog.set_level(logging.WARNING, logger="gatewayasgi.brokers.redis")
    receiver = fast_redis(redis_server.url, secret=SECRET)
    sender = fast_redis(redis_server.url, secret=SECRET)
    async with started(receiver, sender) as (sub, pub):
        await sub.broker.subscribe("signed")
        assert await pub.broker.publish("signed", b"first") is True
        forged = [
            b'{"n":"attacker","k":"all"}\n{"event":"pwned"}',
            Signer(OTHER_SECRET).sign("signed", b"wrong secret"),
            Signer(SECRET).sign("another-channel", b"right secret, wrong channel"),
        ]
        for data in forged:
            assert redis_server.command("PUBLISH", "signed", data) == 1
        await pub.broker.publish("signed", b"second")
        assert await sub.receive_until(b"second") == [("signed", b"first"), ("signed", b"second")]
        assert receiver.stats.forged_dropped == 3 and receiver.stats.received == 2
    forged_logs = [r for r in caplog.records if "secret" in r.getMessage()]
    assert len(forged_logs) == 1, [r.getMessage() for r in forged_logs]  # once a minute


async def test_a_broker_without_the_secret_cannot_reach_one_with_it(
    redis_server: RedisServer,
) -> None:
    receiver = fast_redis(redis_server.url, secret=[SECRET, OTHER_SECRET])
    plain, old = fast_redis(redis_server.url), fast_redis(redis_server.url, secret=OTHER_SECRET)
    async with started(receiver, plain, old) as (sub, _, _):
        await sub.broker.subscribe("rot")
        await plain.publish("rot", b"unsigned")
        await old.publish("rot", b"old secret, still accepted while rotating")
        assert await sub.receive() == ("rot", b"old secret, still accepted while rotating")
        assert receiver.stats.forged_dropped == 1


async def test_a_signed_message_at_max_message_size_is_not_oversize(
    redis_server: RedisServer,
) -> None:
    """The cap is on the payload: the signature's bytes do not count against it."""
    receiver = fast_redis(redis_server.url, secret=SECRET, max_message_size=SMALL_CAP)
    sender = fast_redis(redis_server.url, secret=SECRET, max_message_size=SMALL_CAP)
    async with started(receiver, sender) as (sub, pub):
        await sub.broker.subscribe("edge")
        assert await pub.broker.publish("edge", b"e" * SMALL_CAP) is True
        assert await pub.broker.publish("edge", b"e" * (SMALL_CAP + 1)) is False
        assert await sub.receive() == ("edge", b"e" * SMALL_CAP)


# -- Redis: authentication and TLS ------------------------------------------------------


async def test_a_password_protected_redis_is_reached_with_the_urls_credentials(
    tmp_path: Path,
) -> None:
    """A password, and an ACL user limited as docs/scaling.md recommends, both work."""
    with running_redis_server(tmp_path, password="p@ss word/:") as server:
        assert "p%40ss%20word%2F%3A@" in server.url
        acl = "resetchannels &gatewayasgi:* -@all +publish +subscribe +unsubscribe +ping +auth"
        assert server.command("ACL", "SETUSER", "gw", "on", ">gw-password", *acl.split()) == b"+OK"
        gateway_user = server.url.replace(":p%40ss%20word%2F%3A@", "gw:gw-password@")
        async with started(fast_redis(server.url), fast_redis(gateway_user)) as nodes:
            for node in nodes:
                await node.broker.subscribe("gatewayasgi:auth")
            default, limited = nodes
            await default.broker.publish("gatewayasgi:auth", b"to the limited user")
            assert await limited.receive() == ("gatewayasgi:auth", b"to the limited user")
            await limited.broker.publish("gatewayasgi:auth", b"from the limited user")
            assert await default.receive_until(b"from the limited user")
            for node in nodes:
                assert node.broker.stats.connects == 1  # type: ignore[attr-defined]
                assert node.broker.stats.publish_failures == 0  # type: ignore[attr-defined]


async def test_a_wrong_password_is_logged_and_retried_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="gatewayasgi.brokers.redis")
    with running_redis_server(tmp_path, password="the-right-one") as server:
        broker = fast_redis(server.url.replace("the-right-one", "wrong"))
        async with started(broker):
            assert not broker.connected
    assert any("refused AUTH" in r.getMessage() for r in caplog.records), caplog.text


async def test_rediss_urls_connect_over_tls(tmp_path: Path) -> None:
    with running_redis_server(tmp_path, tls=True) as server:
        assert server.url.startswith("rediss://")
        async with started(fast_redis(server.url), fast_redis(server.url)) as (sub, pub):
            await sub.broker.subscribe("tls")
            await pub.broker.publish("tls", b"over tls")
            assert await sub.receive() == ("tls", b"over tls")
            assert sub.broker.stats.connects == 1  # type: ignore[attr-defined]


# -- Redis: faults ---------------------------------------------------------------------


async def test_redis_down_at_startup_does_not_block_and_recovers(tmp_path: Path) -> None:
    server = RedisServer(redis_server_binary(), tmp_path)
    sub_broker, pub_broker = fast_redis(server.url), fast_redis(server.url)
    try:
        with anyio.fail_after(3):
            async with started(sub_broker, pub_broker) as (sub, pub):
                assert not sub_broker.connected
                await sub.broker.subscribe("late")  # remembered, sent on connect
                await pub.broker.publish("late", b"lost")  # dropped, never raised
                assert pub_broker.stats.publish_dropped == 1
                server.start()
                await deliver_eventually(pub.broker, "late", sub)
                assert sub_broker.connected and sub_broker.stats.connects == 1
    finally:
        server.stop()


async def test_publish_never_raises_while_redis_is_down(redis_server: RedisServer) -> None:
    async with started(fast_redis(redis_server.url)) as (node,):
        redis_server.stop()
        with anyio.fail_after(WAIT):
            for _ in range(50):
                await node.broker.publish("down", b"x")
        stats = node.broker.stats  # type: ignore[attr-defined]
        assert stats.published + stats.publish_failures + stats.publish_dropped == 50
        assert stats.publish_failures + stats.publish_dropped >= 49


async def test_publish_failure_without_start_is_counted_not_raised(tmp_path: Path) -> None:
    broker = fast_redis(RedisServer("redis-server", tmp_path).url)  # nothing listens there
    with anyio.fail_after(WAIT):
        await broker.publish("nowhere", b"x")
        await broker.publish("nowhere", b"y")
    assert broker.stats.publish_failures == 2
    await broker.close()


async def test_publisher_reconnects_by_itself_after_a_redis_restart(
    redis_server: RedisServer,
) -> None:
    """A pooled connection the server closed is replaced, not used for one lost publish."""
    publisher = fast_redis(redis_server.url)
    async with started(fast_redis(redis_server.url)) as (sub,):
        await sub.broker.subscribe("p")
        await publisher.publish("p", b"before")
        assert await sub.receive() == ("p", b"before")
        redis_server.restart()
        await until(lambda: sub.broker.stats.connects == 2, RECOVERY)  # type: ignore[attr-defined]
        await sub.broker.subscribe("p")
        await publisher.publish("p", b"after")
        assert await sub.receive() == ("p", b"after")
    assert (publisher.stats.published, publisher.stats.publish_failures) == (2, 0)
    await publisher.close()


async def test_subscriptions_are_restored_after_a_redis_restart(redis_server: RedisServer) -> None:
    async with started(fast_redis(redis_server.url), fast_redis(redis_server.url)) as nodes:
        sub, pub = nodes
        for channel in ("r1", "r2", "r3"):
            await sub.broker.subscribe(channel)
        redis_server.restart()
        with anyio.fail_after(RECOVERY):
            for channel in ("r1", "r2", "r3"):
                await deliver_eventually(pub.broker, channel, sub)
        stats = sub.broker.stats  # type: ignore[attr-defined]
        assert stats.connected and stats.disconnects >= 1 and stats.connects >= 2


async def test_subscriptions_are_restored_after_client_kill_pubsub(
    redis_server: RedisServer,
) -> None:
    async with started(fast_redis(redis_server.url), fast_redis(redis_server.url)) as nodes:
        sub, pub = nodes
        await sub.broker.subscribe("k1")
        await sub.broker.subscribe("k2")
        assert redis_server.kill_pubsub_clients() == 2  # both brokers' subscriber connections
        with anyio.fail_after(RECOVERY):
            await deliver_eventually(pub.broker, "k1", sub)
            await deliver_eventually(pub.broker, "k2", sub)
        await until(lambda: redis_server.pubsub_subscribers("k1") == 1)


async def test_a_silent_redis_is_detected_by_health_checks(redis_server: RedisServer) -> None:
    """A peer that stops answering (host gone, TCP still "open") is given up and retried."""
    broker = fast_redis(redis_server.url, health_check_interval=0.3, connect_timeout=0.5)
    async with started(broker, fast_redis(redis_server.url)) as (sub, pub):
        await sub.broker.subscribe("hc")
        redis_server.freeze()
        try:
            await until(lambda: not broker.connected, within=3)
        finally:
            redis_server.thaw()
        await deliver_eventually(pub.broker, "hc", sub)
        assert broker.stats.disconnects == 1


async def test_a_long_outage_is_logged_once_not_per_attempt(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="gatewayasgi.brokers.redis")
    broker = fast_redis(redis_server.url, reconnect_delay=0.01, max_reconnect_delay=0.02)
    async with started(broker) as (node,):
        await node.broker.subscribe("quiet")
        redis_server.stop()
        await anyio.sleep(0.5)  # dozens of reconnect attempts
        redis_server.start()
        await until(lambda: broker.connected, RECOVERY)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 2, warnings
    assert "lost connection" in warnings[0] and "connected to" in warnings[1]
    assert broker.stats.disconnects == 1 and broker.stats.connects == 2


async def test_on_message_errors_do_not_stop_the_subscriber(redis_server: RedisServer) -> None:
    received: list[bytes] = []

    def flaky(channel: str, data: bytes) -> None:
        if data == b"boom":
            raise RuntimeError("handler bug")
        received.append(data)

    sub, pub = fast_redis(redis_server.url), fast_redis(redis_server.url)
    async with anyio.create_task_group() as tg:
        await sub.start(flaky, tg)
        await sub.subscribe("f")
        await pub.publish("f", b"boom")
        await pub.publish("f", b"fine")
        await until(lambda: received == [b"fine"])
        await sub.close()
        await pub.close()
