"""The samples of the Streams page (``docs/examples/streaming``), each run as the page shows
it: the gateway on a real server, read by the Python client and by the TypeScript client
(its built ``clients/js/dist``) in Node."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import anyio
import pytest

from tests.docs.test_samples import sample
from tests.servers import TIMEOUT, run_server

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "docs" / "examples" / "streaming"
CLIENT_JS = ROOT / "clients" / "js"


async def test_the_python_client_reads_cancels_and_reads_a_def_generator(
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = sample("streaming.assistant")
    client = sample("streaming.python_client")
    assistant = server.app.get(server.Assistant)
    ticker_closed_while_connected: list[bool] = []
    async with run_server(server.app, "hypercorn") as address:
        finished = anyio.Event()

        async def watch() -> None:
            # The ticker starts, then its generator is closed by the client's cancel (the
            # loop's break), while the client is still connected: not by its disconnect.
            while assistant.live_tickers == 0:
                await anyio.sleep(0.001)
            while assistant.live_tickers:
                await anyio.sleep(0.001)
            ticker_closed_while_connected.append(not finished.is_set())

        with anyio.fail_after(TIMEOUT * 2):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(watch)
                await client.main(f"ws://{address}/ai")
                finished.set()
    assert capsys.readouterr().out.splitlines() == [
        "You said: hello there ",
        "{'tokens': 4}",
        "[3, 2, 1]",
    ]
    assert ticker_closed_while_connected == [True]


async def test_the_typescript_client_reads_and_aborts_in_node(tmp_path: Path) -> None:
    node = shutil.which("node")
    built = CLIENT_JS / "dist" / "index.js"
    if node is None or not built.is_file() or not (CLIENT_JS / "node_modules" / "ws").is_dir():
        message = "node and the built client are needed: make chat-client"
        if os.environ.get("CI"):
            pytest.fail(f"{message} (CI=true: this test must run)")
        pytest.skip(message)
    server = sample("streaming.assistant")
    assistant = server.app.get(server.Assistant)
    # The page's file, importing the package from this checkout (and `ws` from its modules).
    (tmp_path / "node_modules").symlink_to(CLIENT_JS / "node_modules")
    script = tmp_path / "client.mjs"
    source = (EXAMPLES / "ts_client.mjs").read_text()
    assert '"@gatewayasgi/client"' in source
    script.write_text(source.replace('"@gatewayasgi/client"', f'"{built.as_posix()}"'))
    async with run_server(server.app, "hypercorn") as address:
        with anyio.fail_after(TIMEOUT * 2):
            done = await anyio.run_process(
                [node, str(script), f"ws://{address}/ai"], cwd=tmp_path, check=False
            )
        assert done.returncode == 0, done.stderr.decode()
        with anyio.fail_after(TIMEOUT):  # the ticker's generator was closed (its finally ran)
            while assistant.live_tickers:
                await anyio.sleep(0.01)
    assert done.stdout.decode().splitlines() == [
        "You said: hello there ",
        '{"tokens":4}',
        "AbortError [ 1, 2, 3 ]",
    ]
