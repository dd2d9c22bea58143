"""The AI SDK gateway of ``tests/ai/app.py`` on Redis, for tests that serve it in several
worker processes: ``/ai`` lets anyone resume a chat (``can_attach``), ``/ai-private``
has no ``can_attach`` (every ``resume`` is answered ``no-active``).

``GATEWAYASGI_TEST_REDIS_URL`` is the Redis URL. ``GET /state`` tells which chats'
generators this process closed, and how.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import orjson

from gatewayasgi import GatewayMiddleware, MessageBody, SubscribeMessage, WebSocketGateway
from gatewayasgi.ai import AISDKChat, ChatRequest, text_chunks
from gatewayasgi.brokers import RedisBroker
from tests.ai.app import QueryToken, fake_model, prompt_of

CLOSED: dict[str, str] = {}
"""chat id -> how its last generator in this process ended (``done`` or ``closed``)."""


async def answer(request: ChatRequest) -> AsyncIterator[Any]:
    how = "closed"
    try:
        async for chunk in text_chunks(fake_model(prompt_of(request)), on_error=str):
            yield chunk
        how = "done"
    finally:
        CLOSED[request.id] = how


@WebSocketGateway("/ai", protocol=AISDKChat(), handshake_guards=[QueryToken])
class Assistant:
    def can_attach(self, client: Any, key: str) -> bool:
        return True  # a real app checks that the chat is the client's

    @SubscribeMessage("send")
    async def send(self, request: ChatRequest = MessageBody()) -> AsyncIterator[Any]:
        async for chunk in answer(request):
            yield chunk


@WebSocketGateway("/ai-private", protocol=AISDKChat(), handshake_guards=[QueryToken])
class PrivateAssistant:
    @SubscribeMessage("send")
    async def send(self, request: ChatRequest = MessageBody()) -> AsyncIterator[Any]:
        async for chunk in answer(request):
            yield chunk


async def state(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": orjson.dumps({"closed": CLOSED})})


app = GatewayMiddleware(
    state,
    gateways=[Assistant, PrivateAssistant],
    broker=RedisBroker(os.environ.get("GATEWAYASGI_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")),
)
