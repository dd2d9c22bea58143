"""python-socketio on its AsyncRedisManager: several processes sharing ``BENCH_REDIS_URL``."""

from __future__ import annotations

import os

import socketio

from .socketio_app import serve

app = serve(
    socketio.AsyncServer(
        async_mode="asgi",
        cors_allowed_origins="*",
        client_manager=socketio.AsyncRedisManager(os.environ["BENCH_REDIS_URL"]),
    )
)
