"""python-socketio: an AsyncServer as an ASGI app; rooms and emits are its own."""

from __future__ import annotations

from typing import Any

import socketio


def serve(sio: socketio.AsyncServer) -> socketio.ASGIApp:
    """The benchmark protocol's handlers on ``sio``, as an ASGI app."""

    @sio.on("echo")
    async def echo(sid: str, data: Any) -> None:
        await sio.emit("echo", data, to=sid)

    @sio.on("join")
    async def join(sid: str, room: str) -> None:
        await sio.enter_room(sid, room)
        await sio.emit("joined", room, to=sid)

    @sio.on("publish")
    async def publish(sid: str, data: Any) -> None:
        await sio.emit("message", data["payload"], room=data["room"])

    @sio.on("fill")
    async def fill(sid: str, data: Any) -> None:
        for _ in range(data["count"]):
            await sio.emit("fill", "x" * data["size"], to=sid)

    return socketio.ASGIApp(sio)


app = serve(socketio.AsyncServer(async_mode="asgi", cors_allowed_origins="*"))
