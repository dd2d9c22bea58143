"""gatewayasgi.client: an asyncio client for gatewayasgi gateways, on ``websockets``.

For services, CLIs and tests (what python-socketio's ``AsyncClient`` is to Socket.IO)::

    async with GatewayClient("ws://127.0.0.1:8000/chat", headers={"x-token": "s3cret"}) as client:
        reply = await client.call("join", {"room": "lobby"}, timeout=5)
        event, data = await client.receive(timeout=5)

Choices (mirroring the TypeScript client in ``clients/js`` where they apply):

- ``call`` sends ``{"event", "data", "id"}`` with an integer id and returns the reply's
  ``data``; an error frame raises ``CallError`` (``message``, ``details``), no reply
  ``CallTimeout`` (a ``TimeoutError``), and a drop of the connection the frame went out
  on ``ConnectionClosed`` (the reply is lost with it; retry if the call is idempotent).
- No client-side send buffer: while reconnecting, ``emit`` and ``call`` wait for the next
  connection within their own timeout (``NotConnected`` / ``CallTimeout`` after it). A
  frame goes out at most once.
- ``receive()`` returns the server events no ``on()`` handler took, from a bounded buffer
  (``receive_buffer``, 1024): when full, the oldest is dropped and ``client.dropped``
  counts it, so an app that never calls ``receive()`` never stalls replies or calls.
- Server calls (``{"event", "data", "ack": N}``) run the event's handler; its return value
  answers ``{"event": "$ack", "id": N, "data": R}``, an exception or a missing handler
  ``{"event": "$ack", "id": N, "error": {"message": ...}}``.
- Reconnection: capped exponential backoff with full jitter, never after a terminal close
  (1008, 4000-4999) or a handshake refused with 4xx (but 408 and 429). The first
  connection is one attempt unless ``connect(retry=True)``.
- Recovery (``recover=True``, see ``docs/recovery.md``): the client offers
  ``gatewayasgi`` and ``gatewayasgi.resume.<id>.<token>.<epoch>.<offset>`` as
  subprotocols, and each connection waits for its ``$session`` frame, so ``client.id``
  and ``client.recovered`` are known when ``connect()`` returns. ``$session`` frames are
  never given to handlers or ``receive()``. ``close()`` sends 1000, which ends the
  session on the server.

The core package never imports ``websockets``; this one needs
``pip install "gatewayasgi[client]"``.
"""

from __future__ import annotations

try:
    import websockets.asyncio.client  # noqa: F401  (websockets >= 13)
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        'gatewayasgi.client needs the websockets package (>= 13): pip install "gatewayasgi[client]"'
    ) from exc

from gatewayasgi.client.backoff import backoff_delay
from gatewayasgi.client.client import GatewayClient, State
from gatewayasgi.client.errors import (
    CallError,
    CallTimeout,
    ConnectError,
    ConnectionClosed,
    GatewayClientError,
    NotConnected,
)
from gatewayasgi.client.frames import Message
from gatewayasgi.client.handshake import is_terminal_close
from gatewayasgi.client.recovery import Session
from gatewayasgi.client.streams import Stream, StreamTimeout

__all__ = [
    "CallError",
    "CallTimeout",
    "ConnectError",
    "ConnectionClosed",
    "GatewayClient",
    "GatewayClientError",
    "Message",
    "NotConnected",
    "Session",
    "State",
    "Stream",
    "StreamTimeout",
    "backoff_delay",
    "is_terminal_close",
]
