"""``AISDKChat`` judges request frames as the ``ai`` package's own
``safeValidateWebSocketChatTransportRequest`` does: the same verdict for every frame of
``tests/ai/cases.py``, and for an accepted ``send`` the same messages kept."""

from __future__ import annotations

import os

import orjson
import pytest

from gatewayasgi.ai import AISDKChat, ChatRequest
from gatewayasgi.protocol.codec import FrameError
from tests.ai.cases import CASES
from tests.ai.test_ai_sdk import node_binary, run_node

pytestmark = pytest.mark.anyio


async def test_the_same_verdicts_as_the_ai_package() -> None:
    node = node_binary()
    frames = [frame for _, frame, _ in CASES]
    code, output = await run_node(node, ["validate.mjs"], dict(os.environ), orjson.dumps(frames))
    assert code == 0, output
    verdicts = orjson.loads(output)
    protocol = AISDKChat()
    for (name, frame, expected), verdict in zip(CASES, verdicts, strict=True):
        assert verdict["ok"] is expected, f"{name}: the case's verdict is not the package's"
        try:
            decoded = protocol.decode(orjson.dumps(frame))
        except FrameError:
            assert not verdict["ok"], f"{name}: refused, the ai package accepts it"
            continue
        assert verdict["ok"], f"{name}: accepted, the ai package refuses it"
        if isinstance(decoded.data, ChatRequest):
            kept = [m.model_dump(mode="json", exclude_unset=True) for m in decoded.data.messages]
            assert kept == verdict["data"]["messages"], name
