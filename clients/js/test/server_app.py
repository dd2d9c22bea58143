"""The gateway the JS client's tests run against (served by hypercorn from the repo root).

.venv/bin/python -m hypercorn clients.js.test.server_app:app --bind 127.0.0.1:PORT
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from pydantic import BaseModel

from gatewayasgi import (
    BaseGuard,
    ConnectedSocket,
    ExecutionContext,
    GatewayMiddleware,
    MessageBody,
    SubscribeMessage,
    UseGuards,
    WebSocketGateway,
    WsException,
)

ANSWERS: list[dict[str, Any]] = []
"""Every `$ack` frame clients sent, whole (`error` included), in arrival order."""


class TokenGuard(BaseGuard):
    """Handshake guard: the client's `auth` query parameters must carry a token starting `good`."""

    def can_activate(self, context: ExecutionContext) -> bool:
        client = context.switch_to_ws().get_client()
        return str(client.query_params.get("token", "")).startswith("good")


class DenyGuard(BaseGuard):
    """Refuses every frame: the runtime sends an error frame and closes 1008."""

    def can_activate(self, context: ExecutionContext) -> bool:
        return False


class Point(BaseModel):
    x: int
    y: int


class Join(BaseModel):
    room: str


@WebSocketGateway("/ws", handshake_guards=[TokenGuard])
class ClientTestGateway:
    def __init__(self) -> None:
        self.calls = itertools.count(1)

    @SubscribeMessage("echo")
    async def echo(self, data: Any = MessageBody()) -> Any:
        return data

    @SubscribeMessage("add")
    async def add(self, point: Point = MessageBody()) -> dict[str, int]:  # type: ignore[assignment]
        return {"sum": point.x + point.y}

    @SubscribeMessage("whoami")
    async def whoami(self, client: Any = ConnectedSocket()) -> dict[str, str]:
        return {"token": client.query_params.get("token", "")}

    @SubscribeMessage("fail")
    async def fail(self, data: Any = MessageBody()) -> None:
        raise WsException("Nope", code="E_NOPE", detail=data)

    @SubscribeMessage("slow")
    async def slow(self) -> None:
        return None  # no reply at all: the client's ack must time out

    @SubscribeMessage("join")
    async def join(self, body: Join = MessageBody(), client: Any = ConnectedSocket()) -> Any:  # type: ignore[assignment]
        await self.server.join(client, body.room)  # type: ignore[attr-defined]
        return {"room": body.room}

    @SubscribeMessage("say")
    async def say(self, data: Any = MessageBody()) -> None:
        await self.server.to(data["room"]).emit("said", {"text": data["text"]})  # type: ignore[attr-defined]

    @SubscribeMessage("forbidden")
    @UseGuards(DenyGuard)
    async def forbidden(self) -> None:
        return None

    @SubscribeMessage("kick")
    async def kick(self, client: Any = ConnectedSocket()) -> None:
        await client.close(4001, "kicked")

    @SubscribeMessage("ask_me")
    async def ask_me(self, data: Any = MessageBody(), client: Any = ConnectedSocket()) -> Any:
        """Call the client: event and data chosen by the test, a fresh ack number."""
        ack = next(self.calls)
        await client.send_text(
            json.dumps({"event": data["event"], "data": data["data"], "ack": ack})
        )
        return {"ack": ack}

    @SubscribeMessage("$ack")
    async def ack(self) -> None:
        """Accepts answers quietly until the runtime routes `$ack` itself (ANSWERS records them)."""
        return None

    @SubscribeMessage("answers")
    async def answers(self) -> list[dict[str, Any]]:
        return ANSWERS


def record_answers(inner: Any) -> Any:
    """Tap the raw inbound frames: the whole `$ack` frame, which a handler cannot see."""

    async def tapped(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            await inner(scope, receive, send)
            return

        async def tapped_receive() -> Any:
            message = await receive()
            text = message.get("text")
            if message["type"] == "websocket.receive" and text and '"$ack"' in text:
                ANSWERS.append(json.loads(text))
            return message

        await inner(scope, tapped_receive, send)

    return tapped


app = record_answers(GatewayMiddleware(None, gateways=[ClientTestGateway]))
