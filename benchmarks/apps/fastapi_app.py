"""FastAPI: the ConnectionManager pattern from FastAPI's WebSocket documentation."""

from __future__ import annotations

import contextlib
from typing import Any

from fastapi import FastAPI, WebSocket, WebSocketDisconnect


class ConnectionManager:
    def __init__(self) -> None:
        self.rooms: dict[str, list[WebSocket]] = {}

    def join(self, room: str, websocket: WebSocket) -> None:
        self.rooms.setdefault(room, []).append(websocket)

    def disconnect(self, websocket: WebSocket) -> None:
        for members in self.rooms.values():
            if websocket in members:
                members.remove(websocket)

    async def broadcast(self, room: str, message: Any) -> None:
        for connection in list(self.rooms.get(room, ())):
            with contextlib.suppress(Exception):
                await connection.send_json(message)


manager = ConnectionManager()
app = FastAPI()


@app.websocket("/ws")
async def endpoint(websocket: WebSocket) -> None:
    await websocket.accept()
    try:
        while True:
            frame = await websocket.receive_json()
            event, data = frame["event"], frame.get("data")
            if event == "echo":
                await websocket.send_json({"event": "echo", "data": data})
            elif event == "join":
                manager.join(data, websocket)
                await websocket.send_json({"event": "joined", "data": data})
            elif event == "publish":
                await manager.broadcast(data["room"], {"event": "message", "data": data["payload"]})
            elif event == "fill":
                for _ in range(data["count"]):
                    await websocket.send_json({"event": "fill", "data": "x" * data["size"]})
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        manager.disconnect(websocket)
