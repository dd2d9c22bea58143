"""``recovery_redis`` with the history split into four Redis Streams
(``Recovery(partitions=4)``): run it in several processes sharing ``BENCH_REDIS_URL``."""

from __future__ import annotations

import os

from gatewayasgi import GatewayMiddleware, Recovery
from gatewayasgi.brokers import RedisBroker

from .gateway import BenchGateway

app = GatewayMiddleware(
    gateways=[BenchGateway],
    broker=RedisBroker(os.environ["BENCH_REDIS_URL"]),
    recovery=Recovery(partitions=4),
)
