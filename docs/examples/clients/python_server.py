# main.py -- the gateway the client below talks to: hypercorn main:app
import asyncio
from contextlib import suppress
from typing import Any

from pydantic import BaseModel

from gatewayasgi import (
    BaseGuard,
    CallError,
    ConnectedSocket,
    ExecutionContext,
    GatewayMiddleware,
    MessageBody,
    SubscribeMessage,
    WebSocketGateway,
)


class Message(BaseModel):
    text: str


class TokenHeader(BaseGuard):
    def can_activate(self, context: ExecutionContext) -> bool:
        return context.switch_to_ws().get_client().headers.get("x-token") == "secret"


answers: list[Any] = []  # what clients answered to "confirm"


@WebSocketGateway("/chat", handshake_guards=[TokenHeader])
class ChatGateway:
    def __init__(self) -> None:
        self.calls: set[asyncio.Task[None]] = set()

    @SubscribeMessage("send_message")
    async def send_message(self, client: Any = ConnectedSocket(), body: Message = MessageBody()):
        # A call to this client's own handler runs in a task: its answer is read after return.
        task = asyncio.create_task(self.confirm(client, body.text))
        self.calls.add(task)
        task.add_done_callback(self.calls.discard)
        return {"event": "message_ack", "data": {"text": body.text, "status": "delivered"}}

    async def confirm(self, client: Any, text: str) -> None:
        with suppress(CallError):  # the client left first, or its handler failed
            answers.append(await client.call("confirm", {"text": text}, timeout=5))


app = GatewayMiddleware(gateways=[ChatGateway])
