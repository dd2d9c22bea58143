"""The ``ai`` package's ``WebSocketChatTransport`` (Node) against two hypercorn worker
processes on one real redis-server (``tests/ai/workers_app.py``): a chat streamed by
worker A is resumed, replayed and aborted through worker B (``node/workers.test.mjs``).

Needs ``node`` >= 20, ``tests/ai/node/node_modules`` and ``redis-server``; skipped
otherwise (see ``test_ai_sdk.py``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.ai.test_ai_sdk import NODE_TIMEOUT, node_binary, run_node
from tests.redis_server import running_redis_server
from tests.workers import Node, start_node, stop_node

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

APP = "tests.ai.workers_app:app"


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[tuple[Node, Node]]:
    with ExitStack() as stack:
        redis = stack.enter_context(running_redis_server(tmp_path))
        started = []
        for name in ("A", "B"):
            node = start_node(name, redis.url, tmp_path, APP)
            stack.callback(stop_node, node)
            started.append(node)
        yield started[0], started[1]


@pytest.mark.timeout(NODE_TIMEOUT + 60)
async def test_the_ai_sdk_transport_resumes_a_chat_of_another_worker(
    nodes: tuple[Node, Node],
) -> None:
    node = node_binary()
    a, b = nodes
    env = {
        **os.environ,
        "GATEWAY_AI_URL_A": f"http://{a.address}",
        "GATEWAY_AI_URL_B": f"http://{b.address}",
    }
    code, output = await run_node(node, ["--test", "--test-reporter=spec", "workers.test.mjs"], env)
    assert code == 0, output + "".join(n.log.read_text() for n in nodes)
    assert re.search(r"\bfail 0\b", output), output
    assert re.search(r"\bpass 5\b", output), output
