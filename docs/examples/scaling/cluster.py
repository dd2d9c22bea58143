# main.py -- every worker and every emitter on a Redis Cluster (Redis >= 7)
import os

from gatewayasgi import GatewayMiddleware, Recovery, WebSocketGateway
from gatewayasgi.brokers import RedisBroker
from gatewayasgi.emitter import RedisEmitter

# One or more startup nodes; the client finds the rest of the cluster from them.
nodes = os.environ.get("REDIS_CLUSTER_URL", "redis://10.0.0.1:7000,redis://10.0.0.2:7000")
secret = os.environ["GATEWAY_BACKPLANE_SECRET"]
# The history in 16 streams, spread over the masters (the same on every worker and emitter).
recovery = Recovery(window=120, partitions=16)


@WebSocketGateway("/chat", recovery=recovery)
class ChatGateway:
    pass


app = GatewayMiddleware(
    gateways=[ChatGateway],
    broker=RedisBroker(nodes, cluster=True, secret=secret),
)


def emitter() -> RedisEmitter:
    """Pushes from outside the workers: the same nodes, cluster=True, the same secret."""
    return RedisEmitter(nodes, namespace="/chat", recovery=recovery, cluster=True, secret=secret)
