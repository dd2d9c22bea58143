"""A Litestar app wrapped by the gateway middleware.

Run: ``hypercorn examples.litestar_app:app`` then connect to ws://127.0.0.1:8000/echo.
"""

from __future__ import annotations

from litestar import Litestar, get

from gatewayasgi import GatewayMiddleware, MessageBody, SubscribeMessage, WebSocketGateway


@WebSocketGateway("/echo")
class EchoGateway:
    @SubscribeMessage("echo")
    async def echo(self, data=MessageBody()):
        return data


@get("/")
async def home() -> str:
    return "HTTP still belongs to Litestar"


app = GatewayMiddleware(Litestar(route_handlers=[home]), gateways=[EchoGateway])
