"""Frame size, rate limits, room caps and heartbeats, on a real server."""

from __future__ import annotations

import json

import anyio
import pytest

from gatewayasgi import (
    ConnectedSocket,
    GatewayMiddleware,
    MessageBody,
    SubscribeMessage,
    WebSocketGateway,
)
from tests.servers import connect, run_server

pytestmark = pytest.mark.anyio


@WebSocketGateway("/lim")
class LimitGateway:
    @SubscribeMessage("echo")
    def echo(self, data=MessageBody()):
        return data

    @SubscribeMessage("join")
    async def join(self, room=MessageBody("room"), client=ConnectedSocket()):
        await self.server.join(client, room)
        return sorted(self.server.rooms_of(client))


async def test_oversized_frame_closes_with_1009_and_others_go_on() -> None:
    app = GatewayMiddleware(gateways=[LimitGateway], max_message_size=1000)
    async with run_server(app) as address:
        async with connect(address, "/lim") as big, connect(address, "/lim") as other:
            assert (await big.request("echo", "x" * 900))["data"] == "x" * 900
            await big.send("echo", "x" * 1000)
            assert await big.expect_close() == 1009
            assert await other.request("echo", 1) == {"event": "echo", "data": 1}


async def test_size_counts_utf8_bytes_not_characters() -> None:
    app = GatewayMiddleware(gateways=[LimitGateway], max_message_size=1000)
    async with run_server(app) as address, connect(address, "/lim") as client:
        await client.send("echo", "é" * 600)  # 600 characters, 1,200 bytes
        assert await client.expect_close() == 1009


async def test_flood_gets_one_rate_limit_frame_then_abuse_closes_1008() -> None:
    app = GatewayMiddleware(gateways=[LimitGateway], rate_limit=5, rate_burst=5, abuse_threshold=50)
    async with run_server(app) as address, connect(address, "/lim") as client:
        for index in range(80):
            await client.send("echo", index)
        replies = []
        code = None
        with anyio.fail_after(10):
            try:
                while True:
                    replies.append(json.loads(await client.ws.recv()))
            except Exception as exc:  # ConnectionClosed
                code = exc.rcvd.code  # type: ignore[attr-defined]
        echoes = [r for r in replies if r["event"] == "echo"]
        limited = [r for r in replies if r["event"] == "error"]
        assert 5 <= len(echoes) < 10
        assert limited == [{"event": "error", "data": {"message": "Rate limit exceeded"}}]
        assert code == 1008


async def test_bad_frames_are_answered_within_a_smaller_budget() -> None:
    app = GatewayMiddleware(
        gateways=[LimitGateway], error_rate_limit=1, error_burst=3, abuse_threshold=10_000
    )
    async with run_server(app) as address, connect(address, "/lim") as client:
        for _ in range(50):
            await client.send_raw("garbage")
        # The connection still serves good frames, so the garbage was not amplified.
        await client.send("echo", "ok")
        replies = []
        with anyio.fail_after(5):
            while True:
                reply = await client.recv()
                replies.append(reply)
                if reply["event"] == "echo":
                    break
        messages = [r["data"]["message"] for r in replies if r["event"] == "error"]
        assert messages == ["Invalid JSON payload"] * 3 + ["Rate limit exceeded"]


async def test_default_limits_let_a_fast_client_through() -> None:
    app = GatewayMiddleware(gateways=[LimitGateway])
    async with run_server(app) as address, connect(address, "/lim") as client:
        for index in range(3000):
            await client.send("echo", index)
        for index in range(3000):
            assert (await client.recv())["data"] == index


async def test_room_caps() -> None:
    app = GatewayMiddleware(
        gateways=[LimitGateway], max_rooms_per_connection=2, max_room_name_length=8
    )
    async with run_server(app) as address, connect(address, "/lim") as client:
        assert (await client.request("join", {"room": "a"}))["data"] == ["a"]
        assert (await client.request("join", {"room": "b"}))["data"] == ["a", "b"]
        assert (await client.request("join", {"room": "a"}))["data"] == ["a", "b"]
        error = await client.request("join", {"room": "c"})
        assert error["data"]["message"] == "Too many rooms: at most 2 per connection"
        error = await client.request("join", {"room": "x" * 9})
        assert "at most 8 characters" in error["data"]["message"]
        error = await client.request("join", {"room": 5})
        assert error["event"] == "error"
        assert await client.request("echo", "still open") == {"event": "echo", "data": "still open"}


async def test_heartbeat_pings_and_closes_a_silent_client() -> None:
    app = GatewayMiddleware(gateways=[LimitGateway], heartbeat_interval=0.2, heartbeat_timeout=0.3)
    async with run_server(app) as address:
        async with connect(address, "/lim") as silent:
            assert await silent.recv(timeout=2) == {"event": "heartbeat", "data": None}
            assert await silent.expect_close(timeout=5) == 1001
        async with connect(address, "/lim") as lively:
            with anyio.fail_after(5):
                for _ in range(6):
                    assert (await lively.recv())["event"] == "heartbeat"
                    await lively.send("heartbeat")  # the answer is absorbed, not an error
            assert await lively.request("echo", "alive") == {"event": "echo", "data": "alive"}


async def test_unknown_setting_is_a_startup_error() -> None:
    suggestion = r"'max_mesage_size' \(did you mean 'max_message_size'\?\)"
    with pytest.raises(TypeError, match=suggestion):
        GatewayMiddleware(gateways=[LimitGateway], max_mesage_size=10)
