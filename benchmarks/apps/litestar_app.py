"""Litestar: a low-level websocket handler with a module-level room registry."""

from __future__ import annotations

import contextlib
from typing import Any

from litestar import Litestar, WebSocket, websocket
from litestar.exceptions import WebSocketDisconnect

_rooms: dict[str, set[WebSocket[Any, Any, Any]]] = {}


@websocket("/ws")
async def endpoint(socket: WebSocket[Any, Any, Any]) -> None:
    await socket.accept()
    joined: list[str] = []
    try:
        while True:
            frame = await socket.receive_json()
            event, data = frame["event"], frame.get("data")
            if event == "echo":
                await socket.send_json({"event": "echo", "data": data})
            elif event == "join":
                _rooms.setdefault(data, set()).add(socket)
                joined.append(data)
                await socket.send_json({"event": "joined", "data": data})
            elif event == "publish":
                for member in list(_rooms.get(data["room"], ())):
                    with contextlib.suppress(Exception):
                        await member.send_json({"event": "message", "data": data["payload"]})
            elif event == "fill":
                for _ in range(data["count"]):
                    await socket.send_json({"event": "fill", "data": "x" * data["size"]})
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        for room in joined:
            _rooms.get(room, set()).discard(socket)


app = Litestar(route_handlers=[endpoint], debug=False)
