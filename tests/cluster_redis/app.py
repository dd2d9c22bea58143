"""The gateways of the scale-out, cluster and recovery tests, served by one worker process
on a Redis Cluster: ``RedisBroker(..., cluster=True, secret=SECRET)``. ``/parts`` keeps its
history in four partitions (``Recovery(partitions=4)``), streams that spread over the
cluster's masters.

``GATEWAYASGI_TEST_REDIS_CLUSTER_URL`` holds the cluster's startup nodes (comma-separated);
``GATEWAYASGI_TEST_NODE`` names the process in replies. (The imported app modules build
their own single-Redis apps from ``GATEWAYASGI_TEST_REDIS_URL`` too; those are never
started.)
"""

from __future__ import annotations

import os

from gatewayasgi import GatewayMiddleware
from gatewayasgi.brokers.redis import RedisBroker
from tests.apps.recovery_app import PartitionedGateway, RecoveringGateway
from tests.apps.scale_app import ScaleGateway
from tests.cluster.app import ClusterGateway

SECRET = "cluster-test-secret-0123456789"
URL_VARIABLE = "GATEWAYASGI_TEST_REDIS_CLUSTER_URL"


def make_broker(url: str) -> RedisBroker:
    return RedisBroker(
        url,
        cluster=True,
        secret=SECRET,
        reconnect_delay=0.05,
        max_reconnect_delay=1.0,
        connect_timeout=1.0,
        publish_timeout=1.0,
    )


app = GatewayMiddleware(
    gateways=[ScaleGateway, ClusterGateway, RecoveringGateway, PartitionedGateway],
    broker=make_broker(os.environ.get(URL_VARIABLE, "redis://127.0.0.1:7000")),
)

if os.environ.get("GATEWAYASGI_TEST_DEBUG"):
    import logging

    logging.basicConfig(level=logging.DEBUG)
