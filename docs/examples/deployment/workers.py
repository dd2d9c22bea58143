# main.py -- hypercorn main:app --workers 4; every worker and host shares REDIS_URL
import os
from typing import Any

from gatewayasgi import (
    ConnectedSocket,
    GatewayMiddleware,
    MessageBody,
    SubscribeMessage,
    WebSocketGateway,
)
from gatewayasgi.brokers import RedisBroker


@WebSocketGateway("/chat")
class ChatGateway:
    @SubscribeMessage("join")
    async def join(self, room: str = MessageBody("room"), client: Any = ConnectedSocket()):
        await self.server.join(client, room)
        return {"room": room, "id": client.id}

    @SubscribeMessage("say")
    async def say(self, room: str = MessageBody("room"), text: str = MessageBody("text")):
        await self.server.to(room).emit("message", {"text": text})  # members on every worker

    # --8<-- [start:cluster]
    @SubscribeMessage("who")
    async def who(self, room: str = MessageBody("room")) -> dict:
        found = await self.server.presence(room)  # Presence(room, ids, missing_nodes)
        ids = await self.server.in_(room).fetch_ids()  # sorted ids on every worker
        # found.ids: sorted client ids; found.complete: every live worker answered?
        return {"ids": ids, "count": found.count, "complete": found.complete}

    @SubscribeMessage("rally")
    async def rally(self, client: Any = ConnectedSocket()) -> None:
        await self.server.in_("lobby").join("announcements")  # every member, on every worker
        await self.server.in_("lobby").except_(client).leave("announcements")

    @SubscribeMessage("ban")
    async def ban(self, client_id: str = MessageBody()) -> None:
        await self.server.in_(client_id).disconnect(4000, "banned")  # wherever it is

    @SubscribeMessage("close_lobby")
    async def close_lobby(self) -> None:
        await self.server.in_("lobby").disconnect()  # a whole room (code 1000)

    @SubscribeMessage("poll")
    async def poll(self) -> dict:
        results = await self.server.to("voters").call("vote", {"poll": 7}, timeout=10)
        return {
            "answers": results.answers,  # {client_id: answer data}
            "errors": results.errors,  # {client_id: error message the client answered with}
            "timed_out": results.timed_out,  # ids that did not answer in 10 s, or closed first
            "complete": results.complete,  # and results.missing_nodes: workers that did not
        }

    # --8<-- [end:cluster]


# --8<-- [start:app]
app = GatewayMiddleware(
    None,  # your FastAPI/Starlette/Litestar app, or None
    gateways=[ChatGateway],
    broker=RedisBroker(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")),
)
# --8<-- [end:app]
