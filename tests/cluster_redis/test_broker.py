"""``RedisBroker(..., cluster=True)`` in this process, on a real Redis Cluster: many
channels subscribed and unsubscribed, size and signature bounds, stats, URLs, a cluster
that is down when the app starts (the broker connects once it is up), and a subscriber
that costs nothing while idle yet hears each master at once while another is busy."""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from gatewayasgi.brokers.redis import RedisBroker
from gatewayasgi.brokers.signing import Signer
from tests.cluster.nodes import eventually, peers
from tests.cluster_redis.test_cluster_redis import emitter, start_workers, texts
from tests.redis_cluster import RedisCluster
from tests.workers import stop_node

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

WAIT = 15.0
SECRET = "broker-test-secret-0123456789"


@asynccontextmanager
async def started(
    url: str, *, seen: Callable[[bytes], object] | None = None, **options: Any
) -> AsyncIterator[tuple[RedisBroker, list[Any]]]:
    """A started broker and the list of what it received; ``seen`` is told each payload
    as it arrives."""
    got: list[tuple[str, bytes]] = []
    broker = RedisBroker(url, cluster=True, connect_timeout=1.0, **options)

    def receive(channel: str, data: bytes) -> None:
        got.append((channel, data))
        if seen is not None:
            seen(data)

    async with anyio.create_task_group() as tg:
        await broker.start(receive, tg)
        try:
            yield broker, got
        finally:
            await broker.close()
            tg.cancel_scope.cancel()


async def until(condition: Any, timeout: float = WAIT) -> None:
    with anyio.fail_after(timeout):
        while not condition():
            await anyio.sleep(0.01)


async def test_many_channels_subscribed_and_unsubscribed_at_runtime(
    redis_cluster: RedisCluster,
) -> None:
    async with (
        started(redis_cluster.url) as (broker, got),
        started(redis_cluster.url.split(",")[-1]) as (publisher, _),
    ):
        assert broker.connected
        channels = [f"gw-test:room:{n}" for n in range(300)]
        for channel in channels:
            await broker.subscribe(channel)  # returns once Redis acknowledged it
        for n, channel in enumerate(channels):
            assert await publisher.publish(channel, b"m%d" % n)
        await until(lambda: len(got) == 300)
        assert sorted(got) == sorted((c, b"m%d" % n) for n, c in enumerate(channels))
        for channel in channels[::2]:
            await broker.unsubscribe(channel)
        got.clear()
        for channel in channels:
            assert await publisher.publish(channel, b"again")
        await until(lambda: len(got) == 150)
        await anyio.sleep(0.3)
        assert sorted(c for c, _ in got) == sorted(channels[1::2])
        stats = broker.stats
        assert stats.connected and stats.connects == 1 and stats.received == 450
        assert publisher.stats.published == 600


async def test_oversize_and_forged_messages_are_dropped_and_counted(
    redis_cluster: RedisCluster,
) -> None:
    async with (
        started(redis_cluster.url, secret=SECRET, max_message_size=1000) as (broker, got),
        started(redis_cluster.url, secret=SECRET, max_message_size=5000) as (big, _),
    ):
        await broker.subscribe("gw-test:signed")
        # Too large to send: refused here.
        assert await broker.publish("gw-test:signed", b"x" * 1001) is False
        assert broker.stats.oversize_dropped == 1
        # Sent by a peer with a larger limit: dropped on arrival.
        assert await big.publish("gw-test:signed", b"y" * 2000)
        # Unsigned and wrongly signed, straight onto the shard.
        port = redis_cluster.master_of("gw-test:signed").port
        server = redis_cluster.server(port)
        server.command("SPUBLISH", "gw-test:signed", b"unsigned")
        wrong = Signer("another-secret-0123456789").sign("gw-test:signed", b"wrong")
        server.command("SPUBLISH", "gw-test:signed", wrong)
        assert await big.publish("gw-test:signed", b"fine")
        await until(lambda: got == [("gw-test:signed", b"fine")])
        stats = broker.stats
        assert stats.oversize_dropped == 2 and stats.forged_dropped == 2 and stats.received == 1


async def test_urls_a_list_or_comma_separated(redis_cluster: RedisCluster) -> None:
    urls = redis_cluster.url.split(",")
    assert RedisBroker(urls, cluster=True).url == redis_cluster.url
    with pytest.raises(ValueError, match="redis://"):
        RedisBroker("unix:///tmp/redis.sock", cluster=True)
    with pytest.raises(TypeError, match="cluster=True"):
        RedisBroker(urls)
    async with started(urls[1:3]) as (broker, got):
        await broker.subscribe("gw-test:list")
        assert await broker.publish("gw-test:list", b"hi")
        await until(lambda: got == [("gw-test:list", b"hi")])


