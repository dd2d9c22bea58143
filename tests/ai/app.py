"""The gateway the AI SDK tests talk to: ``AISDKChat`` on ``/ai``, a fake model.

The model answers deterministically with delays and no network: ``answer(prompt)`` is
what a whole answer reads. A prompt starting with ``slow`` streams ``SLOW_TOKENS`` tokens
``SLOW_DELAY`` s apart (long enough to abort or resume it); ``fail`` raises mid-answer.
``GET /state`` tells a test which chats' generators were closed, and how.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import orjson

from gatewayasgi import (
    BaseGuard,
    GatewayMiddleware,
    MessageBody,
    SubscribeMessage,
    WebSocketGateway,
)
from gatewayasgi.ai import AISDKChat, ChatRequest, text_chunks

TOKEN = "letmein"
SLOW_TOKENS = 60
SLOW_DELAY = 0.05


def prompt_of(request: ChatRequest) -> str:
    """The text of the conversation's last user message."""
    for message in reversed(request.messages):
        if message.role == "user":
            return "".join(getattr(part, "text", "") for part in message.parts)
    return ""


def tokens(prompt: str) -> list[str]:
    count = SLOW_TOKENS if prompt.startswith("slow") else 5
    return [f"{prompt}-{i} " for i in range(count)]


def answer(prompt: str) -> str:
    return "".join(tokens(prompt))


async def fake_model(prompt: str) -> AsyncIterator[str]:
    for i, token in enumerate(tokens(prompt)):
        if prompt.startswith("fail") and i == 2:
            raise RuntimeError("the model fell over")
        await anyio.sleep(SLOW_DELAY if prompt.startswith("slow") else 0)
        yield token


class QueryToken(BaseGuard):
    """Browsers cannot set handshake headers: the token rides in the query string."""

    def can_activate(self, context: Any) -> bool:
        client = context.switch_to_ws().get_client()
        return bool(client.query_params.get("token") == TOKEN)


def make_app() -> GatewayMiddleware:
    @WebSocketGateway("/ai", protocol=AISDKChat(), handshake_guards=[QueryToken])
    class Assistant:
        def __init__(self) -> None:
            self.closed: dict[str, str] = {}
            """chat id -> how its last generator ended (``done`` or ``closed``)."""

        def can_attach(self, client: Any, key: str) -> bool:
            # A real app checks that the chat is the client's; the test lets anyone in.
            return True

        @SubscribeMessage("send")
        async def send(self, request: ChatRequest = MessageBody()) -> AsyncIterator[Any]:
            how = "closed"
            try:
                async for chunk in text_chunks(
                    fake_model(prompt_of(request)), on_error=lambda exc: str(exc)
                ):
                    yield chunk
                how = "done"
            finally:
                self.closed[request.id] = how

    async def state(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        gateway = middleware.get(Assistant)
        body = orjson.dumps({"closed": gateway.closed})
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    middleware = GatewayMiddleware(state, gateways=[Assistant])
    return middleware
