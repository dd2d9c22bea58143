"""The gateway the JS client's tests run against (served by hypercorn from the repo root).

.venv/bin/python -m hypercorn clients.js.test.server_app:app --bind 127.0.0.1:PORT
"""

from __future__ import annotations

from typing import Any

import anyio
from pydantic import BaseModel

from gatewayasgi import (
    BaseGuard,
    CallError,
    CallRejectedError,
    ConnectedSocket,
    ExecutionContext,
    GatewayMiddleware,
    MessageBody,
    StreamEnd,
    SubscribeMessage,
    UseGuards,
    WebSocketGateway,
    WsException,
)


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


class Prompt(BaseModel):
    text: str
    n: int = 3


class Ticks(BaseModel):
    tag: str
    every: float = 0.02


class Story(BaseModel):
    tag: str
    n: int = 20
    every: float = 0.02


CLOSED: list[str] = []
"""The tags of the `ticks` and `story` streams whose generator was closed (its `finally` ran)."""


@WebSocketGateway("/ws", handshake_guards=[TokenGuard])
class ClientTestGateway:
    def can_attach(self, client: Any, key: str) -> bool:
        """Who may re-attach to a keyed stream (or supersede one): keys `chat-*` only."""
        return key.startswith("chat-")

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

    @SubscribeMessage("my_id")
    async def my_id(self, client: Any = ConnectedSocket()) -> str:
        return str(client.id)

    @SubscribeMessage("call")
    async def call(self, data: Any = MessageBody()) -> Any:
        """Call another client with `client.call` (a handler may not await its own client's
        answer: that client's frames are read after the handler returns)."""
        target = self.server.get_client(data["target"])  # type: ignore[attr-defined]
        try:
            answer = await target.call(data["event"], data.get("data"), timeout=data["timeout"])
        except CallRejectedError as exc:
            return {"error": exc.message}
        except TimeoutError:
            return {"timeout": True}
        except CallError as exc:
            return {"failed": type(exc).__name__}
        return {"data": answer}

    # -- streams (handlers that yield) ---------------------------------------------------

    @SubscribeMessage("prompt")
    async def prompt(self, body: Prompt = MessageBody()) -> Any:  # type: ignore[assignment]
        for i in range(body.n):
            yield {"delta": f"{body.text}-{i}"}
        yield StreamEnd({"tokens": body.n})

    @SubscribeMessage("numbers")
    def numbers(self, n: int = MessageBody()) -> Any:  # type: ignore[assignment]
        yield from range(n)

    @SubscribeMessage("ticks")
    async def ticks(self, body: Ticks = MessageBody()) -> Any:  # type: ignore[assignment]
        try:
            for i in range(100_000):
                yield i
                await anyio.sleep(body.every)
        finally:
            CLOSED.append(body.tag)

    @SubscribeMessage("story")
    async def story(self, body: Story = MessageBody()) -> Any:  # type: ignore[assignment]
        """The keyed streams' handler (a request with a `key`): `n` items, then the end."""
        try:
            for i in range(body.n):
                yield f"{body.tag}-{i}"
                await anyio.sleep(body.every)
            yield StreamEnd({"done": body.tag})
        finally:
            CLOSED.append(body.tag)

    @SubscribeMessage("closed_streams")
    async def closed_streams(self) -> list[str]:
        return CLOSED

    @SubscribeMessage("blobs")
    async def blobs(self, n: int = MessageBody()) -> Any:  # type: ignore[assignment]
        for i in range(1, n + 1):
            yield bytes(range(i))  # bytes (MessagePack bin; base64 text in JSON)
        yield StreamEnd({"count": n})

    @SubscribeMessage("broken")
    async def broken(self) -> Any:
        yield 1
        raise WsException("no more tokens", left=0)

    @SubscribeMessage("drop")
    async def drop(self, client: Any = ConnectedSocket()) -> None:
        await client.close(1012, "restarting")


app = GatewayMiddleware(None, gateways=[ClientTestGateway])