async def test_a_cluster_down_at_startup_is_joined_once_it_is_up(tmp_path: Path) -> None:
    """The broker (and a worker serving an app on it) start while no node answers; the
    cluster is created afterwards, and both connect by themselves."""
    cluster = RedisCluster(tmp_path, masters=3, replicas=0)
    nodes = []
    try:
        async with started(cluster.url, reconnect_delay=0.05, max_reconnect_delay=0.5) as (
            broker,
            got,
        ):
            assert not broker.connected
            await broker.subscribe("gw-test:late")  # kept for the first connection
            assert await broker.publish("gw-test:late", b"lost") is False  # fails fast
            nodes = start_workers(cluster, tmp_path, ("late",))
            await anyio.to_thread.run_sync(cluster.start)
            await until(lambda: broker.connected)
            assert await broker.publish("gw-test:late", b"hello")
            await until(lambda: got == [("gw-test:late", b"hello")])
            # The worker joined too: a client on it hears an emitter's broadcast.
            async with (
                peers(f"ws://{nodes[0].address}/scale") as (client,),
                emitter(cluster, "/scale") as outside,
            ):

                async def heard() -> bool:
                    await outside.emit("broadcast", {"text": "late"})
                    await anyio.sleep(0.2)
                    return "late" in texts(client, "broadcast")

                await eventually(heard, WAIT)
    finally:
        for node in nodes:
            stop_node(node)
        cluster.stop()


async def every_channel_delivers(
    broker: RedisBroker, publisher: RedisBroker, got: list[Any], channels: list[str], tag: bytes
) -> float:
    """Publish ``tag`` on every channel until each has delivered it once; return how long
    that took (publishes to a shard that is down fail and are sent again)."""
    began = anyio.current_time()
    pending = set(channels)
    with anyio.fail_after(WAIT):
        while pending:
            for channel in sorted(pending):
                await publisher.publish(channel, tag)
            await anyio.sleep(0.05)
            pending -= {c for c, data in got if data == tag}
    return anyio.current_time() - began


@pytest.mark.timeout(180)  # a revive may wait a minute for a whole cluster
async def test_subscriptions_come_back_by_themselves_after_a_failover(
    redis_cluster: RedisCluster,
) -> None:
    channels = [f"gw-test:failover:{n}" for n in range(60)]  # on every master
    async with (
        started(redis_cluster.url) as (broker, got),
        started(redis_cluster.url) as (publisher, _),
    ):
        for channel in channels:
            await broker.subscribe(channel)
        await every_channel_delivers(broker, publisher, got, channels, b"before")
        victim = redis_cluster.masters()[0]
        assert any(redis_cluster.master_of(c).port == victim.port for c in channels)
        killed = redis_cluster.kill_master(victim)
        try:
            began = anyio.current_time()
            await anyio.to_thread.run_sync(redis_cluster.wait_failover, victim)
            promoted = anyio.current_time() - began
            back = await every_channel_delivers(broker, publisher, got, channels, b"after")
            print(
                f"\npub/sub failover: replica promoted {promoted:.2f} s after the SIGKILL, "
                f"every channel delivering {promoted + back:.2f} s after it"
            )
            assert broker.stats.connected
        finally:
            await anyio.to_thread.run_sync(redis_cluster.revive, killed)


@pytest.mark.timeout(180)  # a reshard may take a minute on a loaded machine
async def test_subscriptions_follow_their_slots_when_they_are_resharded(
    redis_cluster: RedisCluster,
) -> None:
    channels = [f"gw-test:reshard:{n}" for n in range(60)]
    async with (
        started(redis_cluster.url) as (broker, got),
        started(redis_cluster.url) as (publisher, _),
    ):
        for channel in channels:
            await broker.subscribe(channel)
        await every_channel_delivers(broker, publisher, got, channels, b"before")
        source, target = redis_cluster.masters()[:2]
        before = {c: redis_cluster.master_of(c).port for c in channels}
        # All of its slots but one: a master left with none would become a replica.
        count = sum(last - first + 1 for first, last in source.slots) - 1
        await anyio.to_thread.run_sync(redis_cluster.reshard, source.port, target.port, count)
        moved = [c for c in channels if redis_cluster.master_of(c).port != before[c]]
        assert len(moved) >= 10, moved
        await every_channel_delivers(broker, publisher, got, channels, b"after")
        # Exactly once each: no channel is subscribed twice (old owner and new one).
        for channel in channels:
            assert await publisher.publish(channel, b"once")
        await until(lambda: sum(data == b"once" for _, data in got) >= len(channels))
        await anyio.sleep(0.3)
        assert sorted(c for c, data in got if data == b"once") == sorted(channels)


def cpu_seconds() -> float:
    """CPU time of this thread (the event loop's), else of the whole process."""
    if hasattr(resource, "RUSAGE_THREAD"):
        usage = resource.getrusage(resource.RUSAGE_THREAD)
        return usage.ru_utime + usage.ru_stime
    return time.process_time()


def one_channel_per_master(redis_cluster: RedisCluster, prefix: str) -> dict[int, str]:
    """A channel on each master, by the master's port."""
    channels: dict[int, str] = {}
    n = 0
    while len(channels) < len(redis_cluster.masters()):
        channel = f"{prefix}:{n}"
        channels.setdefault(redis_cluster.master_of(channel).port, channel)
        n += 1
    return channels


