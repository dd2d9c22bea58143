"""AI chat example: a fake model streamed to two pages, one per kind of client.

Run: ``make run-ai`` (it builds the page bundle and the TypeScript client, then serves
``hypercorn examples.ai.app:app``) and open http://127.0.0.1:8000 (the AI SDK page) or
http://127.0.0.1:8000/ts (the TypeScript client page).

- ``/ai`` speaks the ``ai`` npm package's ``WebSocketChatTransport`` protocol
  (``AISDKChat``): the page at ``/`` is the package's own chat over that transport,
  bundled with esbuild into ``examples/ai/dist/chat.js`` (``make ai-example``).
- ``/tokens`` is a native gateway: the page at ``/ts`` reads the same model with the
  TypeScript client's ``client.stream()`` and ``client.attachStream()``.

Both stream keyed streams: an answer outlives the socket that asked for it, so a page
that reloads, or whose connection drops, picks it up again. Who may pick a stream up is
the gateways' ``can_attach``, with one rule (``owns``): each browser has a random owner
token (made by the page, kept in its ``localStorage``, sent in the socket's query string
as ``?owner=``), every chat id (the stream's key) starts with ``<owner>.``, and a
connection may attach to, or start, only the chats of its own token. The token is as
secret as a session cookie; a real app would take the owner from its own authentication
(a session cookie arrives with the WebSocket handshake) instead.

The model is fake: ``FakeModel`` yields deterministic numbered tokens with a delay and no
network. With ``AI_EXAMPLE_DEBUG=1`` (the tests pass ``debug=True``) ``GET
/debug/streams`` tells which generators were closed, and how: ``finished``,
``cancelled`` (a stop) or ``failed``.
"""

from __future__ import annotations

import os
import re
from collections import OrderedDict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
from fastapi import FastAPI
from fastapi.responses import FileResponse, HTMLResponse, PlainTextResponse, Response
from pydantic import BaseModel, Field

from gatewayasgi import (
    BaseGuard,
    GatewayMiddleware,
    Injectable,
    MessageBody,
    SubscribeMessage,
    UseGuards,
    WebSocketGateway,
)
from gatewayasgi.ai import AISDKChat, ChatRequest, text_chunks

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
BUNDLE = HERE / "dist"
"""The AI SDK page's script, built by esbuild (``npm ci && npm run build`` here)."""
CLIENT_DIST = ROOT / "clients" / "js" / "dist"
"""The built TypeScript client (``npm run build`` in clients/js), served at ``/client/``."""
MSGPACK_DIST = ROOT / "clients" / "js" / "node_modules" / "@msgpack" / "msgpack" / "dist.esm"
"""The client's one dependency, as ES modules: the page maps ``@msgpack/msgpack`` here."""

OWNER = re.compile(r"[A-Za-z0-9_-]{16,64}")
"""An owner token: what the pages make (16 random bytes, base64url) fits."""
LONG_TOKENS = 100
SHORT_TOKENS = 12


# -- the fake model ---------------------------------------------------------------------


def tokens(prompt: str) -> list[str]:
    """What the model answers ``prompt``, token by token: a prompt starting with ``long``
    gets ``LONG_TOKENS`` numbered tokens, any other ``SHORT_TOKENS``."""
    count = LONG_TOKENS if prompt.startswith("long") else SHORT_TOKENS
    return [f"You said {prompt!r}. "] + [f"t{i} " for i in range(1, count + 1)]


def answer(prompt: str) -> str:
    """The whole answer to ``prompt``."""
    return "".join(tokens(prompt))


@Injectable
class FakeModel:
    """A deterministic token generator: ``delay`` seconds before each token, no network."""

    def __init__(self, delay: float = 0.04) -> None:
        self.delay = delay

    async def stream(self, prompt: str) -> AsyncIterator[str]:
        for token in tokens(prompt):
            await anyio.sleep(self.delay)
            yield token


@Injectable
class Closures:
    """How each chat's last generator ended (``finished``, ``cancelled``, ``failed``): the
    last 1,000 chats, for ``GET /debug/streams``."""

    def __init__(self) -> None:
        self.closed: OrderedDict[str, str] = OrderedDict()

    def record(self, chat: str, how: str) -> None:
        self.closed.pop(chat, None)
        self.closed[chat] = how
        while len(self.closed) > 1000:
            self.closed.popitem(last=False)


async def relayed(model: FakeModel, prompt: str, chat: str, closures: Closures) -> Any:
    """``model.stream(prompt)``, recording how the generator ended under ``chat``."""
    how = "cancelled"  # a stop closes the generator at its await: nothing below runs
    try:
        async for token in model.stream(prompt):
            yield token
        how = "finished"
    except Exception:
        how = "failed"
        raise
    finally:
        closures.record(chat, how)


# -- who may attach ---------------------------------------------------------------------


def owner_of(client: Any) -> str | None:
    """The connection's owner token (``?owner=``), when it has a well-formed one."""
    token = client.query_params.get("owner")
    return token if token is not None and OWNER.fullmatch(token) else None


