"""The README's streaming sample (``docs/examples/streaming/tokens.py``), served by a real
server and read by the Python client with ``recover=True`` through a connection that is cut
in the middle of the answer: the whole answer arrives, each token once."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from gatewayasgi.client import GatewayClient
from tests.docs.test_samples import sample
from tests.recovery.cut_proxy import CutProxy
from tests.servers import TIMEOUT, run_server

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]


def test_the_readme_shows_the_sample_whole() -> None:
    text = (ROOT / "docs" / "examples" / "streaming" / "tokens.py").read_text()
    assert text in (ROOT / "README.md").read_text()


@pytest.mark.parametrize("server", ["hypercorn", "uvicorn"])
async def test_the_answer_survives_a_cut(server: str) -> None:
    tokens = sample("streaming.tokens")
    async with run_server(tokens.app, server) as address:
        proxy = CutProxy(address)
        async with proxy.running():
            url = f"ws://{proxy.address}/ai"
            async with GatewayClient(url, recover=True, reconnect_delay=0.02) as client:
                answer = []
                with anyio.fail_after(TIMEOUT):
                    async for item in client.stream("prompt", {"text": "one two three four"}):
                        answer.append(item["delta"])
                        if len(answer) == 2:
                            proxy.cut()
    assert "".join(answer) == "You said: one two three four "
