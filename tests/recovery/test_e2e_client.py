"""``gatewayasgi.client.GatewayClient`` resuming its session on its own, on real servers.

The connection is cut by a TCP proxy (no close frame) while another client emits to the
client's room; the client reconnects with backoff, resumes (same id, same rooms), and its
``receive()`` yields every frame once, in order, then live frames.
"""

from __future__ import annotations

import anyio
import pytest

from gatewayasgi import GatewayMiddleware, Recovery
from gatewayasgi.client import GatewayClient
from tests.recovery.cut_proxy import CutProxy
from tests.recovery.test_runtime_memory import chat_gateway
from tests.recovery.wire import Session
from tests.servers import TIMEOUT, run_server

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("server", ["hypercorn", "uvicorn"])
async def test_the_python_client_resumes_and_receives_every_missed_frame_once(
    server: str,
) -> None:
    gateway = chat_gateway(Recovery(window=30))
    app = GatewayMiddleware(gateways=[gateway])
    chat = app.get(gateway)
    async with run_server(app, server) as address:
        proxy = CutProxy(address)
        async with proxy.running():
            client = GatewayClient(f"ws://{proxy.address}/chat", recover=True, reconnect_delay=0.05)
            async with client:
                first_id = client.id
                assert first_id is not None and client.recovered is False
                assert await client.call("join", "r", timeout=TIMEOUT) == {
                    "joined": "r",
                    "visits": 1,
                }
                sender = Session(address)
                await sender.open()
                await sender.request("say", {"room": "r", "n": "first"})
                assert (await client.receive(timeout=TIMEOUT)).data == "first"
                assert proxy.cut() == 1
                # The client is away (or reconnecting) while 300 frames go to its room.
                assert await sender.request("burst", {"room": "r", "count": 300}) == "done"
                with anyio.fail_after(TIMEOUT):
                    received = [(await client.receive()).data for _ in range(300)]
                    await client.wait_connected()
                assert received == list(range(300))
                assert client.recovered is True, client.session
                assert client.id == first_id
                assert await client.call("join", "r", timeout=TIMEOUT) == {
                    "joined": "r",
                    "visits": 2,  # on_connection ran again; state came back with the id
                }
                await sender.request("say", {"room": "r", "n": "live"})
                assert (await client.receive(timeout=TIMEOUT)).data == "live"
                with anyio.move_on_after(0.3):
                    extra = await client.receive()
                    pytest.fail(f"a frame arrived twice: {extra}")
            # Leaving the block closes with 1000 after ``$end``: the session ends at once
            # (its window is 30 s), on hypercorn too, which reports the close as 1006.
            with anyio.fail_after(TIMEOUT):
                while first_id not in chat.disconnected:
                    await anyio.sleep(0.01)
            await sender.ws.close()
