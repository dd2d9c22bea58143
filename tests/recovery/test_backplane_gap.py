"""A history kept in process memory behind a broker that can lose messages: when the
broker reports its subscription cut (``Broker.on_gap``), frames of other processes may be
missing from this process's history. Connected clients are told (``$session`` with
reason ``"backplane"``) and no resume replays across the hole (``"trimmed"``).

Redis keeps the history itself (nothing to tell), and the memory broker loses nothing, so
the broker here is a memory broker whose test reports the gap, as ``RedisBroker`` does
once a cut subscription is back (tested on a real Redis in ``tests/test_scale_out.py``).
"""

from __future__ import annotations

from typing import Any

import pytest

from gatewayasgi import GatewayMiddleware, Recovery
from gatewayasgi.backplane.envelope import channel_for
from gatewayasgi.brokers import MemoryBroker
from gatewayasgi.brokers.base import GapHandler
from gatewayasgi.brokers.memory import MemoryHub
from tests.recovery.test_runtime_memory import chat_gateway
from tests.recovery.wire import Session
from tests.servers import run_server, server_call

pytestmark = pytest.mark.anyio


class GapReportingBroker(MemoryBroker):
    def __init__(self) -> None:
        super().__init__(MemoryHub())
        self.report: GapHandler | None = None

    def on_gap(self, handler: GapHandler) -> None:
        self.report = handler


async def test_a_gap_in_a_history_kept_in_memory_is_told_and_never_replayed_across() -> None:
    broker = GapReportingBroker()
    app = GatewayMiddleware(gateways=[chat_gateway(Recovery(window=30))], broker=broker)
    async with run_server(app, "uvicorn") as address:
        stay, away = Session(address), Session(address)
        for session in (stay, away):
            await session.open()
            await session.request("join", "r")
        await stay.request("say", {"room": "r", "n": "before"}, 2)
        assert (await away.recv())["data"] == "before"
        away.cut()

        async def cut_subscription() -> None:
            assert broker.report is not None
            broker.report([channel_for("/chat")])

        await server_call(address, cut_subscription)
        told = await stay.recv_raw()
        assert told["event"] == "$session", told
        assert told["data"]["recovered"] is False and told["data"]["reason"] == "backplane"
        assert told["data"]["id"] == stay.session["id"]

        back = await away.open(resume=True)
        assert back["recovered"] is False and back["reason"] == "trimmed", back
        # A new session (the old one's rooms are gone with it); delivery goes on.
        assert back["offset"] == told["data"]["offset"]  # it starts after the hole
        await away.request("join", "r", 4)
        await stay.request("say", {"room": "r", "n": "after"}, 3)
        frame: Any = await away.recv()
        assert frame["data"] == "after", frame
