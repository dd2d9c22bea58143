# test_chat.py -- pip install pytest
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from gatewayasgi import GatewayMiddleware, MessageBody, SubscribeMessage, WebSocketGateway
from gatewayasgi.testing import GatewayTestClient, WebSocketClosed, WebSocketDenied


@WebSocketGateway(namespace="/chat")
class ChatGateway:
    @SubscribeMessage("send_message")
    async def handle_message(self, data=MessageBody()):
        return {"event": "message_ack", "data": {"text": data["text"], "status": "delivered"}}


app = GatewayMiddleware(FastAPI(), gateways=[ChatGateway])  # in your project: from main import app


@pytest.mark.anyio
async def test_chat() -> None:
    async with GatewayTestClient(app) as client:  # runs the lifespan
        async with client.websocket_connect("/chat?token=secret") as ws:
            await ws.emit("send_message", {"text": "hi"}, id=1)
            assert await ws.receive_json() == {
                "event": "message_ack",
                "data": {"text": "hi", "status": "delivered"},
                "id": 1,
            }


@pytest.mark.anyio
async def test_refusals_and_closes_are_plain_exceptions() -> None:
    async with GatewayTestClient(app) as client:
        with pytest.raises(WebSocketDenied, match="no gateway serves this path"):
            async with client.websocket_connect("/nope"):
                pass
        with pytest.raises(WebSocketClosed):
            async with client.websocket_connect("/chat") as ws:
                await ws.send_text("x" * 2_000_000)  # over max_message_size: 1009
                await ws.receive_json()


def test_chat_with_fastapis_testclient() -> None:
    with TestClient(app) as client:  # runs the lifespan too
        with client.websocket_connect("/chat") as ws:
            ws.send_json({"event": "send_message", "data": {"text": "hi"}, "id": 1})
            assert ws.receive_json()["data"] == {"text": "hi", "status": "delivered"}
