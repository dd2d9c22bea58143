"""Socket.IO clients on two worker processes sharing one redis-server.

Two hypercorn processes serve ``tests.socketio.sio_worker_app``; a python-socketio
client on each (and a native-JSON client on the second) join one room, and each
Socket.IO client emits to it. Every member gets every emit exactly once: a fence sent
through Redis after the emits (a ``RedisEmitter``, which Redis orders after the emits'
own publishes) ends what is counted, and a quiet period after it shows that nothing
came twice. Every wait is bounded.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
import websockets

from gatewayasgi.emitter import RedisEmitter
from tests import workers
from tests.redis_server import RedisServer, running_redis_server
from tests.socketio.sio_worker_app import KEPT, NAMESPACE
from tests.socketio.test_python_client import QUIET, WAIT, peer
from tests.workers import Node, stop_node

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

APP = "tests.socketio.sio_worker_app:app"
ROOM = "shared"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RedisServer, Node, Node]]:
    workdir = tmp_path_factory.mktemp("sio-workers")
    with running_redis_server(workdir) as redis:
        nodes: list[Node] = []
        try:
            for name in ("A", "B"):
                nodes.append(workers.start_node(name, redis.url, workdir, APP, NAMESPACE))
            yield redis, nodes[0], nodes[1]
        finally:
            for node in nodes:
                stop_node(node)


async def native_frames_until_fence(ws: Any, tag: str) -> list[dict[str, Any]]:
    """The native client's frames before the fence ``tag``."""
    frames: list[dict[str, Any]] = []
    with anyio.fail_after(WAIT):
        while True:
            frame = json.loads(await ws.recv())
            if frame["event"] == "fence" and frame["data"] == tag:
                return frames
            frames.append(frame)


@pytest.mark.parametrize(
    "transports", [["websocket"], ["polling", "websocket"]], ids=["websocket", "upgrade"]
)
async def test_room_emits_cross_workers_exactly_once(
    cluster: tuple[RedisServer, Node, Node], transports: list[str]
) -> None:
    redis, node_a, node_b = cluster
    async with (
        RedisEmitter(redis.url, namespace=NAMESPACE) as emitter,
        peer(node_a.address, transports, namespaces=[NAMESPACE]) as a,
        peer(node_b.address, transports, namespaces=[NAMESPACE]) as b,
        websockets.connect(node_b.url, open_timeout=WAIT) as native,
    ):
        [(welcome_a,)] = await a.wait_for("welcome")
        [(welcome_b,)] = await b.wait_for("welcome")
        assert (welcome_a["node"], welcome_b["node"]) == ("A", "B")
        assert welcome_a["id"] == a.sio.get_sid(NAMESPACE)
        assert welcome_b["id"] == b.sio.get_sid(NAMESPACE)

        with anyio.fail_after(WAIT):
            native_welcome = json.loads(await native.recv())
        assert native_welcome["event"] == "welcome" and native_welcome["data"]["node"] == "B"
        await native.send(json.dumps({"event": "join", "data": {"room": ROOM}, "id": 1}))
        assert await native_frames_until_join(native) == {"room": ROOM, "node": "B"}
        assert await a.call("join", {"room": ROOM}) == {"room": ROOM, "node": "A"}
        assert await b.call("join", {"room": ROOM}) == {"room": ROOM, "node": "B"}

        assert await a.call("say", {"room": ROOM, "text": "from A"}) == {"node": "A"}
        assert await b.call("say", {"room": ROOM, "text": "from B"}) == {"node": "B"}
        await emitter.to(ROOM).emit("fence", "end")

        from_a = {"from": welcome_a["id"], "node": "A", "text": "from A"}
        from_b = {"from": welcome_b["id"], "node": "B", "text": "from B"}
        for client in (a, b):
            await client.wait_for("fence")
            assert sorted(client.events("said"), key=repr) == sorted(
                [(from_a,), (from_b,)], key=repr
            ), client.events("said")
        native_got = await native_frames_until_fence(native, "end")
        assert sorted(native_got, key=repr) == sorted(
            [{"event": "said", "data": from_a}, {"event": "said", "data": from_b}], key=repr
        )

        await anyio.sleep(QUIET * 2)
        for client in (a, b):
            assert len(client.events("said")) == 2, client.events("said")
            assert client.events("fence") == [("end",)]
        with anyio.move_on_after(0.01):
            extra = await native.recv()
            pytest.fail(f"the native client got one more frame: {extra!r}")


async def native_frames_until_join(ws: Any) -> Any:
    """The data of the native client's answer to its ``join`` (frame id 1)."""
    with anyio.fail_after(WAIT):
        while True:
            frame = json.loads(await ws.recv())
            if frame.get("id") == 1:
                assert frame["event"] == "join", frame
                return frame["data"]


# -- session recovery across workers (Socket.IO's pid and offset, raw packets) ---------


async def sio_packet(ws: Any) -> str:
    """The next packet of the ``/kept`` namespace (pings are answered)."""
    with anyio.fail_after(WAIT):
        while True:
            packet = await ws.recv()
            if packet == "2":
                await ws.send("3")
            elif packet.startswith(("4", "0")) and KEPT in packet:
                return str(packet)


