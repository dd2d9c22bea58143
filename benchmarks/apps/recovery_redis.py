"""gatewayasgi with session recovery on a Redis backplane (history in a Redis Stream, which
also carries delivery): run it in several processes sharing ``BENCH_REDIS_URL``."""

from __future__ import annotations

import os

from gatewayasgi import GatewayMiddleware, Recovery
from gatewayasgi.brokers import RedisBroker

from .gateway import BenchGateway

app = GatewayMiddleware(
    gateways=[BenchGateway],
    broker=RedisBroker(os.environ["BENCH_REDIS_URL"]),
    recovery=Recovery(),
)
