"""Smoke test under granian (a Rust ASGI server, run as a subprocess)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from tests.servers import connect, free_port

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def granian_address() -> Iterator[str]:
    granian = shutil.which("granian", path=str(Path(sys.executable).parent))
    if granian is None:
        pytest.skip("granian is not installed (pip install 'gatewayasgi[benchmarks]')")
    port = free_port()
    process = subprocess.Popen(
        [
            granian,
            "--interface",
            "asgi",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "tests.apps.granian_app:app",
        ],
        cwd=ROOT,
    )
    try:
        anyio.run(_wait_for, port)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


async def _wait_for(port: int) -> None:
    with anyio.fail_after(20):
        while True:
            try:
                stream = await anyio.connect_tcp("127.0.0.1", port)
            except OSError:
                await anyio.sleep(0.05)
            else:
                await stream.aclose()
                return


async def test_echo_ack_and_error_frames_under_granian(granian_address: str) -> None:
    async with connect(granian_address, "/granian") as client:
        assert await client.request("echo", {"a": 1}, id=5) == {
            "event": "echo",
            "data": {"a": 1},
            "id": 5,
        }
        await client.send_raw("not json")
        assert (await client.recv())["data"]["message"] == "Invalid JSON payload"
        await client.send("join", {"room": "r"})
        assert await client.recv() == {"event": "joined", "data": {"room": "r"}}


async def test_guard_denial_and_crash_close_codes_under_granian(granian_address: str) -> None:
    async with connect(granian_address, "/granian") as client:
        await client.send("admin", {})
        assert (await client.recv())["data"]["message"] == "Access denied: insufficient permissions"
        assert await client.expect_close() == 1008
    async with connect(granian_address, "/granian") as client:
        await client.send("crash")
        assert await client.recv() == {
            "event": "error",
            "data": {"message": "Internal server error"},
        }
        assert await client.expect_close() == 1011


async def test_client_vanishing_mid_stream_does_not_break_the_server(granian_address: str) -> None:
    for _ in range(3):
        async with connect(granian_address, "/granian") as client:
            for index in range(200):
                await client.send("echo", index)
            client.ws.transport.abort()
    async with connect(granian_address, "/granian") as client:
        assert await client.request("echo", "alive") == {"event": "echo", "data": "alive"}