async def kept_connection(address: str, auth: dict[str, Any] | None = None) -> tuple[Any, Any]:
    ws = await websockets.connect(
        f"ws://{address}/socket.io/?EIO=4&transport=websocket", open_timeout=WAIT
    )
    with anyio.fail_after(WAIT):
        assert str(await ws.recv()).startswith("0{")
    await ws.send(f"40{KEPT}," + (json.dumps(auth) if auth else ""))
    answer = await sio_packet(ws)
    assert answer.startswith(f"40{KEPT},"), answer
    return ws, json.loads(answer[len(f"40{KEPT},") :])


def said(packet: str) -> tuple[int, str]:
    """``42/kept,["said",n,"<offset>"]`` -> (n, offset)."""
    assert packet.startswith(f"42{KEPT},"), packet
    event, number, offset = json.loads(packet[len(f"42{KEPT},") :])
    assert event == "said"
    return number, offset


async def test_a_socketio_session_resumes_on_the_other_worker_from_the_redis_history(
    cluster: tuple[RedisServer, Node, Node],
) -> None:
    """Socket.IO's connection state recovery over two workers: the client drops from A,
    misses 50 room emits made on B, and resumes on B with its ``pid`` and last offset:
    the same sid and pid, its room, and the 50 frames once and in order (transcoded
    from the JSON history in Redis), then live frames."""
    _redis, node_a, node_b = cluster
    ws, first = await kept_connection(node_a.address)
    pid, sid = first["pid"], first["sid"]
    await ws.send(f'42{KEPT},1["join","r"]')
    assert (await sio_packet(ws)).startswith(f"43{KEPT},1[")

    speaker, _ = await kept_connection(node_b.address)
    await speaker.send(f'42{KEPT},["say",{{"room":"r","n":0}}]')
    number, offset = said(await sio_packet(ws))
    assert number == 0
    await ws.close()  # gone without a DISCONNECT: the session waits for it

    for n in range(1, 51):
        await speaker.send(f'42{KEPT},["say",{{"room":"r","n":{n}}}]')
    await speaker.send(f'42{KEPT},9["whoami"]')
    await sio_packet(speaker)  # the speaker's emits are all in by now

    ws, again = await kept_connection(node_b.address, {"pid": pid, "offset": offset})
    assert again == {"sid": sid, "pid": pid}  # socket.io-client's ``recovered``
    missed = [said(await sio_packet(ws)) for _ in range(50)]
    assert [n for n, _ in missed] == list(range(1, 51))
    await ws.send(f'42{KEPT},2["whoami"]')
    who = await sio_packet(ws)
    assert json.loads(who[len(f"43{KEPT},2") :]) == [
        {"id": sid, "recovered": True, "rooms": ["r"], "node": "B"}
    ]
    await speaker.send(f'42{KEPT},["say",{{"room":"r","n":51}}]')
    assert said(await sio_packet(ws))[0] == 51
    with anyio.move_on_after(QUIET):  # nothing came twice
        extra = await sio_packet(ws)
        pytest.fail(f"one more packet: {extra}")
    await ws.close()
    await speaker.close()


async def test_a_socketio_pid_resumes_only_for_its_identity_and_closes_the_old_holder(
    cluster: tuple[RedisServer, Node, Node],
) -> None:
    """bob's CONNECT offers alice's ``pid``: he gets a session of his own and alice keeps
    hers; alice's own second connection on the other worker takes her session over, and
    the first one's namespace is closed (DISCONNECT) on its worker."""
    _redis, node_a, node_b = cluster
    alice, first = await kept_connection(node_a.address, {"user": "alice"})
    bob, taken = await kept_connection(node_b.address, {"user": "bob", "pid": first["pid"]})
    assert taken["sid"] != first["sid"] and taken["pid"] != first["pid"]
    await alice.send(f'42{KEPT},1["whoami"]')
    who = await sio_packet(alice)
    assert json.loads(who[len(f"43{KEPT},1") :])[0]["id"] == first["sid"]

    again, resumed = await kept_connection(node_b.address, {"user": "alice", "pid": first["pid"]})
    assert resumed == {"sid": first["sid"], "pid": first["pid"]}
    assert await sio_packet(alice) == f"41{KEPT},"  # the old holder's namespace ends
    for ws in (alice, bob, again):
        await ws.close()


async def test_a_socketio_ack_comes_after_what_its_handler_emitted(
    cluster: tuple[RedisServer, Node, Node],
) -> None:
    """With the history in Redis, the room emit reaches the sender through the worker's
    reader while the ack goes straight: the ack waits for it (20 calls of 20)."""
    _redis, node_a, _ = cluster
    ws, _ = await kept_connection(node_a.address, {"user": "order"})
    await ws.send(f'42{KEPT},1["join","order"]')
    assert (await sio_packet(ws)).startswith(f"43{KEPT},1[")
    for call in range(20):
        ack = 100 + call
        await ws.send(f'42{KEPT},{ack}["say",{{"room":"order","n":{call}}}]')
        first = await sio_packet(ws)
        assert said(first)[0] == call, (call, first)  # the emit, then the ack
        assert (await sio_packet(ws)).startswith(f"43{KEPT},{ack}[")
    await ws.close()
