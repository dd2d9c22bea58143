"""Issue 17 (8b, 8c): what a client's answers, or its silence, may cost the server.

* A 1 MiB ``$ack`` answer is parsed once, as any frame is (it was parsed twice: once to
  decode it, once more to read its ``error`` member). Counted on a real server: the
  frame's bytes reach ``orjson.loads`` exactly once, and the call still resolves.
* Hundreds of room calls, triggered by the app on worker A, to a member of worker B
  that never answers must not starve B's other cluster work: meanwhile ``presence``
  (asked from A) still counts B's members, every call reports every node, and B logs
  a few lines, not one per refused request. Two hypercorn workers on a real
  redis-server (``tests.workers``); this module is also their app (``app``).
"""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from tests.cluster.app import NAMESPACE, make_app
from tests.servers import Client, connect, run_server

pytestmark = pytest.mark.anyio

SERVERS = ["hypercorn", "uvicorn"]
BIG = 1024 * 1024 - 1024
"""Bytes of the big answer's data: the frame stays under the 1 MiB frame limit."""


# -- 8b: a call's answer is parsed once --------------------------------------------------


async def _welcome(client: Client) -> str:
    frame = await client.recv()
    assert frame["event"] == "welcome", frame
    return str(frame["data"]["id"])


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("rejected", [False, True], ids=["data", "error"])
async def test_a_1_mib_answer_is_parsed_once_and_settles_the_call(
    server: str, rejected: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed: list[int] = []  # sizes of the big inputs orjson.loads was given
    loads = orjson.loads

    def counting(raw: Any) -> Any:
        if len(raw) > BIG // 2:
            parsed.append(len(raw))
        return loads(raw)

    monkeypatch.setattr(orjson, "loads", counting)  # codec calls orjson.loads(...)
    async with (
        run_server(make_app(), server) as address,
        connect(address, NAMESPACE) as callee,
        connect(address, NAMESPACE) as controller,
    ):
        callee_id = await _welcome(callee)
        await _welcome(controller)
        data = {"target": callee_id, "event": "ask", "timeout": 10}
        await controller.send("call", data, id=1)
        frame = await callee.recv()
        assert frame["event"] == "ask" and type(frame["ack"]) is int
        answer: dict[str, Any] = {"event": "$ack", "id": frame["ack"], "data": "x" * BIG}
        if rejected:
            answer["error"] = {"message": "not now"}
        raw = json.dumps(answer)
        assert BIG < len(raw) <= 1024 * 1024
        await callee.send_raw(raw)
        reply = await controller.recv()
        assert reply["id"] == 1
        if rejected:
            assert reply["data"] == {"error": "rejected", "message": "not now"}
        else:
            assert reply["data"] == {"data": "x" * BIG}
    assert parsed == [len(raw)]  # one parse of the answer, not two
