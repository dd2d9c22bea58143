"""``gateway_socketio`` on a Redis backplane: several processes sharing ``BENCH_REDIS_URL``."""

from __future__ import annotations

import os

from gatewayasgi import GatewayMiddleware
from gatewayasgi.brokers import RedisBroker
from gatewayasgi.socketio import SocketIO

from . import SOCKETIO_PATH
from .gateway_socketio import SocketIOBenchGateway

app = GatewayMiddleware(
    gateways=[SocketIOBenchGateway],
    broker=RedisBroker(os.environ["BENCH_REDIS_URL"]),
    socketio=SocketIO(path=SOCKETIO_PATH),
)
