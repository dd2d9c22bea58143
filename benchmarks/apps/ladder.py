"""The echo path built up one layer at a time, to see what each layer costs.

Each app answers ``{"event": "echo", "data": ...}`` like the others. From ``plain`` (the
hand-written ASGI loop) to ``gateway`` (``GatewayMiddleware`` with its defaults), every
step adds one piece of what the gateway does per frame; ``python -m benchmarks --ladder``
measures them side by side.
"""

from __future__ import annotations

from typing import Any

from gatewayasgi import GatewayMiddleware
from gatewayasgi.protocol.codec import decode, encode
from gatewayasgi.runtime.outbox import Outbox
from gatewayasgi.settings import Overflow

from .gateway import BenchGateway
from .raw import app as raw_app


async def _echo(data: Any) -> Any:
    return data


HANDLERS = {"echo": _echo}


def _app(step: str) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                phase = (await receive())["type"].rsplit(".", 1)[-1]  # startup, shutdown
                await send({"type": f"lifespan.{phase}.complete"})
                if phase == "shutdown":
                    return
        if scope["type"] != "websocket":
            return
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        outbox = Outbox(
            send,
            lambda: None,
            lambda: None,
            max_messages=64,
            max_bytes=1 << 20,
            overflow=Overflow.CLOSE,
        )
        while True:
            message = await receive()
            if message["type"] != "websocket.receive":
                return
            raw = message.get("text") or message.get("bytes")
            decoded = decode(raw)
            data = decoded.data
            if step != "codec":
                data = await HANDLERS[decoded.event](data)
            text = encode(decoded.event, data, decoded.id)
            if step == "outbox":
                await outbox.send({"type": "websocket.send", "text": text}, len(text))
            else:
                await send({"type": "websocket.send", "text": text})

    return app


plain = raw_app
"""The hand-written loop of ``benchmarks.apps.raw``: orjson in, orjson out."""
codec = _app("codec")
"""+ gatewayasgi's codec (envelope checks, ids) instead of bare orjson."""
dispatch = _app("dispatch")
"""+ an event table lookup and an async handler call."""
outbox = _app("outbox")
"""+ the reply sent through a connection outbox."""
unthrottled = GatewayMiddleware(gateways=[BenchGateway], rate_limit=None)
"""+ the whole session: routing, size checks, guards/filters checks, hooks, task group."""
gateway = GatewayMiddleware(gateways=[BenchGateway])
"""+ the per-connection rate limit: the gateway as shipped."""

STEPS = ["plain", "codec", "dispatch", "outbox", "unthrottled", "gateway"]
