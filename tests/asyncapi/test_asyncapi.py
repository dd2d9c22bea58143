"""The AsyncAPI document and the client types: their shape (pure), the HTTP endpoint and
the CLI, validity under the AsyncAPI project's own parser, and tsc on the generated types."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from gatewayasgi import GatewayMiddleware, SubscribeMessage, WebSocketGateway
from gatewayasgi.asyncapi import asyncapi_document, client_types
from gatewayasgi.cli import main
from gatewayasgi.loader import load_middleware
from tests.asyncapi import rich_app

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
EXAMPLES = ["examples.bare_app", "examples.chat.app", "examples.litestar_app"]
EXAMPLES += ["examples.starlette_app"]
TIMEOUT = 300


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return asyncapi_document(rich_app.app)


def test_one_channel_per_gateway_with_path_parameters(document: dict[str, Any]) -> None:
    board = document["channels"]["BoardGateway"]
    assert board["address"] == "/boards/{board_id}"
    assert set(board["parameters"]) == {"board_id"}
    assert board["bindings"]["ws"]["method"] == "GET"
    assert (
        "v1.boards"
        in board["bindings"]["ws"]["headers"]["properties"]["Sec-WebSocket-Protocol"]["description"]
    )
    assert board["x-gatewayasgi-handshake-guards"] == ["TokenGuard"]
    assert document["channels"]["LobbyGateway"]["address"] == "/lobby"


def test_models_land_once_in_components(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    assert sorted(schemas) == ["Join", "Joined", "Placed", "Point", "Shape"]
    join = document["channels"]["BoardGateway"]["messages"]["join"]["payload"]
    assert join["properties"]["data"] == {"$ref": "#/components/schemas/Join"}
    assert "$defs" not in json.dumps(document)
    # A tuple is written the draft-07 way the AsyncAPI Schema Object reads.
    assert schemas["Shape"]["properties"]["corner"]["additionalItems"] is False


def test_receive_operations_reply_when_the_handler_answers(document: dict[str, Any]) -> None:
    operations = document["operations"]
    join = operations["BoardGateway.receive.join"]
    assert join["action"] == "receive"
    assert join["summary"] == "Enter a room of the board."
    assert join["x-gatewayasgi-guards"] == ["MemberGuard"]
    assert [m["$ref"].rsplit("/", 1)[1] for m in join["reply"]["messages"]] == [
        "join.reply",
        "error",
    ]
    place = operations["BoardGateway.receive.place"]
    assert place["x-gatewayasgi-guards"] == ["MemberGuard", "AdminGuard"]
    move = operations["BoardGateway.receive.move"]  # -> None: only the error frame answers
    assert [m["$ref"].rsplit("/", 1)[1] for m in move["reply"]["messages"]] == ["error"]
    data = document["channels"]["BoardGateway"]["messages"]["move"]["payload"]["properties"]
    assert data["data"]["required"] == ["dx"]


def test_a_stream_handler_replies_with_items_and_an_end_and_takes_cancel(
    document: dict[str, Any],
) -> None:
    channel = document["channels"]["BoardGateway"]
    replay = document["operations"]["BoardGateway.receive.replay"]
    replies = [ref["$ref"].rsplit("/", 1)[1] for ref in replay["reply"]["messages"]]
    assert replies == ["replay.item", "replay.end", "error"]
    item = channel["messages"]["replay.item"]["payload"]
    assert item["properties"]["data"] == {"$ref": "#/components/schemas/Placed"}
    assert item["required"] == ["event", "data", "id", "seq"]
    assert channel["messages"]["replay.end"]["payload"]["properties"]["end"] == {"const": True}
    assert "BoardGateway.receive._cancel" in document["operations"]
    assert "LobbyGateway.receive._cancel" not in document["operations"]


def test_send_operations_for_emits_errors_and_sessions(document: dict[str, Any]) -> None:
    operations = document["operations"]
    sent = sorted(key for key, op in operations.items() if op["action"] == "send")
    assert sent == [
        "BoardGateway.send.cleared",
        "BoardGateway.send.error",
        "BoardGateway.send.placed",
        "BoardGateway.send.session",
        "LobbyGateway.send.announcement",
        "LobbyGateway.send.error",
    ]
    placed = document["channels"]["BoardGateway"]["messages"]["placed"]["payload"]
    assert "offset" in placed["properties"]  # recovery on: emitted frames carry offsets
    announcement = document["channels"]["LobbyGateway"]["messages"]["announcement"]
    assert "offset" not in announcement["payload"]["properties"]
    assert document["components"]["messages"]["gatewayasgi.session"]["name"] == "$session"


def test_a_gateway_without_recovery_behind_a_broker_sends_gap() -> None:
    document = asyncapi_document(rich_app.brokered)
    sent = sorted(key for key, op in document["operations"].items() if op["action"] == "send")
    assert "LobbyGateway.send.gap" in sent
    assert "BoardGateway.send.gap" not in sent  # with recovery: replayed, not told
    gap = document["components"]["messages"]["gatewayasgi.gap"]
    assert gap["name"] == "$gap"
    assert gap["payload"]["properties"]["event"]["const"] == "$gap"
    assert "gatewayasgi.gap" not in asyncapi_document(rich_app.app)["components"]["messages"]


def test_the_document_is_deterministic() -> None:
    first = json.dumps(asyncapi_document(rich_app.app))
    assert json.dumps(asyncapi_document(rich_app.app)) == first


def test_emits_refuses_protocol_events() -> None:
    from gatewayasgi import Emits

    with pytest.raises(TypeError, match="protocol"):
        Emits("$session")


async def _http(app: GatewayMiddleware, method: str, path: str) -> tuple[int, bytes]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "root_path": "", "headers": []}
    await app(scope, receive, send)
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


@pytest.mark.anyio
async def test_asyncapi_url_serves_the_document_and_passes_the_rest() -> None:
    status, body = await _http(rich_app.app, "GET", "/asyncapi.json")
    assert status == 200 and json.loads(body) == asyncapi_document(rich_app.app)
    assert await _http(rich_app.app, "HEAD", "/asyncapi.json") == (200, b"")
    assert (await _http(rich_app.app, "GET", "/other"))[0] == 404
    assert (await _http(rich_app.app, "POST", "/asyncapi.json"))[0] == 404
    assert (await _http(rich_app.single, "GET", "/asyncapi.json"))[0] == 404  # off by default


def test_cli_prints_the_document(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["asyncapi", "tests.asyncapi.rich_app:app"]) == 0
    assert json.loads(capsys.readouterr().out) == asyncapi_document(rich_app.app)


def test_cli_writes_client_types(tmp_path: Path) -> None:
    target = tmp_path / "events.ts"
    argv = ["generate", "client-types", "tests.asyncapi.rich_app:single", "-o", str(target)]
    assert main(argv) == 0
    source = target.read_text()
    assert "export type ClientEvents = LobbyGatewayClientEvents;" in source
    assert "join: (data: Join) => Shape[];" in source


def test_starlette_add_middleware_is_found() -> None:
    middleware = load_middleware("examples.starlette_app:app")
    assert isinstance(middleware, GatewayMiddleware)


# -- the AsyncAPI project's parser and tsc ----------------------------------------------


@pytest.fixture(scope="module")
def node_tools() -> Path:
    """``tests/asyncapi/node_modules`` (``npm ci`` when it is missing)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed: make node, or install Node.js >= 20")
    modules = HERE / "node_modules"
    if not (modules / "@asyncapi" / "parser").is_dir() or not (modules / ".bin" / "tsc").exists():
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"], cwd=HERE, check=True, timeout=TIMEOUT
        )
    return modules


