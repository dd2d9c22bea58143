"""Emitters publish envelopes a gateway server can deliver: checked from a subscriber."""

from __future__ import annotations

from pathlib import Path

import anyio
import orjson
import pytest

from gatewayasgi.backplane.envelope import KIND_ALL, KIND_TO, Envelope, channel_for, unpack
from gatewayasgi.brokers import MemoryBroker
from gatewayasgi.brokers.memory import MemoryHub
from gatewayasgi.brokers.redis import RedisBroker
from gatewayasgi.emitter import Emitter, RedisEmitter
from gatewayasgi.protocol.targets import NOBODY, Targets, new_client_id
from tests.redis_server import RedisServer

pytestmark = pytest.mark.anyio

WAIT = 5.0
MAX = 1024 * 1024


class Subscriber:
    """Collects the envelopes published on one namespace's channel."""

    def __init__(self) -> None:
        self.send, self.receive = anyio.create_memory_object_stream[bytes](100)

    def on_message(self, channel: str, data: bytes) -> None:
        self.send.send_nowait(data)

    async def next(self) -> Envelope:
        with anyio.fail_after(WAIT):
            return unpack(await self.receive.receive(), MAX)


async def test_emit_to_all_publishes_one_encoded_frame_on_the_namespace_channel() -> None:
    hub = MemoryHub()
    subscriber, listener = Subscriber(), MemoryBroker(hub)
    async with anyio.create_task_group() as tg:
        await listener.start(subscriber.on_message, tg)
        await listener.subscribe(channel_for("/chat"))
        async with Emitter(MemoryBroker(hub), namespace="/chat") as emitter:
            await emitter.emit("news", {"text": "hi", "n": 1})
            envelope = await subscriber.next()
        assert envelope.kind == KIND_ALL
        assert envelope.node == emitter.node_id
        assert envelope.targets == NOBODY and envelope.exclude == NOBODY
        assert orjson.loads(envelope.frame) == {"event": "news", "data": {"text": "hi", "n": 1}}
        await listener.close()


async def test_to_and_except_build_the_target_set() -> None:
    hub = MemoryHub()
    subscriber, listener = Subscriber(), MemoryBroker(hub)
    async with anyio.create_task_group() as tg:
        await listener.start(subscriber.on_message, tg)
        await listener.subscribe(channel_for("/ws"))
        # Every order on the namespace channel (interest routing: tests/routing).
        emitter = Emitter(MemoryBroker(hub), routing="namespace")
        nine, two, three = new_client_id(), new_client_id(), new_client_id()
        await emitter.to("room-1").emit("a", 1)
        await emitter.to("room-1", nine).to("room-1").except_(two).emit("b")
        await emitter.except_(three).emit("c", None)
        await emitter.in_("room-2").emit("d", [1, 2])
        first, second, third, fourth = [await subscriber.next() for _ in range(4)]
        assert (first.kind, first.targets, first.exclude) == (KIND_TO, Targets(("room-1",)), NOBODY)
        assert (second.kind, second.targets, second.exclude) == (
            KIND_TO,
            Targets(("room-1",), (nine,)),
            Targets((), (two,)),
        )
        assert (third.kind, third.targets, third.exclude) == (
            KIND_ALL,
            NOBODY,
            Targets((), (three,)),
        )
        assert orjson.loads(third.frame) == {"event": "c", "data": None}
        assert fourth.targets == Targets(("room-2",))
        await emitter.aclose()
        await listener.close()


def test_operators_are_immutable_and_reusable() -> None:
    emitter = Emitter(MemoryBroker())
    room = emitter.to("room")
    narrowed = room.except_("someone")
    assert room is not narrowed
    assert room._exclude == NOBODY and narrowed._exclude == Targets(("someone",))
    assert emitter.node_id != Emitter(MemoryBroker()).node_id


async def test_redis_emitter_reaches_a_redis_subscriber(redis_server: RedisServer) -> None:
    subscriber, listener = Subscriber(), RedisBroker(redis_server.url)
    async with anyio.create_task_group() as tg:
        await listener.start(subscriber.on_message, tg)
        await listener.subscribe(channel_for("/chat"))
        async with RedisEmitter(
            redis_server.url, namespace="/chat", routing="namespace"
        ) as emitter:
            await emitter.to("lobby").except_("me").emit("message", {"text": "from a worker"})
            envelope = await subscriber.next()
            assert emitter.broker.stats.published == 1
        assert (envelope.kind, envelope.targets) == (KIND_TO, Targets(("lobby",)))
        assert envelope.exclude == Targets(("me",))
        assert orjson.loads(envelope.frame)["data"] == {"text": "from a worker"}
        await listener.close()


async def test_redis_emitter_with_redis_down_does_not_raise(tmp_path: Path) -> None:
    url = RedisServer("redis-server", tmp_path).url  # nothing listens there
    async with RedisEmitter(url, publish_timeout=1.0) as emitter:
        with anyio.fail_after(WAIT):
            await emitter.emit("lost", 1)
        assert emitter.broker.stats.publish_failures == 1


SECRET = "emitter and servers share this secret"


async def test_redis_emitter_signs_with_its_secret_and_unsigned_emits_are_dropped(
    redis_server: RedisServer,
) -> None:
    """``RedisEmitter(..., secret=...)`` reaches a signed broker; one without it does not."""
    subscriber, listener = Subscriber(), RedisBroker(redis_server.url, secret=SECRET)
    async with anyio.create_task_group() as tg:
        await listener.start(subscriber.on_message, tg)
        await listener.subscribe(channel_for("/chat"))
        async with RedisEmitter(redis_server.url, namespace="/chat") as unsigned:
            await unsigned.emit("message", "forged")
        async with RedisEmitter(redis_server.url, namespace="/chat", secret=SECRET) as emitter:
            await emitter.emit("message", "signed")
            envelope = await subscriber.next()
        assert orjson.loads(envelope.frame)["data"] == "signed"
        assert listener.stats.forged_dropped == 1 and listener.stats.received == 1
        await listener.close()