async def test_an_idle_subscriber_burns_no_cpu(redis_cluster: RedisCluster) -> None:
    """Channels on every master, messages just delivered, then nothing for 2 s: the
    subscriber's readers block on their sockets. (Polling the masters in turn, with a
    5 ms wait while messages flowed and 50 ms once idle, cost about 200 ms of CPU in
    this window here; blocking reads about 3 ms.)"""
    async with started(redis_cluster.url) as (broker, got):
        channels = sorted(one_channel_per_master(redis_cluster, "gw-test:idle").values())
        channels += [f"gw-test:idle:more:{n}" for n in range(30)]
        for channel in channels:
            await broker.subscribe(channel)
        await every_channel_delivers(broker, broker, got, channels, b"warm")
        await anyio.sleep(0.3)  # what is still in flight settles
        assert await every_channel_delivers(broker, broker, got, channels, b"last") < WAIT
        began, cpu = anyio.current_time(), cpu_seconds()
        await anyio.sleep(2.0)
        spent, took = cpu_seconds() - cpu, anyio.current_time() - began
        print(f"\nidle subscriber: {spent * 1000:.1f} ms of CPU in {took:.2f} s")
        assert spent < 0.02, f"{spent * 1000:.1f} ms of CPU in {took:.2f} s of idling"
        assert broker.stats.connected


async def test_each_master_is_heard_at_once_while_another_is_busy(
    redis_cluster: RedisCluster,
) -> None:
    """One master floods this subscriber; a message published on each other master
    arrives without waiting for the flood: every probe arrives, its median latency far
    below the flood's length."""
    by_port = one_channel_per_master(redis_cluster, "gw-test:busy")
    busy, *quiet = by_port.values()
    arrived: dict[bytes, float] = {}
    sent: dict[bytes, float] = {}
    flooded = 0

    def seen(data: bytes) -> None:
        if data.startswith(b"probe"):
            arrived.setdefault(data, time.monotonic())

    async with (
        started(redis_cluster.url, seen=seen) as (broker, _),
        started(redis_cluster.url) as (publisher, _),
    ):
        for channel in by_port.values():
            await broker.subscribe(channel)

        async def flood() -> None:
            nonlocal flooded
            payload = b"f" * 200
            with anyio.move_on_after(3.0):
                while True:
                    await publisher.publish(busy, payload)
                    flooded += 1

        async with anyio.create_task_group() as tg:
            tg.start_soon(flood)
            await anyio.sleep(0.3)
            for n in range(40):
                tag = b"probe%d" % n
                sent[tag] = time.monotonic()
                assert await publisher.publish(quiet[n % len(quiet)], tag)
                await anyio.sleep(0.05)
        await until(lambda: len(arrived) == len(sent))
        latencies = sorted(arrived[tag] - sent[tag] for tag in sent)
        median = statistics.median(latencies)
        print(
            f"\nwith {flooded} messages flooding one master: probes on the others "
            f"p50 {median * 1000:.1f} ms, max {latencies[-1] * 1000:.1f} ms"
        )
        assert flooded > 500
        assert median < 0.1, latencies


@pytest.mark.timeout(180)  # a revive may wait a minute for a whole cluster
async def test_a_master_restarted_and_then_the_whole_cluster_down_mid_run(
    tmp_path: Path,
) -> None:
    """Without replicas: a master restarted gets its channels back while the others
    keep delivering (the broker stays connected); every node down is a lost connection
    (publishes fail fast), and once the nodes are back every channel delivers again."""
    cluster = RedisCluster(tmp_path, masters=3, replicas=0)
    try:
        await anyio.to_thread.run_sync(cluster.start)
        channels = [f"gw-test:down:{n}" for n in range(30)]
        async with (
            started(cluster.url, reconnect_delay=0.05, max_reconnect_delay=0.5) as (broker, got),
            started(cluster.url) as (publisher, _),
        ):
            for channel in channels:
                await broker.subscribe(channel)
            await every_channel_delivers(broker, publisher, got, channels, b"first")
            victim = cluster.masters()[0]
            elsewhere = [c for c in channels if cluster.master_of(c).port != victim.port]
            server = cluster.server(victim.port)
            server.kill()
            await every_channel_delivers(broker, publisher, got, elsewhere, b"others")
            await anyio.to_thread.run_sync(cluster.revive, server)
            await every_channel_delivers(broker, publisher, got, channels, b"restarted")
            assert broker.stats.connected and broker.stats.disconnects == 0
            for node in cluster.servers:
                node.kill()
            await until(lambda: not broker.connected)
            assert await broker.publish(channels[0], b"lost") is False
            for node in cluster.servers:
                node.start()
            for node in cluster.servers:
                await anyio.to_thread.run_sync(node.wait_answering)
            await anyio.to_thread.run_sync(cluster.wait_healthy)
            await until(lambda: broker.connected)
            await every_channel_delivers(broker, publisher, got, channels, b"back")
            assert broker.stats.disconnects == 1
    finally:
        cluster.stop()
