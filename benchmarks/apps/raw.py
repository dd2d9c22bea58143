"""The ceiling: a hand-written ASGI app with orjson and no framework.

Fan-out awaits each member's send in turn (``app``) or all of them at once
(``concurrent_app``); which is faster depends on the server.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

Send = Any

_rooms: dict[str, set[Send]] = {}


def _text(event: str, data: Any) -> dict[str, Any]:
    return {"type": "websocket.send", "text": orjson.dumps({"event": event, "data": data}).decode()}


async def _safe(send: Send, message: dict[str, Any]) -> None:
    # try/except rather than contextlib.suppress: this is the baseline's hot loop.
    try:  # noqa: SIM105
        await send(message)
    except Exception:  # the member went away; the disconnect cleans up
        pass


def make_app(concurrent: bool) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        joined: list[str] = []
        try:
            while True:
                message = await receive()
                if message["type"] != "websocket.receive":
                    break
                frame = orjson.loads(message.get("text") or message.get("bytes") or b"null")
                event, data = frame["event"], frame.get("data")
                if event == "echo":
                    await send(_text("echo", data))
                elif event == "join":
                    _rooms.setdefault(data, set()).add(send)
                    joined.append(data)
                    await send(_text("joined", data))
                elif event == "publish":
                    out = _text("message", data["payload"])
                    members = list(_rooms.get(data["room"], ()))
                    if concurrent:
                        await asyncio.gather(*(_safe(member, out) for member in members))
                    else:
                        for member in members:
                            await _safe(member, out)
                elif event == "fill":
                    out = _text("fill", "x" * data["size"])
                    for _ in range(data["count"]):
                        await send(out)
        except Exception:
            pass
        finally:
            for room in joined:
                _rooms.get(room, set()).discard(send)

    return app


app = make_app(concurrent=False)
concurrent_app = make_app(concurrent=True)