def owns(client: Any, chat: object) -> bool:
    """Chat ids are ``<owner>.<anything>``: a connection owns those of its token."""
    owner = owner_of(client)
    return owner is not None and isinstance(chat, str) and chat.startswith(owner + ".")


class HasOwner(BaseGuard):
    """Handshake: a connection without an owner token is refused."""

    def can_activate(self, context: Any) -> bool:
        return owner_of(context.switch_to_ws().get_client()) is not None


class OwnChat(BaseGuard):
    """A stream request names a chat of the connection's own token (the AI SDK's ``send``
    carries it as the request's ``id``, the TypeScript page as ``data.chat``)."""

    def can_activate(self, context: Any) -> bool:
        host = context.switch_to_ws()
        data = host.get_data()
        chat = data.id if isinstance(data, ChatRequest) else (data or {}).get("chat")
        return owns(host.get_client(), chat)


# -- the gateways -----------------------------------------------------------------------


def prompt_of(request: ChatRequest) -> str:
    """The text of the conversation's last user message."""
    for message in reversed(request.messages):
        if message.role == "user":
            return "".join(getattr(part, "text", "") for part in message.parts)
    return ""


@WebSocketGateway("/ai", protocol=AISDKChat(), handshake_guards=[HasOwner])
class AISDKGateway:
    """The AI SDK's ``WebSocketChatTransport``: ``send`` streams an answer keyed by the chat
    id, ``abort`` (``chat.stop()``) cancels it, ``resume`` replays it from its start."""

    def __init__(self, model: FakeModel, closures: Closures) -> None:
        self.model = model
        self.closures = closures

    def can_attach(self, client: Any, key: str) -> bool:
        # ``resume``, and a ``send`` on a chat whose answer still runs (it supersedes it).
        return owns(client, key)

    @SubscribeMessage("send")
    @UseGuards(OwnChat)
    async def send(self, request: ChatRequest = MessageBody()) -> AsyncIterator[Any]:
        text = relayed(self.model, prompt_of(request), request.id, self.closures)
        async for chunk in text_chunks(text):
            yield chunk


class Ask(BaseModel):
    chat: str = Field(min_length=1, max_length=200)
    """The chat id, which the page also uses as the stream's key."""
    prompt: str = Field(min_length=1, max_length=2000)


@WebSocketGateway("/tokens", handshake_guards=[HasOwner])
class TokensGateway:
    """The native protocol: ``ask`` streams the answer's tokens (strings), one item each."""

    def __init__(self, model: FakeModel, closures: Closures) -> None:
        self.model = model
        self.closures = closures

    def can_attach(self, client: Any, key: str) -> bool:
        return owns(client, key)

    @SubscribeMessage("ask")
    @UseGuards(OwnChat)
    async def ask(self, body: Ask = MessageBody()) -> AsyncIterator[str]:
        async for token in relayed(self.model, body.prompt, body.chat, self.closures):
            yield token


# -- the pages and the app --------------------------------------------------------------


def _file(directory: Path, name: str, suffixes: tuple[str, ...], hint: str) -> Response:
    path = (directory / name).resolve()
    inside = path.is_relative_to(directory.resolve())
    if not name.endswith(suffixes) or not inside or not path.is_file():
        return PlainTextResponse(f"{name} not found in {directory}: {hint}", status_code=404)
    media = "application/json" if name.endswith(".map") else "text/javascript"
    return FileResponse(path, media_type=media)


def make_app(*, debug: bool = False, delay: float = 0.04) -> GatewayMiddleware:
    """The app; ``debug`` adds ``GET /debug/streams``, ``delay`` is the model's pace."""
    closures = Closures()
    api = FastAPI(title="gatewayasgi AI example")

    @api.get("/", response_class=HTMLResponse)
    async def ai_sdk_page() -> str:
        return (HERE / "chat.html").read_text(encoding="utf-8")

    @api.get("/ts", response_class=HTMLResponse)
    async def client_page() -> str:
        return (HERE / "client.html").read_text(encoding="utf-8")

    @api.get("/static/{name}", response_model=None)
    async def bundle(name: str) -> Response:
        return _file(BUNDLE, name, (".js", ".js.map"), "run `make ai-example`")

    @api.get("/client/{name}", response_model=None)
    async def client_module(name: str) -> Response:
        return _file(CLIENT_DIST, name, (".js",), "run `make chat-client`")

    @api.get("/client/msgpack/{name:path}", response_model=None)
    async def client_dependency(name: str) -> Response:
        return _file(MSGPACK_DIST, name, (".mjs",), "run `make chat-client`")

    if debug:

        @api.get("/debug/streams")
        async def streams() -> dict[str, dict[str, str]]:
            return {"closed": dict(closures.closed)}

    return GatewayMiddleware(
        api,
        gateways=[AISDKGateway, TokensGateway],
        providers=[FakeModel(delay), closures],
    )


app = make_app(debug=os.environ.get("AI_EXAMPLE_DEBUG") == "1")
