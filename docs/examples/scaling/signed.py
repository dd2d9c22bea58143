# main.py -- every worker and every emitter on the namespace share the secret
import os

from gatewayasgi import GatewayMiddleware, WebSocketGateway
from gatewayasgi.brokers import RedisBroker
from gatewayasgi.emitter import RedisEmitter

url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


@WebSocketGateway("/chat")
class ChatGateway:
    pass


app = GatewayMiddleware(
    gateways=[ChatGateway],
    broker=RedisBroker(url, secret=os.environ["GATEWAY_BACKPLANE_SECRET"]),
)


def emitter() -> RedisEmitter:
    """Pushes from outside the workers (a job, a script) to the gateway's clients."""
    return RedisEmitter(url, namespace="/chat", secret=os.environ["GATEWAY_BACKPLANE_SECRET"])
