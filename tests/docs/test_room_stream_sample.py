"""The room-stream sample of the Streams page (``docs/examples/streaming/room_stream.py``),
on a real server: two tabs watching one run get the same frames, another tab none."""

from __future__ import annotations

import anyio
import pytest

from tests.docs.test_samples import sample
from tests.servers import TIMEOUT, connect, run_server

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("server", ["hypercorn", "uvicorn"])
async def test_two_watchers_get_the_same_run_and_another_tab_nothing(server: str) -> None:
    module = sample("streaming.room_stream")
    async with (
        run_server(module.app, server) as address,
        connect(address, "/runs") as one,
        connect(address, "/runs") as two,
        connect(address, "/runs") as other,
    ):
        for tab, run in ((one, "r1"), (two, "r1"), (other, "r2")):
            assert await tab.request("watch", run, id=1) == {
                "event": "watch",
                "data": "watching",
                "id": 1,
            }
        await other.send("start", "r1", id=2)
        with anyio.fail_after(TIMEOUT):
            reply = await other.recv()
        assert reply["id"] == 2 and reply["data"]["items"] == 3 and not reply["data"]["error"]
        stream = reply["data"]["stream"]
        expected = [
            {"event": "progress", "data": {"task": "r1", "step": s}, "stream": stream, "seq": n}
            for n, s in enumerate(("plan", "search", "write"), 1)
        ]
        expected.append(
            {"event": "progress", "data": {"task": "r1", "steps": 3}, "stream": stream, "end": True}
        )
        assert [await one.recv() for _ in expected] == expected
        assert [await two.recv() for _ in expected] == expected
        assert await other.nothing_within(0.2)
