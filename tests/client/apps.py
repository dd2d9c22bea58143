"""Gateways and raw ASGI wrappers the client tests talk to, served by real servers."""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

from pydantic import BaseModel

from gatewayasgi import (
    BaseGuard,
    ConnectedSocket,
    GatewayMiddleware,
    MessageBody,
    OnGatewayConnection,
    SubscribeMessage,
    UseGuards,
    WebSocketGateway,
    WsException,
)
from gatewayasgi._types import ASGIApp, Message, Receive, Scope, Send


class Note(BaseModel):
    text: str
    count: int


class DenyAll(BaseGuard):
    def can_activate(self, context: Any) -> bool:
        return False


class HeaderGuard(BaseGuard):
    """A handshake guard: admits only clients that send ``x-token: s3cret``."""

    def can_activate(self, context: Any) -> bool:
        return context.switch_to_ws().get_client().headers.get("x-token") == "s3cret"


@WebSocketGateway("/client")
class ClientGateway(OnGatewayConnection):
    connections = 0

    def on_connection(self, client: Any) -> None:
        ClientGateway.connections += 1

    @SubscribeMessage("echo")
    def echo(self, data: Any = MessageBody()) -> Any:
        return data

    @SubscribeMessage("whoami")
    def whoami(self, client: Any = ConnectedSocket()) -> str:
        return str(client.id)

    @SubscribeMessage("note")
    def note(self, data: Note = MessageBody()) -> Any:
        return {"event": "noted", "data": data}

    @SubscribeMessage("refuse")
    def refuse(self, data: Any = MessageBody()) -> Any:
        raise WsException("refused", code=42)

    @SubscribeMessage("silent")
    def silent(self, data: Any = MessageBody()) -> None:
        return None

    @SubscribeMessage("push")
    async def push(self, data: Any = MessageBody(), client: Any = ConnectedSocket()) -> Any:
        """Emit ``data["count"]`` frames of event ``data["event"]``, then reply ``"pushed"``."""
        for index in range(data["count"]):
            await client.emit(data["event"], index)
        return "pushed"

    @SubscribeMessage("ask")
    async def ask(self, data: Any = MessageBody(), client: Any = ConnectedSocket()) -> Any:
        """A server -> client call made by hand (docs/recovery.md): ``ack`` is ``data["ack"]``."""
        await client.send_json({"event": data["event"], "data": data["data"], "ack": data["ack"]})
        return "asked"

    @SubscribeMessage("kick")
    async def kick(self, data: Any = MessageBody(), client: Any = ConnectedSocket()) -> None:
        await client.close(data["code"], data.get("reason"))

    @SubscribeMessage("forbidden")
    @UseGuards(DenyAll)
    def forbidden(self, data: Any = MessageBody()) -> str:
        return "never"


@WebSocketGateway("/guarded", handshake_guards=[HeaderGuard])
class GuardedGateway:
    @SubscribeMessage("whoami")
    def whoami(self, client: Any = ConnectedSocket()) -> Any:
        return client.headers.get("x-token")


class Wire:
    """A raw ASGI wrapper that watches the wire under the gateway.

    It records each handshake's offered subprotocols and each disconnect's close code, and
    takes the client's ``$ack`` frames off the wire (the gateway never sees them), so the
    test reads exactly what the client answered, whatever the server does with ``$ack``.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.offers: list[list[str]] = []
        self.disconnects: list[int | None] = []
        self.disconnected = asyncio.Event()
        self.acks: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=100)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        self.offers.append(list(scope.get("subprotocols") or ()))

        async def watched() -> Message:
            while True:
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    self.disconnects.append(message.get("code"))
                    self.disconnected.set()
                text = message.get("text")
                if message["type"] == "websocket.receive" and text and '"$ack"' in text:
                    frame = json.loads(text)
                    if frame.get("event") == "$ack":
                        self.acks.put_nowait(frame)
                        continue
                return message

        await self.app(scope, watched, send)


def gateway_app(**settings: Any) -> GatewayMiddleware:
    return GatewayMiddleware(gateways=[ClientGateway, GuardedGateway], **settings)


@WebSocketGateway("/fake-recovery")
class FakeRecoveryGateway(OnGatewayConnection):
    """Speaks the client's half of docs/recovery.md by hand, so the client's offers and
    its reading of ``$session`` frames are checked on the wire, independently of the
    server-side implementation: a known credential resumes (``recovered: true``), an
    unknown one (or any, with ``expire`` set) gets a new session with reason ``expired``."""

    sessions: dict[str, str] = {}  # client id -> token
    expire = False
    position = 0

    def on_connection(self, client: Any) -> Any:
        offered = client.scope.get("subprotocols") or []
        credential = next((o for o in offered if o.startswith("gatewayasgi.resume.")), None)
        cls = FakeRecoveryGateway
        parts = credential.split(".")[2:] if credential else None
        if parts and not cls.expire and cls.sessions.get(parts[0]) == parts[1]:
            client_id, token, offset, recovered, reason = parts[0], parts[1], parts[3], True, None
        else:
            client_id, token = "c_" + secrets.token_hex(16), secrets.token_urlsafe(32)
            offset, recovered = f"{cls.position}-0", False
            reason = "expired" if parts else None
        cls.sessions[client_id] = token
        session = {"id": client_id, "token": token, "epoch": "e1", "offset": offset}
        return client.send_json(
            {"event": "$session", "data": {**session, "recovered": recovered, "reason": reason}}
        )

    @SubscribeMessage("ticks")
    async def ticks(self, data: Any = MessageBody(), client: Any = ConnectedSocket()) -> Any:
        """``data`` frames that carry an offset, as a gateway with recovery sends them."""
        for index in range(data):
            FakeRecoveryGateway.position += 1
            offset = f"{FakeRecoveryGateway.position}-0"
            await client.send_json({"event": "tick", "data": index, "offset": offset})
        return f"{FakeRecoveryGateway.position}-0"

    @SubscribeMessage("lost")
    async def lost(self, data: Any = MessageBody(), client: Any = ConnectedSocket()) -> str:
        """A later ``$session`` on an open connection (the session id is ``data``): the
        history was lost."""
        session = {"id": data, "token": "t" * 43, "epoch": "e2", "offset": "100-0"}
        await client.send_json(
            {"event": "$session", "data": {**session, "recovered": False, "reason": "epoch"}}
        )
        return "lost"

    @SubscribeMessage("kick")
    async def kick(self, data: Any = MessageBody(), client: Any = ConnectedSocket()) -> None:
        await client.close(data["code"], data.get("reason"))


def fake_recovery_app() -> Wire:
    return Wire(GatewayMiddleware(gateways=[FakeRecoveryGateway]))
