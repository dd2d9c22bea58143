"""The reference server of the Socket.IO protocol test suite, as gatewayasgi gateways.

It reproduces the JavaScript server that socket.io-protocol's Readme ("Test suite")
gives for ``tests/socketio/conformance/test-suite.js``: the suite connects to
``http://localhost:3000``, so serve it there::

    python -m hypercorn tests.socketio.conformance_app:app --bind 127.0.0.1:3000

Every connection, to ``/`` and to ``/custom``, gets ``auth`` with its CONNECT payload.
On ``/``, ``message`` is emitted back as ``message-back`` with the same arguments and
``message-with-ack`` answers its ack with the same arguments (an ``Arguments`` data, from
several arguments, spreads back into several; ``bytes`` go back as attachments).
"""

from __future__ import annotations

from typing import Any

from gatewayasgi import (
    ConnectedSocket,
    GatewayMiddleware,
    MessageBody,
    OnGatewayConnection,
    SubscribeMessage,
    WebSocketGateway,
)
from gatewayasgi.socketio import SocketIO


class SendsAuth(OnGatewayConnection):
    async def on_connection(self, client: Any) -> None:
        await client.emit("auth", client.auth)


@WebSocketGateway(namespace="/")
class MainGateway(SendsAuth):
    @SubscribeMessage("message")
    async def message(self, data: Any = MessageBody(), client: Any = ConnectedSocket()) -> None:
        await client.emit("message-back", data)

    @SubscribeMessage("message-with-ack")
    async def message_with_ack(self, data: Any = MessageBody()) -> Any:
        return data


@WebSocketGateway(namespace="/custom")
class CustomGateway(SendsAuth):
    pass


# The suite's expected configuration: pingInterval 300 ms, pingTimeout 200 ms,
# maxPayload 1,000,000 bytes, connectTimeout 1 s, any origin (allowed_origins=None).
app = GatewayMiddleware(
    None,
    gateways=[MainGateway, CustomGateway],
    socketio=SocketIO(
        ping_interval=0.3, ping_timeout=0.2, max_payload=1_000_000, connect_timeout=1.0
    ),
)
