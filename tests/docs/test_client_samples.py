"""The samples of the Clients and Scaling pages (``docs/examples/clients``,
``docs/examples/scaling``), each run as the page shows it: on a real server, with the
Python client, socket.io-client in Node, tsc, and a real redis-server."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from gatewayasgi.asyncapi import asyncapi_document, client_types
from gatewayasgi.emitter import RedisEmitter
from tests.docs.test_samples import sample
from tests.servers import TIMEOUT, connect, run_server

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "docs" / "examples"


async def test_the_python_client_sample_prints_what_its_comments_say(
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = sample("clients.python_server")
    client = sample("clients.python_client")
    async with run_server(server.app, "hypercorn") as address:
        with anyio.fail_after(TIMEOUT * 2):
            await client.main(f"ws://{address}/chat")
        # The client's confirm handler answered (the second call may meet the client closing).
        assert server.answers in ([True], [True, True])
        import websockets

        with pytest.raises(websockets.InvalidStatus):  # the guard reads the x-token header
            async with connect(address, "/chat"):
                pass
    printed = capsys.readouterr().out.splitlines()
    assert printed == [
        "{'text': 'hi', 'status': 'delivered'}",
        "Message(event='message_ack', data={'text': 'no id, no ack', 'status': 'delivered'})",
    ]


async def test_the_socketio_sample_answers_socketio_client_in_node(tmp_path: Path) -> None:
    from tests.socketio.test_node_client import NODE_DIR, node_binary

    node = node_binary()
    module = sample("clients.socketio_app")
    (tmp_path / "node_modules").symlink_to(NODE_DIR / "node_modules")
    script = tmp_path / "client.mjs"
    shutil.copy(EXAMPLES / "clients" / "socketio_client.mjs", script)
    async with run_server(module.app, "hypercorn") as address:
        with anyio.fail_after(TIMEOUT * 2):
            done = await anyio.run_process(
                [node, str(script), f"http://{address}"], cwd=tmp_path, check=False
            )
        assert done.returncode == 0, done.stderr.decode()
        assert json.loads(done.stdout) == {"room": "lobby", "welcome": "hello ann"}
        # The same gateway, refused without the token in Socket.IO's CONNECT auth.
        bad = (
            script.read_text()
            .replace('"s3cret"', '"wrong"')
            .replace(
                "const answer",
                "socket.on('connect_error', (e) => { console.log(e.message); "
                "process.exit(3); });\nconst answer",
            )
        )
        script.write_text(bad)
        with anyio.fail_after(TIMEOUT * 2):
            refused = await anyio.run_process(
                [node, str(script), f"http://{address}"], cwd=tmp_path, check=False
            )
    assert refused.returncode == 3 and b"Forbidden" in refused.stdout, refused


async def test_the_asyncapi_sample_serves_its_document() -> None:
    module = sample("clients.asyncapi_app")
    async with run_server(module.app, "hypercorn") as address:
        async with httpx.AsyncClient(timeout=TIMEOUT) as http:
            document = (await http.get(f"http://{address}/asyncapi.json")).json()
    assert document["asyncapi"].startswith("3.")
    assert [c["address"] for c in document["channels"].values()] == ["/chat"]
    assert document == asyncapi_document(module.app)


def test_the_typed_events_sample_fails_to_compile_where_its_comment_says(tmp_path: Path) -> None:
    """tsc on the page's TypeScript, with the event maps generated from the AsyncAPI sample:
    exactly one error, on the line whose comment names it."""
    tools = ROOT / "tests" / "asyncapi" / "node_modules"
    if not (tools / ".bin" / "tsc").exists():
        pytest.skip("tests/asyncapi/node_modules is missing: cd tests/asyncapi && npm ci")
    module = sample("clients.asyncapi_app")
    (tmp_path / "events.ts").write_text(client_types(asyncapi_document(module.app)))
    source = (EXAMPLES / "clients" / "typed_events.ts").read_text()
    client = os.path.relpath(ROOT / "clients" / "js" / "src" / "index.js", tmp_path)
    (tmp_path / "check.ts").write_text(source.replace('"@gatewayasgi/client"', f'"{client}"'))
    config: dict[str, Any] = {
        "compilerOptions": {
            "target": "ES2022",
            "module": "NodeNext",
            "moduleResolution": "NodeNext",
            "lib": ["ES2022"],
            "types": [],
            "strict": True,
            "noEmit": True,
        },
        "include": ["check.ts", "events.ts", str(ROOT / "clients" / "js" / "src" / "*.d.ts")],
    }
    (tmp_path / "tsconfig.json").write_text(json.dumps(config))
    (tmp_path / "package.json").write_text('{"type": "module"}')  # top-level await
    run = subprocess.run(
        [str(tools / ".bin" / "tsc"), "-p", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    errors = [line for line in run.stdout.splitlines() if "error TS" in line]
    line = 1 + source.splitlines().index(
        next(s for s in source.splitlines() if "tsc: 'number' is not assignable" in s)
    )
    assert len(errors) == 1 and f"check.ts({line}," in errors[0], run.stdout
    assert "'number' is not assignable to type 'string'" in errors[0]


@pytest.mark.redis
async def test_the_signed_backplane_sample_drops_unsigned_pushes(
    redis_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    monkeypatch.setenv("GATEWAY_BACKPLANE_SECRET", "a-secret-of-32-characters-or-so!")
    module = sample("scaling.signed")
    async with (
        run_server(module.app, "hypercorn") as address,
        connect(address, "/chat") as client,
        module.emitter() as signed,
        RedisEmitter(redis_server.url, namespace="/chat") as unsigned,
    ):
        with anyio.fail_after(TIMEOUT):  # until the worker's subscription is live
            while True:
                await signed.emit("news", {"n": 0})
                with anyio.move_on_after(0.2):
                    if await client.recv() == {"event": "news", "data": {"n": 0}}:
                        break
        await unsigned.emit("news", {"n": "forged"})
        await signed.emit("news", {"n": 1})
        assert await client.recv() == {"event": "news", "data": {"n": 1}}
        assert await client.nothing_within(0.2)
