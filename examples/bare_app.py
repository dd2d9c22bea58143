"""Gateways alone, no web framework: HTTP gets 404.

Run: ``hypercorn examples.bare_app:app`` then connect to ws://127.0.0.1:8000/ws.
"""

from __future__ import annotations

from gatewayasgi import (
    ConnectedSocket,
    GatewayMiddleware,
    MessageBody,
    SubscribeMessage,
    WebSocketGateway,
)


@WebSocketGateway()
class RoomsGateway:
    @SubscribeMessage("join")
    async def join(self, room=MessageBody("room"), client=ConnectedSocket()):
        await self.server.join(client, room)
        return {"event": "joined", "data": {"room": room}}

    @SubscribeMessage("say")
    async def say(self, data=MessageBody(), client=ConnectedSocket()):
        await self.server.to(data["room"]).except_(client).emit("said", data)


app = GatewayMiddleware(gateways=[RoomsGateway])
