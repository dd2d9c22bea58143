"""The samples of the user guide and deployment pages (``docs/examples/guide``,
``docs/examples/deployment``), each run as its page shows it: on a real server, with
``websockets``, the Python client, python-socketio, the TypeScript client in Node, pytest,
and a real redis-server."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import socketio
import websockets

from gatewayasgi.client import GatewayClient
from tests.docs.test_samples import sample
from tests.servers import TIMEOUT, Client, connect, run_server

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "docs" / "examples"
CLIENT_JS = ROOT / "clients" / "js"


async def _closed(client: Client) -> int | None:
    """The close code the server gave ``client`` (bounded wait)."""
    with anyio.fail_after(TIMEOUT):
        await client.ws.wait_closed()
    return client.ws.close_code  # type: ignore[no-any-return]


async def test_the_gateways_sample_validates_injects_and_guards() -> None:
    module = sample("guide.gateways")
    async with run_server(module.app, "uvicorn") as address:
        with pytest.raises(websockets.InvalidStatus) as refused:  # the handshake guard
            async with connect(address, "/events?token=wrong"):
                pass
        assert refused.value.response.status_code == 403

        def as_(role: str) -> Any:
            return connect(
                address,
                "/events?token=secret",
                additional_headers={"x-role": role},
                subprotocols=["v1.events"],
            )

        async with as_("admin") as admin, as_("member") as member:
            assert admin.ws.subprotocol == "v1.events"
            assert await admin.request("join", {"room": "r"}) == {
                "event": "join",
                "data": {"room": "r"},
            }
            await member.request("join", {"room": "r"})
            assert (await admin.recv())["event"] == "joined"
            posted = await admin.request("post", {"title": "t"})
            assert posted == {"event": "posted", "data": {"id": 1, "title": "t"}}
            invalid = await admin.request("post", {"body": "no title"})
            assert invalid["event"] == "error"
            assert [e["loc"] for e in invalid["data"]["errors"]] == [["title"]]
            await member.send("post", {"title": "t"})  # AdminGuard: an error frame, then 1008
            assert (await member.recv())["event"] == "error"
            assert await _closed(member) == 1008
        with pytest.raises(websockets.ConnectionClosed):  # MemberGuard: no role, no handler
            async with as_("guest") as guest:
                await guest.send("join", {"room": "r"})
                await guest.recv()
                await guest.recv()


@pytest.mark.parametrize(
    ("name", "served"), [("guide.http_push", "app"), ("guide.http_push_provider", "api")]
)
async def test_an_http_route_pushes_to_the_gateways_clients(name: str, served: str) -> None:
    app = getattr(sample(name), served)  # api.add_middleware(GatewayMiddleware): serve `api`
    async with run_server(app, "hypercorn") as address, connect(address, "/news") as c:
        async with httpx.AsyncClient(timeout=TIMEOUT) as http:
            sent = await http.post(f"http://{address}/headlines", params={"text": "hi"})
        assert sent.json() == {"sent": True}
        assert await c.recv() == {"event": "headline", "data": {"text": "hi"}}


async def test_the_testing_sample_passes_under_pytest_and_serves_on_a_server() -> None:
    path = EXAMPLES / "guide" / "test_chat.py"
    module = sample("guide.test_chat")
    run = await anyio.to_thread.run_sync(
        lambda: subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=path.parent,
        )
    )
    assert run.returncode == 0 and " passed" in run.stdout, run.stdout + run.stderr
    async with run_server(module.app, "hypercorn") as address, connect(address, "/chat") as c:
        reply = await c.request("send_message", {"text": "hi"}, id=1)
        assert reply["data"] == {"text": "hi", "status": "delivered"}


async def test_the_calls_sample_records_each_way_a_call_ends() -> None:
    module = sample("guide.calls")
    async with run_server(module.app, "hypercorn") as address:
        yes, no = GatewayClient(f"ws://{address}/shop"), GatewayClient(f"ws://{address}/shop")

        @yes.on("confirm")  # before connecting: the call comes at once
        async def agree(data: dict[str, Any]) -> dict[str, Any]:
            return {"ok": data["order"]}

        @no.on("confirm")
        async def refuse(data: dict[str, Any]) -> None:
            raise ValueError("out of stock")

        async with yes, no:
            with anyio.fail_after(TIMEOUT):
                while len(module.outcomes) < 2:
                    await anyio.sleep(0.01)
        async with connect(address, "/shop") as silent:  # leaves without answering
            assert (await silent.recv())["event"] == "confirm"
        with anyio.fail_after(TIMEOUT):
            while len(module.outcomes) < 3:
                await anyio.sleep(0.01)
    assert sorted(map(str, module.outcomes)) == sorted(
        ["{'ok': 42}", "{'rejected': 'out of stock'}", "closed"]
    )


async def test_the_messagepack_samples_carry_bytes_as_bytes(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    server = sample("guide.msgpack_server")
    client = sample("guide.msgpack_client")
    async with run_server(server.app, "uvicorn") as address:
        with anyio.fail_after(TIMEOUT):
            await client.main(f"ws://{address}/chat")
        assert capsys.readouterr().out.splitlines() == [
            "{'name': 'a.png', 'size': 264, 'head': b'\\x89PNG'}"
        ]
        node = shutil.which("node")
        built = CLIENT_JS / "dist" / "index.js"
        if node is None or not built.is_file() or not (CLIENT_JS / "node_modules" / "ws").is_dir():
            message = "node and the built client are needed: make chat-client"
            if os.environ.get("CI"):
                pytest.fail(f"{message} (CI=true: this test must run)")
            pytest.skip(message)
        (tmp_path / "node_modules").symlink_to(CLIENT_JS / "node_modules")
        script = tmp_path / "client.mjs"
        source = (EXAMPLES / "guide" / "msgpack_client.mjs").read_text()
        assert '"@gatewayasgi/client"' in source
        script.write_text(source.replace('"@gatewayasgi/client"', f'"{built.as_posix()}"'))
        with anyio.fail_after(TIMEOUT * 2):
            done = await anyio.run_process(
                [node, str(script), f"ws://{address}/chat"], cwd=tmp_path, check=False
            )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().splitlines() == ["7 true [ 137, 80, 78, 71 ]"]


async def test_the_recovery_sample_replays_what_a_client_missed() -> None:
    module = sample("guide.recovery")
    async with run_server(module.app, "hypercorn") as address:
        async with connect(address, "/chat") as ann:
            session = await ann.recv()
            assert session["event"] == "$session" and session["data"]["recovered"] is False
        s = session["data"]  # ann is gone (not ended: no $end); bob speaks meanwhile
        async with connect(address, "/chat") as bob:
            assert (await bob.recv())["event"] == "$session"
            await bob.send("say", {"text": "while you were away"})
            assert (await bob.recv())["data"] == {"text": "while you were away"}
        resume = f"gatewayasgi.resume.{s['id']}.{s['token']}.{s['epoch']}.{s['offset']}"
        async with connect(address, "/chat", subprotocols=["gatewayasgi", resume]) as back:
            again = await back.recv()
            assert again["event"] == "$session" and again["data"]["recovered"] is True
            assert again["data"]["id"] == s["id"]
            missed = await back.recv()
            assert (missed["event"], missed["data"]) == ("message", {"text": "while you were away"})


async def test_the_metrics_sample_counts_frames_and_serves_them() -> None:
    module = sample("deployment.metrics")
    async with run_server(module.app, "hypercorn") as address:
        async with connect(address, "/chat") as client:
            assert (await client.request("say", {"text": "hi"}))["data"] == {"text": "hi"}
        async with httpx.AsyncClient(timeout=TIMEOUT) as http:
            scraped = (await http.get(f"http://{address}/metrics/")).text
    counted = [
        line
        for line in scraped.splitlines()
        if line.startswith("gatewayasgi_messages_received_total{")
        and 'event="say"' in line
        and 'namespace="/chat"' in line
    ]
    assert counted and float(counted[0].rsplit(" ", 1)[1]) >= 1, scraped[:2000]


@pytest.mark.redis
async def test_the_workers_and_emitter_samples_on_two_workers_and_redis(
    redis_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    first, second = sample("deployment.workers").app, sample("deployment.workers").app
    emitter = sample("deployment.emitter")
    async with (
        run_server(first, "hypercorn") as a,
        run_server(second, "uvicorn") as b,
        connect(a, "/chat") as ann,
        connect(a, "/chat") as dave,
        connect(b, "/chat") as bob,
        GatewayClient(f"ws://{b}/chat") as carl,
    ):

        @carl.on("vote")
        async def vote(data: dict[str, Any]) -> dict[str, Any]:
            return {"poll": data["poll"], "yes": True}

        async def join(client: Client, room: str) -> str:
            reply = await client.request("join", {"room": room})
            return str(reply["data"]["id"])

        ann_id, dave_id, bob_id = [await join(c, "lobby") for c in (ann, dave, bob)]
        await join(ann, "room-1")
        carl_id = (await carl.call("join", {"room": "voters"}, timeout=TIMEOUT))["id"]

        async def who(room: str, ids: list[str]) -> None:  # until every worker answers
            with anyio.fail_after(TIMEOUT):
                while True:
                    found = (await ann.request("who", {"room": room}))["data"]
                    if found == {"ids": sorted(ids), "count": len(ids), "complete": True}:
                        return
                    await anyio.sleep(0.1)

        await who("lobby", [ann_id, dave_id, bob_id])
        await ann.send("say", {"room": "lobby", "text": "hi"})
        for member in (ann, dave, bob):  # bob is on the other worker
            assert await member.recv() == {"event": "message", "data": {"text": "hi"}}
        polled = (await ann.request("poll"))["data"]
        assert polled == {
            "answers": {carl_id: {"poll": 7, "yes": True}},
            "errors": {},
            "timed_out": [],
            "complete": True,
        }
        await ann.send("rally")  # the lobby joins announcements, then all but ann leave them
        await who("announcements", [ann_id])

        await emitter.export_done(ann_id)  # from outside the servers
        assert [await ann.recv() for _ in range(3)] == [
            {"event": "message", "data": {"text": "build finished"}},
            {"event": "notice", "data": "your export is ready"},
            {"event": "announcement", "data": "maintenance at 22:00"},
        ]
        for other in (dave, bob):
            assert [await other.recv() for _ in range(2)] == [
                {"event": "presence", "data": {"left": ann_id}},
                {"event": "announcement", "data": "maintenance at 22:00"},
            ]
        await emitter.ban(dave_id)
        assert await _closed(dave) == 4000
        await ann.send("ban", bob_id)  # from worker a, to a client of worker b
        assert await _closed(bob) == 4000
        await carl.emit("close_lobby")  # from worker b, to the lobby on worker a
        assert await _closed(ann) == 1000


async def test_the_socketio_samples_with_and_without_recovery_offsets(
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = sample("deployment.socketio_server")
    client = sample("deployment.socketio_client")
    async with run_server(server.app, "hypercorn") as address:
        with anyio.fail_after(TIMEOUT * 2):
            await client.main(f"http://{address}")
    assert capsys.readouterr().out.splitlines() == ["ann hi"]

    recovering = sample("deployment.socketio_recovery")
    heard: list[tuple[Any, ...]] = []
    sio = socketio.AsyncClient(reconnection=False, request_timeout=5)
    sio.on("message", lambda *args: heard.append(args), namespace="/chat")
    async with run_server(recovering.app, "hypercorn") as address:
        await sio.connect(
            f"http://{address}", namespaces=["/chat"], transports=["websocket"], wait_timeout=5
        )
        try:
            await sio.call("say", {"text": "hi"}, namespace="/chat", timeout=TIMEOUT)
        finally:
            await sio.disconnect()
    [(data, offset)] = heard  # the offset comes as the last argument
    assert data == {"text": "hi"} and isinstance(offset, str) and offset
