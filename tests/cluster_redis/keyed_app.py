"""Keyed streams on a Redis Cluster, served by one worker process: ``tests.streams_redis.app``'s
``Agent`` gateway (``/agent``) on ``RedisBroker(..., cluster=True)``.

``GATEWAYASGI_TEST_REDIS_CLUSTER_URL`` holds the cluster's startup nodes (comma-separated);
``GATEWAYASGI_TEST_NODE`` names the process in every item and end. (The imported app module
builds its own single-Redis app from ``GATEWAYASGI_TEST_REDIS_URL`` too; it is never
started.)
"""

from __future__ import annotations

import os

from gatewayasgi import GatewayMiddleware
from gatewayasgi.brokers.redis import RedisBroker
from tests.streams_redis.app import Agent

URL_VARIABLE = "GATEWAYASGI_TEST_REDIS_CLUSTER_URL"

app = GatewayMiddleware(
    gateways=[Agent],
    broker=RedisBroker(
        os.environ.get(URL_VARIABLE, "redis://127.0.0.1:7000"),
        cluster=True,
        reconnect_delay=0.05,
        max_reconnect_delay=1.0,
        connect_timeout=1.0,
        publish_timeout=1.0,
    ),
)
