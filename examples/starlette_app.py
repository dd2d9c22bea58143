"""A Starlette app with a gateway added through ``add_middleware``.

Run: ``hypercorn examples.starlette_app:app`` then connect to ws://127.0.0.1:8000/echo.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from gatewayasgi import GatewayMiddleware, MessageBody, SubscribeMessage, WebSocketGateway


@WebSocketGateway("/echo")
class EchoGateway:
    @SubscribeMessage("echo")
    async def echo(self, data=MessageBody()):
        return data


async def home(request):
    return PlainTextResponse("HTTP still belongs to Starlette")


app = Starlette(routes=[Route("/", home)])
app.add_middleware(GatewayMiddleware, gateways=[EchoGateway])