@pytest.mark.timeout(TIMEOUT)
def test_documents_pass_the_asyncapi_parser(node_tools: Path, tmp_path: Path) -> None:
    """Every example's document and the rich app's pass @asyncapi/parser with no error."""
    files = []
    targets = [f"{name}:app" for name in EXAMPLES] + ["tests.asyncapi.rich_app:app"]
    targets += ["tests.asyncapi.rich_app:brokered"]
    for target in targets:
        path = tmp_path / (target.replace(":", "-") + ".json")
        path.write_text(json.dumps(asyncapi_document(load_middleware(target))))
        files.append(str(path))
    run = subprocess.run(
        ["node", str(HERE / "validate.mjs"), *files],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    diagnostics = [json.loads(line) for line in run.stdout.splitlines() if line.strip()]
    errors = [d for d in diagnostics if d["severity"] == 0]
    assert run.returncode == 0 and not errors, run.stdout + run.stderr
    # Warnings too: only the advice to move to AsyncAPI 3.1 is expected.
    others = [d for d in diagnostics if d["code"] != "asyncapi-latest-version"]
    assert not others, others


PASSES = """
import { GatewayClient } from "CLIENT";
import type { ClientEvents, ServerEvents, Joined } from "./events.js";

declare function assertType<T>(value: T): void;
const client = new GatewayClient<ServerEvents, ClientEvents>("ws://localhost/boards/1");

async function main(): Promise<void> {
  const joined = await client.emitWithAck("join", { room: "lobby" });
  assertType<Joined>(joined);
  client.emit("move", { dx: 1 });
  client.emit("chat:say", "hi");
  client.on("placed", (placed) => assertType<number>(placed.shape.points[0]!.x));
  // @ts-expect-error room must be a string
  await client.emitWithAck("join", { room: 1 });
  // @ts-expect-error unknown event
  client.emit("leave", {});
}
void main;
"""

FAILS = """
import { GatewayClient } from "CLIENT";
import type { ClientEvents, ServerEvents } from "./events.js";

const client = new GatewayClient<ServerEvents, ClientEvents>("ws://localhost/boards/1");
void client.emitWithAck("join", { room: 1 });
"""


def _typecheck(node_tools: Path, directory: Path, check: str) -> subprocess.CompletedProcess[str]:
    board = GatewayMiddleware(gateways=[rich_app.BoardGateway])
    (directory / "events.ts").write_text(client_types(asyncapi_document(board)))
    client = os.path.relpath(ROOT / "clients" / "js" / "src" / "index.js", directory)
    (directory / "check.ts").write_text(check.replace("CLIENT", client))
    config = {
        "compilerOptions": {
            "target": "ES2022",
            "module": "NodeNext",
            "moduleResolution": "NodeNext",
            "lib": ["ES2022"],
            "types": [],
            "strict": True,
            "exactOptionalPropertyTypes": True,
            "noUncheckedIndexedAccess": True,
            "noEmit": True,
        },
        # The client's sources (its ambient declarations included), as clients/js compiles them.
        "include": ["check.ts", "events.ts", str(ROOT / "clients" / "js" / "src" / "*.d.ts")],
    }
    (directory / "tsconfig.json").write_text(json.dumps(config))
    tsc = node_tools / ".bin" / "tsc"
    return subprocess.run(
        [str(tsc), "-p", str(directory)], capture_output=True, text=True, timeout=TIMEOUT
    )


@pytest.mark.timeout(TIMEOUT)
def test_generated_types_accept_the_model(node_tools: Path, tmp_path: Path) -> None:
    run = _typecheck(node_tools, tmp_path, PASSES)
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.timeout(TIMEOUT)
def test_generated_types_refuse_a_wrong_payload(node_tools: Path, tmp_path: Path) -> None:
    """``emitWithAck("join", {room: 1})`` fails when the pydantic model says ``room: str``."""
    run = _typecheck(node_tools, tmp_path, FAILS)
    assert run.returncode != 0
    errors = [line for line in run.stdout.splitlines() if "error TS" in line]
    assert len(errors) == 1 and "check.ts(6," in errors[0], run.stdout
    assert "'number' is not assignable to type 'string'" in errors[0]


def test_a_gateway_without_handlers_is_described() -> None:
    @WebSocketGateway("/empty")
    class EmptyGateway:
        @SubscribeMessage("noop")
        def noop(self) -> None: ...

    document = asyncapi_document(GatewayMiddleware(gateways=[EmptyGateway]))
    assert "EmptyGateway.receive.noop" in document["operations"]
    assert "ClientEvents" in client_types(document)
