"""A gateway app using everything the AsyncAPI document describes: path parameters,
nested pydantic models, keyed bodies, replies, guards, handshake guards, subprotocols,
``@Emits`` and session recovery."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Literal

from pydantic import BaseModel, Field

from gatewayasgi import (
    BaseGuard,
    ConnectedSocket,
    Emits,
    ExecutionContext,
    GatewayMiddleware,
    MessageBody,
    Recovery,
    SubscribeMessage,
    UseGuards,
    WebSocketGateway,
)
from gatewayasgi.brokers import RedisBroker


class Point(BaseModel):
    x: float
    y: float


class Shape(BaseModel):
    """A polygon on the board."""

    kind: Literal["polygon", "line"] = "polygon"
    points: list[Point] = Field(min_length=1)
    label: str | None = None
    corner: tuple[int, int] = (0, 0)


class Placed(BaseModel):
    id: int
    shape: Shape


class Join(BaseModel):
    room: str = Field(min_length=1, max_length=64, description="The room to enter.")


class Joined(BaseModel):
    room: str
    members: list[str]


class TokenGuard(BaseGuard):
    def can_activate(self, context: ExecutionContext) -> bool:
        return True


class MemberGuard(BaseGuard):
    def can_activate(self, context: ExecutionContext) -> bool:
        return True


class AdminGuard(BaseGuard):
    def can_activate(self, context: ExecutionContext) -> bool:
        return True


@WebSocketGateway(
    "/boards/{board_id}",
    subprotocols=["v1.boards"],
    handshake_guards=[TokenGuard],
    recovery=Recovery(window=60),
)
@UseGuards(MemberGuard)
@Emits("placed", Placed, description="A shape was placed on the board.")
@Emits("cleared")
class BoardGateway:
    """Shared drawing boards, one channel per board."""

    @SubscribeMessage("join")
    async def join(self, data: Join = MessageBody(), client=ConnectedSocket()) -> Joined:
        """Enter a room of the board.

        Replies with the room and who is in it.
        """
        return Joined(room=data.room, members=[client.id])

    @SubscribeMessage("place")
    @UseGuards(AdminGuard)
    async def place(self, shape: Shape = MessageBody()) -> Placed:
        return Placed(id=1, shape=shape)

    @SubscribeMessage("move")
    async def move(self, dx: int = MessageBody("dx"), dy: int | None = MessageBody("dy")) -> None:
        return None

    @SubscribeMessage("chat:say")
    async def say(self, text: str = MessageBody()) -> dict[str, str]:
        return {"text": text}

    @SubscribeMessage("replay")
    async def replay(self, room: str = MessageBody("room")) -> AsyncIterator[Placed]:
        """The room's shapes, one stream item each."""
        yield Placed(id=1, shape=Shape(points=[Point(x=0, y=0)]))


@WebSocketGateway("/lobby")
@Emits("announcement", str)
class LobbyGateway:
    @SubscribeMessage("join")
    async def join(self, data: Join = MessageBody()) -> list[Shape]:
        return []

    @SubscribeMessage("ping")
    def ping(self):  # untyped: any payload, any reply
        return "pong"


app = GatewayMiddleware(gateways=[BoardGateway, LobbyGateway], asyncapi_url="/asyncapi.json")
single = GatewayMiddleware(gateways=[LobbyGateway])
# Behind a broker (never started here): the gateway without recovery tells of lost frames.
brokered = GatewayMiddleware(
    gateways=[BoardGateway, LobbyGateway], broker=RedisBroker("redis://127.0.0.1:1/0")
)
