"""Starlette: a WebSocketEndpoint-free route with a module-level room registry."""

from __future__ import annotations

import contextlib
from typing import Any

from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

_rooms: dict[str, set[WebSocket]] = {}


async def endpoint(websocket: WebSocket) -> None:
    await websocket.accept()
    joined: list[str] = []
    try:
        while True:
            frame = await websocket.receive_json()
            event, data = frame["event"], frame.get("data")
            if event == "echo":
                await websocket.send_json({"event": "echo", "data": data})
            elif event == "join":
                _rooms.setdefault(data, set()).add(websocket)
                joined.append(data)
                await websocket.send_json({"event": "joined", "data": data})
            elif event == "publish":
                for member in list(_rooms.get(data["room"], ())):
                    with contextlib.suppress(Exception):
                        await member.send_json({"event": "message", "data": data["payload"]})
            elif event == "fill":
                for _ in range(data["count"]):
                    await websocket.send_json({"event": "fill", "data": "x" * data["size"]})
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        for room in joined:
            _rooms.get(room, set()).discard(websocket)


app: Any = Starlette(routes=[WebSocketRoute("/ws", endpoint)])
