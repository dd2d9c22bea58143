"""python-socketio on its AsyncRedisManager: several processes sharing ``BENCH_REDIS_URL``."""

from __future__ import annotations

import os
from typing import Any

import socketio

sio = socketio.AsyncServer(
    async_mode="asgi",
    cors_allowed_origins="*",
    client_manager=socketio.AsyncRedisManager(os.environ["BENCH_REDIS_URL"]),
)


@sio.on("join")
async def join(sid: str, room: str) -> None:
    await sio.enter_room(sid, room)
    await sio.emit("joined", room, to=sid)


@sio.on("publish")
async def publish(sid: str, data: Any) -> None:
    await sio.emit("message", data["payload"], room=data["room"])


app = socketio.ASGIApp(sio)
